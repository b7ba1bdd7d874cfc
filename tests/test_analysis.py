"""Tests of bnres.analysis on hand-made result sets whose verdicts are known."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bnres.analysis import (
    CLAIM1_ID,
    CLAIM2_ID,
    INCONCLUSIVE,
    NOT_SUPPORTED,
    SUPPORTED,
    NoResultsError,
    analyze,
    claim_bn_lr,
    claim_residual_depth,
    evaluate_claims,
    load_records,
    load_runs,
    load_sweeps,
    make_plots,
    write_tables,
)

sys.path.insert(0, str(Path(__file__).parent / "data"))
from result_factory import depth_run, diverged, make_record, plateau, trained, write_sweep  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_SWEEP = REPO / "tests" / "data" / "example_sweep"
LRS = [0.01, 0.03, 0.1, 0.3, 1.0, 3.0]


# --------------------------------------------------------------------------------------------
# hand-made sets


def lr_sweep(bn_max: float | None, nobn_max: float | None, lrs=LRS, seeds=(0, 1), **kwargs) -> list[dict]:
    """BN and no-BN runs: every seed trains up to ``*_max``; above it the loss plateaus at ln 10
    (first LR above) and then diverges. ``None``: never trains."""
    records = []
    for bn, max_lr in ((True, bn_max), (False, nobn_max)):
        for i, lr in enumerate(lrs):
            for seed in seeds:
                common = dict(bn=bn, lr=lr, seed=seed, **kwargs)
                if max_lr is not None and lr <= max_lr:
                    records.append(trained(**common))
                elif i == 0 or lrs[i - 1] == max_lr or (max_lr is None and i < 2):
                    records.append(plateau(**common))
                else:
                    records.append(diverged(**common))
    return records


def depth_sweep(plain: dict[int, float], residual: dict[int, float], seeds=(0, 1), jitter=0.001) -> list[dict]:
    """Plain/residual CIFAR-style runs with the given mean training error per depth."""
    records = []
    for model_name, errors in (("plain_cifar", plain), ("resnet_cifar", residual)):
        for depth, error in errors.items():
            for k, seed in enumerate(seeds):
                offset = jitter * (k - (len(seeds) - 1) / 2)  # seeds spread symmetrically about the mean
                records.append(depth_run(model_name, depth, error + offset, seed=seed))
    return records


def runs_of(tmp_path: Path, records: list[dict], name: str = "sweep") -> pd.DataFrame:
    return load_runs(write_sweep(tmp_path / name, records))


@pytest.fixture(scope="module")
def full_sweep(tmp_path_factory) -> Path:
    """An LR sweep, a depth sweep, a placement comparison and one running job, in one folder."""
    records = lr_sweep(bn_max=1.0, nobn_max=0.1)
    records += depth_sweep({20: 0.05, 32: 0.08, 56: 0.15}, {20: 0.04, 32: 0.042, 56: 0.045})
    for placement in ("after_activation", "pre_activation"):
        records += [trained(lr=0.1, seed=seed, bn_placement=placement) for seed in (0, 1)]
    records.append(make_record(status="running", lr=0.3, seed=1))
    return write_sweep(tmp_path_factory.mktemp("full") / "sweep", records)


@pytest.fixture(scope="module")
def full_analysis(full_sweep, tmp_path_factory):
    return analyze(full_sweep, out_dir=tmp_path_factory.mktemp("out"), verbose=False)


# --------------------------------------------------------------------------------------------
# loading


def test_runs_table_flattens_records(tmp_path):
    runs = runs_of(tmp_path, [
        trained(lr=0.1, seed=3, acc=0.9),
        depth_run("resnet_cifar", 56, 0.07),
        depth_run("plain18", 18, 0.2),
        diverged(lr=3.0),
        make_record(status="running"),
    ])
    assert len(runs) == 5
    assert list(runs["job"]) == ["0", "1", "2", "3", "4"]
    first = runs.iloc[0]
    assert first["model_name"] == "lenet" and first["bn"] and first["lr"] == 0.1 and first["seed"] == 3
    assert first["final_val_acc"] == pytest.approx(0.9)
    assert first["train_error"] == pytest.approx(1 - first["final_train_acc"])
    assert first["data"] == "mnist5k" and first["max_epochs"] == 3
    assert list(runs["residual"]) == [False, True, False, False, False]
    assert list(runs["family"].fillna("-")) == ["-", "cifar", "imagenet", "-", "-"]
    assert runs.iloc[1]["depth"] == 56
    assert math.isnan(runs.iloc[3]["final_train_loss"])  # null -> NaN
    assert runs.iloc[3]["diverged_at_step"] == 40
    assert list(runs["status"]) == ["completed", "completed", "completed", "diverged", "running"]


def test_loading_is_recursive_sorted_and_robust(tmp_path):
    sweep = tmp_path / "sweep"
    for job in ("10", "2", "nested/1"):
        (sweep / job).mkdir(parents=True)
        (sweep / job / "result.json").write_text(json.dumps(trained(lr=0.1)))
    (sweep / "bad").mkdir()
    (sweep / "bad" / "result.json").write_text("{not json")  # half-written record
    sparse = {"status": "completed", "overrides": ["model=mlp", "lr=0.5", "seed=1"], "final": {"val/acc": 0.8}}
    (sweep / "sparse").mkdir()
    (sweep / "sparse" / "result.json").write_text(json.dumps(sparse))
    with pytest.warns(UserWarning, match="unreadable"):
        runs = load_runs(sweep)
    assert list(runs["job"]) == ["2", "10", "nested/1", "sparse"]
    sparse_row = runs.iloc[-1]
    assert sparse_row["model_name"] == "mlp" and sparse_row["lr"] == 0.5 and sparse_row["seed"] == 1
    assert math.isnan(sparse_row["train_error"])


def test_several_sweeps_and_histories(tmp_path):
    a = write_sweep(tmp_path / "a", [trained(lr=0.1)])
    b = write_sweep(tmp_path / "b", [trained(lr=0.3), trained(lr=1.0)])
    runs, histories = load_sweeps([a, b])
    assert list(runs["sweep"]) == ["a", "b", "b"]
    assert runs["run_id"].is_unique
    assert set(histories["run_id"]) == set(runs["run_id"])
    assert {"epoch", "train_error", "val_error"} <= set(histories.columns)
    assert len(histories) == 3 * 3  # 3 runs x 3 epochs


@pytest.mark.parametrize("make_dir", [lambda p: p / "absent", lambda p: p])
def test_no_results_is_a_clear_error(tmp_path, make_dir):
    with pytest.raises(NoResultsError, match="result.json|no such"):
        load_runs(make_dir(tmp_path))


def test_tables_written(tmp_path):
    runs = runs_of(tmp_path, [trained(lr=0.1), make_record(status="running")])
    csv_path, md_path = write_tables(runs, tmp_path / "out")
    assert len(pd.read_csv(csv_path)) == 2
    text = md_path.read_text()
    assert "| status" in text and "running" in text and "count as missing" in text


# --------------------------------------------------------------------------------------------
# claim 1


def test_claim1_supported(tmp_path):
    v = claim_bn_lr(runs_of(tmp_path, lr_sweep(bn_max=1.0, nobn_max=0.1)))
    assert v.verdict == SUPPORTED, v.reason
    assert v.numbers["bn_max_stable_lr"] == 1.0 and v.numbers["nobn_max_stable_lr"] == 0.1
    assert v.numbers["lr_ratio"] == pytest.approx(10)
    assert "10x" in v.reason


def test_claim1_not_supported(tmp_path):
    v = claim_bn_lr(runs_of(tmp_path, lr_sweep(bn_max=0.3, nobn_max=0.3)))
    assert v.verdict == NOT_SUPPORTED, v.reason
    assert v.numbers["lr_ratio"] == pytest.approx(1)


def test_claim1_min_ratio_is_configurable(tmp_path):
    runs = runs_of(tmp_path, lr_sweep(bn_max=1.0, nobn_max=0.1))
    assert claim_bn_lr(runs, min_ratio=20).verdict == NOT_SUPPORTED


def test_claim1_plateau_is_not_training(tmp_path):
    # no-BN at lr 0.3 ends with a finite loss at ln 10 and chance accuracy: it did not train
    runs = runs_of(tmp_path, lr_sweep(bn_max=1.0, nobn_max=0.1))
    assert claim_bn_lr(runs).numbers["nobn_max_stable_lr"] == 0.1
    # with a threshold below chance the plateau would count as training
    assert claim_bn_lr(runs, acc_threshold=0.05).numbers["nobn_max_stable_lr"] == 0.3


def test_claim1_one_bad_seed_sets_the_max(tmp_path):
    records = lr_sweep(bn_max=1.0, nobn_max=0.1)
    for r in records:  # BN seed 1 diverges at lr 1
        if r["config"]["bn"] and r["config"]["lr"] == 1.0 and r["config"]["seed"] == 1:
            r.update(diverged(lr=1.0, seed=1))
    v = claim_bn_lr(runs_of(tmp_path, records))
    assert v.numbers["bn_max_stable_lr"] == 0.3 and v.verdict == SUPPORTED  # 0.3 / 0.1 = 3


def test_claim1_ratio_comes_with_a_seed_bootstrap(tmp_path):
    v = claim_bn_lr(runs_of(tmp_path, lr_sweep(bn_max=1.0, nobn_max=0.1)))
    assert v.numbers["lr_ratio_low"] == v.numbers["lr_ratio_high"] == pytest.approx(10)  # every seed agrees
    assert "ratio 10x to 10x (95%), >= 3x in 100% of resamples" in v.reason
    # no-BN seed 0 also trains at lr 0.3 (seed 1 does not): resamples drawing only seed 0 give 1 / 0.3
    records = lr_sweep(bn_max=1.0, nobn_max=0.1)
    for r in records:
        if not r["config"]["bn"] and r["config"]["lr"] == 0.3 and r["config"]["seed"] == 0:
            r.update(trained(bn=False, lr=0.3, seed=0))
    v = claim_bn_lr(runs_of(tmp_path / "fragile", records), min_ratio=10)
    assert v.verdict == SUPPORTED and v.numbers["lr_ratio"] == pytest.approx(10)
    assert v.numbers["lr_ratio_low"] == pytest.approx(1 / 0.3) and v.numbers["lr_ratio_high"] == pytest.approx(10)
    assert v.numbers["lr_ratio_share_at_least_min"] == pytest.approx(0.75, abs=0.04)  # P(both draws seed 0) = 1/4


def test_claim1_inconclusive_bn_at_top_of_grid(tmp_path):
    # BN trains at every LR tried: its max stable LR is a lower bound and 0.2/0.1 < 3 is not enough
    v = claim_bn_lr(runs_of(tmp_path, lr_sweep(bn_max=0.2, nobn_max=0.1, lrs=[0.05, 0.1, 0.2])))
    assert v.verdict == INCONCLUSIVE, v.reason
    assert v.numbers["bn_max_stable_lr_is_lower_bound"]
    assert "lower bound" in v.reason and "largest LR tried" in v.reason


def test_claim1_lower_bound_that_suffices_is_supported(tmp_path):
    v = claim_bn_lr(runs_of(tmp_path, lr_sweep(bn_max=1.0, nobn_max=0.1, lrs=[0.1, 0.3, 1.0])))
    assert v.verdict == SUPPORTED and "at least" in v.reason


@pytest.mark.parametrize(
    "records, reason",
    [
        ([r for r in lr_sweep(1.0, 0.1) if r["config"]["bn"]], "no finished no-BN runs"),
        (lr_sweep(1.0, 0.1, lrs=[0.1]), "only one learning rate"),
        (lr_sweep(1.0, None), "no-BN net never trains"),
        (lr_sweep(None, 0.1), "BN net never trains"),
    ],
    ids=["no-BN missing", "one LR", "no-BN never trains", "BN never trains"],
)
def test_claim1_inconclusive_reasons(tmp_path, records, reason):
    v = claim_bn_lr(runs_of(tmp_path, records))
    assert v.verdict == INCONCLUSIVE
    assert reason in v.reason


def test_claim1_missing_runs(tmp_path):
    records = lr_sweep(bn_max=1.0, nobn_max=0.1)
    # a BN run still running at lr 1: if it failed, BN's max would be 0.3 -> ratio 3, still supported
    for r in records:
        if r["config"]["bn"] and r["config"]["lr"] == 1.0 and r["config"]["seed"] == 1:
            r.update(make_record(status="running", lr=1.0, seed=1, train_acc=None, val_acc=None))
    v = claim_bn_lr(runs_of(tmp_path / "a", records))
    assert v.verdict == SUPPORTED and "cannot change the verdict" in v.reason
    assert v.numbers["missing_runs"] == 1
    # the same at lr 0.3 too: if both failed BN's max would be 0.1 -> not supported: it depends
    for r in records:
        if r["config"]["bn"] and r["config"]["lr"] == 0.3 and r["config"]["seed"] == 1:
            r.update(make_record(status="failed", lr=0.3, seed=1, train_acc=None, val_acc=None))
    v = claim_bn_lr(runs_of(tmp_path / "b", records))
    assert v.verdict == INCONCLUSIVE and "missing" in v.reason


def test_claim1_ignores_other_placements(tmp_path):
    # a placement comparison at lr 3 shares the architecture; it must not mix into the LR sweep
    records = lr_sweep(bn_max=1.0, nobn_max=0.1) + [trained(lr=3.0, bn_placement="pre_activation")]
    v = claim_bn_lr(runs_of(tmp_path, records))
    assert v.numbers["bn_max_stable_lr"] == 1.0 and "before_activation" in v.scope


# --------------------------------------------------------------------------------------------
# claim 2


def test_claim2_supported(tmp_path):
    v = claim_residual_depth(runs_of(tmp_path, depth_sweep({20: 0.05, 56: 0.15}, {20: 0.04, 56: 0.045})))
    assert v.verdict == SUPPORTED, v.reason
    assert v.numbers["plain_error_rise"] == pytest.approx(0.10)
    assert v.numbers["residual_error_rise"] == pytest.approx(0.005)
    assert v.numbers["deepest_depth"] == 56


def test_verdicts_serialize_to_json(tmp_path):
    runs = runs_of(tmp_path, lr_sweep(1.0, 0.1) + depth_sweep({20: 0.05, 56: 0.15}, {20: 0.04, 56: 0.045}))
    for verdict in evaluate_claims(runs):
        data = json.loads(json.dumps(verdict.to_dict(), allow_nan=True))
        assert data["verdict"] == SUPPORTED and data["numbers"] and data["table"]


def test_claim2_partial_is_inconclusive_not_refuted(tmp_path):
    # the short-budget picture: resnet-56 3x better than plain-56, but worse than resnet-20
    v = claim_residual_depth(runs_of(tmp_path, depth_sweep({20: 0.06, 32: 0.1, 56: 0.21}, {20: 0.045, 32: 0.05, 56: 0.07})))
    assert v.verdict == INCONCLUSIVE, v.reason
    assert "partially supported" in v.reason
    assert "Degradation of plain nets: supported" in v.reason and "not shown at this budget" in v.reason
    assert v.numbers["error_ratio_plain_over_residual_at_deepest"] == pytest.approx(3.0)


def test_claim2_not_supported_residual_degrades_too(tmp_path):
    v = claim_residual_depth(runs_of(tmp_path, depth_sweep({20: 0.05, 56: 0.15}, {20: 0.05, 56: 0.14})))
    assert v.verdict == NOT_SUPPORTED and "residual nets degrade" in v.reason


def test_claim2_not_supported_plain_does_not_degrade(tmp_path):
    v = claim_residual_depth(runs_of(tmp_path, depth_sweep({20: 0.05, 56: 0.055}, {20: 0.05, 56: 0.04})))
    assert v.verdict == NOT_SUPPORTED and "plain nets do not degrade" in v.reason


def test_claim2_seed_spread_sets_the_bar(tmp_path):
    # a 5-point rise inside a 10-point seed range is neither a rise nor its absence: the bootstrap
    # interval of the rise straddles the tolerance (max(0.5 points, 0.25 x 10%) = 2.5 points)
    v = claim_residual_depth(runs_of(tmp_path, depth_sweep({20: 0.10, 56: 0.15}, {20: 0.10, 56: 0.10}, jitter=0.10)))
    assert v.numbers["plain_tolerance"] == pytest.approx(0.025)
    assert v.numbers["plain_rise_low"] < 0.025 < v.numbers["plain_rise_high"]
    assert v.verdict == INCONCLUSIVE and "not settled" in v.reason and "more seeds" in v.reason


def test_claim2_states_effect_sizes_with_seed_intervals(tmp_path):
    v = claim_residual_depth(runs_of(tmp_path, depth_sweep({20: 0.05, 56: 0.15}, {20: 0.04, 56: 0.045})))
    assert v.verdict == SUPPORTED, v.reason
    # seeds 0.1 points apart, 2 seeds per depth: pooled sd 0.0707 points, t(2 dof) = 4.30 -> +-0.30 points
    assert v.numbers["plain_rise_low"] == pytest.approx(0.0970, abs=1e-4) and v.numbers["plain_rise_high"] == pytest.approx(0.1030, abs=1e-4)
    assert "plain nets' training error rises by 10.0 points [+9.7, +10.3] (5.0% -> 15.0%" in v.reason
    assert "residual nets' training error rises by 0.5 points [+0.2, +0.8] (4.0% -> 4.5%; tolerance 1.0 points" in v.reason
    assert ": 20x less for residual nets" in v.reason
    assert "95% t interval" in v.reason and "2 or more seeds per depth" in v.reason


def test_claim2_tolerance_scales_with_the_error_level(tmp_path):
    """The issue's reproduce run: residual 2.4% -> 3.6% on 2 seeds is half as much error again. A fixed
    2-point tolerance called that "does not degrade"; scaled with the error level it is a rise."""
    errors = {("plain_cifar", 20): (0.030, 0.038), ("plain_cifar", 56): (0.79, 0.354),
              ("resnet_cifar", 20): (0.022, 0.026), ("resnet_cifar", 56): (0.034, 0.038)}
    records = [depth_run(model, depth, e, seed=seed) for (model, depth), pair in errors.items() for seed, e in enumerate(pair)]
    v = claim_residual_depth(runs_of(tmp_path, records))
    assert v.numbers["residual_tolerance"] == pytest.approx(0.006)
    assert not v.numbers["residual_holds"]
    # two seeds 44 points apart at plain-56: a t interval cannot call even the plain rise real
    assert v.verdict == INCONCLUSIVE and "not settled" in v.reason
    assert "residual nets' training error rises by 1.2 points" in v.reason and "x less for residual nets" in v.reason


@pytest.mark.parametrize(
    "records, reason",
    [
        (depth_sweep({20: 0.05, 56: 0.15}, {20: 0.04, 56: 0.045}, seeds=(0,)), "spread unknown"),
        (depth_sweep({20: 0.05}, {20: 0.04}), "at least 2 are needed"),
        (depth_sweep({20: 0.05, 56: 0.15}, {}), "no residual runs"),
        (lr_sweep(1.0, 0.1), "no plain/residual runs"),
    ],
    ids=["one seed", "one depth", "no residual", "no depth sweep"],
)
def test_claim2_inconclusive_reasons(tmp_path, records, reason):
    v = claim_residual_depth(runs_of(tmp_path, records))
    assert v.verdict == INCONCLUSIVE
    assert reason in v.reason


def test_claim2_counts_diverged_and_running(tmp_path):
    records = depth_sweep({20: 0.05, 56: 0.15}, {20: 0.04, 56: 0.045})
    records += [diverged(model_name="plain_cifar", depth=56, seed=2), make_record(model_name="resnet_cifar", depth=56, seed=2, status="running")]
    v = claim_residual_depth(runs_of(tmp_path, records))
    assert v.verdict == INCONCLUSIVE
    assert "plain-56 2 completed (1 diverged)" in v.reason and "residual-56 seed 2 (running)" in v.reason
    assert "plain-20 seed 2 (missing)" in v.reason
    assert v.numbers["diverged_runs"] == 1 and v.numbers["missing_runs"] == 2 and v.numbers["failed_runs"] == 1


# --------------------------------------------------------------------------------------------
# the whole analysis: files, plots, claims.md, CLI


def test_analyze_writes_everything(full_analysis):
    files = full_analysis.files
    assert {"runs_csv", "runs_md", "claims_md", "lr_sweep", "depth", "depth_curves", "placement"} <= set(files)
    assert full_analysis.verdict(CLAIM1_ID).verdict == SUPPORTED
    assert full_analysis.verdict(CLAIM2_ID).verdict == SUPPORTED
    assert (full_analysis.runs["status"] == "running").sum() == 1


def test_plots_are_real_pngs(full_analysis):
    from PIL import Image

    for name in ("lr_sweep", "depth", "depth_curves", "placement"):
        path = full_analysis.files[name]
        assert path.stat().st_size > 20_000, f"{name}.png looks empty"
        with Image.open(path) as image:
            assert image.format == "PNG"
            assert image.width > 600 and image.height > 300


def test_claims_md_carries_the_numbers(full_analysis):
    text = full_analysis.files["claims_md"].read_text()
    assert "**Verdict: SUPPORTED**" in text
    assert "max stable LR with BN 1, without BN 0.1; ratio 10" in text
    assert "| bn_max_stable_lr | 1 |" in text and "| nobn_max_stable_lr | 0.1 |" in text
    assert "| plain_error_rise |" in text and "plain nets' training error rises by 10.1 points" in text and "(5.0% -> 15.0%" in text
    assert "final val accuracy is >= 0.5" in text  # thresholds stated


def test_plots_only_when_data_present(tmp_path):
    runs, histories = load_sweeps(write_sweep(tmp_path / "s", lr_sweep(1.0, 0.1)))
    written = make_plots(runs, histories, tmp_path / "out")
    assert set(written) == {"lr_sweep"}
    assert not (tmp_path / "out" / "depth.png").exists()


def test_evaluate_claims_returns_one_verdict_per_claim(tmp_path):
    verdicts = evaluate_claims(runs_of(tmp_path, lr_sweep(1.0, 0.1)))
    assert [v.claim for v in verdicts] == [CLAIM1_ID, CLAIM2_ID]
    assert verdicts[1].verdict == INCONCLUSIVE


def test_analyze_script(full_sweep, tmp_path):
    script = REPO / "scripts" / "analyze.py"
    done = subprocess.run([sys.executable, str(script), str(full_sweep), "--min-ratio", "20", "--no-wandb"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Claim 1" in done.stdout and "verdict: NOT SUPPORTED" in done.stdout  # 10x < 20x
    assert (full_sweep / "analysis" / "claims.md").exists()  # default out dir
    empty = tmp_path / "empty"
    empty.mkdir()
    failed = subprocess.run([sys.executable, str(script), str(empty), "--no-wandb"], capture_output=True, text=True, timeout=60)
    assert failed.returncode != 0
    assert failed.stderr.strip().count("\n") == 0 and "no result.json" in failed.stderr


def test_example_sweep_ships_small_real_runs_the_harness_can_produce(tmp_path):
    size = sum(p.stat().st_size for p in EXAMPLE_SWEEP.rglob("*") if p.is_file())
    assert size < 200_000
    records = load_records(EXAMPLE_SWEEP)
    assert len(records) == 48 and {r["status"] for r in records} <= {"completed", "diverged"}
    # made by the harness (tests/data/make_example_sweep.py): each job's overrides compose to a config
    # the harness accepts, and the record's config is that config
    from bnres.config.checks import check_config
    from bnres.runs.runner import compose_config, resolved_config

    for overrides in sorted({tuple(o for o in r["overrides"] if not o.startswith("seed=")) for r in records}):
        cfg = compose_config(list(overrides), tmp_path / "job")
        check_config(cfg)
        config = resolved_config(cfg)
        [record] = [r for r in records if tuple(o for o in r["overrides"] if not o.startswith("seed=")) == overrides][:1]
        for key in ("model_name", "bn", "bn_placement", "lr", "depth"):
            assert record["config"][key] == config[key], (overrides, key)
    runs = load_runs(EXAMPLE_SWEEP)
    placements = set(runs.loc[runs["bn"], "bn_placement"])
    assert "pre_activation" not in set(runs.loc[runs["model_name"] == "lenet", "bn_placement"])  # lenet refuses it
    assert placements == {"before_activation", "after_activation", "pre_activation"}
    verdicts = {v.claim: v for v in evaluate_claims(runs)}
    # what these very short runs show: BN's 10x larger stable LR; at 80 steps even the shallowest nets
    # are far from trained (58-67% error), so depth cannot be judged
    assert verdicts[CLAIM1_ID].verdict == SUPPORTED and verdicts[CLAIM1_ID].numbers["lr_ratio"] == pytest.approx(10)
    assert verdicts[CLAIM2_ID].verdict == INCONCLUSIVE and "did not train" in verdicts[CLAIM2_ID].reason
    assert "budget is too small" in verdicts[CLAIM2_ID].reason

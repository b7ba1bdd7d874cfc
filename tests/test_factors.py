"""The factor summary (what any sweep shows) on hand-made record sets whose answer is known."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bnres.analysis import CLAIM1_ID, CLAIM2_ID, analyze, load_runs
from bnres.analysis.factors import summarize_factors, swept_factors

sys.path.insert(0, str(Path(__file__).parent / "data"))
from result_factory import diverged, make_record, trained, write_sweep  # noqa: E402


def two_by_two(seeds=(0, 1)) -> list[dict]:
    """The user's sweep, -m model=resnet18,plain18 bn=true,false, with known finals:
    BN: val acc 0.95 (resnet18) / 0.92 (plain18); no BN: 0.20 / 0.09 (seed offsets -+0.01)."""
    acc = {("resnet18", True): 0.95, ("plain18", True): 0.92, ("resnet18", False): 0.20, ("plain18", False): 0.09}
    records = []
    for (model, bn), mean in acc.items():
        for k, seed in enumerate(seeds):
            records.append(make_record(model_name=model, bn=bn, seed=seed, depth=18, train_acc=mean,
                                       val_acc=round(mean + (0.01 if k else -0.01), 4), train_loss=round(2.5 * (1 - mean), 4)))
    return records


def test_two_by_two_table(tmp_path):
    runs = load_runs(write_sweep(tmp_path / "sweep", two_by_two()))
    assert swept_factors(runs) == ["shortcut", "bn"]  # the models differ only by their shortcuts
    [summary] = summarize_factors(runs)
    assert summary.n_runs == 8 and summary.factor_names == ["shortcut", "bn"]
    rows, cols, metric, table = summary.cross[0]
    assert (rows, cols, metric) == ("shortcut", "bn", "final_val_acc")
    assert list(table.columns) == ["shortcut \\ bn", "bn=true", "bn=false"]
    by_row = {row["shortcut \\ bn"]: row for row in table.to_dict("records")}
    assert by_row["true"]["bn=true"] == "0.95 [0.94-0.96] (n=2)"
    assert by_row["false"]["bn=false"] == "0.09 [0.08-0.1] (n=2)"
    loss_table = summary.cross[1][3]
    assert summary.cross[1][2] == "final_train_loss" and loss_table.iloc[0]["bn=false"] == "2 [2-2] (n=2)"
    bn = summary.marginals["bn"].set_index("value")
    assert bn.loc[True, "final_val_acc_mean"] == pytest.approx(0.935)
    assert bn.loc[False, "final_val_acc_mean"] == pytest.approx(0.145)
    assert summary.effects["bn"]["final_val_acc"]["effect"] == pytest.approx(0.79)
    assert summary.effects["bn"]["final_val_acc"]["seed_spread"] == pytest.approx(0.02)
    assert summary.effects["shortcut"]["final_val_acc"]["effect"] == pytest.approx(0.07)
    lines = summary.effect_lines()
    assert lines[1].startswith("bn: final val acc true 0.935, false 0.145: effect 0.79, larger than the seed spread (0.02)")
    numbers = summary.numbers()
    assert numbers["bn=true/final_val_acc_mean"] == pytest.approx(0.935) and numbers["factors"] == "shortcut x bn"


def test_verdicts_that_do_not_apply_are_one_line(tmp_path, capsys):
    result = analyze(write_sweep(tmp_path / "sweep", two_by_two()), out_dir=tmp_path / "out")
    assert result.applies == {CLAIM1_ID: False, CLAIM2_ID: False}
    printed = capsys.readouterr().out
    claim_lines = [line for line in printed.splitlines() if line.startswith("Claim ")]
    assert len(claim_lines) == 2 and all("does not apply to these runs" in line for line in claim_lines)
    assert "verdict:" not in printed  # no verdict blocks for claims the runs do not test
    assert "shortcut \\ bn" in printed and "0.95 [0.94-0.96] (n=2)" in printed
    claims = (tmp_path / "out" / "claims.md").read_text()
    assert "## Claims these runs do not test" in claims and "## What the runs show" in claims
    table_rows = [line for line in claims.splitlines() if line.startswith("| true ") or line.startswith("| shortcut")]
    assert [cell.strip() for cell in table_rows[0].split("|")[1:4]] == ["shortcut \\ bn", "bn=true", "bn=false"]
    assert "0.95 [0.94-0.96] (n=2)" in table_rows[1]
    assert "**Verdict:" not in claims


def test_placements_and_diverged_runs(tmp_path):
    records = [trained(model_name="resnet_cifar", depth=20, bn_placement=p, seed=s, acc=a)
               for p, a in (("before_activation", 0.96), ("after_activation", 0.97)) for s in (0, 1)]
    records += [make_record(model_name="resnet_cifar", depth=20, bn=False, seed=s, train_acc=0.1, val_acc=0.1) for s in (0, 1)]
    records += [diverged(model_name="resnet_cifar", depth=20, bn=False, seed=2)]
    [summary] = summarize_factors(load_runs(write_sweep(tmp_path / "s", records)))
    assert summary.factors == ["bn_label"] and summary.factor_names == ["BN"]  # placements and "no BN" in one factor
    marg = summary.marginals["bn_label"].set_index("value")
    assert marg.loc["no BN", "runs"] == 3 and marg.loc["no BN", "diverged"] == 1
    assert marg.loc["no BN", "final_val_acc_mean"] == pytest.approx(0.1)  # the diverged run is not averaged
    assert "diverged runs: no BN 1" in summary.effect_lines()[0]
    assert summary.cross == []  # one factor: no cross table


def test_lr_sweep_factors_and_model_names(tmp_path):
    records = [trained(bn=bn, lr=lr, seed=s) for bn in (True, False) for lr in (0.1, 1.0) for s in (0, 1)]
    records += [trained(model_name="mlp", lr=0.1, seed=0)]
    runs = load_runs(write_sweep(tmp_path / "s", records))
    assert swept_factors(runs) == ["model_name", "bn", "lr"]  # lenet vs mlp: not twins, the model is the factor
    assert swept_factors(runs[runs["model_name"] == "lenet"]) == ["bn", "lr"]


def test_one_setting_and_nested_sweeps(tmp_path):
    write_sweep(tmp_path / "all" / "a", [trained(seed=0), trained(seed=1, acc=0.9)])
    write_sweep(tmp_path / "all" / "b", [trained(lr=0.3, seed=0), trained(lr=1.0, seed=0)])
    summaries = {s.sweep: s for s in summarize_factors(load_runs(tmp_path / "all"))}
    assert set(summaries) == {"all/a", "all/b"}  # each nested sweep folder on its own
    assert summaries["all/a"].factors == [] and "all runs share one setting" in summaries["all/a"].to_text()
    assert summaries["all/b"].factors == ["lr"]


def test_any_swept_override_is_a_factor(tmp_path):
    records = []
    for optimizer, acc in (("sgd", 0.9), ("adam", 0.8)):
        for momentum in ("0.1", "0.01"):
            for seed in (0, 1):
                record = trained(seed=seed, acc=acc)
                record["overrides"] += [f"optimizer={optimizer}", f"bn_momentum={momentum}", "trainer.limit_train_batches=3"]
                records.append(record)
    [summary] = summarize_factors(load_runs(write_sweep(tmp_path / "s", records)))
    assert summary.factor_names == ["bn_momentum", "optimizer"]  # seeds and fixed overrides are not factors
    marg = summary.marginals["override:optimizer"].set_index("value")
    assert marg.loc["sgd", "final_val_acc_mean"] == pytest.approx(0.9) and marg.loc["adam", "final_val_acc_mean"] == pytest.approx(0.8)
    assert list(summary.cross[0][3].columns) == ["bn_momentum \\ optimizer", "optimizer=adam", "optimizer=sgd"]
    assert summary.cross[0][3].iloc[0, 0] == "0.01"  # numeric override values in numeric order

"""Hand-made sweeps whose right verdict is known, one per way a verdict could be fooled."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bnres.analysis import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED, claim_bn_lr, claim_residual_depth, load_runs, load_sweeps
from bnres.analysis.plots import plot_depth, plot_placement

sys.path.insert(0, str(Path(__file__).parent / "data"))
from result_factory import depth_run, diverged, make_record, plateau, trained, write_sweep  # noqa: E402

LRS = [0.01, 0.03, 0.1, 0.3, 1.0]


def lr_cells(bn_trains, nobn_trains, seeds=(0, 1)) -> list[dict]:
    """BN / no-BN runs; ``*_trains`` is the set of LRs where every seed trains (elsewhere: plateau)."""
    return [(trained if lr in ok else plateau)(bn=bn, lr=lr, seed=seed)
            for bn, ok in ((True, bn_trains), (False, nobn_trains)) for lr in LRS for seed in seeds]


def depth_cells(plain, residual, seeds=(0, 1), jitter=0.001) -> list[dict]:
    records = []
    for model, errors in (("plain_cifar", plain), ("resnet_cifar", residual)):
        for depth, error in errors.items():
            for k, seed in enumerate(seeds):
                records.append(depth_run(model, depth, error + jitter * (k - (len(seeds) - 1) / 2), seed=seed))
    return records


def drop(records, model, depth, seed):
    return [r for r in records if not (r["config"]["model_name"] == model and r["config"]["depth"] == depth
                                       and r["config"]["seed"] == seed)]


BN_ALL = {0.01, 0.03, 0.1, 0.3, 1.0}
BN_GAP = {0.01, 0.03, 0.3, 1.0}  # fails at 0.1 only
NOBN = {0.01, 0.03}
RESIDUAL_56_DIVERGED = [r for r in depth_cells({20: 0.05, 44: 0.10, 56: 0.15}, {20: 0.04, 44: 0.041})] + [
    diverged(model_name="resnet_cifar", depth=56, seed=s) for s in (0, 1)]
PLAIN_56_DIVERGED = [r for r in depth_cells({20: 0.05, 44: 0.10}, {20: 0.04, 44: 0.041, 56: 0.042})] + [
    diverged(model_name="plain_cifar", depth=56, seed=s) for s in (0, 1)]
RESIDUAL_56_SEED_MISSING = drop(depth_cells({20: 0.05, 56: 0.15}, {20: 0.04, 56: 0.041}, seeds=(0, 1, 2)), "resnet_cifar", 56, 2)
RESIDUAL_56_FAILED = depth_cells({20: 0.05, 56: 0.15}, {20: 0.04}) + [
    make_record(model_name="resnet_cifar", depth=56, seed=s, status="failed", train_acc=None, val_acc=None) for s in (0, 1)]
NOTHING_TRAINED = depth_cells({20: 0.86, 56: 0.89}, {20: 0.85, 56: 0.87})
SLOPE_OVER_EVERY_DEPTH = depth_cells({20: 0.05, 32: 0.30, 44: 0.30, 56: 0.055}, {20: 0.04, 32: 0.04, 44: 0.04, 56: 0.04})

CASES = [
    # claim 1
    ("claim1", lr_cells(BN_GAP, NOBN), NOT_SUPPORTED, ["Gap in the trained range", "BN fails at 0.1 but trains again at 0.3, 1"]),
    ("claim1", lr_cells(BN_ALL - {1.0}, NOBN, seeds=(0,)), INCONCLUSIVE, ["only 1 seed", "2 are needed"]),
    ("claim1", lr_cells(set(), NOBN), INCONCLUSIVE, ["BN net never trains", "budget is too small"]),
    ("claim1", lr_cells(BN_ALL - {1.0}, NOBN), SUPPORTED, ["The LR grid allows a true ratio between 3x and 33x"]),
    ("claim1", [r for r in lr_cells(BN_ALL - {1.0}, NOBN, seeds=(0, 1, 2)) if not (r["config"]["bn"] and r["config"]["lr"] == 0.1 and r["config"]["seed"] == 2)],
     INCONCLUSIVE, ["missing", "BN lr=0.1", "depends on them"]),
    # claim 2
    ("claim2", RESIDUAL_56_DIVERGED, NOT_SUPPORTED, ["residual-56 0 completed (2 diverged)", "chance error"]),
    ("claim2", PLAIN_56_DIVERGED, SUPPORTED, ["plain-56 0 completed (2 diverged)"]),
    ("claim2", RESIDUAL_56_SEED_MISSING, INCONCLUSIVE, ["residual-56 seed 2 (missing)", "could change the verdict"]),
    ("claim2", RESIDUAL_56_FAILED, INCONCLUSIVE, ["residual-56 seed 0 (failed)", "residual-56 seed 1 (failed)"]),
    ("claim2", NOTHING_TRAINED, INCONCLUSIVE, ["did not train", "floor of 45.0%", "budget is too small"]),
    ("claim2", depth_cells({20: 0.05, 56: 0.15}, {20: 0.04, 56: 0.041}, seeds=(0,)), INCONCLUSIVE, ["spread unknown", "2 are needed"]),
    ("claim2", SLOPE_OVER_EVERY_DEPTH, NOT_SUPPORTED, ["depths 20: 5.0%, 32: 30.0%, 44: 30.0%, 56: 5.5%"]),
]
IDS = ["lr gap", "lr one seed", "bn never trains", "lr grid range", "lr seed missing",
       "residual deep diverged", "plain deep diverged", "seed missing", "failed runs", "nothing trained",
       "depth one seed", "slope not endpoints"]


@pytest.mark.parametrize("claim, records, verdict, phrases", CASES, ids=IDS)
def test_verdict_case(tmp_path, claim, records, verdict, phrases):
    runs = load_runs(write_sweep(tmp_path / "sweep", records))
    v = claim_bn_lr(runs) if claim == "claim1" else claim_residual_depth(runs)
    assert v.verdict == verdict, v.reason
    for phrase in phrases:
        assert phrase in v.reason, v.reason


def test_identical_seeds_plot(tmp_path):
    # zero-width intervals: three seeds with the same numbers must plot, not raise on negative yerr
    records = depth_cells({20: 0.1, 56: 0.1}, {20: 0.1, 56: 0.1}, seeds=(0, 1, 2), jitter=0.0)
    records += [trained(lr=0.1, seed=s, acc=0.7, bn_placement=p) for s in (0, 1, 2)
                for p in ("before_activation", "after_activation")]
    runs = load_runs(write_sweep(tmp_path / "sweep", records))
    plot_depth(runs)
    plot_placement(runs)


def test_slower_or_worse_from_histories(tmp_path):
    # 8-epoch curves still falling at the end: the deepest plain nets are still improving
    records = [depth_run(model, depth, error + 0.001 * seed, seed=seed, max_epochs=8)
               for model, errors in (("plain_cifar", {20: 0.05, 56: 0.15}), ("resnet_cifar", {20: 0.04, 56: 0.041}))
               for depth, error in errors.items() for seed in (0, 1)]
    runs, histories = load_sweeps(write_sweep(tmp_path / "sweep", records))
    v = claim_residual_depth(runs, histories=histories)
    assert "Slower or worse: over the last" in v.reason and "plain-56 training error still falls" in v.reason
    assert v.numbers["plain_deep_still_improving"] is True

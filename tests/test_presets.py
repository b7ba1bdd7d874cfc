"""The experiment presets compose, and a tiny real sweep of each runs end to end through the analysis."""

from __future__ import annotations

import json
import re

import pytest

from bnres.analysis import analyze
from conftest import ROOT, TINY, compose_config, run_script

TINY = [*TINY, "logger=none"]


@pytest.mark.parametrize(
    "preset, expect",
    [
        ("bn_lr", {"model_name": "lenet", "task_name": "bn_lr"}),
        ("depth", {"model_name": "resnet_cifar", "task_name": "depth"}),
        ("bn_placement", {"model_name": "resnet_cifar", "depth": 20}),
        ("bn_lr_cifar10", {"depth": 20, "lr": 0.1}),
        ("depth_cifar10", {"model_name": "resnet_cifar"}),
        ("bn_placement_cifar10", {"depth": 56}),
    ],
)
def test_presets_compose(tmp_path, preset, expect):
    cfg = compose_config([f"experiment={preset}"], tmp_path)
    for key, value in expect.items():
        assert cfg[key] == value
    assert cfg.hydra.sweeper.params, "a preset defines its sweep"
    if not preset.endswith("cifar10"):  # CPU presets: two jobs at a time, sharing the cores
        assert "Joblib" in cfg.hydra.launcher._target_ and cfg.packing.jobs_per_gpu == 2 and cfg.packing.threads_per_job == "auto"
    if preset.endswith("cifar10"):  # the He et al. 2016 recipe
        assert cfg.data.name == "cifar10" and cfg.data.augment and cfg.data.batch_size == 128
        assert cfg.optimizer.momentum == 0.9 and cfg.optimizer.weight_decay == 1e-4
        assert list(cfg.scheduler.milestones) == [0.5, 0.75] and cfg.trainer.max_epochs == 164


@pytest.mark.slow
def test_tiny_real_sweeps_of_every_preset_feed_the_analysis(tmp_path):
    sweeps = {
        "bn_lr": ["lr=0.1,30", "seed=0,1"],
        "depth": ["depth=8,14", "seed=0,1"],
        "bn_placement": ["seed=0"],
    }
    for preset, grid in sweeps.items():
        result = run_script(["-m", f"experiment={preset}", *grid, *TINY, f"hydra.sweep.dir={tmp_path / preset}"], cwd=ROOT, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
    records = {p: [json.loads(f.read_text()) for f in (tmp_path / p).glob("*/result.json")] for p in sweeps}
    assert [len(records[p]) for p in sweeps] == [8, 8, 4]
    assert {r["config"]["bn_placement"] for r in records["bn_placement"] if r["config"]["bn"]} == {"before_activation", "after_activation", "pre_activation"}
    assert sum(not r["config"]["bn"] for r in records["bn_placement"]) == 1

    result = analyze([tmp_path / p for p in sweeps], out_dir=tmp_path / "analysis", verbose=False)
    assert {v.verdict for v in result.verdicts} <= {"supported", "not supported", "inconclusive"}
    claims = (tmp_path / "analysis" / "claims.md").read_text()
    assert "Claim 1" in claims and "Claim 2" in claims
    for name in ("lr_sweep.png", "depth.png", "depth_curves.png", "placement.png", "runs.csv"):
        assert (tmp_path / "analysis" / name).stat().st_size > 1000, name


@pytest.mark.slow
def test_reproduce_runs_presets_then_analysis_and_skips_finished_runs_on_rerun(tmp_path):
    script = ROOT / "scripts" / "reproduce.py"
    args = ["--only", "bn_placement", "--out", str(tmp_path), *TINY, "seed=0"]
    first = run_script(args, cwd=ROOT, script=script, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "Claim 1" in first.stdout and "Claim 2" in first.stdout  # verdicts printed (inconclusive here)
    # each job's end line comes through, with k/N (bnres.runs.progress)
    assert re.search(r"\] \[1/4 · ~.* left\] (completed|diverged) · ", first.stdout), first.stdout
    assert re.search(r"\] \[4/4\] (completed|diverged) · ", first.stdout), first.stdout
    records = sorted((tmp_path / "cpu" / "bn_placement").glob("*/result.json"))
    assert len(records) == 4
    stamps = [r.stat().st_mtime_ns for r in records]
    again = run_script(args, cwd=ROOT, script=script, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert [r.stat().st_mtime_ns for r in records] == stamps  # nothing redone
    assert re.search(r"\] \[4/4\] already (completed|diverged), skipped", again.stdout), again.stdout
    assert (tmp_path / "cpu" / "analysis" / "claims.md").exists()

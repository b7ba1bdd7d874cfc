"""The analysis as a W&B run (scripts/analyze.py), read back with W&B's own reader (`wandb leet inspect`)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bnres.tracking.wandb_groups import ANALYSIS_JOB_TYPE, reproduce_group, sweep_group
from conftest import ROOT, run_script

sys.path.insert(0, str(Path(__file__).parent / "data"))
from result_factory import depth_run, diverged, plateau, trained, write_sweep  # noqa: E402

ANALYZE = ROOT / "scripts" / "analyze.py"
WANDB = shutil.which("wandb")
pytestmark = pytest.mark.skipif(WANDB is None, reason="the wandb command is not on PATH")


def leet_summary(run_dir: Path) -> dict:
    """`wandb leet inspect --summary --json RUN_DIR`, as a user would run it."""
    done = subprocess.run([WANDB, "leet", "inspect", "--summary", "--json", str(run_dir)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def leet_records(run_dir: Path) -> list[dict]:
    """`wandb leet inspect --json RUN_DIR`: every record of the run's transaction log."""
    done = subprocess.run([WANDB, "leet", "inspect", "--json", str(run_dir)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def analysis_runs(out_dir: Path) -> list[Path]:
    return sorted((out_dir / "wandb").glob("offline-run-*"))


def hand_made_sweep(sweep: Path) -> Path:
    records = []
    for bn, max_lr in ((True, 1.0), (False, 0.1)):
        for lr in (0.01, 0.1, 1.0, 3.0):
            for seed in (0, 1):
                common = dict(bn=bn, lr=lr, seed=seed)
                records.append(trained(**common) if lr <= max_lr else plateau(**common) if lr == 1.0 else diverged(**common))
    records += [depth_run(m, d, e + 0.0005 * s, seed=s) for m, errs in (("plain_cifar", {20: 0.05, 56: 0.2}), ("resnet_cifar", {20: 0.04, 56: 0.045}))
                for d, e in errs.items() for s in (0, 1)]
    return write_sweep(sweep, records)


def test_analysis_run_read_back_with_wandb_leet(tmp_path):
    sweep = hand_made_sweep(tmp_path / "multirun" / "lr_and_depth")
    env = {"WANDB_DATA_DIR": str(tmp_path / "wandb_data")}  # W&B's artifact staging, kept out of $HOME
    first = run_script([str(sweep), "--quiet"], cwd=tmp_path, env=env, script=ANALYZE, timeout=180)
    assert first.returncode == 0, first.stderr
    assert "analysis run: 'analysis " in first.stdout and "wandb sync" in first.stdout
    [run_dir] = analysis_runs(sweep / "analysis")

    summary = leet_summary(run_dir)
    assert summary["name"].startswith("analysis 20") and summary["state"] == "finished"
    values = summary["summary"]
    assert values["verdict/claim1_bn_lr"] == "supported" and values["verdict/claim2_residual_depth"] == "supported"
    assert values["claim1_bn_lr/bn_max_stable_lr"] == 1 and values["claim1_bn_lr/nobn_max_stable_lr"] == 0.1
    assert "10x" in values["reason/claim1_bn_lr"] and values["applies/claim1_bn_lr"] is True
    assert values["runs/total"] == 24 and values["runs/diverged"] == 4
    assert values["factors/lr_and_depth/bn/final_val_acc_effect"] > 0.1
    # the tables and every plot are files of the run
    assert values["runs"]["_type"] == "table-file" and values["runs"]["nrows"] == 24
    images = {k: v for k, v in values.items() if k.startswith("plots/")}
    assert {"plots/lr_sweep", "plots/depth", "plots/depth_curves"} <= set(images)
    for logged in [values["runs"], values["claim1_bn_lr/table"], *images.values()]:
        assert (run_dir / "files" / logged["path"]).is_file(), logged["path"]
    table = json.loads((run_dir / "files" / values["runs"]["path"]).read_text())
    assert "final_val_acc" in table["columns"] and len(table["data"]) == 24

    records = leet_records(run_dir)
    [run] = [r["run"] for r in records if r["type"] == "run"]
    assert run["job_type"] == ANALYSIS_JOB_TYPE and run["run_group"] == sweep_group(sweep) == "multirun/lr_and_depth"
    [artifact] = [r["artifact"] for r in records if r["type"] == "artifact" and r["artifact"]["type"] == "analysis"]
    assert {"claims.md", "runs.csv"} <= {entry["path"] for entry in artifact["manifest"]["contents"]}

    # a second analysis is a new run; the first one stays as it was
    second = run_script([str(sweep), "--quiet", "--wandb-group", reproduce_group("cpu")], cwd=tmp_path, env=env, script=ANALYZE, timeout=180)
    assert second.returncode == 0, second.stderr
    runs = analysis_runs(sweep / "analysis")
    assert len(runs) == 2 and run_dir in runs
    assert leet_summary(run_dir)["run_id"] != leet_summary(runs[-1])["run_id"]
    [run2] = [r["run"] for r in leet_records(runs[-1]) if r["type"] == "run"]
    assert run2["run_group"] == "reproduce/cpu"


def test_no_wandb_writes_no_run(tmp_path):
    sweep = write_sweep(tmp_path / "s", [trained(lr=0.1), trained(lr=1.0)])
    done = run_script([str(sweep), "--quiet", "--no-wandb"], cwd=tmp_path, script=ANALYZE, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (sweep / "analysis" / "claims.md").exists() and not (sweep / "analysis" / "wandb").exists()


def test_sweep_groups_are_short_and_stable(tmp_path, monkeypatch):
    assert sweep_group("multirun/train/2026-12-01_08-53-35") == "train/2026-12-01_08-53-35"
    assert sweep_group("/abs/results/reproduce/cpu/bn_lr/") == "cpu/bn_lr"
    assert sweep_group(None) == "single"
    monkeypatch.chdir(tmp_path)
    here = sweep_group("multirun/x")
    monkeypatch.chdir(ROOT)
    assert sweep_group(tmp_path / "multirun" / "x") == here  # the same folder, whatever the working directory

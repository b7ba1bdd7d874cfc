"""scripts/benchmark.py: harness vs plain loop, per run and per sweep, in quick mode (tiny sizes: the figures mean nothing)."""

from __future__ import annotations

import json
import math

import pytest

from benchmarks import plain, sweep
from benchmarks import throughput as benchmark
from conftest import ROOT, run_script

SCRIPT = ROOT / "scripts" / "benchmark.py"


@pytest.mark.slow  # an end-to-end subprocess run: the slow suite (CI runs it too)
def test_quick_benchmark_prints_both_ways_and_the_ratio(tmp_path):
    out = tmp_path / "bench.json"
    # one torch thread: steadier on a shared machine, and the test only checks the report's shape
    proc = run_script(["--quick", "--threads", "1", "--json", str(out), "--work-dir", str(tmp_path / "work")], cwd=tmp_path, timeout=600, script=SCRIPT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = proc.stdout
    for case in ("lenet-mnist5k", "resnet20-synthetic"):
        lines = [line for line in text.splitlines() if line.startswith(case)]
        assert any(" harness " in line for line in lines), text
        assert any(" raw " in line for line in lines), text
        assert any("ratio harness/raw:" in line for line in lines), text
    assert "torch threads 1" in text and "load average" in text
    results = json.loads(out.read_text())["results"]
    assert {r["case"] for r in results} == {"lenet-mnist5k", "resnet20-synthetic"}
    for row in results:
        assert row["device"] == "cpu"
        assert row["ratio"] > 0 and math.isfinite(row["ratio"])
        for way in ("harness", "raw"):
            stats = row[way]["train_images_per_s"]
            assert len(stats["repeats"]) == 2 and stats["min"] <= stats["median"] <= stats["max"]
            assert row[way]["peak_rss_mib"] > row[way]["rss_after_import_mib"] > 0
            assert row[way]["torch_threads"] == 1
            assert row[way]["gpu_peak_mib"] is None
        # both ways trained the same network on the same data: comparable losses after the same steps
        assert row["harness"]["final"]["val/acc"] >= 0 and row["raw"]["final"]["val/acc"] >= 0


def test_steady_state_leaves_out_warm_up_and_validation():
    epochs = [
        {"images": 100, "seconds": 10.0, "val_seconds": 1.0, "cpu_seconds": 10.0, "val_cpu_seconds": 1.0},  # warm-up
        {"images": 100, "seconds": 2.0, "val_seconds": 1.0, "cpu_seconds": 1.5, "val_cpu_seconds": 0.5},
        {"images": 100, "seconds": 3.0, "val_seconds": 1.0, "cpu_seconds": 1.5, "val_cpu_seconds": 0.5},
    ]
    rates = benchmark.steady_state(epochs, warmup=1)
    assert rates["train"] == pytest.approx(200 / 3.0)
    assert rates["epoch"] == pytest.approx(200 / 5.0)
    assert rates["train_cpu"] == pytest.approx(200 / 2.0)


def test_limits_follow_lightning():
    assert plain.limit_batches(None, 31) == 31
    assert plain.limit_batches(5, 31) == 5
    assert plain.limit_batches(0.5, 31) == 15
    assert plain.limit_batches(1.0, 31) == 31


def test_plain_loop_trains_the_same_network_on_the_same_data(tmp_path):
    overrides = ["model=lenet", "data=mnist5k", *benchmark.QUICK["lenet-mnist5k"]]
    result = benchmark.raw_phase(overrides, epochs=2, work_dir=tmp_path)
    assert [e["images"] for e in result["epochs"]] == [6 * 32, 6 * 32]
    assert result["final"]["train/loss"] > 0 and 0 <= result["final"]["val/acc"] <= 1


def test_quick_sweep_benchmark_prints_both_figures_and_the_ratio(tmp_path):
    out = tmp_path / "sweep.json"
    # one repeat per way: four whole processes would double the test's time for no new code path
    proc = run_script(["--sweep", "--quick", "--repeats", "1", "--threads", "1", "--json", str(out), "--work-dir", str(tmp_path / "work")],
                      cwd=tmp_path, timeout=600, script=SCRIPT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = proc.stdout
    assert "2 jobs" in text
    harness_line = next(line for line in text.splitlines() if line.startswith("harness "))
    plain_line = next(line for line in text.splitlines() if line.startswith("plain "))
    assert "(" in harness_line and "(" in plain_line
    assert "ratio plain/harness:" in text
    summary = json.loads(out.read_text())
    for way in ("harness", "plain"):
        row = summary["ways"][way]
        assert len(row["repeats_s"]) == 1 and row["median_s"] > 0 and row["per_job_s"] > 0
    # the same jobs, built from the same pieces: the same outcome (status and val accuracy)
    agreement = summary["ways"]["harness"]["agreement_with_plain"]
    assert agreement["matched"] == agreement["same_status"] == 2
    assert agreement["max_val_acc_diff"] < 1e-6


def test_sweep_jobs_are_hydras_expansion_of_the_preset(tmp_path):
    jobs = sweep.sweep_jobs(["experiment=bn_lr", "seed=0"], tmp_path)
    assert len(jobs) == 14  # bn x 7 learning rates, one seed
    assert all("seed=0" in job and "experiment=bn_lr" in job for job in jobs)
    assert len({tuple(job) for job in jobs}) == 14
    assert len(sweep.sweep_jobs(["experiment=bn_lr", "seed=0", "lr=0.1,1"], tmp_path)) == 4


def test_plain_loop_stops_a_diverging_run_like_the_harness(tmp_path):
    from bnres.runs.runner import compose_config

    cfg = compose_config(["experiment=bn_lr", "bn=false", "lr=10", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1"], tmp_path)
    result = plain.train(cfg)
    assert result["status"] == "diverged" and result["diverged_at_step"] >= 1
    assert "initial loss" in result["error"] or "became" in result["error"]
    assert "test/acc" not in result["final"]


def test_profile_times_every_item_of_a_real_job(tmp_path):
    proc = run_script(["--profile", "experiment=bn_lr", "seed=0", "bn=true", "lr=0.1", "trainer.max_epochs=1", "trainer.limit_train_batches=3",
                       "trainer.limit_val_batches=1", "trainer.limit_test_batches=1", "trainer.enable_progress_bar=false",
                       f"hydra.sweep.dir={tmp_path / 'sweep'}"], cwd=tmp_path, timeout=300, script=SCRIPT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "(1 jobs, exit 0" in proc.stdout
    table = proc.stdout[proc.stdout.index("profile of:"):]
    for item in ("imports", "wandb.init", "training steps", "checkpoint writes", "trainer.test", "hydra: compose", "process wall time"):
        line = next((ln for ln in table.splitlines() if item in ln), None)
        assert line is not None, (item, table)
        seconds = float(line[62:].split()[0])  # the "total s" column
        assert seconds >= 0, line

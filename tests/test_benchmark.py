"""scripts/benchmark.py: harness vs plain loop, in quick mode (tiny sizes: the figures mean nothing)."""

from __future__ import annotations

import json
import math

import pytest

from conftest import ROOT, run_script
from bnres import benchmark

SCRIPT = ROOT / "scripts" / "benchmark.py"


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
    assert benchmark._limit(None, 31) == 31
    assert benchmark._limit(5, 31) == 5
    assert benchmark._limit(0.5, 31) == 15
    assert benchmark._limit(1.0, 31) == 31


def test_plain_loop_trains_the_same_network_on_the_same_data(tmp_path):
    overrides = ["model=lenet", "data=mnist5k", *benchmark.QUICK["lenet-mnist5k"]]
    result = benchmark.raw_phase(overrides, epochs=2, work_dir=tmp_path)
    assert [e["images"] for e in result["epochs"]] == [6 * 32, 6 * 32]
    assert result["final"]["train/loss"] > 0 and 0 <= result["final"]["val/acc"] <= 1

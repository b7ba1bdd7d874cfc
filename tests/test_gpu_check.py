"""scripts/gpu_check.py: the report it writes, how it isolates a failing part, and its dry run on CPU.

The dry run's figures mean nothing; what is tested is that every part runs its real runs (train.py
subprocesses, the benchmark's workers) and reads them back. On a machine with CUDA the gpu-marked test
runs the real check's fast-path and host-sync parts.
"""

from __future__ import annotations

import json
import re
import sys

import pytest
import torch

from bnres.runs.record import write_record
from conftest import ROOT, run_script

from benchmarks import gpu_check

SCRIPT = ROOT / "scripts" / "gpu_check.py"


def _read(out):
    return json.loads((out / "gpu_check.json").read_text()), (out / "gpu_check.md").read_text()


def _record(folder, status="completed", losses=(2.3, 1.9, 1.5), **config):
    write_record(folder, {
        "status": status, "error": None if status == "completed" else "boom", "config": config,
        "history": [{"epoch": i, "train/loss": loss} for i, loss in enumerate(losses)], "train_images_per_s": 1000.0,
        "wall_time_s": 3.0,
    })
    return folder


def test_a_run_passes_only_completed_with_its_loss_falling_and_the_config_asked_for(tmp_path):
    ok = gpu_check.check_run(_record(tmp_path / "runs" / "a", compile=True, trainer={"precision": "bf16-mixed"}),
                             {"compile": True, "trainer.precision": "bf16-mixed"})
    assert ok["problem"] is None and ok["run"] == "a" and ok["first_loss"] == 2.3 and ok["last_loss"] == 1.5
    assert "did not fall" in gpu_check.check_run(_record(tmp_path / "b", losses=(2.3, 2.4)))["problem"]
    assert "cannot tell" in gpu_check.check_run(_record(tmp_path / "c", losses=(2.3,)))["problem"]
    assert "status diverged: boom" in gpu_check.check_run(_record(tmp_path / "d", status="diverged"))["problem"]
    assert "config compile=False, expected True" in gpu_check.check_run(_record(tmp_path / "e", compile=False), {"compile": True})["problem"]
    assert gpu_check.check_run(tmp_path / "nothing")["status"] == "missing"


def test_the_report_names_the_card_and_versions_and_tabulates_every_figure(tmp_path):
    machine = {"python": "3.11.7", "platform": "Linux", "cpus": 16, "torch": "2.14.1+cu130", "cuda_runtime": "13.0",
               "lightning": "2.6.6", "cudnn": 91200, "driver": "580.65.06",
               "gpus": [{"index": 0, "name": "NVIDIA H200", "memory_mib": 143771}, {"index": 1, "name": "NVIDIA H200", "memory_mib": 143771}]}
    parts = [
        {"name": "fast_path", "status": "passed", "detail": "completed, train loss 2.4 -> 2.2", "seconds": 80.0, "problems": [], "skipped": []},
        {"name": "ddp", "status": "failed", "detail": "", "error": "TimeoutError: ran past 240 s", "seconds": 240.0, "problems": [], "skipped": []},
        {"name": "host_syncs", "status": "failed", "detail": "98 steps watched", "seconds": 20.0, "problems": ["2 synchronizing CUDA calls | first: x"],
         "skipped": [], "figures": {"steps_watched": 98, "python_reads": 0, "cuda_syncs": 2}},
        {"name": "packed", "status": "passed", "detail": "", "seconds": 90.0, "problems": [], "skipped": [], "figures": {"sweeps": [
            {"jobs": 1, "per_job_images_per_s": 9000.0, "together_images_per_s": 9000.0, "vs_one_job": 1.0, "sweep_wall_s": 20.0},
            {"jobs": 4, "per_job_images_per_s": 5000.0, "together_images_per_s": 20000.0, "vs_one_job": 20 / 9, "sweep_wall_s": 30.0}]}},
        {"name": "he_epoch", "status": "passed", "detail": "", "seconds": 30.0, "problems": [], "skipped": [], "figures": {
            "data": "CIFAR-10", "epoch_s": 3.2, "recipe_estimate_s": 3.2 * 164, "raw_epoch_s": 3.0, "raw_recipe_estimate_s": 3.0 * 164, "ratio": 0.95}},
        {"name": "harness_vs_raw", "status": "skipped", "detail": "not begun: the time budget (--max-minutes 8) was spent",
         "problems": [], "skipped": [], "figures": {"cases": [
             {"network": "ResNet-18", "precision": "fp32", "harness_images_per_s": 11000.0, "raw_images_per_s": 11500.0, "ratio": 11 / 11.5,
              "harness_gpu_peak_mib": 2100.0, "raw_gpu_peak_mib": 1900.0}]}},
    ]
    report = {"started_at": "2026-12-01 10:00:00 UTC", "dry": False, "out": str(tmp_path), "command": "python scripts/gpu_check.py",
              "machine": machine, "parts": parts, "wall_s": 460.0}
    gpu_check.write_report(report, tmp_path)
    saved, md = _read(tmp_path)
    assert saved["summary"] == "3 passed, 2 failed, 1 skipped"
    assert "| card | 2 x NVIDIA H200 (143,771 MiB) |" in md
    assert "| driver | 580.65.06 |" in md and "2.14.1+cu130 (CUDA 13.0, cuDNN 91200)" in md
    assert "| ddp | failed | error: TimeoutError: ran past 240 s | 4.0 min |" in md
    assert "problem: 2 synchronizing CUDA calls \\| first: x" in md  # a '|' in a message does not break the table
    assert "| harness_vs_raw | skipped | not begun" in md
    assert "| ResNet-18 | fp32 | 11,000 | 11,500 | 0.957 | 2,100 / 1,900 |" in md
    assert "| 4 | 5,000 | 20,000 | 2.22 | 30 s |" in md
    assert "| CIFAR-10 | 3.2 s | 8.7 min | 3.0 s / 8.2 min | 0.950 |" in md
    assert "| 98 | 0 | 2 |" in md


def test_a_failing_part_is_reported_and_the_others_still_run(tmp_path, monkeypatch):
    def broken(ctx):
        raise RuntimeError("no such kernel")

    def found_problem(ctx):
        return {"detail": "ran", "problems": ["loss did not fall"]}

    def fine(ctx):
        return {"detail": "ran", "figures": {"x": 1}}

    monkeypatch.setattr(gpu_check, "PARTS", {"broken": broken, "problem": found_problem, "fine": fine})
    monkeypatch.setattr(gpu_check, "PART_TITLES", {"broken": "b", "problem": "p", "fine": "f"})
    assert gpu_check.main(["--dry", "--out", str(tmp_path / "a")]) == 1
    saved, md = _read(tmp_path / "a")
    statuses = {p["name"]: (p["status"], p["error"]) for p in saved["parts"]}
    assert statuses == {"broken": ("failed", "RuntimeError: no such kernel"), "problem": ("failed", None), "fine": ("passed", None)}
    assert "| broken | failed | error: RuntimeError: no such kernel |" in md
    # past the time budget nothing more begins: skipped, which is not a failure
    assert gpu_check.main(["--dry", "--only", "fine", "--max-minutes", "0", "--out", str(tmp_path / "b")]) == 0
    assert _read(tmp_path / "b")[0]["parts"][0]["status"] == "skipped"


def test_bad_arguments_are_one_line_errors(tmp_path):
    proc = run_script(["--only", "fast_path,warp_drive", "--out", str(tmp_path)], cwd=tmp_path, script=SCRIPT, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "error: --only='fast_path,warp_drive': warp_drive is not one of: fast_path, ddp, host_syncs, packed, he_epoch, harness_vs_raw"]
    if not torch.cuda.is_available():
        proc = run_script(["--out", str(tmp_path)], cwd=tmp_path, script=SCRIPT, timeout=120)
        assert proc.returncode == 2 and "error: no CUDA device is visible" in proc.stderr


@pytest.mark.slow  # an end-to-end subprocess run: the slow suite (CI runs it too)
def test_dry_host_sync_part_watches_a_real_run(tmp_path):
    """One part end to end, in the default suite: a train.py subprocess with the counter in its config."""
    proc = run_script(["--dry", "--only", "host_syncs", "--out", str(tmp_path / "out")], cwd=tmp_path, script=SCRIPT, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    saved, md = _read(tmp_path / "out")
    (part,) = saved["parts"]
    assert part["status"] == "passed", part
    s = gpu_check.DRY
    assert part["figures"]["steps_watched"] == s.sync_epochs * (s.sync_batches - 1)
    assert part["figures"]["python_reads"] == 0 and part["figures"]["cuda_syncs"] is None
    assert part["runs"][0]["status"] == "completed"
    assert "| host_syncs | passed |" in md and "## Host syncs inside training steps" in proc.stdout


@pytest.mark.slow  # every part: 6 train.py processes (3 ranks/workers more) and 4 benchmark workers: 2.5 to 5 min on 2 shared cores
def test_full_dry_run_passes_every_part(tmp_path):
    proc = run_script(["--dry", "--out", str(tmp_path / "out")], cwd=tmp_path, script=SCRIPT, timeout=900, env={"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-3000:]
    saved, md = _read(tmp_path / "out")
    parts = {p["name"]: p for p in saved["parts"]}
    assert list(parts) == list(gpu_check.PARTS)
    assert all(p["status"] == "passed" for p in parts.values()), {n: (p["problems"], p["error"]) for n, p in parts.items()}
    assert parts["ddp"]["figures"]["devices"] == 2
    assert [f["jobs"] for f in parts["packed"]["figures"]["sweeps"]] == list(gpu_check.DRY.packed_jobs)
    assert len(parts["packed"]["runs"]) == sum(gpu_check.DRY.packed_jobs)
    assert parts["he_epoch"]["figures"]["recipe_estimate_s"] > 0
    (case,) = parts["harness_vs_raw"]["figures"]["cases"]
    assert case["network"] == "ResNet-20" and case["precision"] == "fp32" and case["ratio"] > 0
    assert any("compile" in s for s in parts["harness_vs_raw"]["skipped"])  # GPU-only: said so, with the reason
    for table in ("## Checks", "## Harness vs plain loop", "## Packed ResNet-20 jobs", "## He et al. ResNet-20 recipe", "## Host syncs"):
        assert table in md


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_fast_path_and_host_syncs_on_the_device(tmp_path):
    proc = run_script(["--only", "fast_path,host_syncs", "--out", str(tmp_path / "out")], cwd=tmp_path, script=SCRIPT, timeout=600)
    saved, _ = _read(tmp_path / "out")
    assert proc.returncode == 0, {p["name"]: (p["problems"], p["error"]) for p in saved["parts"]}
    syncs = next(p for p in saved["parts"] if p["name"] == "host_syncs")["figures"]
    assert syncs["cuda_syncs"] == 0 and syncs["python_reads"] == 0


def test_every_gpu_run_composes_and_passes_the_config_checks(tmp_path, monkeypatch):
    """What the dry run cannot reach: the real (GPU) mode's runs, each composed and checked as a run would be
    (with 2 GPUs pretended), so that a typo in a GPU-only override cannot wait for a GPU window to show."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import instantiate

    from bnres.config import checks
    from bnres.training.callbacks import DivergenceMonitor
    from bnres.runs.runner import compose_config

    calls = []

    class Stop(Exception):
        pass

    class Recorder(gpu_check.Context):  # records each run instead of starting it
        def train(self, name, args, multirun=False, env=None):
            calls.append((name, list(args), env or {}))
            raise Stop

        def bench_case(self, case, repeats):
            calls.append((case.name, [*case.overrides, *gpu_check.harness_benchmark().gpu_overrides()], {}))
            raise Stop

    ctx = Recorder(tmp_path, dry=False, gpus=2)
    for name in gpu_check.PARTS:
        assert gpu_check.run_part(ctx, name, budget_s=1e9)["status"] == "failed"  # stopped at its first run
    runs = {name: (args, env) for name, args, env in calls}
    assert list(runs) == ["fast_path", "ddp", "host_syncs", "packed1", "packed4", "packed8", "he2016-resnet20",
                          "resnet-20-fp32", "resnet-20-bf16-channels-last-compile", "resnet-18-fp32", "resnet-18-bf16-channels-last-compile"]
    assert {"trainer=gpu", "compile=true", "channels_last=true", "trainer.benchmark=true", "trainer.precision=bf16-mixed",
            "data.augment=true", "data.on_device=true"} <= set(runs["fast_path"][0])
    assert {"trainer=ddp", "trainer.devices=2", "sync_batchnorm=true"} <= set(runs["ddp"][0])
    assert "packing.jobs_per_gpu=8" in runs["packed8"][0] and runs["packed8"][1]["CUDA_VISIBLE_DEVICES"] == "0"
    monkeypatch.setattr(checks, "available_devices", lambda accelerator: 2)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # no bf16 question to ask
    try:
        for name, (args, _) in runs.items():
            overrides = [re.sub(r"^seed=0,.*", "seed=0", a) for a in args]  # a sweep's first job
            cfg = compose_config(overrides, tmp_path / name)
            checks.check_config(cfg)
            assert cfg.trainer.accelerator in ("gpu", "auto"), name
            instantiate(cfg.model), instantiate(cfg.data), DivergenceMonitor(**cfg.divergence)
            for callback in (cfg.get("callbacks") or {}).values():
                instantiate(callback)
    finally:
        GlobalHydra.instance().clear()
    he = compose_config(runs["he2016-resnet20"][0], tmp_path / "he")
    assert he.trainer.precision == "bf16-mixed" and he.data.num_samples == 50_000 and he.data.batch_size == 128
    GlobalHydra.instance().clear()


def test_packed_slot_reads_the_line_packing_logs():
    from bnres.distributed.packing import SLOT_LOG

    gpu = "[2026-12-08 01:00:00,000][bnres.distributed.packing][INFO] - " + SLOT_LOG % ("3", 1, 4, "[0]", 16)
    assert gpu_check.packed_slot(f"first line\n{gpu}\nlast line") == (1, "[0]")
    assert gpu_check.packed_slot(SLOT_LOG % ("0", 0, 2, "cpu", 1)) == (0, "cpu")
    assert gpu_check.packed_slot("no slot here") is None


def test_ddp_facts_read_the_backend_and_the_device_from_lightnings_lines():
    # recorded from a real run's train.log (gloo on CPU) and Lightning's wording for CUDA
    cpu = "[2026-12-08 01:14:07,841][pytorch_lightning.utilities.rank_zero][INFO] - GPU available: False, used: False\ndistributed_backend=gloo\n"
    gpu = "GPU available: True (cuda), used: True\nTPU available: False, using: 0 TPU cores\ndistributed_backend=nccl\n"
    assert gpu_check.ddp_facts(cpu) == {"backend": "gloo", "gpu_used": False}
    assert gpu_check.ddp_facts(gpu) == {"backend": "nccl", "gpu_used": True}
    assert gpu_check.ddp_facts("") == {"backend": None, "gpu_used": None}

"""Sweep launchers: packing jobs on one machine (joblib), SLURM/local through submitit, a Ray cluster.

Each job must end in its own folder with its own record and W&B run, all of a sweep's W&B runs in one
group (named after the sweep folder), however the launcher spreads the jobs over processes."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
from pathlib import Path

import pytest

from bnres import distributed
from bnres.distributed import packing
from bnres.runs.record import read_record
from bnres.tracking.wandb_groups import sweep_group
from conftest import TINY, run_script

ENV = {"OMP_NUM_THREADS": "1"}


def _ok(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-6000:]}"


def only_sweep_dir(cwd: Path) -> Path:
    """The one sweep folder a default ``-m`` run made (``multirun/train/<date>_<time>``)."""
    found = list((cwd / "multirun" / "train").iterdir())
    assert len(found) == 1, found
    return found[0]


def check_jobs(sweep_dir: Path, count: int, group: str) -> list[Path]:
    jobs = sorted((p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))
    assert [p.name for p in jobs] == [str(i) for i in range(count)]
    for job in jobs:
        record = read_record(job)
        assert record is not None and record["status"] == "completed", (job, record and record["error"])
        runs = sorted((job / "wandb").glob("offline-run-*"))
        assert len(runs) == 1, runs
        # the group is in the offline run's binary log; it must be the sweep's group in every job
        assert any(group.encode() in f.read_bytes() for f in runs[0].glob("run-*.wandb")), (job, group)
    return jobs


# --- packing on one machine -------------------------------------------------------------------------
@pytest.mark.slow  # an end-to-end subprocess run: the slow suite (CI runs it too)
def test_packed_launcher_runs_jobs_at_once_each_with_its_own_record(tmp_path):
    proc = run_script(["-m", "hydra/launcher=packed", "packing.jobs_per_gpu=2", "seed=0,1", "logger=wandb", *TINY], cwd=tmp_path, timeout=300, env=ENV)
    _ok(proc)
    sweep_dir = only_sweep_dir(tmp_path)
    jobs = check_jobs(sweep_dir, 2, sweep_group(sweep_dir))
    # a job holds its slot while it runs and the lowest free slot is taken: two slots in use = at once
    slots = sorted(int(m) for job in jobs for m in re.findall(r"packed job \d+: slot (\d+) of 2", (job / "train.log").read_text()))
    assert slots == [0, 1], slots
    # CPU jobs side by side share the cores: each gets cores // 2 torch threads
    threads = {int(m) for job in jobs for m in re.findall(r"packed job \d+: slot \d+ of 2, devices cpu, (\d+) torch thread", (job / "train.log").read_text())}
    assert threads == {1}, threads  # OMP_NUM_THREADS=1 (ENV) caps the share
    assert "2 jobs — 2 completed" in proc.stdout


@pytest.mark.slow
def test_packed_launcher_with_ddp_jobs(tmp_path):
    proc = run_script(
        ["-m", "hydra/launcher=packed", "trainer=ddp", "trainer.devices=2", "packing.jobs_per_gpu=1", "seed=0,1", "logger=wandb", *TINY],
        cwd=tmp_path, timeout=500, env=ENV,
    )
    _ok(proc)
    sweep_dir = only_sweep_dir(tmp_path)
    for job in check_jobs(sweep_dir, 2, sweep_group(sweep_dir)):
        assert (job / "train_rank1.log").is_file()


def test_packed_jobs_count_and_device_assignment(make_cfg, tmp_path, monkeypatch):
    monkeypatch.setattr(packing, "_gpu_count", lambda: 4)
    assert distributed.packed_jobs("auto", 1, 1) == 4
    assert distributed.packed_jobs("auto", 3, 1) == 12  # small networks: 3 per GPU
    assert distributed.packed_jobs("auto", 1, 2) == 2  # DDP jobs of 2 GPUs
    assert distributed.packed_jobs(2, 1, 1) == 2
    assert distributed.packed_jobs("auto", 1, -1) == 1  # a job wants every GPU
    monkeypatch.setattr(packing, "_gpu_count", lambda: 0)
    assert distributed.packed_jobs("auto", 2, 1) == 2  # no GPU: the CPU is the one device

    def job_cfg(*extra):
        sweep = ["hydra.mode=MULTIRUN", f"hydra.sweep.dir={tmp_path / 'sweep'}", "hydra/launcher=packed"]
        return make_cfg("trainer=gpu", *sweep, *extra, output_dir=tmp_path / "sweep" / "0")

    monkeypatch.setattr(packing, "_gpu_count", lambda: 2)
    # two GPUs, two jobs per GPU: four jobs at once, spread over both GPUs before doubling up
    cfgs = [job_cfg("packing.jobs_per_gpu=2") for _ in range(4)]
    with distributed.job_scope(cfgs[0]), distributed.job_scope(cfgs[1]), distributed.job_scope(cfgs[2]), distributed.job_scope(cfgs[3]):
        assert [list(c.trainer.devices) for c in cfgs] == [[0], [1], [0], [1]]
        assert os.environ[distributed.DEVICES_ENV] == "1"  # the innermost job's, for its DDP ranks
    assert distributed.DEVICES_ENV not in os.environ
    # a finished job frees its slot for the next
    first = job_cfg()
    with distributed.job_scope(first):
        pass
    again = job_cfg()
    with distributed.job_scope(again):
        assert list(again.trainer.devices) == [0]
    # DDP jobs of 2 GPUs on 4 GPUs
    monkeypatch.setattr(packing, "_gpu_count", lambda: 4)
    a, b = job_cfg("trainer.devices=2"), job_cfg("trainer.devices=2")
    with distributed.job_scope(a), distributed.job_scope(b):
        assert [list(a.trainer.devices), list(b.trainer.devices)] == [[0, 1], [2, 3]]


def test_packed_cpu_jobs_share_the_cores_and_the_count_is_restored(make_cfg, tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(packing, "usable_cores", lambda: 4)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert packing.threads_per_job("auto", 2, on_gpu=False) == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the user's limit stands
    assert packing.threads_per_job("auto", 2, on_gpu=False) == 1
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert packing.threads_per_job("auto", 8, on_gpu=False) == 1
    assert packing.threads_per_job("auto", 2, on_gpu=True) is None  # GPU jobs: joblib's limit stands
    assert packing.threads_per_job(3, 2, on_gpu=False) == 3
    with pytest.raises(ValueError, match="packing.threads_per_job=0 must be a positive integer or auto"):
        distributed.packed_jobs("auto", 2, 1, 0)
    monkeypatch.setattr(packing, "_gpu_count", lambda: 0)
    monkeypatch.setattr(packing, "usable_cores", lambda: 2)
    sweep = ["hydra.mode=MULTIRUN", f"hydra.sweep.dir={tmp_path / 'sweep'}", "hydra/launcher=packed", "packing.jobs_per_gpu=2"]
    cfg = make_cfg(*sweep, output_dir=tmp_path / "sweep" / "0")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with distributed.job_scope(cfg):
            assert torch.get_num_threads() == 1  # 2 cores, 2 jobs at once
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


# --- submitit -----------------------------------------------------------------------------------------
@pytest.mark.slow  # an end-to-end subprocess run: the slow suite (CI runs it too)
def test_submitit_local_sweep(tmp_path):
    proc = run_script(["-m", "hydra/launcher=submitit_local", "seed=0,1", "logger=wandb", *TINY], cwd=tmp_path, timeout=300, env=ENV)
    _ok(proc)
    sweep_dir = only_sweep_dir(tmp_path)
    check_jobs(sweep_dir, 2, sweep_group(sweep_dir))
    assert (sweep_dir / ".submitit").is_dir()


@pytest.mark.slow
def test_submitit_local_sweep_of_ddp_jobs(tmp_path):
    proc = run_script(
        ["-m", "hydra/launcher=submitit_local", "trainer=ddp", "trainer.devices=2", "seed=0,1", "logger=wandb", *TINY],
        cwd=tmp_path, timeout=500, env=ENV,
    )
    _ok(proc)
    sweep_dir = only_sweep_dir(tmp_path)
    for job in check_jobs(sweep_dir, 2, sweep_group(sweep_dir)):
        assert (job / "train_rank1.log").is_file()


def test_slurm_launcher_config_follows_the_trainer(make_cfg, tmp_path):
    from hydra.utils import instantiate

    cfg = make_cfg(
        "hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2",
        "hydra.launcher.partition=gpu", "hydra.launcher.timeout_min=720", f"hydra.sweep.dir={tmp_path}",
    )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.tasks_per_node, launcher.gpus_per_node, launcher.nodes) == (4, 4, 2)  # one task per device
    assert launcher.partition == "gpu" and launcher.timeout_min == 720
    assert launcher.signal_delay_s > 0 and launcher.max_num_timeout > 0  # signalled before the limit, requeued
    params = instantiate(launcher).params
    assert params["submitit_folder"] == f"{tmp_path}/.submitit/%j"


# --- Ray ----------------------------------------------------------------------------------------------
ray_launcher = importlib.util.find_spec("hydra_plugins.hydra_ray_launcher") is not None


@pytest.mark.skipif(not ray_launcher, reason="hydra-ray-launcher is not installed (pip install -e '.[ray]')")
def test_ray_launcher_config_follows_the_trainer(make_cfg):
    cfg = make_cfg("hydra/launcher=ray_cluster", "trainer=ddp", "trainer.devices=2")
    assert cfg.hydra.launcher.ray.remote.num_gpus == 2
    assert cfg.hydra.launcher.ray.remote.max_calls == 1


@pytest.mark.slow
@pytest.mark.skipif(not ray_launcher, reason="hydra-ray-launcher is not installed (pip install -e '.[ray]')")
def test_ray_local_sweep(tmp_path):
    ray = ["hydra/launcher=ray_cluster", "hydra.launcher.ray.init.address=null", "+hydra.launcher.ray.init.num_cpus=2", "hydra.launcher.ray.remote.num_gpus=0", "hydra.launcher.ray.remote.num_cpus=1"]
    proc = run_script(["-m", *ray, "seed=0,1", "logger=wandb", *TINY], cwd=tmp_path, timeout=600, env={**ENV, "RAY_ADDRESS": ""})
    _ok(proc)
    sweep_dir = only_sweep_dir(tmp_path)
    check_jobs(sweep_dir, 2, sweep_group(sweep_dir))

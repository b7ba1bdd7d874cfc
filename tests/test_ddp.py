"""DDP on CPU (gloo, 2 processes): one run = one folder, one record, one W&B run; sweeps of DDP jobs;
synchronised batch norm equals one process seeing the global batch.

The end-to-end tests run ``scripts/train.py`` as a user would; each DDP job costs two Python processes,
so every setting is tiny and the 2-job sweep is shared by the tests that read it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bnres.runs import runner
from bnres.config.checks import ConfigError
from bnres.runs.record import read_record
from bnres.tracking.wandb_groups import sweep_group
from conftest import TINY, run_script

TINY = [*TINY, "deterministic=true"]
ENV = {"OMP_NUM_THREADS": "1"}  # two ranks on two shared cores
DDP = ["trainer=ddp", "trainer.devices=2"]


def _ok(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-6000:]}"


def wandb_runs(job_dir: Path) -> list[Path]:
    return sorted((job_dir / "wandb").glob("offline-run-*"))


def wandb_group_recorded(run_dir: Path, group: str) -> bool:
    """W&B keeps an offline run's metadata (group included) in its binary ``run-*.wandb`` log."""
    return any(group.encode() in f.read_bytes() for f in run_dir.glob("run-*.wandb"))


# --- one run ----------------------------------------------------------------------------------------
@pytest.mark.slow  # an end-to-end subprocess run: the slow suite (CI runs it too)
def test_single_ddp_run_is_one_job(tmp_path):
    proc = run_script([*DDP, *TINY, "sync_batchnorm=true", "logger=wandb", "hydra.run.dir=run"], cwd=tmp_path, timeout=240, env=ENV)
    _ok(proc)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # rank 1 made no folder of its own
    run = tmp_path / "run"
    record = read_record(run)
    assert record["status"] == "completed", record["error"]
    # 3 optimizer steps, each on the global batch of 2 x 32 images; metrics reduced over both ranks
    assert [row["step"] for row in record["history"]] == [3]
    for key in ("train/loss", "val/loss", "test/loss"):
        assert 0 < record["final"][key] < 10, record["final"]
    for key in ("train/acc", "val/acc", "test/acc"):
        assert 0 <= record["final"][key] <= 1
    assert record["train_images_per_s"] > 0
    assert record["config"]["sync_batchnorm"] is True and record["config"]["trainer"]["sync_batchnorm"] is True
    assert record["config"]["trainer"]["devices"] == 2
    # one W&B run (rank 0's), one .hydra; rank 1 only logged, into the same folder
    assert len(wandb_runs(run)) == 1
    assert wandb_group_recorded(wandb_runs(run)[0], "single")
    assert len(list(tmp_path.glob("**/.hydra"))) == 1
    assert (run / "train_rank1.log").is_file()


# --- a sweep of DDP jobs -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ddp_sweep(tmp_path_factory):
    """``-m`` over sync_batchnorm=true,false: 2 DDP jobs of 2 processes each, run once for the module."""
    cwd = tmp_path_factory.mktemp("ddp_sweep")
    sweep_dir = cwd / "sweep"
    proc = run_script(
        ["-m", *DDP, *TINY, "sync_batchnorm=true,false", "logger=wandb", f"hydra.sweep.dir={sweep_dir}"],
        cwd=cwd, timeout=300, env=ENV,
    )
    return cwd, sweep_dir, proc


@pytest.mark.slow  # an end-to-end subprocess run: the slow suite (CI runs it too)
def test_ddp_sweep_runs_each_job_once_in_its_folder(ddp_sweep):
    cwd, sweep_dir, proc = ddp_sweep
    _ok(proc)
    assert sorted(p.name for p in cwd.iterdir()) == ["sweep"]  # no second sweep, no outputs/ from rank 1
    jobs = sorted(p.name for p in sweep_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert jobs == ["0", "1"]
    assert "2 jobs — 2 completed" in proc.stdout
    ports = []
    for job in jobs:
        job_dir = sweep_dir / job
        record = read_record(job_dir)
        assert record["status"] == "completed", record["error"]
        assert [row["step"] for row in record["history"]] == [3]
        runs = wandb_runs(job_dir)
        assert len(runs) == 1, runs
        assert wandb_group_recorded(runs[0], sweep_group(sweep_dir))  # one short W&B group per sweep
        assert (job_dir / "train_rank1.log").is_file()
        assert not (job_dir / ".hydra" / "train_rank1").exists()
        ports += re.findall(r"MASTER_PORT=(\d+)", (job_dir / "train.log").read_text())
    assert len(ports) == 2 and ports[0] != ports[1], ports  # a fresh port (and clean env) per job


@pytest.mark.slow  # an end-to-end subprocess run: the slow suite (CI runs it too)
def test_sync_batchnorm_matches_one_process_with_the_global_batch(ddp_sweep, make_cfg):
    """2 processes x 32 images with synchronised BN == 1 process x 64 images (same seed, same steps);
    without sync, each rank normalises with its own half-batch statistics and the runs drift apart."""
    _, sweep_dir, proc = ddp_sweep
    _ok(proc)
    one = runner.run(make_cfg("data.batch_size=64", "deterministic=true"))
    runs = {read_record(sweep_dir / j)["config"]["sync_batchnorm"]: read_record(sweep_dir / j) for j in ("0", "1")}
    synced, unsynced = runs[True], runs[False]
    assert synced["config"]["bn"] is True and synced["config"]["bn_impl"] == "torch"
    for key in ("train/loss", "val/loss", "test/loss"):
        assert synced["final"][key] == pytest.approx(one["final"][key], abs=1e-5), key
    assert abs(unsynced["final"]["train/loss"] - one["final"]["train/loss"]) > 1e-4


# --- the CPU sync-BN layer on its own ---------------------------------------------------------------------
_GLOBAL_BN_SCRIPT = textwrap.dedent(
    """
    import os, sys, json
    import torch, torch.distributed as dist, torch.multiprocessing as mp
    from torch import nn
    from bnres.distributed import AllReduceSyncBatchNorm, GlobalBatchNorm

    def net():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(108, 4), nn.BatchNorm1d(4))

    X = torch.randn(8, 2, 8, 8, generator=torch.Generator().manual_seed(1))

    def rank(r, port, queue):
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("gloo", rank=r, world_size=2)
        model = AllReduceSyncBatchNorm().apply(net())
        assert sum(isinstance(m, GlobalBatchNorm) for m in model.modules()) == 2
        ddp = nn.parallel.DistributedDataParallel(model)
        out = ddp(X[r::2])
        out.pow(2).mean().backward()
        queue.put((r, out.tolist(), [p.grad.flatten().tolist() for p in model.parameters()], model[1].running_var.tolist()))
        dist.barrier()
        dist.destroy_process_group()

    if __name__ == "__main__":
        ref = net()
        out = ref(X)
        out.pow(2).mean().backward()
        ctx = mp.get_context("fork")  # the ranks inherit the imports: fast
        queue = ctx.Queue()
        procs = [ctx.Process(target=rank, args=(r, int(sys.argv[1]), queue)) for r in range(2)]
        for p in procs:
            p.start()
        results = dict((r, rest) for r, *rest in (queue.get(timeout=120) for _ in procs))
        for p in procs:
            p.join(60)
        err_out = max((torch.tensor(results[r][0]) - out[r::2]).abs().max().item() for r in range(2))
        err_grad = max((torch.tensor(g) - p.grad.flatten()).abs().max().item() for g, p in zip(results[0][1], ref.parameters()))
        err_var = (torch.tensor(results[0][2]) - ref[1].running_var).abs().max().item()
        print(json.dumps({"out": err_out, "grad": err_grad, "running_var": err_var}))
    """
)


def test_global_batchnorm_equals_batchnorm_on_the_global_batch(tmp_path):
    """Outputs, DDP-averaged gradients and running statistics of 2 ranks x 4 samples == 1 process x 8."""
    from lightning_fabric.plugins.environments.lightning import find_free_network_port

    script = tmp_path / "global_bn.py"
    script.write_text(_GLOBAL_BN_SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script), str(find_free_network_port())],
        capture_output=True, text=True, timeout=180, env={**os.environ, **ENV},
    )
    _ok(proc)
    errors = json.loads(proc.stdout.strip().splitlines()[-1])
    assert max(errors.values()) < 1e-5, errors


# --- configuration the harness refuses ----------------------------------------------------------------
def test_sync_batchnorm_with_scratch_bn_is_a_config_error(make_cfg, tmp_path):
    with pytest.raises(ConfigError, match="sync_batchnorm=true needs bn_impl=torch"):
        runner.run(make_cfg("sync_batchnorm=true", "bn_impl=scratch", output_dir=tmp_path / "bad"))
    assert not (tmp_path / "bad" / "result.json").exists()
    # without batch norm there is nothing to synchronise
    assert runner.run(make_cfg("sync_batchnorm=true", "bn_impl=scratch", "bn=false"))["status"] == "completed"


def test_spawning_strategies_are_config_errors(make_cfg, tmp_path):
    with pytest.raises(ConfigError, match="use trainer.strategy=ddp"):
        runner.run(make_cfg("trainer=ddp", "trainer.strategy=ddp_spawn", output_dir=tmp_path / "bad"))


def test_rank_command_reruns_this_job_only(make_cfg, tmp_path):
    """Ranks > 0 get the job's overrides and folder in single-run mode; sweep and launcher settings stay behind."""
    from bnres.distributed import rank_command

    hydra_overrides = ["hydra.mode=MULTIRUN", "hydra/launcher=packed", "hydra.sweep.dir=x", "hydra.verbose=true", "hydra.job.name=train"]
    make_cfg("trainer=ddp", "lr=0.05", "packing.jobs_per_gpu=2", *hydra_overrides, output_dir=tmp_path / "sweep" / "3")
    command, cwd = rank_command(1)
    args = command[3:]
    assert "-m" not in args and "--multirun" not in args
    assert args[args.index("--config-name") + 1] == "train"
    assert Path(args[args.index("--config-path") + 1]) == Path(__file__).resolve().parents[1] / "conf"
    assert "lr=0.05" in args and "trainer=ddp" in args and "packing.jobs_per_gpu=2" in args
    assert "hydra/launcher=packed" in args  # it defines `packing`, which the job's overrides name
    assert f"hydra.run.dir='{tmp_path / 'sweep' / '3'}'" in args
    assert "hydra.verbose=true" in args
    assert not any(a.startswith(("hydra.mode", "hydra.sweep")) for a in args)
    assert "hydra.output_subdir=null" in args and "hydra.job.name=train_rank1" in args


def test_job_scope_leaves_no_ddp_state(make_cfg, monkeypatch):
    """Whatever a job set (DDP's variables, thread count), the next job starts from the state before it."""
    import torch

    from bnres import distributed

    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    threads = torch.get_num_threads()
    with distributed.job_scope(make_cfg()):
        os.environ.update(LOCAL_RANK="0", MASTER_PORT="29555")  # what Lightning's DDP leaves behind
        torch.set_num_threads(1)
    assert "LOCAL_RANK" not in os.environ and "MASTER_PORT" not in os.environ
    assert torch.get_num_threads() == threads


@pytest.mark.slow  # an end-to-end DDP run (two processes)
def test_ddp_divergence_is_checked_together_at_its_own_interval(tmp_path):
    # no BN at lr 1000 leaves the loss's bounds at once; under DDP the check runs every 4th step only
    proc = run_script(
        [*DDP, *TINY, "trainer.limit_train_batches=12", "bn=false", "lr=1000", "divergence.ddp_check_every_n_steps=4",
         "test_after_fit=false", "logger=none", "hydra.run.dir=run"],
        cwd=tmp_path, timeout=240, env=ENV,
    )
    _ok(proc)
    record = read_record(tmp_path / "run")
    assert record["status"] == "diverged", record.get("reason")
    assert record["diverged_at_step"] % 4 == 0 and record["diverged_at_step"] > 0

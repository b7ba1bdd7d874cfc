"""Distributed runs inside Hydra: one job = one folder, whatever the number of ranks or jobs.

Four pieces, each small:

* :class:`HydraJobLauncher` — DDP's process launcher for Hydra jobs. Lightning's own launcher starts
  ranks > 0 by re-running ``sys.argv`` (Lightning #11300, lightning-hydra-template #393): inside a
  multirun that re-runs the *whole sweep* (``-m`` and all) in every rank, and inside a joblib, submitit
  or Ray worker ``sys.argv`` is not even the training script. Ours starts every other rank of *this
  job* as a single run (``python -c 'from bnres.distributed import rank_main; rank_main()'``) with the
  job's own config source, config name and overrides, and ``hydra.run.dir`` set to the job's folder:
  all ranks of a job share its folder, and only rank 0 writes the record and the W&B run.
  :func:`prepare_trainer` puts it in place of Lightning's; ``runner.run`` calls it for every trainer.
* :func:`job_scope` — wraps every job (:func:`train_task`): afterwards it waits for the job's rank
  processes, destroys the process group and restores the variables DDP set (``LOCAL_RANK``,
  ``MASTER_PORT``, ...), so the next job of a sweep starts clean and picks a fresh port.
* Sweep packing (``hydra/launcher=packed``): several jobs at once on one machine, each pinned to its
  own GPU(s) through a slot held for the job's lifetime (a lock file in the sweep folder). Works with
  reused worker processes, because it pins with ``trainer.devices=[k, ...]``, not ``CUDA_VISIBLE_DEVICES``.
* ``sync_batchnorm`` on CPU processes: torch's ``SyncBatchNorm`` refuses CPU modules, so under gloo the
  BN layers become :class:`GlobalBatchNorm` (same statistics and gradients). The from-scratch BN is never
  converted: ``sync_batchnorm=true`` with ``bn_impl=scratch`` is a config error (:func:`check_ddp_config`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.distributed as dist
from lightning_fabric.utilities.distributed import _set_num_threads_if_needed
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.plugins.layer_sync import LayerSync, _BatchNormXd
from pytorch_lightning.strategies.launchers.subprocess_script import _SubprocessScriptLauncher
from torch import nn

log = logging.getLogger(__name__)

# set by our launcher in the environment of ranks > 0
CHILD_ENV = "BNRES_DDP_CHILD"
# the GPUs a packed job got (inherited by its ranks > 0)
DEVICES_ENV = "BNRES_PACKED_DEVICES"

# environment a DDP job sets, restored after every job
_JOB_ENV_KEYS = (
    "MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE", "GLOBAL_RANK", "RANK",
    "OMP_NUM_THREADS", "PL_GLOBAL_SEED", "PL_SEED_WORKERS", DEVICES_ENV,
)
# Hydra overrides of the parent that a rank's single run replaces (launcher and sweeper choices stay: they
# may put keys in the job's config, e.g. hydra/launcher=packed's `packing`, and are unused in a single run)
_DROPPED_HYDRA_OVERRIDES = (
    "hydra.run.", "hydra.sweep.", "hydra.mode", "hydra.output_subdir", "hydra.job.name", "hydra.job.chdir",
    "hydra.job.num", "hydra.job.id",
)
# seconds a job waits for its other ranks to exit after rank 0 is done, before killing them
RANK_EXIT_TIMEOUT_S = 120.0
# seconds rank 0 may go on after another rank died before it is killed (a hang in a collective)
RANK_FAILURE_GRACE_S = 60.0

_active_launchers: list["HydraJobLauncher"] = []


# --- rank processes ------------------------------------------------------------------------------
def _quote(value: str) -> str:
    """A Hydra override value that is taken literally (paths may hold '=', ',' or spaces)."""
    if "'" not in value:
        return f"'{value}'"
    return '"' + value.replace('"', '\\"') + '"'


def rank_command(local_rank: int) -> tuple[list[str], str]:
    """The command (and working directory) that runs ``local_rank`` of the current Hydra job."""
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    args: list[str] = []
    for source in hc.runtime.config_sources:
        if source.provider == "main":
            path = source.path if source.schema == "file" else f"{source.schema}://{source.path}"
            args += ["--config-path", path]
        elif source.provider == "command-line" and source.schema == "file":
            args += ["--config-dir", source.path]
    args += ["--config-name", str(hc.job.config_name)]
    overrides = list(hc.overrides.task)
    overrides += [o for o in hc.overrides.hydra if not o.lstrip("+~").startswith(_DROPPED_HYDRA_OVERRIDES)]
    overrides += [
        f"hydra.run.dir={_quote(str(hc.runtime.output_dir))}",
        "hydra.output_subdir=null",  # rank 0 already wrote the job's .hydra/
        f"hydra.job.name={hc.job.name}_rank{local_rank}",  # each rank logs to <job dir>/<name>_rank<k>.log
        f"hydra.job.chdir={str(bool(hc.job.chdir)).lower()}",
    ]
    code = "from bnres.distributed import rank_main; rank_main()"
    return [sys.executable, "-c", code, *args, *overrides], str(hc.runtime.cwd)


def rank_main() -> None:
    """Entry point of ranks > 0 (a single Hydra run of the job's config)."""
    import hydra

    from bnres import runner

    hydra.main(version_base="1.3", config_path=None, config_name=None)(train_task)()
    sys.exit(runner.exit_code())


def prepare_trainer(trainer: Any) -> None:
    """Adapt a freshly built trainer to Hydra jobs and CPU processes (``runner.run`` calls it):

    * inside a Hydra job, DDP's other ranks are started as runs of *this job* (module docstring);
    * ``sync_batchnorm`` on CPU (gloo): torch's ``SyncBatchNorm`` refuses CPU modules, so the BN layers
      are synchronised by :class:`AllReduceSyncBatchNorm` instead (same statistics, same gradients)."""
    from hydra.core.hydra_config import HydraConfig
    from pytorch_lightning.plugins.layer_sync import TorchSyncBatchNorm

    strategy = trainer.strategy
    launcher = getattr(strategy, "_launcher", None)
    if type(launcher) is _SubprocessScriptLauncher and HydraConfig.initialized():
        strategy._launcher = HydraJobLauncher(launcher.cluster_environment, launcher.num_processes, launcher.num_nodes)
    layer_sync = getattr(strategy, "_layer_sync", None)
    if type(layer_sync) is TorchSyncBatchNorm and strategy.root_device.type == "cpu":
        strategy._layer_sync = AllReduceSyncBatchNorm()


class _RankObserver(threading.Thread):
    """Watches a job's other ranks. One that dies takes the rest down: its peers are killed at once
    (rank 0 then fails in its next collective and records the job ``failed``), and rank 0 itself is
    killed if it is still in the job ``RANK_FAILURE_GRACE_S`` later (a hang), as Lightning does."""

    def __init__(self, procs: list[subprocess.Popen]) -> None:
        super().__init__(daemon=True, name="bnres-rank-observer")
        self.procs = procs
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(1.0):
            codes = [p.poll() for p in self.procs]
            if all(c == 0 for c in codes):
                return
            failed = [(p.pid, c) for p, c in zip(self.procs, codes) if c not in (None, 0)]
            if failed:
                log.error("DDP rank process(es) %s died: stopping the job's other ranks", failed)
                for p in self.procs:
                    if p.poll() is None:
                        p.kill()
                if not self.done.wait(RANK_FAILURE_GRACE_S):
                    log.error("rank 0 still running %.0f s after another rank died: killing it", RANK_FAILURE_GRACE_S)
                    os.kill(os.getpid(), signal.SIGKILL)
                return


class HydraJobLauncher(_SubprocessScriptLauncher):
    """Lightning's subprocess launcher, with :func:`rank_command` as the command of ranks > 0."""

    observer: _RankObserver | None = None

    def launch(self, function: Callable, *args: Any, trainer: Any = None, **kwargs: Any) -> Any:
        self.cluster_environment.validate_settings(num_devices=self.num_processes, num_nodes=self.num_nodes)
        if not self.cluster_environment.creates_processes_externally:
            self._call_children_scripts()
            self.observer = _RankObserver(self.procs)
            self.observer.start()
            _active_launchers.append(self)
        _set_num_threads_if_needed(num_processes=self.num_processes)
        return function(*args, **kwargs)

    def _call_children_scripts(self) -> None:
        self._check_can_spawn_children()
        self.procs = []
        env = self.cluster_environment
        os.environ["MASTER_ADDR"] = env.main_address
        os.environ["MASTER_PORT"] = str(env.main_port)
        os.environ["NODE_RANK"] = str(env.node_rank())
        os.environ["LOCAL_RANK"] = str(env.local_rank())
        os.environ["WORLD_SIZE"] = f"{self.num_processes * self.num_nodes}"
        for local_rank in range(1, self.num_processes):
            child_env = {**os.environ, "LOCAL_RANK": str(local_rank), CHILD_ENV: "1"}
            if os.environ.get("PL_GLOBAL_SEED") is None:
                child_env.pop("PL_GLOBAL_SEED", None)
            command, cwd = rank_command(local_rank)
            log.info("starting DDP rank %d of this job (MASTER_PORT=%s): %s", local_rank, os.environ["MASTER_PORT"], " ".join(command[3:]))
            self.procs.append(subprocess.Popen(command, env=child_env, cwd=cwd))

    def finish(self, timeout: float = RANK_EXIT_TIMEOUT_S) -> None:
        """Stop watching the other ranks; wait for them to exit (killed after ``timeout``)."""
        if self.observer is not None:
            self.observer.done.set()
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("DDP rank process %d did not exit within %.0f s: killed", proc.pid, timeout)
                proc.kill()
                proc.wait()


# --- one job --------------------------------------------------------------------------------------
@contextlib.contextmanager
def job_scope(cfg: DictConfig) -> Iterator[None]:
    """Run one job, then leave the process as it was: no rank processes, no process group, no DDP
    environment variables (so the next job gets a fresh port), no packing slot."""
    saved_env = {key: os.environ.get(key) for key in _JOB_ENV_KEYS}
    threads = torch.get_num_threads()
    slot = _pack(cfg)
    try:
        yield
    finally:
        while _active_launchers:
            _active_launchers.pop().finish()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        torch.set_num_threads(threads)
        if slot is not None:
            slot.release()


def train_task(cfg: DictConfig) -> str:
    """The Hydra task function of ``scripts/train.py`` and of every DDP rank > 0."""
    from bnres import runner

    with job_scope(cfg):
        return runner.hydra_job(cfg)


# --- sweep packing --------------------------------------------------------------------------------
def _count(value: Any, what: str) -> int:
    if isinstance(value, (list, tuple)) or OmegaConf.is_list(value):
        return max(1, len(value))
    text = str(value).strip()
    if text in ("-1", "auto", "None", "null", ""):
        return 0  # all of them
    try:
        number = int(text)
    except ValueError:
        number = len([t for t in text.split(",") if t.strip()])
    if number < 1:
        raise ValueError(f"{what}={value!r} must be a positive integer")
    return number


def _gpu_count() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _gpus_per_job(value: Any, devices: Any) -> int:
    """GPUs a packed job gets: ``packing.gpus_per_job``, or with ``auto`` the job's ``trainer.devices``
    (0 = all GPUs: ``-1``/``auto`` devices)."""
    return _count(devices if str(value).strip() in ("auto", "") else value, "packing.gpus_per_job")


def packed_jobs(gpus_per_job: Any = "auto", jobs_per_gpu: Any = 1, devices: Any = 1) -> int:
    """How many jobs run at once: (GPUs // GPUs per job) x jobs per GPU. Without GPUs the CPU counts
    as one device shared by ``jobs_per_gpu`` jobs. The ``bnres.packed_jobs`` resolver."""
    per_gpu = _count(jobs_per_gpu, "packing.jobs_per_gpu") or 1
    gpus = _gpu_count()
    need = _gpus_per_job(gpus_per_job, devices) or max(gpus, 1)
    return max(1, gpus // need) * per_gpu


class _Slot:
    def __init__(self, index: int, handle: Any) -> None:
        self.index, self.handle = index, handle

    def release(self) -> None:
        with contextlib.suppress(OSError):
            self.handle.close()  # closing the file drops its lock


def _acquire_slot(folder: Path, slots: int, poll_s: float = 0.5) -> _Slot:
    """The lowest free slot in ``folder`` (waits while all are taken); held until released or exit."""
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    while True:
        for index in range(slots):
            handle = open(folder / f"slot{index}.lock", "a+")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                continue
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            return _Slot(index, handle)
        time.sleep(poll_s)


def _pin(cfg: DictConfig, devices: list[int]) -> None:
    with open_dict(cfg):
        cfg.trainer.devices = devices
        if str(cfg.trainer.get("accelerator", "auto")) == "auto":
            cfg.trainer.accelerator = "gpu"


def _pack(cfg: DictConfig) -> _Slot | None:
    """Packing (``hydra/launcher=packed``): take a slot and pin the job to that slot's GPU(s)."""
    if os.environ.get(CHILD_ENV):  # a rank > 0: same GPUs as its rank 0
        if os.environ.get(DEVICES_ENV):
            _pin(cfg, [int(d) for d in os.environ[DEVICES_ENV].split(",")])
        return None
    packing = cfg.get("packing")
    if not packing:
        return None
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized() or str(HydraConfig.get().mode) != "RunMode.MULTIRUN":
        return None
    hc = HydraConfig.get()
    gpus = _gpu_count()
    per_job = _gpus_per_job(packing.get("gpus_per_job", "auto"), cfg.trainer.get("devices", 1)) or max(gpus, 1)
    groups = max(1, gpus // per_job)
    slots = packed_jobs(per_job, packing.get("jobs_per_gpu", 1))
    slot = _acquire_slot(Path(str(hc.sweep.dir)) / ".slots", slots)
    devices = None
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    if gpus and accelerator in ("gpu", "cuda", "auto"):
        first = (slot.index % groups) * per_job
        devices = list(range(first, first + per_job))
        os.environ[DEVICES_ENV] = ",".join(map(str, devices))
        _pin(cfg, devices)
    log.info("packed job %s: slot %d of %d, devices %s", hc.job.get("num"), slot.index, slots, devices or accelerator)
    return slot


# --- synchronised batch norm on CPU processes -----------------------------------------------------
class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks; the gradient of a sum over ranks is the sum of the ranks' gradients."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.clone()
        dist.all_reduce(tensor)
        return tensor

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm over the batch of *all* ranks, for any device and back-end (gloo included).

    Training: the per-channel mean and (biased) variance are summed over ranks with a differentiable
    all-reduce, so outputs, running statistics and gradients are those of one process seeing the
    global batch, exactly as ``torch.nn.SyncBatchNorm`` (which only runs on GPUs) computes them.
    Outside training, or without a process group, it is a plain ``BatchNorm``."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(input)
        self._check_input_dim(input)
        dims = [0, *range(2, input.dim())]
        shape = [1, -1] + [1] * (input.dim() - 2)
        x = input.float() if input.dtype in (torch.float16, torch.bfloat16) else input
        local_count = torch.tensor([x.numel() // x.size(1)], dtype=x.dtype, device=x.device)
        sums = _AllReduceSum.apply(torch.cat([x.sum(dims), local_count]))  # [channel sums..., count]
        count = sums[-1]
        mean = sums[:-1] / count
        centred = x - mean.view(shape)
        var = _AllReduceSum.apply((centred * centred).sum(dims)) / count  # two passes: no E[x^2] - E[x]^2 cancellation
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - factor).add_(mean.detach(), alpha=factor)
                unbiased = var.detach() * (count / (count - 1).clamp_min(1))
                self.running_var.mul_(1 - factor).add_(unbiased, alpha=factor)
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out.to(input.dtype)


def _swap_batchnorm(module: nn.Module, to: type, match: Callable[[nn.Module], bool]) -> nn.Module:
    converted = module
    if match(module):
        converted = to(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
        if module.affine:
            with torch.no_grad():
                converted.weight = module.weight
                converted.bias = module.bias
        converted.running_mean = module.running_mean
        converted.running_var = module.running_var
        converted.num_batches_tracked = module.num_batches_tracked
        converted.train(module.training)
    for name, child in module.named_children():
        converted.add_module(name, _swap_batchnorm(child, to, match))
    return converted


class AllReduceSyncBatchNorm(LayerSync):
    """Lightning ``LayerSync`` plugin: torch's BatchNorm layers become :class:`GlobalBatchNorm` (and back)."""

    def apply(self, model: nn.Module) -> nn.Module:
        is_torch_bn = lambda m: isinstance(m, nn.modules.batchnorm._BatchNorm) and not isinstance(m, (GlobalBatchNorm, nn.SyncBatchNorm))
        return _swap_batchnorm(model, GlobalBatchNorm, is_torch_bn)

    def revert(self, model: nn.Module) -> nn.Module:
        return _swap_batchnorm(model, _BatchNormXd, lambda m: isinstance(m, GlobalBatchNorm))


# --- configuration checks -------------------------------------------------------------------------
_SPAWNING_STRATEGIES = ("ddp_spawn", "ddp_fork", "ddp_notebook", "ddp_spawn_find_unused_parameters_true", "ddp_fork_find_unused_parameters_true")


def check_ddp_config(cfg: DictConfig) -> None:
    """DDP settings the harness cannot honour, as one-line :class:`~bnres.checks.ConfigError`s."""
    from bnres.checks import ConfigError

    if cfg.get("sync_batchnorm") and cfg.get("bn") and cfg.get("bn_impl") == "scratch":
        raise ConfigError(
            "sync_batchnorm=true needs bn_impl=torch: SyncBatchNorm only converts torch's BatchNorm layers, "
            "so the from-scratch BN would silently stay per-device"
        )
    strategy = cfg.trainer.get("strategy")
    if isinstance(strategy, str) and strategy in _SPAWNING_STRATEGIES:
        raise ConfigError(
            f"trainer.strategy={strategy} trains in spawned processes, so the run record (kept by rank 0 in this "
            "process) would stay empty; use trainer.strategy=ddp (trainer=ddp)"
        )


OmegaConf.register_new_resolver("bnres.packed_jobs", packed_jobs, replace=True)

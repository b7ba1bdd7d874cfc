"""Sweep packing (``hydra/launcher=packed``): several jobs at once on one machine.

Each job is pinned to its own GPU(s) through a slot held for the job's lifetime (a lock file in the
sweep folder). Works with reused worker processes, because it pins with ``trainer.devices=[k, ...]``,
not ``CUDA_VISIBLE_DEVICES``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from bnres.distributed.ranks import CHILD_ENV

log = logging.getLogger(__name__)

# the GPUs a packed job got (inherited by its ranks > 0)
DEVICES_ENV = "BNRES_PACKED_DEVICES"



# the line each packed job logs on start; benchmarks/gpu_check.py reads it back
SLOT_LOG = "packed job %s: slot %d of %d, devices %s, %d torch thread(s)"


def slots_dir(sweep_dir: str | Path) -> Path:
    """Where a packed sweep's slot locks live (removed when the sweep ends: ``bnres.runs.sweep_summary``)."""
    return Path(str(sweep_dir)) / ".slots"

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


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, e.g. a SLURM or container limit)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def threads_per_job(value: Any, jobs_at_once: int, on_gpu: bool) -> int | None:
    """torch threads of a packed job: ``packing.threads_per_job``, or with ``auto`` the cores shared out
    among the jobs that run at once when they train on the CPU, never more than an ``OMP_NUM_THREADS``
    the user set (``None``: GPU jobs keep the default, which joblib already limits to cores // jobs)."""
    if str(value).strip() in ("auto", "", "None", "null"):
        if on_gpu:
            return None
        share = max(1, usable_cores() // max(1, jobs_at_once))
        limit = os.environ.get("OMP_NUM_THREADS", "").strip()
        return min(share, int(limit)) if limit.isdigit() and int(limit) >= 1 else share
    try:
        number = int(str(value).strip())
    except ValueError:
        number = 0
    if number < 1:
        raise ValueError(f"packing.threads_per_job={value!r} must be a positive integer or auto")
    return number


def packed_jobs(gpus_per_job: Any = "auto", jobs_per_gpu: Any = 1, devices: Any = 1, threads: Any = "auto", accelerator: Any = "auto") -> int:
    """How many jobs run at once: (GPUs // GPUs per job) x jobs per GPU. Without GPUs, or for jobs
    that train on the CPU (``trainer.accelerator=cpu``), the CPU counts as one device shared by
    ``jobs_per_gpu`` jobs. The ``bnres.packed_jobs`` resolver (which also checks
    ``packing.threads_per_job`` when the sweep starts)."""
    threads_per_job(threads, 1, on_gpu=False)
    per_gpu = _count(jobs_per_gpu, "packing.jobs_per_gpu") or 1
    gpus = 0 if str(accelerator) == "cpu" else _gpu_count()
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


def take_slot(cfg: DictConfig) -> _Slot | None:
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
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    gpus = 0 if accelerator == "cpu" else _gpu_count()
    per_job = _gpus_per_job(packing.get("gpus_per_job", "auto"), cfg.trainer.get("devices", 1)) or max(gpus, 1)
    groups = max(1, gpus // per_job)
    slots = packed_jobs(per_job, packing.get("jobs_per_gpu", 1), accelerator=accelerator)
    slot = _acquire_slot(slots_dir(hc.sweep.dir), slots)
    devices = None
    if gpus and accelerator in ("gpu", "cuda", "auto"):
        first = (slot.index % groups) * per_job
        devices = list(range(first, first + per_job))
        os.environ[DEVICES_ENV] = ",".join(map(str, devices))
        _pin(cfg, devices)
    # jobs side by side on the CPU: each gets its share of the cores (job_scope restores the count)
    threads = threads_per_job(packing.get("threads_per_job", "auto"), slots, on_gpu=devices is not None)
    if threads:
        torch.set_num_threads(threads)
    log.info(SLOT_LOG, hc.job.get("num"), slot.index, slots, devices or accelerator, torch.get_num_threads())
    return slot



OmegaConf.register_new_resolver("bnres.packed_jobs", packed_jobs, replace=True)

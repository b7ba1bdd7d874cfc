"""One Hydra job, whatever its number of ranks: run it, then leave the process as it was."""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

import torch
from omegaconf import DictConfig

from bnres.distributed import ranks
from bnres.distributed.packing import DEVICES_ENV, take_slot

# environment a DDP job sets, restored after every job
_JOB_ENV_KEYS = (
    "MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE", "GLOBAL_RANK", "RANK",
    "OMP_NUM_THREADS", "PL_GLOBAL_SEED", "PL_SEED_WORKERS", DEVICES_ENV,
)


@contextlib.contextmanager
def job_scope(cfg: DictConfig) -> Iterator[None]:
    """Run one job, then leave the process as it was: no rank processes, no process group, no DDP
    environment variables (so the next job gets a fresh port), no packing slot."""
    saved_env = {key: os.environ.get(key) for key in _JOB_ENV_KEYS}
    threads = torch.get_num_threads()
    slot = take_slot(cfg)
    try:
        yield
    finally:
        ranks.finish_launchers()
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


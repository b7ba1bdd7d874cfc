"""Distributed runs inside Hydra: one job = one folder, whatever the number of ranks or jobs.

* :mod:`~bnres.distributed.ranks` — DDP's ranks > 0 started as single runs of the Hydra job they belong to
  (:class:`HydraJobLauncher`, put in place by :func:`prepare_trainer`).
* :mod:`~bnres.distributed.job` — :func:`job_scope` wraps every job (``bnres.runs.task.train_task``): afterwards it waits
  for the job's rank processes, destroys the process group and restores the variables DDP set, so the next
  job of a sweep starts clean and picks a fresh port.
* :mod:`~bnres.distributed.packing` — ``hydra/launcher=packed``: several jobs at once, each pinned to its GPU(s).
* :mod:`~bnres.distributed.sync_batchnorm` — ``sync_batchnorm`` on CPU processes (:class:`GlobalBatchNorm`).
"""

from bnres.distributed.job import job_scope
from bnres.distributed.packing import DEVICES_ENV, packed_jobs
from bnres.distributed.ranks import CHILD_ENV, HydraJobLauncher, prepare_trainer, rank_command
from bnres.distributed.sync_batchnorm import AllReduceSyncBatchNorm, GlobalBatchNorm

__all__ = [
    "AllReduceSyncBatchNorm", "CHILD_ENV", "DEVICES_ENV", "GlobalBatchNorm", "HydraJobLauncher", "job_scope",
    "packed_jobs", "prepare_trainer", "rank_command",
]

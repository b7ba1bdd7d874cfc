"""The Hydra task function of ``scripts/train.py`` (and of DDP ranks > 0), and the process's exit status.

Above :mod:`bnres.runs.runner` (one job) and :mod:`bnres.distributed` (ranks, packing): both are called from
here, and neither imports this module.
"""

from __future__ import annotations

import logging
import sys
import traceback

from omegaconf import DictConfig

from bnres.runs import runner
from bnres.distributed import job_scope
from bnres.errors import ConfigError
from bnres.runs.record import new_record, write_record

log = logging.getLogger(__name__)

# Exit status of this process: the worst outcome among its jobs (0 ok, 1 a job failed, 2 bad input).
_exit_code = 0


def exit_code() -> int:
    return _exit_code


def worsen(code: int) -> None:
    global _exit_code
    _exit_code = max(_exit_code, code)


def hydra_job(cfg: DictConfig) -> str:
    """Run one job; never raises, so a sweep's other jobs still run. Returns the job's status."""
    try:
        record = runner.run(cfg)
    except ConfigError as err:
        # one clear line, nothing written; in a sweep the summary lists the job as invalid
        print(f"error: {err}", file=sys.stderr, flush=True)
        worsen(2)
        return "invalid"
    except Exception as err:  # failed while building the run: record it, let the sweep go on
        message = f"{type(err).__name__}: {err}"
        log.error("job failed before training: %s\n%s", message, traceback.format_exc())
        print(f"error: {message.splitlines()[0]}", file=sys.stderr, flush=True)
        if runner.launch_rank() == 0:
            write_record(cfg.paths.output_dir, new_record(runner.hydra_job_info()["overrides"], None, status="failed", error=message))
        worsen(1)
        return "failed"
    if record["status"] == "failed":
        worsen(1)
    return record["status"]


def train_task(cfg: DictConfig) -> str:
    """One job (all of its DDP ranks in its folder), leaving no DDP state behind for the next job."""
    with job_scope(cfg):
        return hydra_job(cfg)


def rank_main() -> None:
    """Entry point of DDP ranks > 0: a single Hydra run of the job's config (``bnres.distributed.ranks``)."""
    import hydra

    hydra.main(version_base="1.3", config_path=None, config_name=None)(train_task)()
    sys.exit(exit_code())

"""Where a sweep's wall time goes: imports, Hydra, W&B, Trainer, fit, validation, checkpoints, test, records.

    python scripts/benchmark.py --profile experiment=bn_lr seed=0     # any scripts/train.py -m overrides

The jobs run in this process (``hydra/launcher=basic`` unless a launcher is given), one after another.

Runs ``scripts/train.py -m <overrides>`` in this process with clock-reading wrappers around the
functions that make up a job (wall time, inclusive: a wrapper's time contains the wrappers it
calls), then prints the total per item, per job, and its share of the process's wall time. The
wrappers cost microseconds per call (about 3,000 calls per job of the bn_lr preset), so the
figures are those of a normal run. Imports are the time from this script's start until the
modules ``scripts/train.py`` needs are loaded (``python -X importtime`` breaks them down).
"""

from __future__ import annotations

import functools
import os
import runpy
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_totals: dict[str, float] = defaultdict(float)
_calls: dict[str, int] = defaultdict(int)
_active: set[str] = set()


def _timed(name: str, fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if name in _active:  # recursion: count the outermost call only
            return fn(*args, **kwargs)
        _active.add(name)
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            _totals[name] += time.perf_counter() - start
            _calls[name] += 1
            _active.discard(name)

    return wrapper


def _patch(owner, attr: str, name: str) -> None:
    setattr(owner, attr, _timed(name, getattr(owner, attr)))


def _instantiate_by_target(fn):
    @functools.wraps(fn)
    def wrapper(config, *args, **kwargs):
        target = str(config.get("_target_", "?")) if hasattr(config, "get") else "?"
        short = target.rsplit(".", 1)[-1]
        return _timed(f"  instantiate {short}", fn)(config, *args, **kwargs)

    return wrapper


def install() -> None:
    """Wrap the functions of interest (their owners must be imported first)."""
    import pytorch_lightning as pl
    import wandb
    import wandb.util
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core import utils as hydra_utils
    from hydra.plugins.sweeper import Sweeper
    from pytorch_lightning.callbacks import ModelCheckpoint
    from pytorch_lightning.loggers import WandbLogger
    from pytorch_lightning.loops.evaluation_loop import _EvaluationLoop
    from pytorch_lightning.loops.training_epoch_loop import _TrainingEpochLoop

    from bnres.runs import runner
    from bnres.runs import sweep_summary as sweep
    from bnres.data.base import InMemoryDataModule

    _patch(BasicSweeper, "sweep", "hydra: the whole multirun")
    _patch(Sweeper, "validate_batch_is_legal", "hydra: compose every job's config to validate the batch")
    _patch(ConfigLoaderImpl, "load_sweep_config", "hydra: compose a job's config")
    _patch(hydra_utils, "run_job", "job (Hydra's run_job)")
    _patch(hydra_utils, "_save_config", "  hydra: write .hydra/*.yaml")
    _patch(runner, "run", "  bnres.runs.runner.run")
    _patch(runner, "resolved_config", "    resolve the config")
    _patch(pl, "seed_everything", "    seed_everything")
    runner.instantiate = _instantiate_by_target(runner.instantiate)
    _patch(runner, "build_loggers", "    build loggers")
    _patch(wandb, "init", "    wandb.init (first logger.experiment)")
    listing = wandb.util.working_set  # a generator: time it consumed
    wandb.util.working_set = _timed("      wandb: list installed packages (requirements.txt)", lambda: list(listing()))
    _patch(WandbLogger, "log_hyperparams", "    W&B log_hyperparams (config)")
    _patch(runner, "write_record", "    write result.json")
    _patch(pl.Trainer, "fit", "    trainer.fit")
    _patch(_TrainingEpochLoop, "advance", "      training steps (loop advance)")
    _patch(_EvaluationLoop, "run", "      evaluation loops (val each epoch, test)")
    _patch(ModelCheckpoint, "_save_checkpoint", "      checkpoint writes")
    _patch(InMemoryDataModule, "setup", "      data setup (tensors, splits)")
    _patch(pl.Trainer, "test", "    trainer.test")
    _patch(runner, "close_loggers", "    close loggers (W&B summary, finish)")
    _patch(wandb, "finish", "      wandb.finish")
    _patch(sweep.SweepSummary, "on_multirun_end", "sweep summary table")


def report(wall: float, imports: float, jobs: int) -> str:
    lines = [f"{'item':62s} {'total s':>8s} {'per job s':>9s} {'calls':>6s} {'% wall':>6s}", "-" * 95]
    lines.append(f"{'imports (python start to scripts/train.py ready)':62s} {imports:8.2f} {'':>9s} {1:6d} {100 * imports / wall:6.1f}")
    for name, total in _totals.items():
        lines.append(f"{name:62s} {total:8.2f} {total / max(jobs, 1):9.3f} {_calls[name]:6d} {100 * total / wall:6.1f}")
    lines.append(f"{'process wall time (this script start to exit)':62s} {wall:8.2f} {wall / max(jobs, 1):9.3f}")
    return "\n".join(lines)


def main(overrides: list[str], log_path: Path | None = None) -> int:
    start = time.perf_counter()
    # what scripts/train.py imports, timed
    import hydra  # noqa: F401

    from bnres import distributed  # noqa: F401
    from bnres.runs import runner  # noqa: F401

    imports = time.perf_counter() - start
    install()
    if not any(o.startswith("hydra/launcher=") for o in overrides):
        overrides = [*overrides, "hydra/launcher=basic"]  # the jobs must run in this process to be timed
    argv = sys.argv
    sys.argv = [str(ROOT / "scripts" / "train.py"), "-m", *overrides]
    saved_out, saved_err = sys.stdout, sys.stderr
    log = open(log_path, "w") if log_path else None
    if log:
        sys.stdout = sys.stderr = log
    code = 0
    try:
        runpy.run_path(str(ROOT / "scripts" / "train.py"), run_name="__main__")
    except SystemExit as err:
        code = int(err.code or 0)
    finally:
        sys.argv = argv
        sys.stdout, sys.stderr = saved_out, saved_err
        if log:
            log.close()
    wall = time.perf_counter() - start
    jobs = _calls.get("job (Hydra's run_job)", 0)
    print(f"profile of: scripts/train.py -m {' '.join(overrides)} ({jobs} jobs, exit {code}, torch threads "
          f"{__import__('torch').get_num_threads()}, load average {os.getloadavg()[0]:.2f})")
    print(report(wall, imports, jobs))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""One training job from a composed Hydra config: build, fit, test, record.

``run(cfg)`` is what ``scripts/train.py`` calls for every job of a run or sweep. Its outcome is
always one of: a ``result.json`` saying ``completed`` or ``diverged`` (exit 0), one saying
``failed`` with the error (the sweep goes on; non-zero exit at the end), one saying ``preempted``
when a signal stopped it (checkpoint saved; the process exits or is requeued, see
``bnres.runs.preemption``), or, for bad input, one clear line and no record at all.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from pickle import UnpicklingError
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities.exceptions import SIGTERMException

from bnres import _lightning, distributed
from bnres.runs.binding import check_folder, check_harness_folder, fingerprint, holds_previous_run, set_aside
from bnres.training.callbacks import ConfigFingerprint, DivergenceMonitor, HistoryRecorder
from bnres.config.checks import check_config, check_trains_something
from bnres.errors import ConfigError, FolderConflict, one_line
from bnres.tracking.loggers import build_loggers, finish_active_wandb_run, wandb_loggers
from bnres.training.module import Classifier
from bnres.runs.preemption import Preemption, last_checkpoint_path
from bnres.training.probes import probe_results
from bnres.runs.record import FINISHED, final_and_best, new_record, read_record, write_record
from bnres.tracking.wandb_groups import sweep_group

log = logging.getLogger(__name__)

# names of overrides left out of run names: they size a run, they do not define it
_SIZE_KEYS = ("trainer.max_epochs", "trainer.max_steps", "trainer.limit_", "hydra.", "paths.", "logger", "fresh", "callbacks", "packing.")


# the repository's config tree (src layout: the package is installed editable from the checkout)
CONF_DIR = Path(__file__).resolve().parents[3] / "conf"


def compose_config(overrides: list[str], output_dir: Path | str, config_dir: Path | str = CONF_DIR) -> DictConfig:
    """Compose ``train.yaml`` with ``overrides`` as ``scripts/train.py`` does, outside a Hydra app
    (benchmarks, tests), with ``${hydra:...}`` resolving to ``output_dir``."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import open_dict

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        cfg = compose(config_name="train", overrides=list(overrides), return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    return cfg


def hydra_job_info() -> dict[str, Any]:
    """Overrides, sweep folder and mode of the current Hydra job (empty outside Hydra)."""
    if not HydraConfig.initialized():
        return {"overrides": [], "sweep_dir": None, "multirun": False, "model_choice": None}
    hc = HydraConfig.get()
    multirun = str(hc.mode) == "RunMode.MULTIRUN"
    return {
        "model_choice": hc.runtime.choices.get("model"),
        "overrides": list(hc.overrides.task),
        "sweep_dir": str(hc.sweep.dir) if multirun else None,
        "multirun": multirun,
        "job_num": hc.job.get("num") if multirun else None,
    }


def run_name(overrides: list[str]) -> str:
    kept = [o for o in overrides if not o.lstrip("+~").startswith(_SIZE_KEYS)]
    return ",".join(kept) or "defaults"


def resolved_config(cfg: DictConfig) -> dict[str, Any]:
    container = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    container.pop("hydra", None)
    return container


def run(cfg: DictConfig) -> dict[str, Any]:
    """Run one job and return its record (also written to ``<output_dir>/result.json``)."""
    job = hydra_job_info()
    check_config(cfg, model_choice=job["model_choice"])  # bad input: one line, before any work and any record
    output_dir = Path(cfg.paths.output_dir)
    is_launcher = launch_rank() == 0
    run_fingerprint = fingerprint(cfg)

    previous = read_record(output_dir)
    fresh = bool(cfg.get("fresh", False))
    check_harness_folder(output_dir, f"{output_dir}")  # also checked before Hydra starts (preflight); this catches other callers
    if not fresh:
        # also checked before Hydra writes into the folder (bnres.runs.preflight.FolderGuard); this catches other callers
        check_folder(output_dir, cfg, f"{output_dir}")
    if previous and previous.get("status") in FINISHED and not fresh:
        log.info("%s already %s: skipped (fresh=true reruns it)", output_dir, previous["status"])
        return previous

    config = resolved_config(cfg)
    pl.seed_everything(cfg.seed, workers=True)  # `is not None`, never truthiness: seed 0 is a seed
    # build everything before writing anything: errors in the config surface as one line
    try:
        net = instantiate(cfg.model)
        datamodule = instantiate(cfg.data)
        check_trains_something(cfg, datamodule)
        divergence = DivergenceMonitor(**cfg.divergence)
        probes = [instantiate(p) for p in (cfg.get("probes") or {}).values() if isinstance(p, DictConfig) and "_target_" in p]
        datamodule.verify()
    except ConfigError:
        raise
    except (ValueError, TypeError, InstantiationException) as err:
        cause = err.__cause__ if isinstance(err, InstantiationException) and err.__cause__ else err
        raise ConfigError(one_line(cause)) from None
    ckpt_path = resume_checkpoint(cfg, output_dir, previous, run_fingerprint)
    if ckpt_path is None and is_launcher and holds_previous_run(output_dir, keep=_THIS_RUNS_FILES):
        # starting over (fresh=true, or nothing resumable): nothing of an earlier run may stay beside this one
        set_aside(output_dir, keep=_THIS_RUNS_FILES, reason="fresh=true" if fresh else "starting over")
        previous = None
    module = Classifier(
        net=net,
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
        num_classes=cfg.data.num_classes,
        channels_last=cfg.get("channels_last", False),
        compile=cfg.get("compile", False),
    )
    history = HistoryRecorder()
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c and "_target_" in c]
    if not cfg.trainer.get("enable_progress_bar", True):
        # Lightning refuses a progress-bar callback when the bar is off: the switch wins
        callbacks = [c for c in callbacks if not isinstance(c, pl.callbacks.ProgressBar)]
    # under DDP the pre-emption decision is a collective too: at the divergence check's cadence
    callbacks += [
        divergence, history, Preemption(check_every_n_steps=cfg.divergence.check_every_n_steps),
        ConfigFingerprint(run_fingerprint), *probes,
    ]

    # a resumed run continues the same W&B run (online; offline see docs/resuming.md)
    wandb_id = previous.get("wandb_id") if (previous and ckpt_path) else None
    group = cfg.get("wandb_group") or sweep_group(job["sweep_dir"])  # logger.wandb.group, when set, wins
    loggers = build_loggers(cfg.get("logger"), group=group, name=run_name(job["overrides"]), run_id=wandb_id)
    if not loggers:  # nothing to log the lr to (Lightning refuses the monitor then)
        callbacks = [c for c in callbacks if not isinstance(c, pl.callbacks.LearningRateMonitor)]
    plugins = _trainer_plugins()
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, **({"plugins": plugins} if plugins else {}))
    distributed.prepare_trainer(trainer)  # DDP in a Hydra job: ranks > 0 run this job, in its folder

    return fit_and_record(
        trainer, module, datamodule, divergence, history, output_dir, config, job["overrides"],
        test_after_fit=cfg.get("test_after_fit", True), ckpt_path=ckpt_path, fingerprint=run_fingerprint,
    )


# what this run's process has already written into its folder when the runner starts: Hydra's config copy and logs
_THIS_RUNS_FILES = (".hydra", "*.log")


def launch_rank() -> int:
    """This process's global rank as its launcher set it (before any process group exists)."""
    from pytorch_lightning.utilities.rank_zero import rank_zero_only

    return int(getattr(rank_zero_only, "rank", 0) or 0)


def _trainer_plugins() -> list:
    """Under submitit on SLURM, submitit's pre-emption handling (signal, requeue) is the one that acts:
    Lightning's own SLURM auto-requeue is switched off so the two never both requeue a job."""
    if os.environ.get("SUBMITIT_EXECUTOR") == "slurm":
        from pytorch_lightning.plugins.environments import SLURMEnvironment

        return [SLURMEnvironment(auto_requeue=False)]
    return []


def resume_checkpoint(cfg: DictConfig, output_dir: Path, previous: dict | None, run_fingerprint: str) -> str | None:
    """The explicit ``ckpt_path``, else the ``last.ckpt`` an interrupted run of this job left.

    A checkpoint written by a run of another config (its fingerprint differs) is refused, never resumed.
    One that does not load (e.g. cut short by a kill while it was written) is set aside as
    ``last.ckpt.corrupt`` and the run starts over rather than crashing."""
    if cfg.get("ckpt_path"):
        path = Path(str(cfg.ckpt_path))
        check_checkpoint(path, load_checkpoint(path, "ckpt_path"), run_fingerprint, "ckpt_path")
        return str(path)
    last = last_checkpoint_path(output_dir)
    if cfg.get("fresh", False) or previous is None or not last.exists():
        return None
    try:
        checkpoint = safe_load(last)
    except Exception as err:  # noqa: BLE001 - any unreadable file means: do not resume from it
        log.warning("%s does not load (%s); starting over", last, err)
        if launch_rank() == 0:
            last.replace(last.with_name("last.ckpt.corrupt"))
        return None
    check_checkpoint(last, checkpoint, run_fingerprint, "hydra.run.dir / hydra.sweep.dir")
    log.info("resuming from %s", last)
    return str(last)


#: the only non-tensor, non-builtin types a checkpoint may hold (a bnres checkpoint holds none: Lightning's
#: loops, callback states, optimizer and scheduler states and the fingerprint are plain containers). Anything
#: else is refused by torch's weights-only unpickler before any of its code can run.
CHECKPOINT_SAFE_TYPES: tuple[type, ...] = ()


def safe_load(path: Path | str) -> dict:
    """``torch.load`` with ``weights_only=True``: tensors, builtins and :data:`CHECKPOINT_SAFE_TYPES` only."""
    with torch.serialization.safe_globals(list(CHECKPOINT_SAFE_TYPES)):
        return torch.load(path, map_location="cpu", weights_only=True)


def _refused(path: Path, key: str, err: BaseException) -> str:
    wanted = next((line.strip() for line in str(err).splitlines() if "GLOBAL" in line or "Unsupported" in line), type(err).__name__)
    return (f"{key}={path} is not a bnres checkpoint: it needs code to load ({wanted[:160]}); refused unread "
            f"(checkpoints load weights-only)")


def load_checkpoint(path: Path, key: str) -> dict:
    try:
        return safe_load(path)
    except FileNotFoundError:
        raise ConfigError(f"{key}={path} does not exist") from None
    except UnpicklingError as err:
        raise ConfigError(_refused(path, key, err)) from None
    except Exception as err:  # noqa: BLE001
        raise ConfigError(f"{key}={path} does not load ({type(err).__name__})") from None


def check_checkpoint(path: Path, checkpoint: dict, run_fingerprint: str, key: str) -> None:
    """A run resumes only from a checkpoint of its own config (``bnres.runs.binding``)."""
    found = checkpoint.get(ConfigFingerprint.KEY)
    if found != run_fingerprint:
        what = f"config fingerprint {found}" if found else "no config fingerprint (an older bnres)"
        raise FolderConflict(
            f"{path} was written by a run with {what}, this run's is {run_fingerprint}: it cannot be resumed with "
            f"this config; choose another folder, or add fresh=true to move the old run aside (kept) and start over"
        )


def fit_and_record(
    trainer: pl.Trainer,
    module: Classifier,
    datamodule: pl.LightningDataModule,
    divergence: DivergenceMonitor,
    history: HistoryRecorder,
    output_dir: Path,
    config: dict[str, Any],
    overrides: list[str],
    test_after_fit: bool = True,
    ckpt_path: str | None = None,
    fingerprint: str | None = None,
) -> dict[str, Any]:
    """Fit (and test), then write the record and close the loggers — whatever happens.

    Shared by the Hydra entry point and the Lightning CLI, so both write the same record."""
    is_rank_zero = trainer.is_global_zero
    record = new_record(
        overrides, config, num_params=module.num_params(), resumed_from=ckpt_path, fingerprint=fingerprint,
        started_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    if is_rank_zero:
        for lg in wandb_loggers(trainer.loggers):
            record["wandb_id"] = lg.experiment.id
    for lg in trainer.loggers:
        lg.log_hyperparams({**config, "fingerprint": fingerprint, "num_params": record["num_params"]})
    if is_rank_zero:
        write_record(output_dir, record)
    start = time.perf_counter()
    test_metrics: dict[str, Any] = {}
    exit_code = 0
    try:
        # Lightning loads ckpt_path again: weights-only too (bnres.runs.runner.safe_load)
        with torch.serialization.safe_globals(list(CHECKPOINT_SAFE_TYPES)):
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        if trainer.interrupted:
            raise KeyboardInterrupt("training was interrupted")
        if divergence.diverged:
            record["status"] = "diverged"
            record["diverged_at_step"] = divergence.diverged_at_step
            record["error"] = divergence.reason
        else:
            if test_after_fit:
                results = trainer.test(module, datamodule=datamodule, verbose=False)
                test_metrics = {k: float(v) for k, v in (results[0] if results else {}).items()}
            record["status"] = "completed"
    except SIGTERMException:  # a signal stopped it, last.ckpt saved (bnres.runs.preemption): resumable
        record["status"] = "preempted"
        preemption = next((c for c in trainer.callbacks if isinstance(c, Preemption) and c.stopped), None)
        record["error"] = preemption.describe(trainer) if preemption else f"stopped by SIGTERM at step {trainer.global_step}"
        exit_code = 128 + signal.SIGTERM
    except Exception as err:  # recorded, not raised: the sweep goes on
        record["status"] = "failed"
        record["error"] = f"{type(err).__name__}: {err}"
        log.error("job failed: %s\n%s", record["error"], traceback.format_exc())
        exit_code = 1
    finally:
        record["history"] = history.history
        record["probes"] = probe_results(trainer.callbacks)
        record["final"], record["best"] = final_and_best(history.history, test_metrics)
        record["wall_time_s"] = time.perf_counter() - start
        record["train_images_per_s"] = history.train_images_per_s()
        record["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        if record["status"] == "running":  # KeyboardInterrupt and friends: not a result
            record["status"] = "failed"
            record["error"] = record["error"] or "interrupted"
            exit_code = 1
        if is_rank_zero:
            write_record(output_dir, record)
        close_loggers(trainer, record, exit_code)
    for callback in trainer.callbacks:
        if isinstance(callback, Preemption):
            callback.hand_over()  # stopped by a signal: requeue (submitit) or exit 128 + signal
    return record


def close_loggers(trainer: pl.Trainer, record: dict[str, Any], exit_code: int) -> None:
    summary = {
        "status": record["status"],
        "num_params": record["num_params"],
        "diverged_at_step": record["diverged_at_step"],
        "wall_time_s": record["wall_time_s"],
        "train_images_per_s": record["train_images_per_s"],
        **{f"final/{k}": v for k, v in record["final"].items()},
        **{f"best/{k}": v for k, v in record["best"].items()},
    }
    for lg in wandb_loggers(trainer.loggers):
        if trainer.is_global_zero and _lightning.wandb_experiment_started(lg):
            lg.experiment.summary.update({k: v for k, v in summary.items() if v is not None})
    for lg in trainer.loggers:
        lg.finalize("success" if exit_code == 0 else "failed")
    if trainer.is_global_zero:
        import wandb

        if wandb.run is not None:
            wandb.finish(exit_code=exit_code)
    else:
        finish_active_wandb_run()

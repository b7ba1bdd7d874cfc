"""Every private Lightning name bnres relies on, in one place.

Lightning does not promise to keep these across releases; pyproject pins ``pytorch-lightning`` below
the next minor release, and ``tests/test_lightning_internals.py`` fails when an upgrade removes or
renames any of them, naming which. Code elsewhere goes through this module instead of reaching into
Lightning's objects. Two uses cannot be wrapped, only named here and tested:

* ``bnres.training.callbacks.ProgressBar`` overrides ``TQDMProgressBar._should_update(current, total)``
  (:data:`PROGRESS_BAR_SHOULD_UPDATE`), Lightning's test for redrawing the bar;
* ``bnres.training.module.Classifier.__setattr__`` short-cuts ``LightningModule._current_fx_name``
  (:data:`CURRENT_FX_NAME`), which Lightning sets around every hook call;
* ``bnres.distributed.ranks.HydraJobLauncher`` subclasses :data:`SubprocessScriptLauncher`: it
  overrides ``launch`` and ``_call_children_scripts`` and uses ``_check_can_spawn_children``,
  ``procs``, ``cluster_environment``, ``num_processes`` and ``num_nodes``.
"""

from __future__ import annotations

from typing import Any

from lightning_fabric.utilities.distributed import _set_num_threads_if_needed as set_num_threads_if_needed
from pytorch_lightning.plugins.layer_sync import _BatchNormXd as BatchNormXd
from pytorch_lightning.strategies.launchers.subprocess_script import _SubprocessScriptLauncher as SubprocessScriptLauncher

__all__ = [
    "BatchNormXd", "SubprocessScriptLauncher", "set_num_threads_if_needed", "CURRENT_FX_NAME", "PROGRESS_BAR_SHOULD_UPDATE",
    "strategy_launcher", "set_strategy_launcher", "layer_sync", "set_layer_sync", "request_graceful_stop",
    "is_logging_step", "batches_done", "wandb_experiment_started", "wandb_init_kwargs",
]

#: attribute Lightning sets on the LightningModule around every hook (``trainer/call.py``)
CURRENT_FX_NAME = "_current_fx_name"
#: the TQDM bar's per-batch "redraw now?" test, ``(self, current, total) -> bool``
PROGRESS_BAR_SHOULD_UPDATE = "_should_update"


# --- strategies: the process launcher and the sync-BN plugin ---------------------------------
def strategy_launcher(strategy: Any) -> Any:
    """The strategy's process launcher (``None`` for one-process strategies)."""
    return strategy._launcher  # set by Strategy.__init__ for every strategy


def set_strategy_launcher(strategy: Any, launcher: Any) -> None:
    strategy._launcher = launcher


def layer_sync(strategy: Any) -> Any:
    """The strategy's ``LayerSync`` plugin (``TorchSyncBatchNorm`` with ``sync_batchnorm=True``, else ``None``)."""
    # only ParallelStrategy has one; one-device strategies have no such attribute
    from pytorch_lightning.strategies import ParallelStrategy

    return strategy._layer_sync if isinstance(strategy, ParallelStrategy) else None


def set_layer_sync(strategy: Any, plugin: Any) -> None:
    strategy._layer_sync = plugin


# --- the trainer's loop state --------------------------------------------------------------
def request_graceful_stop(trainer: Any) -> None:
    """Set the flag Lightning's SIGTERM handler sets: the run stops (``SIGTERMException``) at the
    end of the current step, as it does after a real SIGTERM."""
    trainer._signal_connector.received_sigterm = True


def is_logging_step(trainer: Any) -> bool:
    """Whether Lightning sends step-level values to the loggers after the current training step."""
    return bool(trainer._logger_connector.should_update_logs)


def batches_done(trainer: Any) -> int:
    """Training batches completed in the current epoch (what a mid-epoch checkpoint resumes after)."""
    return trainer.fit_loop.epoch_loop.batch_progress.current.completed


# --- WandbLogger ---------------------------------------------------------------------------
def wandb_experiment_started(logger: Any) -> bool:
    """Whether the logger's W&B run exists (reading ``logger.experiment`` would start one)."""
    return logger._experiment is not None


def wandb_init_kwargs(logger: Any) -> dict[str, Any] | None:
    """The keyword arguments a ``WandbLogger`` will pass to ``wandb.init`` (``None`` for other loggers)."""
    from pytorch_lightning.loggers import WandbLogger

    return logger._wandb_init if isinstance(logger, WandbLogger) else None

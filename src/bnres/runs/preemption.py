"""Pre-emption: a signal ends a run at the next batch boundary, with a checkpoint saved there.

SIGTERM (a SLURM pre-emption, a ``kill``, a cluster shutting down) goes through Lightning's own graceful
stop: Lightning notes the signal and raises ``SIGTERMException`` after the current optimizer step, so
the saved state is a consistent one. Under submitit (``hydra/launcher=slurm`` or ``submitit_local``)
the time-limit signal (USR2, or ``$SUBMITIT_PREEMPT_SIGNAL``) is turned into the same stop; once the
run's record says ``preempted``, submitit's own handler gets the signal and requeues the job, which
resumes from ``checkpoints/last.ckpt``. Lightning's SLURM auto-requeue is off under submitit
(``runner._trainer_plugins``), so exactly one of them requeues.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.utilities.exceptions import SIGTERMException

from bnres import _lightning

log = logging.getLogger(__name__)


def checkpoint_dir(run_dir: str | Path) -> Path:
    """A job's checkpoint folder (``conf/callbacks/default.yaml`` writes ``best.ckpt`` and ``last.ckpt`` there)."""
    return Path(run_dir) / "checkpoints"


def last_checkpoint_path(run_dir: str | Path) -> Path:
    """A job's resumable checkpoint: rewritten at every epoch end, and written by :class:`Preemption` at a
    signal; a rerun of the job resumes from it (``runner.resume_checkpoint``)."""
    return checkpoint_dir(run_dir) / "last.ckpt"


def submitit_signal() -> signal.Signals | None:
    """The signal submitit sends before a time limit, when this process is a submitit job."""
    if not os.environ.get("SUBMITIT_EXECUTOR"):
        return None
    return getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"))


class Preemption(pl.Callback):
    """Saves ``checkpoint_path`` (atomically) when a signal stops training, and hands the signal on.

    ``checkpoint_path`` defaults to ``<trainer.default_root_dir>/checkpoints/last.ckpt`` (the job's
    folder), ``requeue_signal`` to submitit's time-limit signal when this process is a submitit job.
    The requeue signal is also turned into Lightning's graceful stop while training runs; after the
    stop, the handler that was installed for it before (submitit's requeue) runs — see ``hand_over``.
    """

    def __init__(
        self,
        checkpoint_path: str | Path | None = None,
        requeue_signal: signal.Signals | None = None,
        check_every_n_steps: int = 1,
    ) -> None:
        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path else None
        self.requeue_signal = requeue_signal if requeue_signal is not None else submitit_signal()
        self.check_every_n_steps = check_every_n_steps  # under DDP: how often the ranks agree on stopping
        self.signum: int | None = None  # the signal that stopped the run
        self._previous: dict[int, Any] = {}  # handlers replaced while training runs
        self._requeue_handler: Any = None  # the one the requeue signal had (submitit's), for hand_over
        self._collective = False

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.checkpoint_path is None:
            self.checkpoint_path = last_checkpoint_path(trainer.default_root_dir)

    # --- signals: only while training runs -----------------------------------------------------
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        # Under DDP, Lightning stops each rank at *its* next step; ranks signalled at different moments
        # (or only rank 0, by a `kill`) would stop at different steps and hang in the next collective.
        # There, a signal is only noted, and the ranks agree on the step to stop at (on_train_batch_end).
        self._collective = trainer.world_size > 1
        signums = [self.requeue_signal] if self.requeue_signal is not None else []
        if self._collective:
            signums.append(signal.SIGTERM)
        for signum in signums:
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._on_signal)
        if self.requeue_signal is not None:
            self._requeue_handler = self._previous[self.requeue_signal]

    def _on_signal(self, signum: int, frame: Any) -> None:
        log.warning("received %s: stopping after the current step to save a checkpoint", signal.Signals(signum).name)
        if self.signum is None:
            self.signum = signum
        if not self._collective:
            signal.raise_signal(signal.SIGTERM)  # Lightning's graceful stop, at the end of this step

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if not self._collective or trainer.global_step % self.check_every_n_steps != 0:
            return
        if trainer.strategy.reduce_boolean_decision(self.signum is not None, all=False):
            if self.signum is None:
                self.signum = signal.SIGTERM  # another rank was signalled
            # Lightning's own flag, set on every rank at this same step: each raises its graceful stop
            # at the end of this step (after the epoch's end, for an epoch's last step), all together
            _lightning.request_graceful_stop(trainer)

    def _uninstall(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._uninstall()

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._uninstall()

    # --- the stop ------------------------------------------------------------------------------
    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._uninstall()
        if not isinstance(exception, SIGTERMException):
            return
        if self.signum is None:
            self.signum = signal.SIGTERM
        if trainer.state.fn != "fit":
            return  # stopped while testing: the end-of-training checkpoint is the one to resume from
        if trainer.validating:
            # Lightning cannot resume part-way through a validation pass (it skips the rest of that
            # epoch's end): the epoch-end checkpoint before it is the one to resume from
            log.warning("stopped during validation: the rerun resumes from the last epoch-end checkpoint")
            return
        # temporary file + rename: a kill while writing leaves the previous last.ckpt intact
        assert self.checkpoint_path is not None  # set in setup
        partial = self.checkpoint_path.with_name(self.checkpoint_path.name + ".partial")
        trainer.save_checkpoint(partial)
        if trainer.is_global_zero:
            os.replace(partial, self.checkpoint_path)
        log.warning("saved %s at step %d", self.checkpoint_path, trainer.global_step)

    @property
    def stopped(self) -> bool:
        return self.signum is not None

    def describe(self, trainer: pl.Trainer) -> str:
        name = signal.Signals(self.signum).name if self.signum else "a signal"
        return f"stopped by {name} at step {trainer.global_step}; rerun the same command to resume from {self.checkpoint_path}"

    def hand_over(self) -> None:
        """After the record is written: give the signal to whoever was to handle it, then exit.

        submitit's handler requeues the job and exits itself; otherwise the process ends with the
        conventional status 128 + signal number (143 for SIGTERM), which also stops a sweep that
        runs in this process."""
        if self.signum is None:
            return
        if self.signum == self.requeue_signal and callable(self._requeue_handler):
            self._requeue_handler(self.signum, None)
        raise SystemExit(128 + int(self.signum))

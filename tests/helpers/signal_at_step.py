"""Test helper: the training process sends itself a signal at a chosen optimizer step.

Added to a run with ``+callbacks.test_signal._target_=signal_at_step.SignalAtStep`` (``tests/helpers`` on
``PYTHONPATH``). Only a run that starts from scratch signals: its resumed continuation does not, so a test
reruns the very same command. Makes "killed at step N" exact, whatever the speed of the machine.
"""

from __future__ import annotations

import os
import signal

import pytorch_lightning as pl


class SignalAtStep(pl.Callback):
    """At the end of training batch ``step`` (global step), or of the first validation batch after it."""

    def __init__(self, step: int, signum: str = "SIGKILL", during: str = "train", rank: int | None = None) -> None:
        self.step = step
        self.signum = getattr(signal, signum)
        self.during = during
        self.rank = rank  # only this global rank signals itself (None: every rank)

    def _maybe_signal(self, trainer) -> None:
        if self.rank is not None and trainer.global_rank != self.rank:
            return
        if trainer.ckpt_path is None and trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.during == "train":
            self._maybe_signal(trainer)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self.during == "validation" and batch_idx == 0 and not trainer.sanity_checking:
            self._maybe_signal(trainer)

"""Test helper: a training job that raises at a chosen optimizer step — a real failure inside ``fit``.

Added with ``+callbacks.fail._target_=fail_at_step.FailAtStep +callbacks.fail.step=N`` (``tests/helpers`` on
``PYTHONPATH``); ``step=-1`` never fails, so one sweep can hold failing and healthy jobs.
"""

from __future__ import annotations

import pytorch_lightning as pl


class FailAtStep(pl.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: pl.Trainer, *args, **kwargs) -> None:
        if trainer.global_step == self.step:
            raise RuntimeError(f"planted failure at step {self.step}")

"""Callbacks every run uses: divergence detection and the per-epoch history behind ``result.json``."""

from __future__ import annotations

import math
import time
from typing import Any

import pytorch_lightning as pl
import torch


class DivergenceMonitor(pl.Callback):
    """Stop a run whose training loss goes non-finite or exceeds ``loss_factor`` × its first loss.

    Diverging is a result, not a crash: the run stops cleanly and is recorded ``diverged``.
    The worst loss is tracked on the device and read back every ``check_every_n_steps`` steps,
    so the check costs no host sync on the other steps.
    """

    def __init__(self, loss_factor: float = 10.0, check_every_n_steps: int = 1) -> None:
        if loss_factor <= 1:
            raise ValueError(f"divergence.loss_factor={loss_factor} must be > 1")
        if check_every_n_steps < 1:
            raise ValueError(f"divergence.check_every_n_steps={check_every_n_steps} must be >= 1")
        self.loss_factor = loss_factor
        self.check_every_n_steps = check_every_n_steps
        self.initial_loss: float | None = None
        self.diverged_at_step: int | None = None
        self.reason: str | None = None
        self._worst: torch.Tensor | None = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        loss = loss.detach().float()
        # torch.maximum propagates NaN, so a NaN anywhere in the window is seen at the check
        self._worst = loss if self._worst is None else torch.maximum(self._worst, loss)
        if self.initial_loss is None:
            self.initial_loss = float(loss)
        step = trainer.global_step
        if step % self.check_every_n_steps != 0:
            return
        worst = float(self._worst)
        self._worst = None
        reason = None
        if not math.isfinite(worst):
            reason = f"training loss became {worst} by step {step}"
        elif self.initial_loss > 0 and worst > self.loss_factor * self.initial_loss:
            reason = f"training loss {worst:.4g} exceeded {self.loss_factor:g} x initial loss {self.initial_loss:.4g} by step {step}"
        # every rank checks at the same steps; under DDP one diverging rank stops them all
        if trainer.strategy.reduce_boolean_decision(reason is not None, all=False):
            self.diverged_at_step = step
            self.reason = reason or "another rank diverged"
            trainer.should_stop = True

    @property
    def diverged(self) -> bool:
        return self.diverged_at_step is not None

    def state_dict(self) -> dict[str, Any]:
        return {"initial_loss": self.initial_loss, "diverged_at_step": self.diverged_at_step, "reason": self.reason}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.initial_loss = state_dict.get("initial_loss")
        self.diverged_at_step = state_dict.get("diverged_at_step")
        self.reason = state_dict.get("reason")


def _to_float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


# the epoch-level metrics kept in the history (and therefore in result.json)
HISTORY_KEYS = ("train/loss", "train/acc", "val/loss", "val/acc")


class HistoryRecorder(pl.Callback):
    """Keeps per-epoch metrics and measures training throughput (images/s, validation excluded).

    Epoch 0 is warm-up (allocator, caches, compilation) and is left out of the throughput
    whenever later epochs exist.
    """

    def __init__(self) -> None:
        self.history: list[dict[str, Any]] = []
        self._epoch_images = 0
        self._epoch_start = 0.0
        self._val_time = 0.0
        self._val_start = 0.0
        self._throughput: list[tuple[int, float]] = []  # (images, seconds) per epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._epoch_images = 0
        self._val_time = 0.0
        self._epoch_start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._epoch_images += len(batch[1]) * trainer.world_size

    def on_validation_start(self, trainer, pl_module) -> None:
        self._val_start = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.state.fn == "fit":
            self._val_time += time.perf_counter() - self._val_start

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        seconds = time.perf_counter() - self._epoch_start - self._val_time
        self._throughput.append((self._epoch_images, seconds))
        metrics = trainer.callback_metrics
        row: dict[str, Any] = {"epoch": trainer.current_epoch, "step": trainer.global_step}
        for key in HISTORY_KEYS:
            if key in metrics:
                row[key] = _to_float(metrics[key])
        optimizers = trainer.optimizers
        if optimizers:
            row["lr"] = _to_float(optimizers[0].param_groups[0]["lr"])
        self.history.append(row)

    def train_images_per_s(self) -> float | None:
        samples = self._throughput[1:] if len(self._throughput) > 1 else self._throughput
        images = sum(n for n, _ in samples)
        seconds = sum(s for _, s in samples)
        return images / seconds if seconds > 0 and images > 0 else None

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))

"""Callbacks every run uses: divergence detection and the per-epoch history behind ``result.json``."""

from __future__ import annotations

import math
import time
from collections import deque
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import TQDMProgressBar


def divergence_reason(worst: float, initial_loss: float, loss_factor: float, step: int) -> str | None:
    """Why a run has diverged by ``step`` (its worst training loss since the last check is ``worst``),
    or None: the loss is non-finite, or above ``loss_factor`` x the run's first loss."""
    if not math.isfinite(worst):
        return f"training loss became {worst} by step {step}"
    if initial_loss > 0 and worst > loss_factor * initial_loss:
        return f"training loss {worst:.4g} exceeded {loss_factor:g} x initial loss {initial_loss:.4g} by step {step}"
    return None


class DivergenceMonitor(pl.Callback):
    """Stop a run whose training loss goes non-finite or exceeds ``loss_factor`` × its first loss.

    Diverging is a result, not a crash: the run stops cleanly and is recorded ``diverged``.
    The worst loss is tracked on the device (every step counts: a NaN anywhere in a window is seen)
    and read back every ``check_every_n_steps`` steps. On a single CUDA device the read-back is a
    non-blocking copy whose result is looked at once it has landed, a step or two later, so the check
    never makes the host wait for the GPU; the step reported is the one whose window went bad. Under
    DDP every rank checks at the same steps, at most every ``ddp_check_every_n_steps``: each rank turns
    its window into a bad/good flag on the device, one all-reduce sums the flags, and one read brings
    the sum back (a check is a collective, so it blocks; spacing the checks keeps that off most steps).
    """

    def __init__(self, loss_factor: float = 10.0, check_every_n_steps: int = 1, ddp_check_every_n_steps: int = 50) -> None:
        if loss_factor <= 1:
            raise ValueError(f"divergence.loss_factor={loss_factor} must be > 1")
        if check_every_n_steps < 1:
            raise ValueError(f"divergence.check_every_n_steps={check_every_n_steps} must be >= 1")
        if ddp_check_every_n_steps < 1:
            raise ValueError(f"divergence.ddp_check_every_n_steps={ddp_check_every_n_steps} must be >= 1")
        self.loss_factor = loss_factor
        self.check_every_n_steps = check_every_n_steps
        self.ddp_check_every_n_steps = ddp_check_every_n_steps
        self.initial_loss: float | None = None
        self.diverged_at_step: int | None = None
        self.reason: str | None = None
        self._worst: torch.Tensor | None = None
        # CUDA, one process: (step, event, host copy of the window's worst loss) not yet looked at
        self._in_flight: deque[tuple[int, Any, torch.Tensor]] = deque()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        loss = loss.detach().float()
        # torch.maximum propagates NaN, so a NaN anywhere in the window is seen at the check
        self._worst = loss if self._worst is None else torch.maximum(self._worst, loss)
        if self.initial_loss is None:
            self.initial_loss = float(loss)  # once per run
        step = trainer.global_step
        asynchronous = loss.is_cuda and trainer.world_size == 1
        if asynchronous:
            self._poll(trainer, wait=False)
        distributed = trainer.world_size > 1
        every = max(self.check_every_n_steps, self.ddp_check_every_n_steps) if distributed else self.check_every_n_steps
        if step % every != 0 or self.diverged:
            return
        worst, self._worst = self._worst, None
        if distributed:
            self._decide_together(trainer, step, worst)
        elif asynchronous:
            event = torch.cuda.Event()
            host = worst.to("cpu", non_blocking=True)  # pinned: returns at once
            event.record()
            self._in_flight.append((step, event, host))
        else:
            self._decide(trainer, step, float(worst))

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._poll(trainer, wait=True)  # nothing left unchecked at an epoch's end

    def on_train_end(self, trainer, pl_module) -> None:
        self._poll(trainer, wait=True)

    def _poll(self, trainer, wait: bool) -> None:
        while self._in_flight and not self.diverged:
            step, event, host = self._in_flight[0]
            if not wait and not event.query():
                return
            event.synchronize()
            self._in_flight.popleft()
            self._decide(trainer, step, float(host))
        self._in_flight.clear()  # diverged: later windows do not matter

    def _decide_together(self, trainer, step: int, worst: torch.Tensor) -> None:
        """DDP: one all-reduce of the ranks' bad flags and one read of its sum; a rank reads its own
        loss only to word the reason, when the run has diverged."""
        bad = ~torch.isfinite(worst)
        if self.initial_loss > 0:
            bad = bad | (worst > self.loss_factor * self.initial_loss)
        ranks_bad = float(trainer.strategy.reduce(bad.float(), reduce_op="sum"))
        if ranks_bad > 0:
            self.diverged_at_step = step
            self.reason = divergence_reason(float(worst), self.initial_loss, self.loss_factor, step) or "another rank diverged"
            trainer.should_stop = True

    def _decide(self, trainer, step: int, worst: float) -> None:
        reason = divergence_reason(worst, self.initial_loss, self.loss_factor, step)
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


class ProgressBar(TQDMProgressBar):
    """Lightning's TQDM bar, redrawn at most every ``min_interval_s`` seconds, also showing step-level
    values that are not logged with ``prog_bar=True``.

    Lightning redraws every ``refresh_rate`` batches however fast they go: for a small network that
    is many redraws a second, each a terminal write (and, under W&B, a captured console record) that
    nobody can read. Here a redraw also waits until ``min_interval_s`` has passed since the last one
    (the last batch of a loop is always drawn), so a fast run redraws a few times a second and a slow
    one at every ``refresh_rate`` batches.

    Lightning turns every ``prog_bar=True`` step value into a Python number after every step (a host
    sync on a GPU), whether or not the bar is redrawn. The module logs ``train/loss_step`` without
    ``prog_bar``; this bar reads it only when it redraws.
    """

    def __init__(
        self,
        refresh_rate: int = 1,
        min_interval_s: float = 0.25,
        process_position: int = 0,
        leave: bool = False,
        step_metrics: tuple[str, ...] | list[str] = ("train/loss_step",),
    ) -> None:
        if min_interval_s < 0:
            raise ValueError(f"callbacks.progress_bar.min_interval_s={min_interval_s} must be >= 0")
        super().__init__(refresh_rate=refresh_rate, process_position=process_position, leave=leave)
        self.min_interval_s = float(min_interval_s)
        self.step_metrics = tuple(step_metrics)
        self._last_redraw = -math.inf

    def _should_update(self, current: int, total: int) -> bool:  # Lightning's private hook: bnres._lightning
        # Lightning's test (enabled, every refresh_rate batches or the last), then the clock's
        if not super()._should_update(current, total):
            return False
        now = time.monotonic()
        if current != total and now - self._last_redraw < self.min_interval_s:
            return False
        self._last_redraw = now
        return True

    def get_metrics(self, trainer, pl_module) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        if not self.step_metrics:
            return items
        metrics = trainer.callback_metrics
        for key in self.step_metrics:
            value = metrics.get(key)
            if value is not None and key not in items:
                items[key] = value.item() if isinstance(value, torch.Tensor) else value
        return items


def _to_float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


# the epoch-level metrics kept in the history (and therefore in result.json)
HISTORY_KEYS = ("train/loss", "train/acc", "val/loss", "val/acc")


def _clock(pl_module: pl.LightningModule) -> float:
    """``perf_counter`` once the module's device has finished its queued work: without the wait, GPU work
    queued in training would be timed as validation (and subtracted). Called at epoch and validation
    boundaries only, never inside a training step."""
    if pl_module.device.type == "cuda":
        torch.cuda.synchronize(pl_module.device)
    return time.perf_counter()


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

    def on_train_start(self, trainer, pl_module) -> None:
        # a run resumed part-way through an epoch starts timing here (no on_train_epoch_start then)
        self.on_train_epoch_start(trainer, pl_module)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._epoch_images = 0
        self._val_time = 0.0
        self._epoch_start = _clock(pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._epoch_images += len(batch[1]) * trainer.world_size

    def on_validation_start(self, trainer, pl_module) -> None:
        self._val_start = _clock(pl_module)

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.state.fn == "fit":
            self._val_time += _clock(pl_module) - self._val_start

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        seconds = _clock(pl_module) - self._epoch_start - self._val_time
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


class ConfigFingerprint(pl.Callback):
    """Stamps every checkpoint with the run's config fingerprint (``bnres.runs.binding``), so a run resumes only
    from a checkpoint of its own config."""

    KEY = "bnres_config_fingerprint"

    def __init__(self, fingerprint: str) -> None:
        self.fingerprint = fingerprint

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint[self.KEY] = self.fingerprint

"""Counting host syncs in training steps: what makes a GPU wait for Python.

:class:`HostSyncCounter` watches from the second training step of each epoch to the start of
validation (or the epoch's end) and records

* every tensor → Python conversion (``item``, ``tolist``, ``float()``, ``int()``, ``bool()``): on a GPU
  each one waits for the device (on CPU it is the same call, so a CPU run finds them too);
* on CUDA, every synchronizing CUDA call, as ``torch.cuda.set_sync_debug_mode("warn")`` flags it
  (e.g. a blocking copy from pageable memory, ``nonzero``): syncs that never reach Python.

Used by ``tests/test_fast_path.py`` (on CPU, added to the trainer) and ``scripts/gpu_check.py`` (on the
GPU, through the run's config, so a real ``scripts/train.py`` run is watched)::

    python scripts/train.py ... +callbacks.host_sync._target_=bnres.training.host_sync.HostSyncCounter \\
        +callbacks.host_sync.path=host_syncs.json
"""

from __future__ import annotations

import json
import re
import traceback
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

# the tensor methods through which a value reaches Python
READ_METHODS = ("item", "tolist", "__float__", "__int__", "__bool__")
# what torch warns with for a synchronizing CUDA call in sync-debug "warn" mode
_CUDA_SYNC_MESSAGE = re.compile(r"synchroniz", re.IGNORECASE)


class HostSyncCounter(pl.Callback):
    """Records host reads (and, on CUDA, synchronizing CUDA calls) inside training steps.

    ``reads`` and ``cuda_syncs`` hold one short stack trace per event; ``steps_watched`` counts the
    steps inside the window. With ``path`` a JSON summary is written there when training ends
    (rank 0 only)."""

    def __init__(self, path: str | None = None, keep_traces: int = 20) -> None:
        self.path = path
        self.keep_traces = keep_traces
        self.active = False
        self.reads: list[str] = []
        self.cuda_syncs: list[str] = []
        self.steps_watched = 0
        self.on_cuda = False
        self._saved: dict[str, Any] = {}
        self._warnings: warnings.catch_warnings | None = None  # the warning filters and display as they were
        self._saved_sync_mode: int | None = None

    # --- watching -------------------------------------------------------------------------
    def _set_active(self, active: bool) -> None:
        if active == self.active:
            return
        self.active = active
        if self.on_cuda:  # flag synchronizing CUDA calls inside the window only
            torch.cuda.set_sync_debug_mode("warn" if active else (self._saved_sync_mode or 0))

    def _patch(self) -> None:
        for name in READ_METHODS:
            original = getattr(torch.Tensor, name)
            self._saved[name] = torch.Tensor.__dict__.get(name)  # None: inherited from the C base class

            def wrapper(tensor, *args, _name=name, _original=original, **kwargs):
                if self.active:
                    self.reads.append(f"{_name}: " + "".join(traceback.format_stack(limit=6)[:-1]))
                return _original(tensor, *args, **kwargs)

            setattr(torch.Tensor, name, wrapper)
        if self.on_cuda:
            self._saved_sync_mode = torch.cuda.get_sync_debug_mode()
            self._warnings = warnings.catch_warnings()
            self._warnings.__enter__()
            # every occurrence, not once per code location
            warnings.filterwarnings("always", message=".*synchroniz", category=UserWarning)
            original_show = warnings.showwarning

            def show(message, category, filename, lineno, file=None, line=None):
                if self.active and _CUDA_SYNC_MESSAGE.search(str(message)):
                    self.cuda_syncs.append(f"{message}: " + "".join(traceback.format_stack(limit=8)[:-1]))
                    return
                original_show(message, category, filename, lineno, file, line)

            warnings.showwarning = show

    def unpatch(self) -> None:
        self._set_active(False)
        for name, original in self._saved.items():
            if original is None:
                delattr(torch.Tensor, name)
            else:
                setattr(torch.Tensor, name, original)
        self._saved.clear()
        if self._warnings is not None:
            self._warnings.__exit__(None, None, None)
            self._warnings = None

    # --- Lightning hooks ------------------------------------------------------------------
    def on_train_start(self, trainer, pl_module) -> None:
        self.on_cuda = pl_module.device.type == "cuda"
        self._patch()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        # the first step of an epoch may set things up; a mechanism probe's steps read their numbers back
        self._set_active(batch_idx >= 1 and not measuring_step(trainer, trainer.global_step))
        self.steps_watched += int(self.active)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if measuring_step(trainer, trainer.global_step):  # the next step is a probe step: it reads (once)
            self._set_active(False)

    def on_validation_start(self, trainer, pl_module) -> None:
        self._set_active(False)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._set_active(False)

    def on_train_end(self, trainer, pl_module) -> None:
        self.unpatch()
        if self.path and trainer.is_global_zero:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            Path(self.path).write_text(json.dumps(self.summary(), indent=2))

    def on_exception(self, trainer, pl_module, exception) -> None:
        self.unpatch()

    def summary(self) -> dict[str, Any]:
        return {
            "steps_watched": self.steps_watched,
            "python_reads": len(self.reads),
            "cuda_syncs": len(self.cuda_syncs) if self.on_cuda else None,  # None: not on CUDA, not counted
            "device": "cuda" if self.on_cuda else "cpu",
            "first_python_reads": self.reads[: self.keep_traces],
            "first_cuda_syncs": self.cuda_syncs[: self.keep_traces],
        }


def measuring_step(trainer, step: int) -> bool:
    """Whether a callback with a ``cadence`` (the mechanism probes, ``bnres.training.probes``) measures at ``step``:
    those steps read their numbers back, once."""
    return any(c.cadence.due(step) for c in trainer.callbacks if hasattr(c, "cadence"))

"""Learning-rate schedules, stepped once per optimizer step, with optional linear warm-up.

Each factory takes the optimizer and the run's total number of steps (known only once the
trainer is attached), so milestones can be given as fractions of training, as in He et al.
(lr ÷10 at 50% and 75%).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch.optim.lr_scheduler import LambdaLR

SCHEDULES = ("constant", "multistep", "cosine")


def _warmup_factor(step: int, warmup_steps: int) -> float:
    return min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0


def _resolve_warmup(total_steps: int, warmup_fraction: float, warmup_steps: int | None) -> int:
    if not 0.0 <= warmup_fraction < 1.0:
        raise ValueError(f"scheduler.warmup_fraction={warmup_fraction} must be in [0, 1)")
    return int(warmup_steps) if warmup_steps is not None else int(round(warmup_fraction * total_steps))


def constant(optimizer: torch.optim.Optimizer, total_steps: int = 1, warmup_fraction: float = 0.0, warmup_steps: int | None = None) -> LambdaLR:
    warm = _resolve_warmup(total_steps, warmup_fraction, warmup_steps)
    return LambdaLR(optimizer, lambda step: _warmup_factor(step, warm))


def multistep(
    optimizer: torch.optim.Optimizer,
    total_steps: int = 1,
    milestones: Sequence[float] = (0.5, 0.75),
    gamma: float = 0.1,
    warmup_fraction: float = 0.0,
    warmup_steps: int | None = None,
) -> LambdaLR:
    """Multiply the lr by ``gamma`` at each milestone; milestones < 1 are fractions of training, others step counts."""
    warm = _resolve_warmup(total_steps, warmup_fraction, warmup_steps)
    points = sorted(int(m * total_steps) if m < 1 else int(m) for m in milestones)

    def factor(step: int) -> float:
        return _warmup_factor(step, warm) * gamma ** sum(step >= p for p in points)

    return LambdaLR(optimizer, factor)


def cosine(
    optimizer: torch.optim.Optimizer,
    total_steps: int = 1,
    min_factor: float = 0.0,
    warmup_fraction: float = 0.0,
    warmup_steps: int | None = None,
) -> LambdaLR:
    """Cosine decay from the base lr to ``min_factor`` × base lr over the steps after warm-up."""
    warm = _resolve_warmup(total_steps, warmup_fraction, warmup_steps)

    def factor(step: int) -> float:
        if step < warm:
            return _warmup_factor(step, warm)
        progress = min(1.0, (step - warm) / max(1, total_steps - warm))
        return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)

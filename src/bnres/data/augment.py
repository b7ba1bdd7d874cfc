"""Batch augmentation on tensors, on whatever device the batch lives (airbench style: no workers)."""

from __future__ import annotations

import torch


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Move a small CPU tensor (random draws) to ``device`` without making the host wait.

    A plain ``.to("cuda")`` from pageable memory synchronizes the stream: the host would wait for
    the previous training step at every batch. Through pinned memory the copy is queued instead.
    The draws themselves stay on the CPU generator, so batches are the same on every device."""
    if device.type == "cuda" and t.device.type == "cpu":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def crop_shifts(n: int, padding: int, generator: torch.Generator) -> torch.Tensor:
    """The random draws of ``random_crop`` for ``n`` images: (2, n) row and column offsets."""
    return torch.randint(0, 2 * padding + 1, (2, n), generator=generator)


def flip_draws(n: int, generator: torch.Generator) -> torch.Tensor:
    """The random draws of ``random_flip`` for ``n`` images: which to flip."""
    return torch.rand(n, generator=generator) < 0.5


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Zero-pad by ``padding`` and crop back to the original size at a random offset per image."""
    if padding <= 0:
        return x
    n, c, h, w = x.shape
    shifts = to_device(crop_shifts(n, padding, generator), x.device)
    padded = torch.nn.functional.pad(x, (padding, padding, padding, padding))
    rows = shifts[0][:, None] + torch.arange(h, device=x.device)[None, :]  # (n, h)
    cols = shifts[1][:, None] + torch.arange(w, device=x.device)[None, :]  # (n, w)
    batch_idx = torch.arange(n, device=x.device)[:, None, None, None]
    chan_idx = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch_idx, chan_idx, rows[:, None, :, None], cols[:, None, None, :]]


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Flip each image horizontally with probability 1/2."""
    flip = to_device(flip_draws(x.shape[0], generator), x.device)
    return torch.where(flip[:, None, None, None], x.flip(3), x)

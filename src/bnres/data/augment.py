"""Batch augmentation on tensors, on whatever device the batch lives (airbench style: no workers)."""

from __future__ import annotations

import torch


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Zero-pad by ``padding`` and crop back to the original size at a random offset per image."""
    if padding <= 0:
        return x
    n, c, h, w = x.shape
    shifts = torch.randint(0, 2 * padding + 1, (2, n), generator=generator).to(x.device)
    padded = torch.nn.functional.pad(x, (padding, padding, padding, padding))
    rows = shifts[0][:, None] + torch.arange(h, device=x.device)[None, :]  # (n, h)
    cols = shifts[1][:, None] + torch.arange(w, device=x.device)[None, :]  # (n, w)
    batch_idx = torch.arange(n, device=x.device)[:, None, None, None]
    chan_idx = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch_idx, chan_idx, rows[:, None, :, None], cols[:, None, None, :]]


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Flip each image horizontally with probability 1/2."""
    flip = (torch.rand(x.shape[0], generator=generator) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(3), x)

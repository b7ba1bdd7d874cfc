"""A batch iterator over tensors held in memory (or on the GPU).

Replaces ``DataLoader`` for data sets that fit in memory: no worker processes, no per-sample
Python, batches are slices of one tensor. Under DDP every rank draws the same permutation
(same seed and epoch) and takes its own strided share, so ranks never overlap.
"""

from __future__ import annotations

from typing import Callable, Iterator

import torch

from bnres.data.augment import random_crop, random_flip


class TensorBatchLoader:
    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        epoch_fn: Callable[[], int] | None = None,
        crop_padding: int = 0,
        flip: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.images, self.labels = images, labels
        self.batch_size = batch_size
        self.shuffle, self.drop_last = shuffle, drop_last
        self.seed = seed
        self.epoch_fn = epoch_fn or (lambda: 0)
        self.crop_padding, self.flip = crop_padding, flip
        self.rank, self.world_size = rank, world_size

    def _num_local_samples(self) -> int:
        # Every rank gets the same number of samples (the tail is dropped) so collectives stay in step.
        return len(self.labels) // self.world_size

    def __len__(self) -> int:
        n = self._num_local_samples()
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # Seeded by (seed, epoch): a resumed run sees the same batches as an uninterrupted one.
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch_fn())
        total = len(self.labels)
        order = torch.randperm(total, generator=generator) if self.shuffle else torch.arange(total)
        local = order[self.rank : self._num_local_samples() * self.world_size : self.world_size]
        local = local.to(self.labels.device)
        for i in range(len(self)):
            idx = local[i * self.batch_size : (i + 1) * self.batch_size]
            x, y = self.images[idx], self.labels[idx]
            if self.crop_padding:
                x = random_crop(x, self.crop_padding, generator)
            if self.flip:
                x = random_flip(x, generator)
            yield x, y

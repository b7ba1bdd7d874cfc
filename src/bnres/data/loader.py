"""A batch iterator over tensors held in memory (or on the GPU).

Replaces ``DataLoader`` for data sets that fit in memory: no worker processes, no per-sample
Python, batches are slices of one tensor. Under DDP every rank draws the same permutation
(same seed and epoch) and takes its own strided share, so ranks never overlap.

Resumable mid-epoch (Lightning's ``state_dict``/``load_state_dict`` loader protocol): a checkpoint
saved part-way through an epoch records how many batches of it were trained, and the resumed run
continues with the very next batch of the same permutation and the same augmentation draws.
"""

from __future__ import annotations

from typing import Callable, Iterator

import torch

from bnres.data.augment import crop_shifts, flip_draws, random_crop, random_flip


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
        progress_fn: Callable[[], int] | None = None,
    ) -> None:
        self.images, self.labels = images, labels
        self.batch_size = batch_size
        self.shuffle, self.drop_last = shuffle, drop_last
        self.seed = seed
        self.epoch_fn = epoch_fn or (lambda: 0)
        self.crop_padding, self.flip = crop_padding, flip
        self.rank, self.world_size = rank, world_size
        # batches of the current epoch already trained: the trainer's count, not this loader's, since
        # Lightning fetches a batch ahead of the one it trains
        self.progress_fn = progress_fn or (lambda: 0)
        self._resume_at: tuple[int, int] | None = None  # (epoch, batches to skip) after load_state_dict
        self._iter_epoch: int | None = None  # the epoch of the latest pass (the trainer's may have moved on)

    def _num_local_samples(self) -> int:
        # Every rank gets the same number of samples (the tail is dropped) so collectives stay in step.
        return len(self.labels) // self.world_size

    def __len__(self) -> int:
        n = self._num_local_samples()
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # Seeded by (seed, epoch): a resumed run sees the same batches as an uninterrupted one.
        epoch = self._iter_epoch = self.epoch_fn()
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        total = len(self.labels)
        order = torch.randperm(total, generator=generator) if self.shuffle else torch.arange(total)
        local = order[self.rank : self._num_local_samples() * self.world_size : self.world_size]
        local = local.to(self.labels.device)
        skip = self._batches_to_skip(epoch)
        for i in range(len(self)):
            idx = local[i * self.batch_size : (i + 1) * self.batch_size]
            if i < skip:  # trained before the checkpoint: advance the augmentation draws only
                self._skip_draws(len(idx), generator)
                continue
            x, y = self.images[idx], self.labels[idx]
            if self.crop_padding:
                x = random_crop(x, self.crop_padding, generator)
            if self.flip:
                x = random_flip(x, generator)
            yield x, y

    def _batches_to_skip(self, epoch: int) -> int:
        resume_at, self._resume_at = self._resume_at, None
        if resume_at is None or resume_at[0] != epoch:
            return 0
        return resume_at[1]

    def _skip_draws(self, n: int, generator: torch.Generator) -> None:
        if self.crop_padding:
            crop_shifts(n, self.crop_padding, generator)
        if self.flip:
            flip_draws(n, generator)

    def state_dict(self) -> dict[str, int]:
        # The epoch of the latest pass, not the trainer's: a checkpoint taken after an epoch ended but
        # before the next began holds that epoch, fully done, and the resumed run starts the next one.
        if self._iter_epoch is None:
            return {"epoch": self.epoch_fn(), "batches_done": 0}
        return {"epoch": self._iter_epoch, "batches_done": self.progress_fn()}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self._resume_at = (int(state_dict["epoch"]), int(state_dict["batches_done"]))

"""In-memory image-classification data modules.

Every data set here fits in memory, so each module loads its tensors once in ``setup``,
standardizes them with training-split statistics, optionally pads them to ``image_size``,
and (by default) moves them to the training device. Batches are tensor slices; augmentation
runs on the batch, on the device.
"""

from __future__ import annotations

from typing import Any, Callable

import pytorch_lightning as pl
import torch

from bnres import _lightning
from bnres.data.loader import TensorBatchLoader


class InMemoryDataModule(pl.LightningDataModule):
    """Base class: subclasses implement :meth:`load` returning float/uint8 image tensors and labels."""

    #: fixed properties of the data set, overridden by subclasses
    name: str = "base"
    native_channels: int = 1
    native_size: int = 28
    native_classes: int = 10

    def __init__(
        self,
        name: str | None = None,
        batch_size: int = 128,
        eval_batch_size: int = 1000,
        val_size: int = 1000,
        image_size: int | None = None,
        in_channels: int | None = None,
        num_classes: int | None = None,
        split_seed: int = 0,
        augment: bool = False,
        crop_padding: int = 4,
        flip: bool = True,
        on_device: bool = True,
        shuffle_seed: int = 0,
    ) -> None:
        super().__init__()
        if name is not None and name != self.name:
            raise ValueError(f"data.name={name!r} does not match {type(self).__name__}, which loads {self.name!r}")
        if batch_size <= 0:
            raise ValueError(f"data.batch_size={batch_size} must be a positive integer")
        if eval_batch_size <= 0:
            raise ValueError(f"data.eval_batch_size={eval_batch_size} must be a positive integer")
        if val_size < 0:
            raise ValueError(f"data.val_size={val_size} must be >= 0")
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.val_size = val_size
        self.image_size = image_size or self.native_size
        if self.image_size < self.native_size:
            raise ValueError(
                f"data.image_size={self.image_size} is smaller than {self.name}'s {self.native_size}x{self.native_size} images "
                f"(images are zero-padded up, never cropped down)"
            )
        for key, given, native in (("in_channels", in_channels, self.native_channels), ("num_classes", num_classes, self.native_classes)):
            if given is not None and given != native:
                raise ValueError(f"data.{key}={given} does not match {self.name}, which has {native}")
        self.in_channels = self.native_channels
        self.num_classes = self.native_classes
        self.split_seed = split_seed
        self.augment = augment
        self.crop_padding = crop_padding
        self.flip = flip
        self.on_device = on_device
        self.shuffle_seed = shuffle_seed
        self.splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._train_position: dict[str, int] | None = None  # from a mid-epoch checkpoint, for the next train loader
        self._train_loader: TensorBatchLoader | None = None

    # --- to implement -------------------------------------------------------------
    def load(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Return {"train": (x, y), "test": (x, y)} (x: N×C×H×W, any numeric dtype; y: int64).

        A "val" entry is optional; without it ``val_size`` images are split off "train"."""
        raise NotImplementedError

    def verify(self) -> None:
        """Check, cheaply and before any work, that the data can be loaded; raise a one-line error if not."""

    def source_train_count(self) -> int | None:
        """Images in the source's training set, before the validation split (None: not known before loading)."""
        return None

    def train_count(self) -> int | None:
        """Training images after the validation split, known without loading anything (None: unknown)."""
        total = self.source_train_count()
        return None if total is None else total - self.val_size

    # --- Lightning hooks ----------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        raw = self.load()
        train_x, train_y = raw["train"]
        if "val" in raw:
            val_x, val_y = raw["val"]
        else:
            if not 0 < self.val_size < len(train_y):
                raise ValueError(f"data.val_size={self.val_size} must be between 1 and {len(train_y) - 1} for {self.name}")
            # fixed split seed: every run (and every DDP rank) sees the same split, whatever its training seed
            order = torch.randperm(len(train_y), generator=torch.Generator().manual_seed(self.split_seed))
            val_idx, train_idx = order[: self.val_size], order[self.val_size :]
            val_x, val_y = train_x[val_idx], train_y[val_idx]
            train_x, train_y = train_x[train_idx], train_y[train_idx]
        train_x = train_x.float()
        # standardize per channel with the training split's statistics
        mean = train_x.mean(dim=(0, 2, 3), keepdim=True)
        std = train_x.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-8)
        device = self._device()
        for split, (x, y) in (("train", (train_x, train_y)), ("val", (val_x, val_y)), ("test", raw["test"])):
            x = (x.float() - mean) / std
            x = self._pad_to_size(x)
            self.splits[split] = (x.contiguous().to(device), y.long().to(device))

    def _device(self) -> torch.device:
        if self.on_device and self.trainer is not None:
            return self.trainer.strategy.root_device
        return torch.device("cpu")

    def _pad_to_size(self, x: torch.Tensor) -> torch.Tensor:
        extra = self.image_size - x.shape[-1]
        if extra == 0:
            return x
        before = extra // 2
        # zero after standardization = padding with the mean image value
        return torch.nn.functional.pad(x, (before, extra - before, before, extra - before))

    def _rank_and_world(self) -> tuple[int, int]:
        if self.trainer is None:
            return 0, 1
        return self.trainer.global_rank, self.trainer.world_size

    def _epoch(self) -> int:
        return self.trainer.current_epoch if self.trainer is not None else 0

    def _batches_done(self) -> int:
        if self.trainer is None:
            return 0
        return _lightning.batches_done(self.trainer)

    def loader(self, split: str, epoch_fn: Callable[[], int] | None = None) -> TensorBatchLoader:
        """The batches of ``split`` as the trainer gets them ("train": shuffled per epoch and augmented;
        "val"/"test": in order), for a loop outside Lightning, which says the epoch through ``epoch_fn``."""
        return self._loader(split, train=split == "train", epoch_fn=epoch_fn)

    def _loader(self, split: str, train: bool, epoch_fn: Callable[[], int] | None = None) -> TensorBatchLoader:
        if split not in self.splits:
            self.setup()
        x, y = self.splits[split]
        rank, world = self._rank_and_world()
        return TensorBatchLoader(
            x,
            y,
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=train,
            drop_last=train,
            seed=self.shuffle_seed,
            epoch_fn=epoch_fn or self._epoch,
            progress_fn=self._batches_done,
            crop_padding=self.crop_padding if (train and self.augment) else 0,
            flip=self.flip and train and self.augment,
            rank=rank,
            world_size=world,
        )

    def train_dataloader(self) -> TensorBatchLoader:
        loader = self._loader("train", train=True)
        if self._train_position is not None:
            loader.load_state_dict(self._train_position)
            self._train_position = None
        self._train_loader = loader
        return loader

    # Where training stands in the current epoch, saved in every checkpoint. Lightning hands a stateful
    # loader its state only if the loader was built after the restore; Classifier.configure_optimizers
    # builds it earlier (estimated_stepping_batches), so the data module carries the position across.
    def state_dict(self) -> dict[str, Any]:
        return {"train_position": self._train_loader.state_dict()} if self._train_loader is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._train_position = state_dict.get("train_position")

    def val_dataloader(self) -> TensorBatchLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> TensorBatchLoader:
        return self._loader("test", train=False)

    def predict_dataloader(self) -> TensorBatchLoader:
        return self._loader("test", train=False)

    def describe(self) -> dict[str, Any]:
        return {name: len(y) for name, (_, y) in self.splits.items()}

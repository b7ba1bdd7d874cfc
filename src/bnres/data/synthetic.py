"""Generated images with a learnable labelling, for smoke tests and benchmarks (no files needed)."""

from __future__ import annotations

import torch

from bnres.data.base import InMemoryDataModule


class SyntheticDataModule(InMemoryDataModule):
    """Gaussian images; the label is the arg-max of a fixed random linear map of a blurred copy,
    so networks can learn it (loss falls) while shapes and sizes match any real data set."""

    name = "synthetic"

    def __init__(self, num_samples: int = 2048, in_channels: int = 3, image_size: int = 32, num_classes: int = 10, val_size: int = 256, test_size: int = 256, **kwargs) -> None:
        for key, value in (("num_samples", num_samples), ("in_channels", in_channels), ("image_size", image_size), ("num_classes", num_classes)):
            if value <= 0:
                raise ValueError(f"data.{key}={value} must be a positive integer")
        self.native_channels, self.native_size, self.native_classes = in_channels, image_size, num_classes
        super().__init__(val_size=val_size, image_size=image_size, in_channels=in_channels, num_classes=num_classes, **kwargs)
        self.num_samples, self.test_size = num_samples, test_size

    def source_train_count(self) -> int:
        return self.num_samples

    def load(self):
        g = torch.Generator().manual_seed(self.split_seed)
        total = self.num_samples + self.test_size
        x = torch.randn(total, self.native_channels, self.native_size, self.native_size, generator=g)
        pooled = torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)
        projection = torch.randn(pooled.shape[1], self.native_classes, generator=g)
        y = (pooled @ projection).argmax(1)
        return {"train": (x[: self.num_samples], y[: self.num_samples]), "test": (x[self.num_samples :], y[self.num_samples :])}

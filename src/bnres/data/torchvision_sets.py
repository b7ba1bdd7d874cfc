"""MNIST and CIFAR-10 through torchvision, loaded from a local folder.

Nothing is downloaded unless the user allows it (``data.download=true``); a missing data set
offline is a one-line error that says how to get it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bnres.data.base import InMemoryDataModule
from bnres.data.verify import DataSetMissing, check_download_folder, verify_cifar10, verify_idx_set

# name -> (torchvision class name, channels, size, classes); Fashion-MNIST has its own module (fashion_mnist.py)
TORCHVISION_SETS = {
    "mnist": ("MNIST", 1, 28, 10),
    "cifar10": ("CIFAR10", 3, 32, 10),
}

# name -> images in the official training split
TRAIN_IMAGES = {"mnist": 60_000, "cifar10": 50_000}


class TorchvisionDataModule(InMemoryDataModule):
    def __init__(self, name: str = "mnist", data_dir: str = "data", download: bool = False, val_size: int = 5000, **kwargs) -> None:
        if name not in TORCHVISION_SETS:
            raise ValueError(f"data.name={name!r} is not one of {', '.join(TORCHVISION_SETS)}")
        self.name = name
        _, self.native_channels, self.native_size, self.native_classes = TORCHVISION_SETS[name]
        super().__init__(name=name, val_size=val_size, **kwargs)
        self.data_dir = str(data_dir)
        self.download = download

    def source_train_count(self) -> int:
        return TRAIN_IMAGES[self.name]

    def verify(self) -> None:
        """Check the files before any work: a clear error for missing or damaged ones.

        With ``download=true`` only the folder must be writable (``prepare_data`` fetches)."""
        import torchvision.datasets as tvd

        if self.download:
            check_download_folder(self.data_dir)
            return
        cls = getattr(tvd, TORCHVISION_SETS[self.name][0])
        root = Path(self.data_dir)
        try:
            if self.name == "cifar10":
                verify_cifar10(root / cls.base_folder, [*cls.train_list, *cls.test_list])
            else:
                verify_idx_set(root / cls.__name__ / "raw", list(cls.resources))
        except DataSetMissing as err:
            raise DataSetMissing(
                f"{self.name} is not in {root.resolve()} ({err}); rerun with data.download=true to download it there "
                f"(needs internet), or copy torchvision's {self.name} files into that folder "
                f"(choose the folder with paths.data_dir=... or BNRES_DATA_DIR)"
            ) from None

    def _dataset(self, train: bool):
        import torchvision.datasets as tvd

        self.verify()
        return getattr(tvd, TORCHVISION_SETS[self.name][0])(self.data_dir, train=train, download=False)

    def prepare_data(self) -> None:
        # runs on one process per node before setup(): the only place that may download
        if not self.download:
            return
        import torchvision.datasets as tvd

        cls = getattr(tvd, TORCHVISION_SETS[self.name][0])
        for train in (True, False):
            cls(self.data_dir, train=train, download=True)

    def load(self):
        out = {}
        for split, train in (("train", True), ("test", False)):
            ds = self._dataset(train)
            x = ds.data if isinstance(ds.data, torch.Tensor) else torch.from_numpy(np.asarray(ds.data))
            x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)  # N×H×W or N×H×W×C → N×C×H×W
            y = torch.as_tensor(ds.targets, dtype=torch.long)
            out[split] = (x, y)
        return out

"""Fashion-MNIST (60k train, 10k test), the batch-norm chapter's data set, read from its four idx .gz files.

Found without downloading, in the first of these folders that holds all four files:

1. ``data_dir`` itself (``paths.data_dir`` / ``BNRES_DATA_DIR``): any folder with copies of the files;
2. ``data_dir/FashionMNIST/raw``: where ``data.download=true`` (torchvision) saves them;
3. :data:`DEBIAN_DIR`, installed by ``apt-get install dataset-fashion-mnist``.

Every file is checked against :data:`bnres.data.verify.FASHION_MNIST_SHA256` before use. The files
are parsed with gzip + numpy, so no torchvision folder layout is needed.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

from bnres.data.base import InMemoryDataModule
from bnres.data.verify import FASHION_MNIST_SHA256, DataSetCorrupt, DataSetMissing, check_download_folder, read_verified_gz

#: the Debian package dataset-fashion-mnist's folder (a module attribute so tests can point it elsewhere)
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
#: split -> (images file, labels file)
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
TRAIN_IMAGES = 60_000
# where data.download=true saves the files (torchvision's layout under data_dir)
DOWNLOAD_SUBDIR = Path("FashionMNIST") / "raw"
HOW_TO_GET = (
    "install it with `apt-get install dataset-fashion-mnist` (offline from Debian's archive), or rerun with "
    "data.download=true to download it into paths.data_dir (needs internet), or put the four idx .gz files in a folder "
    "named by paths.data_dir=... or BNRES_DATA_DIR"
)


def candidate_folders(data_dir: str | Path) -> list[Path]:
    """The folders searched, in order (module docstring)."""
    return [Path(data_dir), Path(data_dir) / DOWNLOAD_SUBDIR, DEBIAN_DIR]


def find_folder(data_dir: str | Path) -> Path:
    """The first candidate folder holding all four files; a one-line DataSetMissing saying how to get them if none."""
    folders = candidate_folders(data_dir)
    for folder in folders:
        if all((folder / name).is_file() for name in FASHION_MNIST_SHA256):
            return folder
    searched = ", ".join(str(f.resolve()) for f in folders)
    raise DataSetMissing(f"fashion_mnist is not in {searched} (looked for {', '.join(FASHION_MNIST_SHA256)}); {HOW_TO_GET}")


def _parse_idx(content: bytes, path: Path, magic: int) -> np.ndarray:
    """An idx file's array: 4-byte big-endian magic (2051 images, 2049 labels), one 4-byte size per dimension, uint8 data."""
    ndim = magic - 2048
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(content[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if int.from_bytes(content[:4], "big") != magic or len(content) != header + int(np.prod(shape)):
        raise DataSetCorrupt(f"{path} is not an idx file of the expected kind")  # unreachable once the SHA-256 matched
    return np.frombuffer(content, dtype=np.uint8, offset=header).reshape(shape)


@functools.lru_cache(maxsize=2)
def read_fashion_mnist(folder: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"train": (images N×28×28 uint8, labels N), "test": ...}, verified and parsed once per process
    (a sweep's jobs share it; the splits copy out of it, so nothing modifies it)."""
    fix = (
        f"replace it with a good copy (`apt-get install --reinstall dataset-fashion-mnist` restores {DEBIAN_DIR}; "
        f"or delete it and rerun with data.download=true)"
    )
    out = {}
    for split, (images_name, labels_name) in FILES.items():
        arrays = []
        for name, magic in ((images_name, 2051), (labels_name, 2049)):
            path = folder / name
            arrays.append(_parse_idx(read_verified_gz(path, FASHION_MNIST_SHA256[name], fix), path, magic))
        out[split] = tuple(arrays)
    return out


class FashionMNISTDataModule(InMemoryDataModule):
    """55,000 train / 5,000 val (split off the training set with a fixed seed) / 10,000 test by default.

    ``train_subset``: train on only the first ``train_subset`` images of the training split (the split is a
    seeded shuffle, so this is a fixed random sample, the same for every run and training seed); validation
    and test stay whole, and the standardization statistics stay those of the whole training split. For CPU
    presets (conf/experiment/*_fashion.yaml)."""

    name = "fashion_mnist"
    native_channels, native_size, native_classes = 1, 28, 10

    def __init__(self, data_dir: str = "data", download: bool = False, val_size: int = 5000, train_subset: int | None = None, **kwargs) -> None:
        super().__init__(val_size=val_size, **kwargs)
        if not 0 < val_size < TRAIN_IMAGES:
            raise ValueError(f"data.val_size={val_size} must be between 1 and {TRAIN_IMAGES - 1} for fashion_mnist")
        if train_subset is not None and not 0 < train_subset <= TRAIN_IMAGES - val_size:
            raise ValueError(
                f"data.train_subset={train_subset} must be null (all) or between 1 and {TRAIN_IMAGES - val_size} "
                f"(the training images left after data.val_size={val_size})"
            )
        self.data_dir = str(data_dir)
        self.download = download
        self.train_subset = train_subset

    def source_train_count(self) -> int:
        return TRAIN_IMAGES

    def train_count(self) -> int:
        full = TRAIN_IMAGES - self.val_size
        return full if self.train_subset is None else self.train_subset

    def verify(self) -> None:
        """Find the files and check their SHA-256 before any work (the parsed result is cached for load).

        With ``download=true`` only the folder must be writable (``prepare_data`` fetches)."""
        if self.download:
            check_download_folder(self.data_dir)
            return
        read_fashion_mnist(find_folder(self.data_dir))

    def prepare_data(self) -> None:
        # runs on one process per node before setup(): the only place that may download
        if not self.download:
            return
        import torchvision.datasets as tvd

        for train in (True, False):
            tvd.FashionMNIST(self.data_dir, train=train, download=True)

    def load(self):
        arrays = read_fashion_mnist(find_folder(self.data_dir))
        return {split: (torch.from_numpy(x.copy()).unsqueeze(1), torch.from_numpy(y.astype(np.int64))) for split, (x, y) in arrays.items()}

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        if self.train_subset is not None:
            x, y = self.splits["train"]
            self.splits["train"] = (x[: self.train_subset], y[: self.train_subset])

"""Check torchvision data files before loading: missing or corrupt files are one clear error
naming the file and the fix, never a crash deep inside a loader."""

from __future__ import annotations

import os
from pathlib import Path

from torchvision.datasets.utils import check_integrity

from bnres.errors import ConfigError

# extracted IDX files: (name, magic number, size in bytes) — fixed by the format and the split sizes
_IDX_FILES = (
    ("train-images-idx3-ubyte", 2051, 16 + 60000 * 28 * 28),
    ("train-labels-idx1-ubyte", 2049, 8 + 60000),
    ("t10k-images-idx3-ubyte", 2051, 16 + 10000 * 28 * 28),
    ("t10k-labels-idx1-ubyte", 2049, 8 + 10000),
)


class DataSetMissing(ConfigError):
    """The data set is not in the data folder and downloading was not allowed."""


class DataSetCorrupt(ConfigError):
    """A data file is present but damaged (wrong checksum, truncated, wrong format)."""


def _fix(path: Path) -> str:
    return f"delete {path} and rerun with data.download=true to fetch it again"


def verify_idx_set(raw_folder: Path, archives: list[tuple[str, str]]) -> None:
    """MNIST / Fashion-MNIST: the .gz archives against torchvision's MD5s (when kept), the
    extracted files against the IDX header and the size the format implies."""
    for archive, md5 in archives:
        path = raw_folder / archive
        if path.exists() and not check_integrity(str(path), md5):
            raise DataSetCorrupt(f"{path} does not match its known MD5 checksum; {_fix(path)}")
    for name, magic, size in _IDX_FILES:
        path = raw_folder / name
        if not path.exists():
            raise DataSetMissing(f"{path} is missing")
        actual = path.stat().st_size
        with open(path, "rb") as f:
            header = int.from_bytes(f.read(4), "big")
        if header != magic or actual != size:
            raise DataSetCorrupt(f"{path} is corrupt or truncated ({actual} bytes, expected {size}); {_fix(path)}")


def verify_cifar10(folder: Path, files: list[tuple[str, str]]) -> None:
    if not folder.is_dir():
        raise DataSetMissing(f"{folder} is missing")
    for name, md5 in files:
        path = folder / name
        if not path.exists():
            raise DataSetMissing(f"{path} is missing")
        if not check_integrity(str(path), md5):
            raise DataSetCorrupt(f"{path} does not match its known MD5 checksum (corrupt or truncated); {_fix(path)}")


def check_download_folder(data_dir: str | Path) -> None:
    """Downloading needs a writable folder: say so before any work starts."""
    folder = Path(data_dir).resolve()
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not os.access(probe, os.W_OK):
        raise ConfigError(f"paths.data_dir={data_dir} is not writable ({probe}), so data.download=true cannot save there; choose a writable paths.data_dir")

"""Check torchvision data files before loading: missing or corrupt files are one clear error
naming the file and the fix, never a crash deep inside a loader."""

from __future__ import annotations

import gzip
import hashlib
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


# Fashion-MNIST: SHA-256 of each file's *decompressed* idx bytes, computed from the Debian package
# dataset-fashion-mnist. The content, not the .gz: Debian's archives are recompressed (their MD5s are
# not upstream's), so hashing the content lets one table check the package's copy, upstream's
# (data.download=true) and any re-gzipped copy alike.
FASHION_MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte.gz": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte.gz": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte.gz": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}


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


def read_verified_gz(path: Path, sha256: str, fix: str) -> bytes:
    """The decompressed bytes of ``path``, refused in one line unless they hash to ``sha256``."""
    try:
        with gzip.open(path, "rb") as f:
            content = f.read()
    except (OSError, EOFError) as err:
        raise DataSetCorrupt(f"{path} is not a readable gzip file ({err}); {fix}") from None
    if hashlib.sha256(content).hexdigest() != sha256:
        raise DataSetCorrupt(f"{path} does not match its known SHA-256 checksum (corrupt, truncated or another data set); {fix}")
    return content


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

"""Lightning data modules over in-memory tensors."""

from bnres.data.base import InMemoryDataModule
from bnres.data.fashion_mnist import FashionMNISTDataModule
from bnres.data.mnist5k import MNIST5kDataModule
from bnres.data.synthetic import SyntheticDataModule
from bnres.data.torchvision_sets import TORCHVISION_SETS, TorchvisionDataModule
from bnres.data.verify import DataSetCorrupt, DataSetMissing

DATA_NAMES = ("mnist5k", "fashion_mnist", *TORCHVISION_SETS, "synthetic")

__all__ = [
    "DATA_NAMES",
    "DataSetCorrupt",
    "DataSetMissing",
    "FashionMNISTDataModule",
    "InMemoryDataModule",
    "MNIST5kDataModule",
    "SyntheticDataModule",
    "TORCHVISION_SETS",
    "TorchvisionDataModule",
]

from ganzoo.data.idx import DataError
from ganzoo.data.mnist import FashionMNISTDataModule, MNISTDataModule

__all__ = ["DataError", "FashionMNISTDataModule", "MNISTDataModule"]

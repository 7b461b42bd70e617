"""MNIST and Fashion-MNIST as in-memory LightningDataModules.

The decoded set is held as one float tensor in [-1, 1] (N, 1, 28, 28) plus int64 labels: batches are
tensor slices, with no per-sample PIL transform in the hot path. Files are looked up in
``data_dir/<Name>/raw`` (torchvision's layout, ``.gz`` or extracted); only when they are missing and
``download`` is on are they fetched, with torchvision, into ``data_dir`` if writable, else ``cache_dir``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from ganzoo.data.idx import DataError, read_idx
from ganzoo.data.loading import seeded_loader

_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def find_idx_file(roots: list[Path], folder: str, stem: str) -> Path | None:
    """First existing ``<root>/<folder>/raw/<stem>[.gz]`` among the roots, or None."""
    for root in roots:
        for name in (f"{stem}.gz", stem):
            path = root / folder / "raw" / name
            if path.is_file():
                return path
    return None


def load_split(
    folder: str, split: str, data_dir: str | Path, cache_dir: str | Path | None = None, download: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, 28, 28) and int64 labels (N,) of one split ('train' or 'test') of an IDX data set.

    ``folder`` is torchvision's class name: 'MNIST' or 'FashionMNIST'.
    """
    roots = [Path(data_dir).expanduser()] + ([Path(cache_dir).expanduser()] if cache_dir else [])
    paths = [find_idx_file(roots, folder, stem) for stem in _FILES[split]]
    if None in paths:
        if not download:
            missing = [stem for stem, p in zip(_FILES[split], paths, strict=True) if p is None]
            raise DataError(
                f"{folder} files {missing} not found under {roots[0] / folder / 'raw'}; set GANZOO_DATA_DIR "
                f"(or data.data_dir=...) to a folder holding {folder}/raw/*.gz, or allow data.download=true"
            )
        _download(folder, roots)
        paths = [find_idx_file(roots, folder, stem) for stem in _FILES[split]]
    images, labels = (read_idx(p) for p in paths)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"{paths[0]} and {paths[1]} disagree: images {images.shape}, labels {labels.shape}")
    return images, labels.astype(np.int64)


def _download(folder: str, roots: list[Path]) -> None:
    from torchvision import datasets

    target = next((r for r in roots if _writable(r)), None)
    if target is None:
        raise DataError(f"{folder} is missing and none of {[str(r) for r in roots]} is writable to download into")
    try:
        for train in (True, False):
            getattr(datasets, folder)(str(target), train=train, download=True)
    except Exception as err:  # network errors come in many types; the message says what to do
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise DataError(
            f"{folder} is missing under {target / folder / 'raw'} and downloading it failed ({reason}); "
            f"copy the four IDX .gz files there by hand, or point GANZOO_DATA_DIR at a folder holding them"
        ) from err


def _writable(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(path, os.W_OK)


def to_unit_range(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W) -> float32 (N, 1, H, W) in [-1, 1], the range of a tanh generator."""
    return torch.tensor(images).unsqueeze(1).float().div_(127.5).sub_(1.0)


class IDXDataModule(pl.LightningDataModule):
    """Train on the official training split (optionally its first ``limit`` images); hold out the test split."""

    folder = "MNIST"
    num_classes = 10

    def __init__(
        self,
        data_dir: str,
        cache_dir: str | None = None,
        batch_size: int = 64,
        limit: int | None = None,
        download: bool = True,
        seed: int = 0,
        channels: int = 1,
        image_size: int = 28,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"data.batch_size must be >= 1, got {batch_size}")
        if limit is not None and limit < batch_size:
            raise ValueError(f"data.limit={limit} is smaller than data.batch_size={batch_size}: no full batch")
        if (channels, image_size) != (1, 28):
            raise ValueError(f"{self.folder} images are 1x28x28; got data.channels={channels}, image_size={image_size}")
        self.data_dir, self.cache_dir, self.download = data_dir, cache_dir, download
        self.batch_size, self.limit, self.seed = batch_size, limit, seed
        self.train_set: TensorDataset | None = None
        self.test_set: TensorDataset | None = None

    def _load(self, split: str) -> TensorDataset:
        images, labels = load_split(self.folder, split, self.data_dir, self.cache_dir, self.download)
        if split == "train" and self.limit is not None:
            images, labels = images[: self.limit], labels[: self.limit]
        return TensorDataset(to_unit_range(images), torch.from_numpy(labels))

    def prepare_data(self) -> None:
        # Runs on one process only: the place to download, so DDP ranks do not race.
        for split in _FILES:
            load_split(self.folder, split, self.data_dir, self.cache_dir, self.download)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self.train_set = self._load("train")
            self.test_set = self._load("test")

    def train_dataloader(self) -> DataLoader:
        return seeded_loader(self.train_set, self.batch_size, self.seed, self.trainer)

    def held_out(self) -> TensorDataset:
        """The official test split, for evaluation (never trained on)."""
        self.setup()
        return self.test_set


class MNISTDataModule(IDXDataModule):
    folder = "MNIST"


class FashionMNISTDataModule(IDXDataModule):
    folder = "FashionMNIST"

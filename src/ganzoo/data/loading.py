"""The one way ganzoo's DataModules batch an in-memory data set."""

from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, TensorDataset


def seeded_loader(dataset: Dataset, batch_size: int, seed: int, trainer: pl.Trainer | None) -> DataLoader:
    """Batches in a (seed, epoch)-determined order, sharded by rank, full batches only.

    The Trainer runs with ``use_distributed_sampler=False``, so this sampler is used as is under DDP too;
    Lightning calls its ``set_epoch`` every epoch, so the order is the same after a resume. The loader
    gets its own RNG: creating an iterator draws a worker base seed, which must not come from (and shift)
    the global RNG that the model's noise is drawn from, or a resumed run would diverge.
    """
    world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=True)
    loader_rng = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=True, generator=loader_rng)


class InMemorySplits(pl.LightningDataModule):
    """Synthetic splits drawn in memory, each from its own child seed of ``seed``: the test points never share
    random draws with the training points, and the data is the same on every rank and after a resume.

    Subclasses set ``splits`` (names, in seeding order) and ``sizes`` (points per split) in ``__init__``,
    ``batch_size`` and ``seed``, and implement :meth:`_draw`.
    """

    splits: tuple[str, ...] = ("train", "test")

    def __init__(self) -> None:
        super().__init__()
        self.sets: dict[str, TensorDataset] = {}
        self.sizes: dict[str, int] = {}
        self.batch_size, self.seed = 1, 0

    def _draw(self, split: str, n: int, seed: np.random.SeedSequence) -> TensorDataset:
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.sets:
            return
        children = np.random.SeedSequence(self.seed).spawn(len(self.splits))
        for split, child in zip(self.splits, children, strict=True):
            self.sets[split] = self._draw(split, self.sizes[split], child)

    def dataset(self, split: str) -> TensorDataset:
        """The TensorDataset of one split."""
        if split not in self.splits:
            raise ValueError(f"split must be one of {self.splits}, got {split!r}")
        self.setup()
        return self.sets[split]

    def train_dataloader(self) -> DataLoader:
        return seeded_loader(self.dataset("train"), self.batch_size, self.seed, self.trainer)

    def held_out(self) -> TensorDataset:
        """The test split (never trained on): the reference of metrics and plots."""
        return self.dataset("test")

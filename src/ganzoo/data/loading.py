"""The one way ganzoo's DataModules batch an in-memory data set."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler


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

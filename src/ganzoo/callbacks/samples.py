"""Fixed-noise sample grids: written as PNG into the run directory and sent to the loggers."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger
from torchvision.utils import make_grid, save_image

from ganzoo.callbacks.plots import progress_figure
from ganzoo.models.base import AdversarialModule, is_final_batch


def image_grid(images: torch.Tensor, nrow: int | None = None) -> torch.Tensor:
    """A [-1, 1] batch (N, C, H, W) as one [0, 1] grid image (C, H', W')."""
    nrow = nrow or max(1, int(len(images) ** 0.5))
    return make_grid(images.float().clamp(-1, 1), nrow=nrow, normalize=True, value_range=(-1, 1), pad_value=1.0)


def save_png(grid: torch.Tensor, path: str | Path) -> Path:
    """Write a [0, 1] grid image atomically (temporary name, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_image(grid, tmp, format="png")
    os.replace(tmp, path)
    return path


class SampleGrid(pl.Callback):
    """Every ``every_n_gen_steps`` generator iterations (and at the end of training), render G on the
    module's fixed noise to ``<dirpath>/gen_<step>.png`` (plus ``latest.png``) and log it as an image."""

    def __init__(self, dirpath: str, every_n_gen_steps: int = 200) -> None:
        if every_n_gen_steps < 1:
            raise ValueError(f"callbacks.samples.every_n_gen_steps must be >= 1, got {every_n_gen_steps}")
        self.dirpath, self.every_n_gen_steps = Path(dirpath), every_n_gen_steps
        self._last_written = -1

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: AdversarialModule, *args) -> None:
        step = pl_module.gen_step
        if step % self.every_n_gen_steps == 0 and step != self._last_written:
            self.write(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: AdversarialModule) -> None:
        if pl_module.gen_step != self._last_written:
            self.write(trainer, pl_module)

    def write(self, trainer: pl.Trainer, pl_module: AdversarialModule) -> None:
        self._last_written = pl_module.gen_step
        if not trainer.is_global_zero:
            return
        samples = pl_module.sample_fixed()
        if samples.dim() not in (3, 4):  # flat vectors (toy sets, tables) have their own plots
            return
        # Sequences (N, T, C) are drawn as line plots beside real ones; images (N, C, H, W) as a grid.
        grid = progress_figure(trainer, pl_module, samples) if samples.dim() == 3 else image_grid(samples)
        path = save_png(grid, self.dirpath / f"gen_{pl_module.gen_step:07d}.png")
        save_png(grid, self.dirpath / "latest.png")
        log_image(trainer, "samples", grid, path, pl_module.gen_step)


class PeriodicScorer(pl.Callback):
    """Base of the metric callbacks: scores due every ``every_n_gen_steps`` generator iterations and on the
    run's last batch (once per generator step), computed on rank 0 and broadcast, so every rank logs the same
    values; ``seconds`` adds up the time spent scoring."""

    every_n_gen_steps: int
    _last_scored: int = -1
    seconds: float = 0.0

    def scores_due(
        self, trainer: pl.Trainer, pl_module: AdversarialModule, score: Callable[[], dict[str, float]]
    ) -> dict[str, float] | None:
        """``score()``'s result (rank 0's, on every rank) when scores are due at this batch, else None."""
        step = pl_module.gen_step
        due = (step > 0 and step % self.every_n_gen_steps == 0) or is_final_batch(trainer)
        if not due or step == self._last_scored:
            return None
        self._last_scored = step
        started = time.perf_counter()
        scores = trainer.strategy.broadcast(score() if trainer.is_global_zero else None, src=0)
        self.seconds += time.perf_counter() - started
        return scores


def log_scores(trainer: pl.Trainer, pl_module: pl.LightningModule, logged: dict[str, float]) -> None:
    """A metric callback's ``val/*`` scores, the same on every rank: ``pl_module.log`` makes them callback
    metrics (what ``Checkpoint(monitor=...)`` reads and ``train()`` returns); the loggers get them once,
    directly, at this step (logged through Lightning, a callback's value would repeat at every later step)."""
    for name, value in logged.items():
        pl_module.log(name, value, on_step=True, on_epoch=False, logger=False)
    for logger in trainer.loggers:
        logger.log_metrics(logged, step=trainer.global_step)


def log_image(trainer: pl.Trainer, key: str, grid: torch.Tensor, path: Path, step: int) -> None:
    """Send a written grid to the image-capable loggers (W&B by file, TensorBoard by tensor)."""
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.log_image(key=key, images=[str(path)], caption=[f"gen_step {step}"])
        elif isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(key, grid, global_step=step)

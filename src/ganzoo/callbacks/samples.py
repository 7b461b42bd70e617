"""Fixed-noise sample grids: written as PNG into the run directory and sent to the loggers."""

from __future__ import annotations

import os
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger
from torchvision.utils import make_grid, save_image

from ganzoo.callbacks.plots import progress_figure
from ganzoo.models.base import AdversarialModule


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


def log_image(trainer: pl.Trainer, key: str, grid: torch.Tensor, path: Path, step: int) -> None:
    """Send a written grid to the image-capable loggers (W&B by file, TensorBoard by tensor)."""
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.log_image(key=key, images=[str(path)], caption=[f"gen_step {step}"])
        elif isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(key, grid, global_step=step)

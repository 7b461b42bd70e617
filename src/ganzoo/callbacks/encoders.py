"""Measures and figures of the models that read images into codes (BiGAN, the adversarial autoencoder).

- :class:`FeatureProbe` logs how good the model's features of real images are: ``val/knn_accuracy`` (1-NN,
  the BiGAN paper's protocol), ``val/probe_accuracy`` (a logistic regression) and ``val/reconstruction_mse``
  (mean squared error of the reconstructions of test images, in the data's [-1, 1] range).
- :class:`EncoderFigures` writes, under ``<dirpath>``: ``reconstructions_<step>.png`` (pairs of rows: test
  images, then their reconstructions), and for a model with a 2-D code ``code_scatter_<step>.png`` (the test
  set's codes coloured by label) and ``code_lattice_<step>.png`` (the decoder over a lattice of codes spanning
  the prior); for a supervised AAE ``style_<step>.png`` (one row per label, one column per style code taken
  along a line through the prior: the same style in every digit).
"""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from matplotlib.figure import Figure
from torch import Tensor

from ganzoo.callbacks.plots import figure_to_tensor
from ganzoo.callbacks.samples import image_grid, log_image, save_png
from ganzoo.callbacks.traversal import _EveryNGenSteps
from ganzoo.features import extract
from ganzoo.metrics.features import knn_accuracy, linear_probe_accuracy
from ganzoo.models.base import AdversarialModule


def _splits(trainer: pl.Trainer, n_train: int | None, n_test: int | None) -> tuple[Tensor, ...]:
    datamodule = trainer.datamodule
    train_x, train_y = datamodule.train_set.tensors
    test_x, test_y = datamodule.held_out().tensors
    return train_x[:n_train], train_y[:n_train], test_x[:n_test], test_y[:n_test]


@torch.no_grad()
def reconstruction_mse(pl_module: AdversarialModule, images: Tensor, labels: Tensor, batch_size: int = 1000) -> float:
    """Mean squared error of ``pl_module.reconstruct`` on ``images`` (eval mode)."""
    was_training = pl_module.training
    pl_module.eval()
    try:
        total = 0.0
        for x, y in zip(images.split(batch_size), labels.split(batch_size), strict=True):
            x = x.to(pl_module.device)
            out = _reconstruct(pl_module, x, y.to(pl_module.device))
            total += float((out - x).pow(2).sum())
        return total / images.numel()
    finally:
        pl_module.train(was_training)


def _reconstruct(pl_module: AdversarialModule, x: Tensor, y: Tensor) -> Tensor:
    if getattr(pl_module, "mode", None) == "supervised":
        return pl_module.reconstruct(x, y)
    return pl_module.reconstruct(x)


class FeatureProbe(_EveryNGenSteps):
    """Scores the features of ``ganzoo.features.extract`` on the first ``n_train`` training and ``n_test``
    test images (null: all), every ``every_n_gen_steps`` generator iterations and at the end."""

    key = "feature_probe"

    def __init__(self, every_n_gen_steps: int = 1000, n_train: int | None = 10000, n_test: int | None = 2000) -> None:
        super().__init__(every_n_gen_steps)
        for name, value in (("n_train", n_train), ("n_test", n_test)):
            if value is not None and value < 10:
                raise ValueError(f"callbacks.feature_probe.{name} must be >= 10 or null, got {value}")
        self.n_train, self.n_test = n_train, n_test

    def run(self, trainer: pl.Trainer, pl_module: AdversarialModule, in_loop: bool) -> None:
        train_x, train_y, test_x, test_y = _splits(trainer, self.n_train, self.n_test)
        train_f, test_f = extract(pl_module, train_x), extract(pl_module, test_x)
        metrics = {
            "val/knn_accuracy": knn_accuracy(train_f, train_y, test_f, test_y),
            "val/probe_accuracy": linear_probe_accuracy(train_f, train_y, test_f, test_y),
        }
        if callable(getattr(pl_module, "reconstruct", None)):
            metrics["val/reconstruction_mse"] = reconstruction_mse(pl_module, test_x, test_y)
        if in_loop:
            for name, value in metrics.items():
                pl_module.log(name, value, on_step=True, on_epoch=False, logger=False)
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)


class EncoderFigures(_EveryNGenSteps):
    """The figures of an encoder model (see the module docstring); each is also sent to W&B / TensorBoard."""

    key = "encoder_figures"

    def __init__(
        self, dirpath: str, every_n_gen_steps: int = 1000, n_reconstruct: int = 40, n_scatter: int = 5000
    ) -> None:
        super().__init__(every_n_gen_steps)
        self.dirpath, self.n_reconstruct, self.n_scatter = Path(dirpath), n_reconstruct, n_scatter

    def on_fit_start(self, trainer: pl.Trainer, pl_module: AdversarialModule) -> None:
        if not callable(getattr(pl_module, "reconstruct", None)):
            raise ValueError(f"callbacks.encoder_figures needs model=bigan or aae, not {type(pl_module).__name__}")

    def _write(self, trainer: pl.Trainer, pl_module: AdversarialModule, name: str, grid: Tensor) -> None:
        path = save_png(grid, self.dirpath / f"{name}_{pl_module.gen_step:07d}.png")
        save_png(grid, self.dirpath / f"{name}_latest.png")
        log_image(trainer, name, grid, path, pl_module.gen_step)

    @torch.no_grad()
    def run(self, trainer: pl.Trainer, pl_module: AdversarialModule, in_loop: bool) -> None:
        if not trainer.is_global_zero:
            return
        _, _, test_x, test_y = _splits(trainer, 1, max(self.n_reconstruct, self.n_scatter))
        was_training = pl_module.training
        pl_module.eval()
        try:
            self._write(trainer, pl_module, "reconstructions", self.reconstructions(pl_module, test_x, test_y))
            if getattr(pl_module, "code_dim", pl_module.latent_dim) == 2:
                codes = extract(pl_module, test_x[: self.n_scatter]).numpy()
                self._write(trainer, pl_module, "code_scatter", code_scatter(codes, test_y[: self.n_scatter].numpy()))
                self._write(trainer, pl_module, "code_lattice", self.lattice(pl_module))
            if getattr(pl_module, "mode", None) == "supervised":
                self._write(trainer, pl_module, "style", self.style_grid(pl_module))
        finally:
            pl_module.train(was_training)

    def reconstructions(self, pl_module: AdversarialModule, x: Tensor, y: Tensor) -> Tensor:
        """Rows of 10 test images, each followed by a row of their reconstructions."""
        x, y = x[: self.n_reconstruct], y[: self.n_reconstruct]
        out = _reconstruct(pl_module, x.to(pl_module.device), y.to(pl_module.device)).cpu()
        rows = [t for pair in zip(x.split(10), out.split(10), strict=True) for t in pair]
        return image_grid(torch.cat(rows), nrow=10)

    @staticmethod
    def lattice(pl_module: AdversarialModule, steps: int = 15) -> Tensor:
        """The decoder over a steps x steps lattice spanning +-2 prior standard deviations (+-radius for the
        mixture prior); a supervised model decodes row r with label r mod num_classes."""
        span = 2 * pl_module.prior_std if pl_module.prior == "gaussian" else pl_module.mixture_radius * 1.25
        axis = torch.linspace(-span, span, steps)
        grid = torch.stack(torch.meshgrid(axis, axis.flip(0), indexing="xy"), dim=-1).reshape(-1, 2)
        cond = None
        if getattr(pl_module, "mode", None) == "supervised":
            cond = torch.arange(len(grid)) // steps % pl_module.num_classes
        return image_grid(pl_module.sample(latent=grid, cond=cond), nrow=steps)

    @staticmethod
    def style_grid(pl_module: AdversarialModule, steps: int = 10) -> Tensor:
        """Rows: labels 0..K-1; columns: style codes along one line through the prior, shared by every row."""
        width = pl_module.latent_dim
        direction = torch.ones(width) / width**0.5
        spread = 1.5 * (pl_module.prior_std if pl_module.prior == "gaussian" else pl_module.mixture_radius)
        styles = torch.linspace(-spread, spread, steps)[:, None] * direction
        k = pl_module.num_classes
        latent, labels = styles.repeat(k, 1), torch.arange(k).repeat_interleave(steps)
        return image_grid(pl_module.sample(latent=latent, cond=labels), nrow=steps)


def code_scatter(codes, labels) -> Tensor:
    """The 2-D codes of test images, one colour per label (the AAE paper's figures 2 and 4)."""
    figure = Figure(figsize=(5.5, 5), dpi=100)
    ax = figure.add_subplot()
    points = ax.scatter(codes[:, 0], codes[:, 1], c=labels, cmap="tab10", s=2, vmin=-0.5, vmax=9.5)
    figure.colorbar(points, ax=ax, ticks=range(10), label="label")
    ax.set_xlabel("code 1")
    ax.set_ylabel("code 2")
    ax.set_title("test-set codes")
    figure.tight_layout()
    return figure_to_tensor(figure)

"""Figures and figures-of-merit of the code-driven and semi-supervised GANs during training.

- :class:`CodeTraversal`: InfoGAN's latent traversal (Chen et al. 2016, figure 2), one PNG per continuous code:
  rows are the categorical code's values, columns sweep that continuous code over [-span, span], the noise and
  the other codes fixed. Written and logged like :class:`ganzoo.callbacks.SampleGrid` writes its grids.
- :class:`HeadAccuracy`: the test split classified by a model's own head, logged as ``val/<name>``: an SSGAN's
  D (``val/test_error``, Salimans et al. 2016) or an InfoGAN's categorical code matched to the test labels
  (``val/code_accuracy_best_matching``, an upper bound of the evaluator-matched figure of
  :func:`ganzoo.metrics.codes.code_accuracy_report`).
"""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl

from ganzoo.callbacks.samples import image_grid, log_image, save_png
from ganzoo.metrics.codes import classifier_error, mapped_accuracy, match_codes
from ganzoo.models.base import AdversarialModule


class _EveryNGenSteps(pl.Callback):
    """Runs :meth:`run` every ``every_n_gen_steps`` generator iterations and once at the end of training."""

    key = "callback"

    def __init__(self, every_n_gen_steps: int) -> None:
        if every_n_gen_steps < 1:
            raise ValueError(f"callbacks.{self.key}.every_n_gen_steps must be >= 1, got {every_n_gen_steps}")
        self.every_n_gen_steps = every_n_gen_steps
        self._last_run = -1

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: AdversarialModule, *args) -> None:
        step = pl_module.gen_step
        if step > 0 and step % self.every_n_gen_steps == 0 and step != self._last_run:
            self._last_run = step
            self.run(trainer, pl_module, in_loop=True)

    def on_train_end(self, trainer: pl.Trainer, pl_module: AdversarialModule) -> None:
        if pl_module.gen_step != self._last_run:
            self._last_run = pl_module.gen_step
            self.run(trainer, pl_module, in_loop=False)

    def run(self, trainer: pl.Trainer, pl_module: AdversarialModule, in_loop: bool) -> None:
        """``in_loop``: called from a batch hook, where ``pl_module.log`` is allowed (not at train end)."""
        raise NotImplementedError


class CodeTraversal(_EveryNGenSteps):
    """Writes ``<dirpath>/traversal_c<i>_<gen_step>.png`` (and ``traversal_c<i>_latest.png``) for every
    continuous code i of a model with ``traversal_latents`` (``model=infogan``) and logs it as ``traversal_c<i>``."""

    key = "traversal"

    def __init__(
        self, dirpath: str, every_n_gen_steps: int = 500, steps: int = 10, span: float = 2.0, seed: int = 0
    ) -> None:
        super().__init__(every_n_gen_steps)
        if steps < 2 or span <= 0:
            raise ValueError(f"callbacks.traversal needs steps >= 2 and span > 0, got steps={steps}, span={span}")
        self.dirpath, self.steps, self.span, self.seed = Path(dirpath), steps, span, seed

    def on_fit_start(self, trainer: pl.Trainer, pl_module: AdversarialModule) -> None:
        if not callable(getattr(pl_module, "traversal_latents", None)):
            raise ValueError(f"callbacks.traversal needs a code-driven model (model=infogan), not {type(pl_module)}")

    def run(self, trainer: pl.Trainer, pl_module: AdversarialModule, in_loop: bool) -> None:
        if not trainer.is_global_zero:
            return
        for code in range(pl_module.num_continuous):
            latent = pl_module.traversal_latents(code, self.steps, self.span, self.seed)
            grid = image_grid(pl_module.sample(latent=latent), nrow=self.steps)
            path = save_png(grid, self.dirpath / f"traversal_c{code}_{pl_module.gen_step:07d}.png")
            save_png(grid, self.dirpath / f"traversal_c{code}_latest.png")
            log_image(trainer, f"traversal_c{code}", grid, path, pl_module.gen_step)


class HeadAccuracy(_EveryNGenSteps):
    """Classifies the data module's test split (``held_out()``) with the model's own head and logs
    ``val/test_error`` (a model with ``classify``: SSGAN, the semi-supervised AAE) or
    ``val/code_accuracy_best_matching`` (a model with ``predict_codes``: InfoGAN, the clustering AAE). The
    forward passes cost about as much as one training step per 100 images."""

    key = "head_accuracy"

    def __init__(self, every_n_gen_steps: int = 500, n_test: int | None = None) -> None:
        super().__init__(every_n_gen_steps)
        if n_test is not None and n_test < 1:
            raise ValueError(f"callbacks.head_accuracy.n_test must be >= 1 or null, got {n_test}")
        self.n_test = n_test

    def run(self, trainer: pl.Trainer, pl_module: AdversarialModule, in_loop: bool) -> None:
        images, labels = trainer.datamodule.held_out().tensors
        images, labels = images[: self.n_test], labels[: self.n_test]
        if getattr(pl_module, "is_classifier", callable(getattr(pl_module, "classify", None))):
            metrics = {"val/test_error": classifier_error(pl_module.classify, images, labels)}
        else:
            codes = pl_module.predict_codes(images)
            method = getattr(pl_module, "code_matching", "hungarian")  # the AAE's 16 clusters: by majority
            mapping = match_codes(codes, labels, pl_module.num_categories, int(labels.max()) + 1, method)
            metrics = {"val/code_accuracy_best_matching": mapped_accuracy(codes, mapping, labels)}
        if in_loop:  # where ModelCheckpoint(monitor=...) and train()'s returned metrics look
            for name, value in metrics.items():
                pl_module.log(name, value, on_step=True, on_epoch=False, logger=False)
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)

"""Image metrics during training: FID, KID, IS, precision/recall and class statistics under ``val/``.

Logged through ``pl_module.log`` on every rank with the same values (and sent once to the loggers), so
``ModelCheckpoint(monitor="val/fid", mode="min")`` keeps the best-FID generator on single devices and under DDP alike.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytorch_lightning as pl
import torch

from ganzoo.callbacks.samples import PeriodicScorer, log_scores
from ganzoo.metrics.image import FeatureSpace, feature_space
from ganzoo.models.base import AdversarialModule

log = logging.getLogger("ganzoo")

# The scores logged as val/<name>; the class histogram stays in evaluate.py's report.
LOGGED = ("fid", "kid", "is", "precision", "recall", "class_entropy", "classes_below_1pct", "label_accuracy")


class ImageMetrics(PeriodicScorer):
    """Every ``every_n_gen_steps`` generator iterations and on the run's last batch, score ``n_samples``
    samples in the evaluator's feature space against the test split (see ``ganzoo.metrics.image``) and log
    them as ``val/<metric>``, with ``val/fid_floor``: the FID of ``n_samples`` real training images, what a
    perfect generator would get at this n. Conditional models are scored on uniformly drawn labels, and
    ``val/label_accuracy`` says how often the evaluator agrees with them.

    The samples come from a fixed latent seed in a forked RNG: consecutive scores compare the same noise, and
    the training run draws the same random numbers as without this callback. Data set, data and cache
    folders default to the datamodule's. Rank 0 scores; the other ranks receive its figures by broadcast.
    Defaults (2000 samples every 500 generator iterations) cost about 3 % of a DCGAN's CPU training time
    (2.7 % in `bench/metrics.py`).
    """

    def __init__(
        self,
        every_n_gen_steps: int = 500,
        n_samples: int = 2000,
        dataset: str | None = None,
        data_dir: str | None = None,
        cache_dir: str | None = None,
        kid_subsets: int = 10,
        seed: int = 0,
    ) -> None:
        if every_n_gen_steps < 1:
            raise ValueError(f"callbacks.image_metrics.every_n_gen_steps must be >= 1, got {every_n_gen_steps}")
        if n_samples < 10:
            raise ValueError(f"callbacks.image_metrics.n_samples must be >= 10, got {n_samples}")
        self.every_n_gen_steps, self.n_samples = every_n_gen_steps, n_samples
        self.kid_subsets, self.seed = kid_subsets, seed
        self.dataset, self.data_dir, self.cache_dir = dataset, data_dir, cache_dir
        self._space: FeatureSpace | None = None
        self._floor_fid = float("nan")
        self.seconds = 0.0  # spent scoring (the first call's evaluator/reference setup is in on_fit_start)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: AdversarialModule) -> None:
        # Evaluator and reference statistics are ready before the first step, so a missing file fails early.
        if trainer.is_global_zero:
            self._space = self._feature_space(trainer.datamodule)
            self._floor_fid = float(self._space.floor(self.n_samples)["fid"])

    def _feature_space(self, datamodule: pl.LightningDataModule | None) -> FeatureSpace:
        dataset = self.dataset or getattr(datamodule, "folder", None)
        data_dir = self.data_dir or getattr(datamodule, "data_dir", None)
        cache_dir = self.cache_dir or getattr(datamodule, "cache_dir", None)
        if dataset is None or data_dir is None or cache_dir is None:
            raise ValueError(
                "ImageMetrics needs an MNIST-style datamodule, or dataset=, data_dir= and cache_dir= set explicitly"
            )
        return feature_space(dataset, data_dir, Path(cache_dir), kid_subsets=self.kid_subsets)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: AdversarialModule, *args) -> None:
        scores = self.scores_due(trainer, pl_module, lambda: self._score(pl_module))
        if scores is not None:
            logged = {f"val/{name}": float(scores[name]) for name in LOGGED if name in scores}
            logged["val/fid_floor"] = float(trainer.strategy.broadcast(self._floor_fid, src=0))
            log_scores(trainer, pl_module, logged | {"time/image_metrics_s": self.seconds})

    def on_train_end(self, trainer: pl.Trainer, pl_module: AdversarialModule) -> None:
        log.info("image metrics: %.1f s of scoring in this run (time/image_metrics_s)", self.seconds)

    def _score(self, pl_module: AdversarialModule) -> dict[str, float]:
        devices = [pl_module.device] if pl_module.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.seed)
            cond = pl_module.sample_conditions(self.n_samples)
            samples = pl_module.sample(latent=pl_module.sample_latent(self.n_samples), cond=cond)
        # Integer class labels (CGAN-style conditions) are checked against the evaluator's predictions.
        labels = cond if cond is not None and cond.dim() == 1 and not cond.is_floating_point() else None
        return self._space.scorer.score(samples, labels=labels, seed=self.seed)

"""Sequence metrics during training (data=waves): the distribution distances of ``ganzoo.metrics.sequence``
under ``val/``, so a run's curve shows when the generator covers the frequencies and amplitudes, and a
``Checkpoint(monitor="val/ks_worst")`` keeps the best generator of a run that oscillates.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from ganzoo.callbacks.samples import PeriodicScorer, log_scores
from ganzoo.metrics.sequence import distribution_distances, estimate_freq_amp, generate_balanced
from ganzoo.models.base import AdversarialModule

log = logging.getLogger("ganzoo")


class SequenceMetrics(PeriodicScorer):
    """Every ``every_n_gen_steps`` generator iterations and on the run's last batch, score ``n_samples``
    samples (class-balanced for a conditional model) against a validation reference and log:

    - ``val/mmd2``, ``val/ks_freq``, ``val/ks_amp``, ``val/kuiper_phase``: all classes together; per class
      ``val/<metric>_<shape>`` (each MMD^2 on at most ``mmd_max_n`` sequences per set, for speed: noisier
      than evaluate.py's);
    - ``val/ks_worst``: the largest frequency or amplitude KS distance of any class (the overall one for an
      unconditional model): the figure issue 7's per-class targets bound, and the one a collapse of one
      class's frequency range drives up first.

    The reference is the data's validation split redrawn with ``reference_per_class`` waves per class (its
    own child seed: independent of the training split and of the test split that ``evaluate.py`` scores), so
    a best checkpoint chosen on it is not chosen on the test data. The samples come from a fixed seed in a
    forked RNG: consecutive scores compare the same noise, and training draws the same random numbers as
    without this callback. Rank 0 scores; the other ranks receive its figures by broadcast.
    """

    def __init__(
        self,
        every_n_gen_steps: int = 2000,
        n_samples: int = 2000,
        reference_per_class: int = 1000,
        mmd_max_n: int = 500,
        seed: int = 0,
    ) -> None:
        if every_n_gen_steps < 1:
            raise ValueError(f"callbacks.sequence_metrics.every_n_gen_steps must be >= 1, got {every_n_gen_steps}")
        if n_samples < 20 or reference_per_class < 10 or mmd_max_n < 2:
            raise ValueError(
                "callbacks.sequence_metrics needs n_samples >= 20, reference_per_class >= 10 and mmd_max_n >= 2, "
                f"got {n_samples}, {reference_per_class} and {mmd_max_n}"
            )
        self.every_n_gen_steps, self.n_samples = every_n_gen_steps, n_samples
        self.reference_per_class, self.mmd_max_n, self.seed = reference_per_class, mmd_max_n, seed
        self._reference: tuple[torch.Tensor, torch.Tensor] | None = None
        self._shapes: tuple[str, ...] = ()
        self._real_estimates: dict[bool, tuple[np.ndarray, ...]] = {}

    def on_fit_start(self, trainer: pl.Trainer, pl_module: AdversarialModule) -> None:
        datamodule = trainer.datamodule
        if not hasattr(datamodule, "redraw") or not hasattr(datamodule, "shapes"):
            kind = type(datamodule).__name__
            raise ValueError(f"SequenceMetrics needs data=waves, got {kind}; use metrics=none with this data")
        if trainer.is_global_zero:
            self._reference = tuple(datamodule.redraw("val", self.reference_per_class).tensors)
            self._shapes = tuple(datamodule.shapes)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: AdversarialModule, *args: Any) -> None:
        scores = self.scores_due(trainer, pl_module, lambda: self.score(pl_module))
        if scores is not None:
            log_scores(trainer, pl_module, scores | {"time/sequence_metrics_s": self.seconds})

    def on_train_end(self, trainer: pl.Trainer, pl_module: AdversarialModule) -> None:
        log.info("sequence metrics: %.1f s of scoring in this run (time/sequence_metrics_s)", self.seconds)

    @torch.no_grad()
    def score(self, pl_module: AdversarialModule) -> dict[str, float]:
        """The ``val/*`` scores of ``n_samples`` fresh samples against the validation reference."""
        real, real_y = self._reference
        devices = [pl_module.device] if pl_module.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            fake, fake_y = generate_balanced(pl_module, self.n_samples, self.seed, batch_size=self.n_samples)
        labelled = fake_y is not None
        if labelled not in self._real_estimates:  # the real set's frequencies, amplitudes, phases, once per run
            estimates = estimate_freq_amp(real, real_y if labelled else None, self._shapes, with_phase=True)
            self._real_estimates[labelled] = estimates
        distances = distribution_distances(
            real, real_y, fake.cpu(), fake_y, self._shapes, self.seed, self.mmd_max_n, self._real_estimates[labelled]
        )
        scores = {}
        for name, value in distances.items():
            metric, group = name.split("/")
            if not isinstance(value, list):  # the MMD bandwidths stay in evaluate.py's report
                scores[f"val/{metric}" if group == "all" else f"val/{metric}_{group}"] = value
        per_class = [v for k, v in scores.items() if k.startswith(("val/ks_freq_", "val/ks_amp_"))]
        scores["val/ks_worst"] = max(per_class or [scores["val/ks_freq"], scores["val/ks_amp"]])
        return scores

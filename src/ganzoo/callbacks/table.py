"""Table metrics during training (data=adult, diamonds, sberbank, tabular): the quality score and the detection
AUC of ``ganzoo.metrics.tabular`` under ``val/``, so a run's curve shows when its rows are hardest to tell from
real ones, and a ``Checkpoint(monitor="val/detection_auc")`` keeps that generator (``best_table.ckpt``).

Why keep a best one: on Adult the detection AUC of a run's tables is not monotone in training time. A 40-minute
run with training-by-sampling conditioned on income scored 0.872, 0.811, 0.753, 0.749, 0.740, 0.756, 0.778 and
0.790 at every 5 minutes (README, issue 8): the last checkpoint is not the best one.
"""

from __future__ import annotations

import logging
from typing import Any

import pytorch_lightning as pl

from ganzoo.callbacks.samples import PeriodicScorer, log_scores
from ganzoo.metrics.tabular import TableScorer, align, real_parts, sample_table
from ganzoo.models.base import AdversarialModule

log = logging.getLogger("ganzoo")


class TableMetrics(PeriodicScorer):
    """Every ``every_n_gen_steps`` generator iterations and on a run's last batch (steps, epochs or
    ``trainer.max_time`` run out: ``pipeline.build_trainer`` puts the Timer first), decode ``n_samples`` rows
    (as ``sample.py`` does, from a fixed seed in a forked RNG) and log ``val/table_quality`` (SDMetrics' overall
    score: mean of column shapes and pair trends) and ``val/detection_auc`` (cross-validated boosted trees
    telling them from real rows, with ``folds`` folds).

    The real rows are the half of the held-out split that ``evaluate.py`` scores as its real-vs-real floor,
    never the half it scores generated tables against, so a checkpoint chosen on these figures is not chosen on
    the figures it is then reported with. Rank 0 scores; the other ranks receive its figures by broadcast.
    """

    def __init__(self, every_n_gen_steps: int = 2000, n_samples: int = 5000, folds: int = 3, seed: int = 0) -> None:
        if every_n_gen_steps < 1:
            raise ValueError(f"callbacks.table_metrics.every_n_gen_steps must be >= 1, got {every_n_gen_steps}")
        if n_samples < 2 * folds or folds < 2:
            raise ValueError(
                f"callbacks.table_metrics needs folds >= 2 and n_samples >= 2 * folds, got {folds} and {n_samples}"
            )
        self.every_n_gen_steps, self.n_samples, self.folds, self.seed = every_n_gen_steps, n_samples, folds, seed
        self._scorer: TableScorer | None = None
        self._train: Any = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: AdversarialModule) -> None:
        datamodule = trainer.datamodule
        if not hasattr(datamodule, "load_table"):
            kind = type(datamodule).__name__
            raise ValueError(f"TableMetrics needs a table (data=adult, diamonds, ...), got {kind}; use metrics=none")
        if trainer.is_global_zero:
            parts, schema = real_parts(datamodule)
            self._train = parts["train"]
            self._scorer = TableScorer(
                parts["floor"], parts["train"], schema.kinds, folds=self.folds, dcr_rows=1, seed=self.seed
            )

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: AdversarialModule, *args: Any) -> None:
        scores = self.scores_due(trainer, pl_module, lambda: self.score(pl_module))
        if scores is not None:
            log_scores(trainer, pl_module, scores | {"time/table_metrics_s": self.seconds})

    def on_train_end(self, trainer: pl.Trainer, pl_module: AdversarialModule) -> None:
        log.info("table metrics: %.1f s of scoring in this run (time/table_metrics_s)", self.seconds)

    def score(self, pl_module: AdversarialModule) -> dict[str, float]:
        """The ``val/*`` scores of ``n_samples`` fresh rows against the held-out rows."""
        table = sample_table(pl_module, self.n_samples, self.seed)
        table = align(table, self._train, self._scorer.kinds, "the generated table")
        return {
            "val/table_quality": self._scorer.quality(table),
            "val/detection_auc": self._scorer.detection_auc(table),
        }

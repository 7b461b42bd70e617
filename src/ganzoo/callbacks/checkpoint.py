"""Checkpointing keyed on generator iterations, with a last checkpoint that is never stale."""

from __future__ import annotations

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint

from ganzoo.models.base import AdversarialModule, is_final_batch


class Checkpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint with two GAN-specific changes.

    - Periodic saves every ``every_n_gen_steps`` generator iterations. Lightning's
      ``every_n_train_steps`` keys on ``global_step``, which advances by 1 + n_gen on generator batches
      and by 1 on critic-only batches, so with n_critic > 1 it can step over the multiples it waits for.
    - ``last.ckpt`` is also written on the final batch of the run (max_steps or max_epochs reached).
      Lightning writes it at the end of training only if nothing was saved before, so the steps after
      the last periodic save would be lost; and a save made after the epoch has closed resumes one
      epoch too far (Lightning 2.6 counts the closed epoch twice), which a save at batch end avoids.
    """

    def __init__(self, every_n_gen_steps: int | None = 1000, **kwargs) -> None:
        if every_n_gen_steps is not None and every_n_gen_steps < 1:
            raise ValueError(f"callbacks.checkpoint.every_n_gen_steps must be >= 1 or null, got {every_n_gen_steps}")
        for key in ("every_n_train_steps", "every_n_epochs", "train_time_interval"):
            if kwargs.get(key):
                raise ValueError(f"callbacks.checkpoint.{key} is not used by ganzoo; set every_n_gen_steps")
        kwargs.update(every_n_train_steps=0, every_n_epochs=0, train_time_interval=None)
        super().__init__(**kwargs)
        self.every_n_gen_steps = every_n_gen_steps

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: AdversarialModule, *args) -> None:
        if self._should_skip_saving_checkpoint(trainer):
            return
        step = pl_module.gen_step
        periodic = bool(self.every_n_gen_steps) and step > 0 and step % self.every_n_gen_steps == 0
        periodic = periodic and pl_module.disc_step % pl_module.n_critic == 0  # only right after a G step
        final = is_final_batch(trainer)
        if periodic or final:
            candidates = self._monitor_candidates(trainer)
            # A monitored score (e.g. val/fid, also scored on the final batch) gets one last comparison.
            if periodic or (final and self.monitor is not None):
                self._save_topk_checkpoint(trainer, candidates)
            self._save_last_checkpoint(trainer, candidates)

"""Resuming a run continues its W&B run: the run id travels inside every checkpoint.

Without it, ``ckpt_path=...`` starts a second W&B run (a new random id) for what is one training run, and the
curves of the two halves never meet. :class:`WandbRunId` writes the id into each checkpoint; before the logger
is built, :func:`resume_wandb_run` sets ``logger.wandb.id`` to it (``WandbLogger`` passes ``resume="allow"``).
Offline, W&B writes the continuation into a new ``offline-run-<time>-<id>`` folder with the same id, and
``wandb sync`` uploads both into the one run.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig, open_dict
from pytorch_lightning.loggers import WandbLogger

CHECKPOINT_KEY = "wandb"  # checkpoint["wandb"] = {"id": ...}


class WandbRunId(pl.Callback):
    """Store the id of the run's W&B run in every checkpoint it writes (nothing without a WandbLogger)."""

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger) and logger.version is not None:
                checkpoint[CHECKPOINT_KEY] = {"id": str(logger.version)}


def stored_wandb_id(checkpoint: dict[str, Any]) -> str | None:
    """The W&B run id a checkpoint was written under, or None."""
    section = checkpoint.get(CHECKPOINT_KEY)
    return section.get("id") if isinstance(section, dict) else None


def resume_wandb_run(cfg: DictConfig, checkpoint: dict[str, Any]) -> str | None:
    """Point ``cfg.logger.wandb`` at the W&B run the checkpoint was written under; returns that id. An id the
    user set (``logger.wandb.id=...``) wins; no wandb logger or no stored id leaves the config as it is."""
    wandb_cfg = (cfg.get("logger") or {}).get("wandb")
    run_id = stored_wandb_id(checkpoint)
    if wandb_cfg is None or run_id is None or wandb_cfg.get("id") is not None:
        return None
    with open_dict(wandb_cfg):
        wandb_cfg.id = run_id
    return run_id

"""Checkpointing keyed on generator iterations, with a last checkpoint that is never stale, never half
written, never diverged, and a bounded number of periodic files."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from pathlib import Path
from typing import Any
from weakref import proxy

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint

from ganzoo.callbacks.guard import DivergenceError, first_non_finite
from ganzoo.models.base import AdversarialModule, is_final_batch

log = logging.getLogger("ganzoo")

# Lightning's keywords for trainer.fit(ckpt_path=...): resolved by Lightning itself, not file paths.
_CKPT_KEYWORDS = ("last", "best", "hpc", "registry")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or not a ganzoo checkpoint."""


class DiskSpaceError(RuntimeError):
    """Too little free space to write a checkpoint whole; raised before writing anything."""


class Checkpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint with GAN-specific timing and safer writes.

    - Periodic saves every ``every_n_gen_steps`` generator iterations. Lightning's
      ``every_n_train_steps`` keys on ``global_step``, which advances by 1 + n_gen on generator batches
      and by 1 on critic-only batches, so with n_critic > 1 it can step over the multiples it waits for.
    - ``last.ckpt`` is also written on the final batch of the run (max_steps or max_epochs reached).
      Lightning writes it at the end of training only if nothing was saved before, so the steps after
      the last periodic save would be lost; and a save made after the epoch has closed resumes one
      epoch too far (Lightning 2.6 counts the closed epoch twice), which a save at batch end avoids.
    - Every file is written under a temporary name in its own directory, synced, then renamed over the
      old one: a crash or a kill mid-write leaves the previous file intact. (Lightning's own write goes
      through a temporary file in the system temp folder and ``shutil.move``, which degrades to a copy
      straight into the target, not atomic, when that folder is on another file system.)
    - Weights with a NaN or Inf are never written (:class:`DivergenceError` instead), so the last good
      checkpoint survives a diverged run even without :class:`ganzoo.callbacks.DivergenceGuard`.
    - Before writing, free space is checked: ``disk_margin`` times the last checkpoint's size (the first
      time: the bytes of the weights and optimizer states) must be free, else :class:`DiskSpaceError`.
    - ``keep_last=K`` keeps only the K newest periodic checkpoints (Lightning's ``save_top_k`` without a
      monitor keeps 1 or all). ``last.ckpt``, monitored best files and the file the run resumed from are
      never deleted.
    """

    def __init__(
        self,
        every_n_gen_steps: int | None = 1000,
        keep_last: int | None = None,
        disk_margin: float = 2.0,
        **kwargs: Any,
    ) -> None:
        if every_n_gen_steps is not None and every_n_gen_steps < 1:
            raise ValueError(f"callbacks.checkpoint.every_n_gen_steps must be >= 1 or null, got {every_n_gen_steps}")
        for key in ("every_n_train_steps", "every_n_epochs", "train_time_interval"):
            if kwargs.get(key):
                raise ValueError(f"callbacks.checkpoint.{key} is not used by ganzoo; set every_n_gen_steps")
        _check_keep_last(keep_last, kwargs.get("monitor"), kwargs.get("save_top_k", 1))
        if disk_margin < 1:
            raise ValueError(
                f"callbacks.checkpoint.disk_margin must be >= 1 (times a checkpoint's size), got {disk_margin}"
            )
        kwargs.update(every_n_train_steps=0, every_n_epochs=0, train_time_interval=None)
        super().__init__(**kwargs)
        self.every_n_gen_steps, self.keep_last, self.disk_margin = every_n_gen_steps, keep_last, disk_margin
        self.periodic_paths: list[str] = []  # periodic files written in this directory, oldest first
        self._last_size: int | None = None

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: AdversarialModule, *args) -> None:
        if self._should_skip_saving_checkpoint(trainer):
            return
        periodic, final = self._periodic(pl_module), is_final_batch(trainer)
        if periodic or final:
            candidates = self._monitor_candidates(trainer)
            # A monitored score (e.g. val/fid, also scored on the final batch) gets one last comparison.
            if periodic or (final and self.monitor is not None):
                self._save_topk_checkpoint(trainer, candidates)
            self._save_last_checkpoint(trainer, candidates)

    def saves_now(self, trainer: pl.Trainer, pl_module: AdversarialModule) -> bool:
        """Whether this batch's ``on_train_batch_end`` writes a checkpoint (the divergence guard reads its
        losses first)."""
        return not self._should_skip_saving_checkpoint(trainer) and (
            self._periodic(pl_module) or is_final_batch(trainer)
        )

    def _periodic(self, pl_module: AdversarialModule) -> bool:
        step = pl_module.gen_step
        periodic = bool(self.every_n_gen_steps) and step > 0 and step % self.every_n_gen_steps == 0
        return periodic and pl_module.disc_step % pl_module.n_critic == 0  # only right after a G step

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        """``save_on_exception=true`` must not save the diverged weights the guard stopped the run for."""
        if isinstance(exception, DivergenceError) or first_non_finite(pl_module.state_dict().items()):
            return
        super().on_exception(trainer, pl_module, exception)

    # ---- writing ---------------------------------------------------------------------------------------------
    def _save_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        """Checked (finite weights, free space), written to a temporary name, synced and renamed."""
        self._refuse_non_finite(trainer, filepath)
        self._check_free_space(trainer, filepath)
        tmp = _temporary_name(filepath)
        try:
            trainer.save_checkpoint(tmp, self.save_weights_only)
            if trainer.is_global_zero:
                _fsync(tmp)
                os.replace(tmp, filepath)
                _fsync(os.path.dirname(filepath))
                self._last_size = os.path.getsize(filepath)
        finally:
            if trainer.is_global_zero:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(tmp)  # only still there if the write failed
        trainer.strategy.barrier("Checkpoint._save_checkpoint")
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(proxy(self))

    def _refuse_non_finite(self, trainer: pl.Trainer, filepath: str) -> None:
        module = trainer.lightning_module
        name = first_non_finite(module.state_dict().items())
        if name is not None:
            step = getattr(module, "gen_step", trainer.global_step)
            raise DivergenceError(
                f"refusing to write {filepath} at generator step {step}: {name} holds NaN/Inf (training diverged); "
                "the previous checkpoints are kept. Lower the learning rates or add callbacks.divergence_guard"
            )

    def _check_free_space(self, trainer: pl.Trainer, filepath: str) -> None:
        """Fail before writing rather than leave a half file (or a full disk) behind. Rank 0 decides for all."""
        problem = None
        if trainer.is_global_zero:
            directory = os.path.dirname(filepath) or "."
            os.makedirs(directory, exist_ok=True)
            needed = int(self.disk_margin * (self._last_size or _state_bytes(trainer)))
            free = shutil.disk_usage(directory).free
            if free < needed:
                problem = (
                    f"not enough disk space to write {os.path.basename(filepath)} in {directory}: {free} bytes free, "
                    f"{needed} needed ({self.disk_margin:g} x the checkpoint size); free space, or bound the "
                    "periodic checkpoints with callbacks.checkpoint.keep_last=K"
                )
        problem = trainer.strategy.broadcast(problem, src=0)
        if problem is not None:
            raise DiskSpaceError(problem)

    # ---- keep_last: a bounded number of periodic files ------------------------------------------------------
    def _save_none_monitor_checkpoint(self, trainer: pl.Trainer, monitor_candidates: dict[str, Any]) -> None:
        super()._save_none_monitor_checkpoint(trainer, monitor_candidates)
        if self.best_model_path in self.periodic_paths:
            self.periodic_paths.remove(self.best_model_path)  # rewritten: now the newest
        self.periodic_paths.append(self.best_model_path)
        if self.keep_last is not None:
            self._prune(trainer)

    def _prune(self, trainer: pl.Trainer) -> None:
        """Delete the oldest periodic files beyond ``keep_last``; never the last, best or resumed-from file."""
        protected = {self.last_model_path, self.best_model_path, str(trainer.ckpt_path or "")}
        while len(self.periodic_paths) > self.keep_last:
            old = self.periodic_paths.pop(0)
            if old not in protected and self._should_remove_checkpoint(trainer, old, self.best_model_path):
                self._remove_checkpoint(trainer, old)

    def state_dict(self) -> dict[str, Any]:
        return super().state_dict() | {"periodic_paths": list(self.periodic_paths)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        if state_dict.get("dirpath", self.dirpath) == self.dirpath:  # files of another run's folder are not ours
            self.periodic_paths = list(state_dict.get("periodic_paths", []))


def _check_keep_last(keep_last: int | None, monitor: str | None, save_top_k: int) -> None:
    if keep_last is None:
        return
    if keep_last < 1:
        raise ValueError(f"callbacks.checkpoint.keep_last must be >= 1 or null (keep all), got {keep_last}")
    if monitor is not None or save_top_k != -1:
        raise ValueError(
            "callbacks.checkpoint.keep_last bounds periodic checkpoints saved without a monitor and needs "
            f"save_top_k=-1 (got monitor={monitor}, save_top_k={save_top_k}); with a monitor, save_top_k bounds them"
        )


def _temporary_name(filepath: str) -> str:
    """Beside the target (same file system, so the rename is atomic), hidden, and not ending in .ckpt so
    Lightning's search for last*.ckpt never picks it up."""
    path = Path(filepath)
    return str(path.with_name(f".{path.name}.tmp"))


def _fsync(path: str) -> None:
    """Flush a file's (or a directory's: the rename) data to disk, so a power loss cannot undo the write."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _state_bytes(trainer: pl.Trainer) -> int:
    """Bytes of the weights and optimizer states: a checkpoint's size before the first one exists."""
    tensors = list(trainer.lightning_module.state_dict().values())
    for optimizer in trainer.optimizers:
        tensors += [t for state in optimizer.state.values() for t in state.values() if torch.is_tensor(t)]
    return sum(t.numel() * t.element_size() for t in tensors if torch.is_tensor(t))


def read_checkpoint(path: str | Path, map_location: str = "cpu") -> dict[str, Any]:
    """Load a checkpoint file safely: ``weights_only`` (tensors and plain containers; a pickle that would run
    code is refused), any failure reported as :class:`CheckpointError` naming the file, and, when it is
    damaged, the newest loadable checkpoint beside it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; pass ckpt_path=<run dir>/checkpoints/last.ckpt")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # truncated zip, pickle with code, not a checkpoint at all: all mean "not loadable"
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"checkpoint {path} cannot be loaded ({type(err).__name__}: {reason}); {_fallback_hint(path)}"
        ) from err


def check_resume_checkpoint(ckpt_path: str | Path | None, model_cfg: Any = None) -> dict[str, Any] | None:
    """Check a ``ckpt_path`` to resume from before training starts, and return it loaded (None when there is none).

    Lightning would fail on a damaged file, or on the weights of another model, with a traceback that names
    neither the file nor the model. With ``model_cfg`` (the run's ``cfg.model``), the checkpoint must have been
    trained with the same model class and the same nets (class and settings) as the run builds.
    Lightning's keywords (``last``, ``best``, ...) and remote URLs are left to Lightning."""
    if ckpt_path is None or str(ckpt_path) in _CKPT_KEYWORDS or "://" in str(ckpt_path):
        return None
    checkpoint = read_checkpoint(ckpt_path)
    if model_cfg is not None:
        _check_same_model(Path(ckpt_path), checkpoint, model_cfg)
    return checkpoint


def _check_same_model(path: Path, checkpoint: dict[str, Any], model_cfg: Any) -> None:
    """The model class, and each net whose weights the checkpoint holds, must be built as they were trained."""
    stored = ((checkpoint.get("ganzoo") or {}).get("config") or {}).get("model")
    if not isinstance(stored, dict):
        return  # not a ganzoo checkpoint: the model's on_load_checkpoint says so, by name
    current = OmegaConf.to_container(model_cfg, resolve=True) if isinstance(model_cfg, DictConfig) else model_cfg
    differences = [("model._target_", stored.get("_target_"), current.get("_target_"))]
    for net in sorted({key.split(".")[0] for key in checkpoint.get("state_dict", {})}):
        if isinstance(stored.get(net), dict) or isinstance(current.get(net), dict):  # not: fixed noise, loss, tricks
            differences.append(_first_difference(stored.get(net), current.get(net), f"model.{net}"))
    for key, was, now in differences:
        if key is not None and was != now:
            raise CheckpointError(
                f"checkpoint {path} was trained with {key}={was}, but this run has {key}={now}; "
                f"{_same_model_hint(path)}"
            )


def _first_difference(was: Any, now: Any, key: str) -> tuple[str | None, Any, Any]:
    """The first key (``_target_`` first) under which two config trees differ, with both values."""
    if isinstance(was, dict) and isinstance(now, dict):
        for name in sorted(was.keys() | now.keys(), key=lambda k: (k != "_target_", str(k))):
            found = _first_difference(was.get(name), now.get(name), f"{key}.{name}")
            if found[0] is not None:
                return found
        return None, None, None
    if isinstance(was, dict) or isinstance(now, dict):
        was, now = (w.get("_target_", w) if isinstance(w, dict) else w for w in (was, now))
        return f"{key}._target_" if was != now else key, was, now
    return (key, was, now) if was != now else (None, None, None)


def _same_model_hint(path: Path) -> str:
    """How to build the model the checkpoint was trained with: the model overrides of its Hydra run, when known."""
    overrides_file = path.parent.parent / ".hydra" / "overrides.yaml"
    advice = "drop ckpt_path to start a new run instead"
    if not overrides_file.is_file():
        return f"resume with the model settings it was trained with, or {advice}"
    overrides = [str(o) for o in OmegaConf.load(overrides_file) if str(o).lstrip("+~").startswith("model")]
    trained = " ".join(overrides) if overrides else "the default model (no model overrides)"
    return f"resume with the model it was trained with ({trained}; see {overrides_file}), or {advice}"


def _fallback_hint(damaged: Path) -> str:
    """Name the newest loadable checkpoint in the same folder, to resume from instead."""
    others = sorted(damaged.parent.glob("*.ckpt"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
    for other in others:
        if other.resolve() == damaged.resolve():
            continue
        try:
            torch.load(other, map_location="cpu", weights_only=True)
        except Exception:  # noqa: S112 - damaged too: try the next older one
            continue
        return f"the newest loadable one beside it is {other}: pass ckpt_path={other}"
    return "no loadable checkpoint is beside it; start again without ckpt_path"

"""What the entry points do, given a composed config: build, train, sample.

``src/train.py`` and ``src/sample.py`` only compose the config (Hydra) and call these, so tests can run
the same code on a config composed in-process.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import Timer

from ganzoo.callbacks.checkpoint import CheckpointError, DiskSpaceError, check_resume_checkpoint
from ganzoo.callbacks.guard import DivergenceError
from ganzoo.callbacks.samples import image_grid, save_png
from ganzoo.callbacks.wandb_resume import WandbRunId, resume_wandb_run
from ganzoo.data.idx import DataError
from ganzoo.files import atomic_write
from ganzoo.models.base import AdversarialModule
from ganzoo.sweeps import write_run_record
from ganzoo.validation import check_types

log = logging.getLogger("ganzoo")

# The parts of a run's config that rebuild its model; stored (resolved) in every checkpoint.
_BUILD_KEYS = ("model", "loss", "trick", "data")


# Errors a user fixes (data, config, checkpoint, disk, learning rates): reported in one line, no traceback.
# CheckpointError is defined beside the checkpoint callback (which raises it too) and re-exported here.
USER_ERRORS = (DataError, CheckpointError, DiskSpaceError, DivergenceError, ValueError, InstantiationException)


def report_user_errors(task: Callable[[DictConfig], Any], cfg: DictConfig) -> Any:
    """Run ``task``; a user error (bad data, bad value, bad config) ends the process with its message
    alone instead of a traceback (set GANZOO_TRACEBACK=1 to see the traceback)."""
    try:
        return task(cfg)
    except USER_ERRORS as err:
        if os.environ.get("GANZOO_TRACEBACK"):
            raise
        message = str(err).strip()
        if isinstance(err, InstantiationException) and err.__cause__ is not None:
            message = f"{message.splitlines()[0]} {err.__cause__}"
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(1) from None


def build_model(cfg: DictConfig) -> AdversarialModule:
    """The LightningModule of a config: model nets + optimizers from ``cfg.model``, objective from ``cfg.loss``,
    training tricks from ``cfg.trick`` (name -> config; ``trick=[a,b]`` selects conf/trick/a.yaml and b.yaml)."""
    tricks = {name: instantiate(conf) for name, conf in (cfg.get("trick") or {}).items()}
    # Only when there are tricks, so model classes that do not take ``tricks`` still build without them.
    model = instantiate(cfg.model, loss=instantiate(cfg.loss), **({"tricks": tricks} if tricks else {}))
    model.config = {key: OmegaConf.to_container(cfg[key], resolve=True) for key in _BUILD_KEYS if key in cfg}
    return model


def build_trainer(cfg: DictConfig, extra_callbacks: Sequence[pl.Callback] = ()) -> pl.Trainer:
    callbacks = [*extra_callbacks] + [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    max_time = cfg.trainer.get("max_time")
    if max_time is not None:
        # Lightning appends its own Timer after the callbacks, so on a time-limited run's last batch they would
        # not know it is the last (should_stop comes after them): the final grids, metrics and best checkpoints
        # would miss its last steps. The same Timer, first, stops the run on the same batch, seen by all.
        callbacks.insert(0, Timer(duration=max_time, interval="step"))
    return instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, max_time=None)


def train(cfg: DictConfig, extra_callbacks: Sequence[pl.Callback] = ()) -> dict[str, float]:
    """Train one run; returns the last logged metrics (the sweep objective reads these).

    ``extra_callbacks`` run before the configured ones (benchmarks, notebooks)."""
    check_types(cfg)
    check_learning_rates(cfg)
    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), cfg.paths.output_dir)
    # A damaged or unsafe file, or one of another model: named before any work.
    resumed = check_resume_checkpoint(ckpt_path, cfg.get("model"))
    if resumed is not None:
        resume_wandb_run(cfg, resumed)  # the same W&B run, not a second one
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data)
    model = build_model(cfg)
    trainer = build_trainer(cfg, [*extra_callbacks, WandbRunId()])
    for logger in trainer.loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    started = time.perf_counter()
    # weights_only explicitly: torch's default can be flipped by TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD.
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    finally:
        model.release_flush_denormal()  # Lightning skips the module's teardown when a fit raises
    _close_wandb_runs(trainer)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    if trainer.is_global_zero:
        log.info("finished: %d generator / %d critic iterations; %s", model.gen_step, model.disc_step, metrics)
        facts = {"gen_step": model.gen_step, "disc_step": model.disc_step}
        write_run_record(cfg.paths.output_dir, metrics, seconds=round(time.perf_counter() - started, 2), **facts)
    return metrics


def resolve_ckpt_path(ckpt_path: str | None, output_dir: str) -> str | None:
    """``ckpt_path=last`` means this run dir's ``checkpoints/last.ckpt``: resume a run in place with
    ``python src/train.py hydra.run.dir=<its dir> ckpt_path=last`` (plus the run's own overrides)."""
    if ckpt_path != "last":
        return ckpt_path
    path = Path(output_dir) / "checkpoints" / "last.ckpt"
    if not path.is_file():
        raise CheckpointError(
            f"ckpt_path=last but {path} does not exist; pass hydra.run.dir=<the run's dir> to resume it in place, "
            f"or ckpt_path=<run dir>/checkpoints/last.ckpt"
        )
    return str(path)


def check_learning_rates(cfg: DictConfig) -> None:
    """Every ``lr`` of the model, loss and trick configs must be > 0: torch rejects a negative one only when the
    optimizer is built, mid-setup and without the key, and takes 0 silently (a run that never learns)."""
    for section in ("model", "loss", "trick"):
        if cfg.get(section) is None:
            continue
        for key, value in _find_key(OmegaConf.to_container(cfg[section], resolve=True), "lr", section):
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
                raise ValueError(f"{key} must be a finite number > 0, got {value!r}")


def _find_key(tree: Any, name: str, path: str) -> list[tuple[str, Any]]:
    """(dotted path, value) of every non-null ``name`` key in a nested config container."""
    if isinstance(tree, dict):
        found = [(f"{path}.{name}", tree[name])] if tree.get(name) is not None else []
        for key, child in tree.items():
            found += _find_key(child, name, f"{path}.{key}")
        return found
    if isinstance(tree, list):
        return [hit for i, child in enumerate(tree) for hit in _find_key(child, name, f"{path}[{i}]")]
    return []


def _close_wandb_runs(trainer: pl.Trainer) -> None:
    """Finish the W&B run now: Lightning leaves it open, so the next job of a multirun (same process)
    would log into it, and an in-process caller would find its files unwritten."""
    from pytorch_lightning.loggers import WandbLogger

    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger) and trainer.is_global_zero:
            logger.experiment.finish()


def load_checkpoint(path: str | Path, map_location: str = "cpu") -> dict[str, Any]:
    """Load a ganzoo checkpoint safely (``weights_only``: tensors and plain containers, no pickled code)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; pass ckpt_path=<run dir>/checkpoints/last.ckpt")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # truncated zip, pickle with code, ...: all mean "not loadable"
        raise CheckpointError(f"checkpoint {path} cannot be loaded ({type(err).__name__}: {err})") from err
    if not isinstance(checkpoint, dict) or "ganzoo" not in checkpoint or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path} is not a ganzoo checkpoint (no 'ganzoo' section); use one from train.py")
    return checkpoint


def load_model(path: str | Path, map_location: str = "cpu") -> AdversarialModule:
    """Rebuild the trained module of a checkpoint from the config stored inside it."""
    checkpoint = load_checkpoint(path, map_location)
    model = build_model(OmegaConf.create(checkpoint["ganzoo"]["config"]))
    model.on_load_checkpoint(checkpoint)  # before the weights, as Lightning does: it may build data-shaped nets
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval()


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[-1, 1] floats (N, C, H, W) -> uint8 (N, H, W) for one channel, (N, H, W, C) otherwise."""
    pixels = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    pixels = pixels[:, 0] if pixels.shape[1] == 1 else pixels.permute(0, 2, 3, 1)
    return pixels.numpy()


def requested_conditions(model: Any, cfg: DictConfig) -> torch.Tensor:
    """The conditions of ``cfg.n`` samples all asked for ``cfg.condition``: a category of a table model's
    ``condition_on`` column, or a class index of a label-conditional model."""
    if hasattr(model, "requested_conditions"):  # tables: a category of the condition column
        return model.requested_conditions(cfg.n, cfg.condition)
    classes = getattr(model, "num_classes", 0) if model.sample_conditions(1) is not None else 0
    if not classes:
        raise ValueError(f"condition={cfg.condition!r}: this checkpoint is not conditional; drop condition=")
    if isinstance(cfg.condition, bool) or not isinstance(cfg.condition, int) or not 0 <= cfg.condition < classes:
        raise ValueError(f"condition={cfg.condition!r} is not a class of this model; pass an integer 0-{classes - 1}")
    return torch.full((cfg.n,), cfg.condition, dtype=torch.long, device=model.device)


def sample(cfg: DictConfig) -> Path:
    """Write ``cfg.n`` generated samples to ``cfg.out`` and a figure beside it: an npz with ``images`` (uint8)
    or ``sequences`` (float, (N, T, C)), plus ``labels`` for conditional models; tables go to CSV."""
    if cfg.n < 1:
        raise ValueError(f"n must be >= 1, got {cfg.n}")
    torch.manual_seed(cfg.seed)
    model = load_model(cfg.ckpt_path, map_location=cfg.device).to(cfg.device)
    # None for unconditional models; with condition=<value>, every sample asked for that label
    labels = model.sample_conditions(cfg.n) if cfg.condition is None else requested_conditions(model, cfg)
    latent = model.sample_latent(cfg.n)  # drawn here (as sample() would) so code-driven models can report codes
    images = model.sample(latent=latent, cond=labels, batch_size=cfg.batch_size)
    if hasattr(model, "decode"):  # table models: decoded rows, not images
        return write_table(model.decode(images, labels, seed=cfg.seed), Path(cfg.out))
    if images.dim() == 3:  # sequences (N, T, C): float values and a line-plot figure
        from ganzoo.callbacks.plots import sequence_figure

        arrays, figure = {"sequences": images.numpy()}, sequence_figure(images, labels)
    else:
        arrays, figure = {"images": to_uint8(images)}, image_grid(images[: cfg.grid_size])
    arrays |= {} if labels is None else {"labels": labels.cpu().numpy()}
    if hasattr(model, "latent_codes"):  # InfoGAN: `codes` (categorical) and `continuous_codes`
        arrays |= {name: codes.cpu().numpy() for name, codes in model.latent_codes(latent).items()}
    out = save_npz(Path(cfg.out), arrays)
    grid_path = save_png(figure, out.with_suffix(".png"))
    log.info("wrote %d samples to %s and a grid to %s", cfg.n, out, grid_path)
    return out


def save_npz(out: Path, arrays: dict[str, np.ndarray]) -> Path:
    """Write a compressed npz atomically (temporary name, then rename): a crash leaves no half file."""
    return atomic_write(out, lambda tmp: np.savez_compressed(tmp, **arrays))


FEATURE_SPLITS = ("train", "test")


def features(cfg: DictConfig) -> Path:
    """Write the features of a trained model (:func:`ganzoo.features.extract`) for real data to ``cfg.out``:
    ``<split>_features`` (N, D) float32 and ``<split>_labels`` for each split of ``cfg.splits``. The data module
    is the one the model was trained on (its stored config), reading from ``cfg.data_dir`` when given."""
    from ganzoo.features import extract, has_features

    unknown = set(cfg.splits) - set(FEATURE_SPLITS)
    if unknown or not cfg.splits:
        raise ValueError(f"splits must be a non-empty list of {FEATURE_SPLITS}, got {list(cfg.splits)}")
    if cfg.limit is not None and cfg.limit < 1:
        raise ValueError(f"limit must be >= 1 or null, got {cfg.limit}")
    model = load_model(cfg.ckpt_path, map_location=cfg.device).to(cfg.device)
    if not has_features(model):
        raise ValueError(f"{type(model).__name__} has no feature map; use a bigan, aae, infogan or ssgan checkpoint")
    data_cfg = OmegaConf.create(model.config["data"])
    for key in ("data_dir", "cache_dir"):
        if cfg.get(key):
            data_cfg[key] = cfg[key]
    data_cfg.limit = None  # the training subset limit does not apply to feature extraction
    datamodule = instantiate(data_cfg)
    datamodule.prepare_data()
    datamodule.setup("fit")
    arrays: dict[str, np.ndarray] = {}
    for split in cfg.splits:
        dataset = datamodule.train_set if split == "train" else datamodule.held_out()
        x, y = (t[: cfg.limit] for t in dataset.tensors)
        arrays[f"{split}_features"] = extract(model, x, cfg.batch_size).numpy()
        arrays[f"{split}_labels"] = y.numpy()
    out = save_npz(Path(cfg.out), arrays)
    shapes = ", ".join(f"{k} {v.shape}" for k, v in arrays.items() if k.endswith("features"))
    log.info("wrote features of %s to %s: %s", type(model).__name__, out, shapes)
    return out


def write_table(table: Any, out: Path) -> Path:
    """Write a decoded table (a DataFrame) to ``out``: Parquet for ``.parquet`` / ``.pq``, else CSV."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        if out.suffix in (".parquet", ".pq"):
            table.to_parquet(tmp, index=False)
        else:
            table.to_csv(tmp, index=False)
    except ImportError as err:
        raise ValueError(f"writing {out.name} needs pyarrow or fastparquet (not installed); use a .csv out") from err
    tmp.replace(out)
    log.info("wrote %d rows to %s", len(table), out)
    return out

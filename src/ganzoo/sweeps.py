"""Sweeps: what a run hands back to Hydra's sweeper, the per-run record, and the summary of a multirun.

Each training run writes ``run_summary.json`` (its final logged metrics, iterations and wall time) into its own
output dir; :class:`SweepSummary`, a Hydra callback, collects those at the end of a multirun into
``sweep_summary.csv`` and ``sweep_summary.md`` in the sweep dir. Reading files rather than in-process job
returns works the same for every launcher (basic, joblib workers, submitit/SLURM jobs).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from ganzoo.files import write_json

log = logging.getLogger("ganzoo")

RUN_RECORD = "run_summary.json"
# Metrics shown in the summary table when a run logged them (every logged metric goes into the CSV).
KEY_METRICS = ("val/fid", "val/kid", "val/is", "val/precision", "val/recall", "val/modes", "val/high_quality")


def objective(cfg: DictConfig, metrics: dict[str, float]) -> float | dict[str, float]:
    """What ``train.py`` returns: the value of ``cfg.optimized_metric`` for a sweeper to minimise or
    maximise, or all final metrics when none is set. A run that did not log it is a clear error, and a
    non-finite value (a diverged run) is returned as +inf so a minimising sweep ranks it last."""
    name = cfg.get("optimized_metric")
    if not name:
        return metrics
    if name not in metrics:
        raise ValueError(
            f"optimized_metric={name} was not logged by this run (logged: {', '.join(sorted(metrics)) or 'nothing'}); "
            "image metrics need data=mnist or fashion_mnist with metrics=image"
        )
    value = metrics[name]
    return value if math.isfinite(value) else math.inf


def write_run_record(output_dir: str | Path, metrics: dict[str, float], **facts: Any) -> Path:
    """``<output_dir>/run_summary.json``: the final metrics and facts of one run (iterations, seconds)."""
    return write_json(Path(output_dir) / RUN_RECORD, {"metrics": metrics, **facts}, sort_keys=True)


def wandb_group() -> str | None:
    """The W&B group of this run: the sweep's dir name under a multirun (so its jobs are grouped), else none."""
    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return None
    return Path(hydra_cfg.sweep.dir).as_posix().replace("/", "_").lstrip("_")


def summarize(sweep_dir: str | Path) -> pd.DataFrame:
    """One row per finished job under ``sweep_dir``: its overrides, final metrics, iterations and seconds."""
    rows = []
    for record in sorted(Path(sweep_dir).glob(f"*/{RUN_RECORD}"), key=lambda p: _job_order(p.parent.name)):
        job_dir = record.parent
        data = json.loads(record.read_text())
        overrides_file = job_dir / ".hydra" / "overrides.yaml"
        overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.is_file() else []
        row = {"job": job_dir.name, "overrides": " ".join(overrides)}
        row |= {k: v for k, v in data.items() if k != "metrics"}
        row |= data["metrics"]
        rows.append(row)
    return pd.DataFrame(rows)


def _job_order(name: str) -> tuple[int, str]:
    return (int(name), "") if name.isdigit() else (1 << 30, name)


def write_summary(sweep_dir: str | Path) -> tuple[Path, Path] | None:
    """``sweep_summary.csv`` (every column) and ``sweep_summary.md`` (the key ones) in ``sweep_dir``."""
    sweep_dir = Path(sweep_dir)
    table = summarize(sweep_dir)
    if table.empty:
        log.warning("sweep %s: no job wrote %s, so there is no summary", sweep_dir, RUN_RECORD)
        return None
    csv_path, md_path = sweep_dir / "sweep_summary.csv", sweep_dir / "sweep_summary.md"
    table.to_csv(csv_path, index=False)
    shown = [c for c in ("job", "overrides", *KEY_METRICS, "gen_step", "seconds") if c in table.columns]
    md_path.write_text(_markdown(table[shown]) + "\n")
    log.info("sweep summary of %d jobs: %s, %s", len(table), csv_path, md_path)
    return csv_path, md_path


def _markdown(table: pd.DataFrame) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return "" if math.isnan(value) else f"{value:.4g}"
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)


class SweepSummary(Callback):
    """Hydra callback (``hydra.callbacks.sweep_summary``): writes the summary when a multirun ends."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        write_summary(config.hydra.sweep.dir)


OmegaConf.register_new_resolver("ganzoo.wandb_group", wandb_group, replace=True)

"""``src/evaluate.py``: pick the report that fits the data a checkpoint (or ``data=``) was trained on.

Images (MNIST, Fashion-MNIST) get FID/KID/IS and friends (``ganzoo.metrics.image``), sequences (waves) the
sequence report (``ganzoo.metrics.sequence``), tables the table quality report (``ganzoo.metrics.tabular``).
Each report module has an ``evaluate(cfg)`` that prints its table beside the real-vs-real floor and writes
``metrics.json``.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

# data module class name (the last part of its ``_target_``) -> the module holding that kind's ``evaluate``
REPORTS = {
    "MNISTDataModule": "ganzoo.metrics.image",
    "FashionMNISTDataModule": "ganzoo.metrics.image",
    "WavesDataModule": "ganzoo.metrics.sequence",
    "TabularDataModule": "ganzoo.metrics.tabular",
}


# sample files whose kind their suffix tells, when neither a checkpoint nor data= does
TABLE_SUFFIXES = (".csv", ".parquet")


def data_target(cfg: Any) -> str | None:
    """The ``_target_`` of the data the report is about: the checkpoint's, else ``data=``'s, else a table's
    for ``samples=<file.csv|.parquet>``."""
    if cfg.get("ckpt_path") is not None:
        from ganzoo.pipeline import load_checkpoint

        return load_checkpoint(cfg.ckpt_path)["ganzoo"]["config"]["data"]["_target_"]
    data = cfg.get("data")
    if data and data.get("_target_"):
        return data["_target_"]
    samples = cfg.get("samples")
    if samples is not None and str(samples).lower().endswith(TABLE_SUFFIXES):
        return "ganzoo.data.tabular.TabularDataModule"
    return None


def report_module(target: str | None) -> str:
    """The module whose ``evaluate`` scores data of ``target`` (images when it is not known)."""
    if target is None:
        return REPORTS["MNISTDataModule"]  # samples=<npz> without data=: the image report asks for data=
    name = target.rsplit(".", 1)[-1]
    if name not in REPORTS:
        kinds = ", ".join(sorted(REPORTS))
        raise ValueError(f"src/evaluate.py has no report for {target}; it scores data of: {kinds}")
    return REPORTS[name]


def evaluate(cfg: Any) -> dict[str, Any]:
    return import_module(report_module(data_target(cfg))).evaluate(cfg)

"""Ours (experiment=adult_wgan_gp) against CTGAN (the ``ctgan`` package) on UCI Adult or diamonds, on the same
wall clock.

    make bench-tabular                          # 10 minutes of training each (ARGS="--minutes 30" for more)
    python bench/tabular.py --minutes 1         # a smoke test
    python bench/tabular.py --data diamonds     # the preset's settings on data=diamonds (section tabular_diamonds)
    python bench/tabular.py --minutes 20 --set model.training_by_sampling=true --section tabular_tbs   # a variant

Both learn the same training split (the data module's, train.yaml's seed 42) with the same discrete columns, and
each gets ``--minutes`` of training loop; preprocessing (our encoder fit, CTGAN's DataTransformer) is timed apart.
``--snapshots`` times during the loop a table of ``--n`` rows is sampled (on the budget's clock, a cost both pay
alike). Afterwards every snapshot gets its quality score (the mean of column shapes and pair trends, SDMetrics'
overall score), which gives the time ours needs to reach CTGAN's final quality (the issue's target: at most half of
CTGAN's time), and the final tables get the full report of ``ganzoo.metrics.tabular`` against the same held-out
rows, printed side by side with the real-vs-real floor and written to the ``tabular`` section of bench/results.md.
Tables and reports are kept under ``--out``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from conftest import compose_config  # noqa: E402  (the same composition the tests use)
from report import machine, write_section  # noqa: E402

from ganzoo.data.tabular_schema import CATEGORICAL  # noqa: E402
from ganzoo.files import write_json  # noqa: E402
from ganzoo.metrics.tabular import CHECKS, align, make_scorer, quality_report, real_parts, sample_table  # noqa: E402
from ganzoo.pipeline import train  # noqa: E402

DATASETS = {"adult": "UCI Adult", "diamonds": "diamonds"}  # data= presets with a target column, and their names
Snapshot = tuple[float, int, pd.DataFrame]  # (seconds of training loop, iterations, sampled table)


class Snapshots(pl.Callback):
    """Samples a table of ``n`` rows every ``every_s`` seconds of the training loop, and once at its end."""

    def __init__(self, every_s: float, n: int, seed: int) -> None:
        self.every_s, self.n, self.seed = every_s, n, seed
        self.tables: list[Snapshot] = []

    def on_train_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self.start, self.due = time.perf_counter(), self.every_s

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, *args: Any) -> None:
        if time.perf_counter() - self.start >= self.due:
            self.take(pl_module)
            self.due += self.every_s

    def on_train_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if not self.tables or self.tables[-1][1] != pl_module.gen_step:
            self.take(pl_module)

    def take(self, model: Any) -> None:
        seconds = time.perf_counter() - self.start
        self.tables.append((seconds, model.gen_step, sample_table(model, self.n, self.seed)))


def train_ours(args: argparse.Namespace, out: Path) -> tuple[list[Snapshot], dict[str, float]]:
    """Train the preset for ``args.minutes`` (Lightning's max_time); its snapshots and its timings."""
    budget = int(args.minutes * 60)
    cfg = compose_config(
        [
            "experiment=adult_wgan_gp",
            f"data={args.data}",
            f"paths.data_dir={args.data_dir}",
            f"seed={args.seed}",
            "trainer.max_steps=-1",
            f"+trainer.max_time=00:{budget // 3600:02d}:{budget % 3600 // 60:02d}:{budget % 60:02d}",
            "logger=csv",
            "metrics=none",  # the benchmark scores its own snapshots; in-training scoring would eat ours' budget
            "~callbacks.progress",
            "+trainer.enable_progress_bar=false",
            *args.set,
        ],
        out / "ours",
    )
    snapshots = Snapshots(args.minutes * 60 / args.snapshots, args.n, args.seed)
    start = time.perf_counter()
    train(cfg, extra_callbacks=[snapshots])
    total = time.perf_counter() - start
    loop = snapshots.tables[-1][0]
    return snapshots.tables, {"loop_s": loop, "total_s": total, "preprocess_s": total - loop}


def train_ctgan(train_table: pd.DataFrame, discrete: list[str], args: argparse.Namespace):
    """Fit ``ctgan.CTGAN`` (its defaults: 500 rows a batch, pac 10) for ``args.minutes`` of training loop.

    CTGAN has no time budget, so its epoch loop (``tqdm(range(epochs))``) is swapped for one that stops when the
    budget is spent and samples the snapshots; its clock starts there, after the DataTransformer fit.
    """
    from ctgan import CTGAN

    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    model = CTGAN(epochs=1_000_000, enable_gpu=False)
    budget, every = args.minutes * 60, args.minutes * 60 / args.snapshots
    tables: list[Snapshot] = []

    def sample() -> pd.DataFrame:
        with torch.random.fork_rng(), torch.no_grad():
            torch.manual_seed(args.seed)
            return model.sample(args.n)

    def timed_epochs(epochs: range, **_: Any):
        start, due = time.perf_counter(), every
        for epoch in epochs:
            seconds = time.perf_counter() - start
            if seconds >= due or seconds >= budget:
                tables.append((seconds, epoch, sample()))
                due += every
            if seconds >= budget:
                return
            yield epoch

    start = time.perf_counter()
    with mock.patch("ctgan.synthesizers.ctgan.tqdm", timed_epochs):
        model.fit(train_table, discrete)
    total = time.perf_counter() - start
    loop = tables[-1][0]
    return tables, {"loop_s": loop, "total_s": total, "preprocess_s": total - loop}


def first_reaching(snapshots: list[tuple[float, int, float]], quality: float) -> float | None:
    """Seconds of the first snapshot whose quality is at least ``quality`` (None if none is)."""
    return next((seconds for seconds, _, score in snapshots if score >= quality), None)


def side_by_side(reports: dict[str, dict], runs: dict[str, dict]) -> list[tuple[str, ...]]:
    """Rows (figure, ours, CTGAN, real vs real, target) of the final reports and the timings."""
    floor = reports["ours"]["floor"]
    rows = []
    for key, label, style, target, _ in CHECKS:
        if key in floor:
            cells = [style.format(reports[name]["samples"][key]) for name in ("ours", "ctgan")]
            rows.append((label, *cells, style.format(floor[key]), target))
    reach = [runs[name]["reach_ctgan_s"] for name in ("ours", "ctgan")]
    rows += [
        ("training loop (min)", *[f"{runs[name]['loop_s'] / 60:.1f}" for name in ("ours", "ctgan")], "", ""),
        ("preprocessing (s)", *[f"{runs[name]['preprocess_s']:.0f}" for name in ("ours", "ctgan")], "", ""),
        ("iterations (G steps / epochs)", *[str(runs[name]["iterations"]) for name in ("ours", "ctgan")], "", ""),
        ("time to CTGAN's final quality (min)", *["-" if s is None else f"{s / 60:.1f}" for s in reach], "", "<= half"),
    ]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="training-loop budget of each model")
    parser.add_argument("--n", type=int, default=10000, help="rows sampled for each report")
    parser.add_argument("--snapshots", type=int, default=8, help="tables sampled during training, for time-to-quality")
    parser.add_argument("--seed", type=int, default=42, help="train.yaml's seed: it fixes the split and both models")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "bench_tabular")
    parser.add_argument("--data", choices=list(DATASETS), default="adult", help="the table (a data= preset)")
    parser.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="Hydra overrides for ours, e.g. --set model.training_by_sampling=true data.condition_on=income",
    )
    parser.add_argument("--section", help="bench/results.md section to (re)write (default: tabular[_diamonds])")
    args = parser.parse_args()
    args.data_dir = os.environ.get("GANZOO_DATA_DIR", str(ROOT / "data"))
    if args.set and not args.section:
        parser.error("--set runs a variant: name its bench/results.md section with --section (e.g. tabular_tbs)")
    args.section = args.section or ("tabular" if args.data == "adult" else f"tabular_{args.data}")
    args.out.mkdir(parents=True, exist_ok=True)

    # seed=: data.seed follows it, so the split is the one both models train on (train.yaml's seed)
    eval_cfg = compose_config(
        [f"data={args.data}", f"paths.data_dir={args.data_dir}", f"seed={args.seed}"], args.out, "eval"
    )
    parts, schema = real_parts(instantiate(eval_cfg.data))
    scorer = make_scorer(parts, schema, eval_cfg.table, seed=0)
    discrete = schema.of_kind(CATEGORICAL)

    snapshots, runs = {}, {}
    print(f"training ours for {args.minutes} min ...", flush=True)
    snapshots["ours"], runs["ours"] = train_ours(args, args.out)
    print(f"training CTGAN for {args.minutes} min ...", flush=True)
    snapshots["ctgan"], runs["ctgan"] = train_ctgan(parts["train"], discrete, args)

    reports, curves = {}, {}
    for name, tables in snapshots.items():
        tables = [(s, i, align(t, parts["train"], schema.kinds, f"{name}'s table")) for s, i, t in tables]
        curves[name] = [(seconds, step, scorer.quality(table)) for seconds, step, table in tables]
        final = tables[-1][2]
        final.to_csv(args.out / f"{name}.csv", index=False)
        reports[name] = quality_report(scorer, final, parts["floor"], source=name, data=str(eval_cfg.data.path))
        runs[name]["iterations"] = tables[-1][1]
        curve = [(round(seconds), step, round(quality, 3)) for seconds, step, quality in curves[name]]
        print(f"{name}: quality over the loop (seconds, iterations, quality): {curve}", flush=True)
    for name in runs:
        runs[name]["reach_ctgan_s"] = first_reaching(curves[name], curves["ctgan"][-1][2])
        write_json(args.out / f"{name}_metrics.json", reports[name] | {"run": runs[name], "curve": curves[name]})

    rows = side_by_side(reports, runs)
    table = Table(title=f"{DATASETS[args.data]}, {args.minutes:g} min of training each ({reports['ours']['efficacy']})")
    for name in ("figure", "ours", "CTGAN", "real vs real", "target"):
        table.add_column(name, justify="left" if name == "figure" else "right")
    for row in rows:
        table.add_row(*row)
    Console().print(table)

    overrides = "".join(f" {override}" for override in args.set)
    lines = [
        f"## Tables: ours vs CTGAN on {DATASETS[args.data]} (issue 8)",
        "",
        f"`python bench/tabular.py --minutes {args.minutes:g} --n {args.n}"
        f"{'' if args.data == 'adult' else ' --data ' + args.data}{' --set' + overrides if args.set else ''}`"
        f" on {machine()}. Ours: "
        f"`experiment=adult_wgan_gp{'' if args.data == 'adult' else ' data=' + args.data}{overrides}` with "
        "`trainer.max_time`; "
        "CTGAN: `ctgan.CTGAN()` defaults, the same training "
        f"split ({len(parts['train'])} rows) and discrete columns. Each report scores {args.n} generated rows "
        f"against {len(parts['reference'])} held-out rows; *real vs real* scores {len(parts['floor'])} other held-out "
        "rows. Quality score: the mean of column shapes and pair trends (SDMetrics' overall score); *time to CTGAN's "
        f"final quality* is the first of {args.snapshots} snapshots of ours that reaches it.",
        "",
        "| figure | ours | CTGAN | real vs real | target |",
        "|---|---|---|---|---|",
        *[f"| {' | '.join(row)} |" for row in rows],
    ]
    write_section(args.section, lines)


if __name__ == "__main__":
    main()

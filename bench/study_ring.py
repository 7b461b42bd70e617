"""The mode-collapse study on the ring of 8 Gaussians (issue 6; Metz et al. 2016, Unrolled GAN, section 3.1).

    python bench/study_ring.py                      # the whole study (`make study-ring`), then the report
    python bench/study_ring.py --cells none --seeds 1    # a slice of it
    python bench/study_ring.py --report-only        # rebuild the table and figure from finished runs
    python bench/study_ring.py --set data.std=0.05  # extra Hydra overrides for every run

Every cell (loss x trick) is one Hydra multirun of ``src/train.py experiment=ring`` over the seeds, with the
same budget of ``trainer.max_steps`` optimizer steps (``--steps``). Tricks are selected by name from the
``trick`` config group (``trick=[unrolled] trick.unrolled.steps=5``); see ``CELLS``. Multiruns go ``--jobs`` at a
time, each on one thread: the nets are tiny, so two single-threaded runs use 2 cores better than one run on
two. A run that fails (e.g. a trick that rejects a loss) leaves its cell empty and the study goes on; its
console output is in ``<out>/logs/``. Running a cell again replaces its earlier runs; the report covers every
finished run under ``<out>/runs/``, so the study can be run in slices (``--cells none``, then ``--cells ...``).

Budget: ``--steps 2000`` (1000 generator iterations at n_critic = 1, 333 with wgan_gp's n_critic = 5). A
no-trick run costs ~10 s of training on a quiet core, unrolled k = 5 about 6x that and k = 10 about 10x; the
unrolled x wgan_gp pairs (third-order derivatives through the gradient penalty, ~9 minutes a run) are left
out unless ``--all``. ``conf/experiment/ring.yaml`` sets the data (sigma = 0.05) and learning rates.

Each run's ``toy/final.json`` and ``toy/final_samples.npy`` (written by ``ganzoo.callbacks.toy.ToyMetrics``)
become one row of ``<out>/table.md`` (modes covered per seed, high-quality %, KL to uniform, generator
iterations, training seconds) and one panel of ``<out>/samples.png`` (rows: loss and seed, columns: trick);
``--docs`` copies both for the README (``docs/study_ring.md``, ``docs/figures/study_ring.png``).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from omegaconf import OmegaConf

from ganzoo.callbacks.plots import figure_to_tensor
from ganzoo.callbacks.samples import save_png
from ganzoo.callbacks.toy import draw_mixture
from ganzoo.data.toy import ring_modes

ROOT = Path(__file__).resolve().parents[1]

# Trick cells: name -> Hydra overrides. The trick configs live in conf/trick/ (one file per trick).
CELLS: dict[str, list[str]] = {
    "none": [],
    "unrolled_k5": ["trick=[unrolled]", "trick.unrolled.steps=5"],
    "unrolled_k10": ["trick=[unrolled]", "trick.unrolled.steps=10"],
    # 16 kernels, not the trick's default 50: the pairwise L1 distances cost O(batch^2 x kernels x kernel_dim),
    # and at 50 kernels (batch 256) one run took ~250 s on a quiet core, 60 % of the study's time; 16 kernels
    # of 5 dimensions still see the batch's spread of D's 128 features on 2-D data.
    "minibatch_disc": ["trick=[minibatch_disc]", "trick.minibatch_disc.kernels=16"],
    "instance_noise": ["trick=[instance_noise]"],
    "label_smoothing": ["trick=[label_smoothing]"],
}
LOSSES = ("nonsaturating", "minimax", "wgan_gp")
SEEDS = (1, 2, 3)
# (cell, loss) pairs left out unless --all, for their cost under wgan_gp's gradient penalty (measured on the
# shared 2-core machine): unrolling differentiates through the penalty's double backward (third order; one
# unrolled_k10 run of 2000 steps took ~9 minutes), and the penalty's double backward through minibatch
# discrimination's pairwise L1 distances is as slow (1150 of 2000 steps in 30 minutes). Unrolling and
# minibatch discrimination were proposed for the standard GAN loss.
SKIP = {("unrolled_k5", "wgan_gp"), ("unrolled_k10", "wgan_gp"), ("minibatch_disc", "wgan_gp")}
# Pairs that cannot run: label smoothing changes D's real/fake targets, which a Wasserstein critic has not
# (train.py refuses the pair with that message).
INCOMPATIBLE = {("label_smoothing", "wgan_gp")}
# Relative cost of a cell's runs (no trick = 1), to start the longest first. Measured on a quiet core, 2000
# steps: no trick ~11 s a run, unrolled k = 5 ~61 s, k = 10 ~105 s, minibatch discrimination (16 kernels) ~85 s.
COST = {"unrolled_k10": 9.5, "unrolled_k5": 5.5, "minibatch_disc": 7.5}
LOSS_COST = {"wgan_gp": 2.0}


@dataclass
class Run:
    """One finished run: where it lies and what its ``final.json`` says."""

    loss: str
    cell: str
    seed: int
    final: dict
    samples: np.ndarray


# --- running ---------------------------------------------------------------------------------------------


def multirun_command(
    cell: str, loss: str, seeds: Sequence[int], steps: int, runs_dir: Path, extra: Sequence[str]
) -> list[str]:
    """The ``src/train.py -m`` command of one (trick cell, loss) over the seeds."""
    return [
        sys.executable,
        str(ROOT / "src" / "train.py"),
        "-m",
        "experiment=ring",
        f"loss={loss}",
        *CELLS[cell],
        f"seed={','.join(str(s) for s in seeds)}",
        f"trainer.max_steps={steps}",
        f"hydra.sweep.dir={runs_dir / cell / loss}",
        "hydra.sweep.subdir=seed_${seed}",
        *extra,
    ]


def run_study(
    cells: Sequence[str],
    losses: Sequence[str],
    seeds: Sequence[int],
    steps: int,
    out: Path,
    jobs: int,
    extra: Sequence[str],
    skip: set[tuple[str, str]] = frozenset(),
) -> dict[tuple[str, str], int]:
    """Run every (cell, loss) multirun not in ``skip``, ``jobs`` at a time; returns each one's exit status."""
    (out / "logs").mkdir(parents=True, exist_ok=True)
    env = os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    tasks = sorted(
        ((cell, loss) for cell in cells for loss in losses if (cell, loss) not in skip | INCOMPATIBLE),
        key=lambda task: -COST.get(task[0], 1.0) * LOSS_COST.get(task[1], 1.0),
    )

    def launch(task: tuple[str, str]) -> int:
        cell, loss = task
        # A cell that is run again replaces its old runs; cells not run now keep theirs (a study run in slices).
        shutil.rmtree(out / "runs" / cell / loss, ignore_errors=True)
        command = multirun_command(cell, loss, seeds, steps, out / "runs", extra)
        with open(out / "logs" / f"{cell}_{loss}.log", "w") as log:
            log.write(" ".join(command) + "\n\n")
            log.flush()
            status = subprocess.run(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
        print(f"{cell:16s} {loss:14s} {'ok' if status == 0 else f'FAILED ({status}), see logs/'}", flush=True)
        return status

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return dict(zip(tasks, pool.map(launch, tasks), strict=True))


# --- collecting ------------------------------------------------------------------------------------------


def collect_runs(runs_dir: Path) -> list[Run]:
    """Every finished run under ``runs_dir/<cell>/<loss>/seed_<n>/``, sorted by loss, cell and seed."""
    runs = []
    for path in sorted(Path(runs_dir).glob("*/*/seed_*/toy/final.json")):
        run_dir = path.parents[1]
        cell, loss, seed = run_dir.parents[1].name, run_dir.parent.name, int(run_dir.name.removeprefix("seed_"))
        samples = np.load(path.with_name("final_samples.npy"))
        runs.append(Run(loss, cell, seed, json.loads(path.read_text()), samples))
    order = lambda r: (_index(LOSSES, r.loss), _index(list(CELLS), r.cell), r.loss, r.cell, r.seed)
    return sorted(runs, key=order)


def unfinished_runs(runs_dir: Path) -> dict[tuple[str, str], list[int]]:
    """(loss, cell) -> seeds whose run started but wrote no ``toy/final.json`` (diverged, crashed, killed)."""
    unfinished: dict[tuple[str, str], list[int]] = {}
    for run_dir in sorted(Path(runs_dir).glob("*/*/seed_*")):
        if run_dir.is_dir() and not (run_dir / "toy" / "final.json").is_file():
            key = (run_dir.parent.name, run_dir.parents[1].name)
            unfinished.setdefault(key, []).append(int(run_dir.name.removeprefix("seed_")))
    return unfinished


def _index(names: Sequence[str], name: str) -> int:
    return names.index(name) if name in names else len(names)


def summarise(runs: Sequence[Run]) -> list[dict]:
    """One row per (loss, cell): per-seed modes, means of the metrics and of the training time."""
    groups: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.loss, run.cell), []).append(run)
    rows = []
    for (loss, cell), group in groups.items():
        metric = lambda key, group=group: np.array([r.final["metrics"][key] for r in group])
        rows.append(
            {
                "loss": loss,
                "trick": cell,
                "seeds": [r.seed for r in group],
                "modes": [int(m) for m in metric("modes")],
                "high_quality": float(metric("high_quality").mean()),
                "kl_uniform": float(metric("kl_uniform").mean()),
                "gen_steps": sorted({r.final["gen_step"] for r in group}),
                "train_seconds": float(np.mean([r.final["train_seconds"] for r in group])),
            }
        )
    return rows


def markdown_table(
    rows: Sequence[dict], n_modes: int = 8, unfinished: dict[tuple[str, str], list[int]] | None = None
) -> str:
    """The study table in Markdown: modes covered per seed, their mean, high-quality %, KL, steps and time.
    Seeds in ``unfinished`` are named in their row (their console output is in ``<out>/logs/``)."""
    unfinished = unfinished or {}
    lines = [
        "| loss | trick | modes covered (per seed) | mean modes | all seeds 8/8 | high-quality % | KL(modes ‖ uniform) "
        "| generator iterations | training s (mean) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    lines[0] = lines[0].replace("8/8", f"{n_modes}/{n_modes}")
    for row in rows:
        per_seed = " / ".join(str(m) for m in row["modes"]) + f" (seeds {', '.join(map(str, row['seeds']))})"
        if missing := unfinished.get((row["loss"], row["trick"])):
            per_seed += f"; seed {', '.join(map(str, missing))} did not finish"
        everywhere = "yes" if all(m == n_modes for m in row["modes"]) else "no"
        lines.append(
            f"| {row['loss']} | {row['trick']} | {per_seed} "
            f"| {np.mean(row['modes']):.1f} | {everywhere} | {100 * row['high_quality']:.1f} | {row['kl_uniform']:.3f} "
            f"| {', '.join(map(str, row['gen_steps']))} | {row['train_seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def samples_figure(runs: Sequence[Run], modes: np.ndarray, std: float, panel_inches: float = 1.7):
    """Final samples of every run: one row per (loss, seed), one column per trick cell; as a [0, 1] image."""
    rows = sorted({(r.loss, r.seed) for r in runs}, key=lambda k: (_index(LOSSES, k[0]), k[0], k[1]))
    cols = sorted({r.cell for r in runs}, key=lambda c: (_index(list(CELLS), c), c))
    by_key = {(r.loss, r.seed, r.cell): r for r in runs}
    fig = Figure(figsize=(panel_inches * len(cols) + 0.6, panel_inches * len(rows) + 0.6), dpi=80)
    axes = np.atleast_2d(fig.subplots(len(rows), len(cols), squeeze=False))
    for i, (loss, seed) in enumerate(rows):
        for j, cell in enumerate(cols):
            ax = axes[i, j]
            run = by_key.get((loss, seed, cell))
            if run is None:
                ax.set_axis_off()
                ax.text(0.5, 0.5, "no run", ha="center", va="center", fontsize=7, transform=ax.transAxes)
                continue
            draw_mixture(ax, run.samples, modes, std)
            m = run.final["metrics"]
            ax.set_title(f"{m['modes']:.0f} modes, HQ {100 * m['high_quality']:.0f} %", fontsize=6, pad=2)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.text(0.5, 1.15, cell, ha="center", va="bottom", fontsize=8, weight="bold", transform=ax.transAxes)
            if j == 0:
                ax.set_ylabel(f"{loss}\nseed {seed}", fontsize=7)
    width, height = fig.get_size_inches()
    fig.subplots_adjust(left=0.6 / width, right=0.99, bottom=0.1 / height, top=1 - 0.5 / height)
    return figure_to_tensor(fig)


def ring_of(runs_dir: Path, run: Run) -> tuple[np.ndarray, float]:
    """The mode centres and std of a run's ring, from its saved Hydra config."""
    data = OmegaConf.load(Path(runs_dir) / run.cell / run.loss / f"seed_{run.seed}" / ".hydra" / "config.yaml").data
    return ring_modes(int(data.n_modes), float(data.radius)), float(data.std)


def write_report(runs_dir: Path, out: Path, docs: Path | None = None, header: str = "") -> list[dict]:
    """Collect the runs into ``out/table.md``, ``out/results.json`` and ``out/samples.png``; with ``docs``, copy
    the table to ``docs/study_ring.md`` and the figure to ``docs/figures/study_ring.png``."""
    runs = collect_runs(runs_dir)
    if not runs:
        raise SystemExit(f"no finished runs under {runs_dir} (each writes toy/final.json)")
    modes, std = ring_of(runs_dir, runs[0])
    rows = summarise(runs)
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(header + markdown_table(rows, len(modes), unfinished_runs(runs_dir)))
    (out / "results.json").write_text(json.dumps(rows, indent=2))
    save_png(samples_figure(runs, modes, std), out / "samples.png")
    if docs is not None:
        (docs / "figures").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out / "table.md", docs / "study_ring.md")
        shutil.copyfile(out / "samples.png", docs / "figures" / "study_ring.png")
    return rows


# --- entry point -----------------------------------------------------------------------------------------


def _names(text: str, known: Sequence[str], what: str) -> list[str]:
    names = [n for n in text.split(",") if n]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise SystemExit(f"unknown {what} {unknown or text!r}; choose from {', '.join(known)}")
    return names


def main(argv: Sequence[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--cells", default=",".join(CELLS), help="trick cells, comma-separated: %(default)s")
    parser.add_argument("--losses", default=",".join(LOSSES), help="losses (conf/loss), comma-separated: %(default)s")
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)), help="seeds, comma-separated: %(default)s")
    parser.add_argument("--steps", type=int, default=2000, help="trainer.max_steps of every run (optimizer steps)")
    parser.add_argument("--jobs", type=int, default=2, help="multiruns at a time, one thread each")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "study_ring")
    parser.add_argument("--docs", default=str(ROOT / "docs"), help="copy table and figure under here ('' = no copy)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="extra Hydra overrides, every run")
    parser.add_argument("--report-only", action="store_true", help="only rebuild the report from finished runs")
    parser.add_argument("--all", action="store_true", help=f"also run the costly pairs: {sorted(SKIP)}")
    args = parser.parse_args(argv)
    cells = _names(args.cells, list(CELLS), "cells")
    losses = [n for n in args.losses.split(",") if n]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    if args.steps < 2 or args.jobs < 1 or not seeds or not losses:
        raise SystemExit("need --steps >= 2, --jobs >= 1 and at least one seed and loss")
    header_file = args.out / "header.md"  # what was run and how long it took, kept for --report-only
    if not args.report_only:
        started = time.perf_counter()
        skip = set() if args.all else SKIP
        statuses = run_study(cells, losses, seeds, args.steps, args.out, args.jobs, args.set, skip)
        minutes = (time.perf_counter() - started) / 60
        command = shlex.join(["python", "bench/study_ring.py", *(argv if argv is not None else sys.argv[1:])])
        failed = [f"{cell}/{loss}" for (cell, loss), status in statuses.items() if status != 0]
        header = (
            f"Ring study: {len(cells)} trick cells x {len(losses)} losses x {len(seeds)} seeds"
            f" (not run: {', '.join(f'{c} x {lo}' for c, lo in sorted((set() if args.all else SKIP) | INCOMPATIBLE))})"
            f", trainer.max_steps={args.steps}, {args.jobs} runs at a time: {minutes:.1f} minutes wall time"
            f"{'; failed: ' + ', '.join(failed) if failed else ''}.\n"
            f"Command: `{command}`\n\n"
        )
        header_file.write_text(header)
    header = header_file.read_text() if header_file.is_file() else ""
    rows = write_report(args.out / "runs", args.out, Path(args.docs) if args.docs else None, header)
    print((args.out / "table.md").read_text())
    return rows


if __name__ == "__main__":
    main()

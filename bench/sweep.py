"""Wall clock of one sweep under the basic launcher and under joblib (2 workers); writes bench/results.md ('sweep').

    python bench/sweep.py [--seeds 6] [--steps 600] [--rounds 1]

The sweep: ``model=gan loss=nonsaturating,lsgan seed=1..N`` (2N jobs, 12 by default), each ``--steps``
optimizer steps on full MNIST with metrics, samples and logging off: the kind of short job a learning-rate or
seed sweep is made of. The basic launcher runs the jobs one after another in this process (each job with all
cores' threads); ``hydra/launcher=local_parallel`` runs them in 2 joblib worker processes (each worker's
threads limited to its share of the cores). Both arms run as users type them, ``python src/train.py -m ...``,
alternately when ``--rounds`` > 1; the figure is each arm's median wall clock, process start included.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from report import machine, write_section  # bench/ is the script's folder: its modules import directly

ROOT = Path(__file__).resolve().parents[1]
ARMS = {"basic": [], "joblib": ["hydra/launcher=local_parallel"]}


def sweep_command(seeds: int, steps: int, data_dir: str, sweep_dir: Path, extra: list[str]) -> list[str]:
    """The multirun of 2 x ``seeds`` short MLP-GAN jobs, written under ``sweep_dir``."""
    return [
        sys.executable,
        str(ROOT / "src" / "train.py"),
        "-m",
        "model=gan",
        "loss=nonsaturating,lsgan",
        f"seed={','.join(str(s) for s in range(1, seeds + 1))}",
        f"trainer.max_steps={steps}",
        f"paths.data_dir={data_dir}",
        f"hydra.sweep.dir={sweep_dir}",
        "metrics=none",
        "logger=none",
        "~callbacks.progress",
        "+trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        "callbacks.samples.every_n_gen_steps=100000",
        *extra,
    ]


def run_arm(arm: str, args: argparse.Namespace, data_dir: str, out: Path) -> tuple[float, pd.DataFrame]:
    """(wall seconds, the sweep's summary table) of one arm; a failed sweep stops the benchmark."""
    sweep_dir = out / arm
    command = sweep_command(args.seeds, args.steps, data_dir, sweep_dir, ARMS[arm])
    started = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"error: the {arm} sweep failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    table = pd.read_csv(sweep_dir / "sweep_summary.csv")
    if len(table) != 2 * args.seeds:
        sys.exit(f"error: the {arm} sweep summarised {len(table)} jobs, expected {2 * args.seeds}")
    return seconds, table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=6, help="seeds per loss: the sweep has 2 x seeds jobs")
    parser.add_argument("--steps", type=int, default=600, help="optimizer steps per job (2 per batch)")
    parser.add_argument("--rounds", type=int, default=1, help="alternate the arms this many times; medians")
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results.md")
    args = parser.parse_args()
    data_dir = os.environ.get("GANZOO_DATA_DIR", str(ROOT / "data"))
    walls: dict[str, list[float]] = {arm: [] for arm in ARMS}
    job_seconds: dict[str, list[float]] = {arm: [] for arm in ARMS}
    with tempfile.TemporaryDirectory(prefix="ganzoo_sweep_bench_") as tmp:
        for round_ in range(1, args.rounds + 1):
            for arm in ARMS:
                seconds, table = run_arm(arm, args, data_dir, Path(tmp) / f"round{round_}")
                walls[arm].append(seconds)
                job_seconds[arm] += table["seconds"].tolist()
                print(f"round {round_} {arm:6s} {seconds:6.1f} s wall, {len(table)} jobs", flush=True)
    basic, joblib = (statistics.median(walls[arm]) for arm in ARMS)
    jobs = 2 * args.seeds
    lines = [
        f"## Sweeps: basic launcher vs joblib ({jobs} short jobs)",
        "",
        f"`python bench/sweep.py --seeds {args.seeds} --steps {args.steps} --rounds {args.rounds}` on {machine()}. "
        f"The sweep: `python src/train.py -m model=gan loss=nonsaturating,lsgan seed=1..{args.seeds} "
        f"trainer.max_steps={args.steps}` on full MNIST, metrics and logging off; the joblib arm adds "
        "`hydra/launcher=local_parallel` (2 workers). Wall clock from the command's start to its exit "
        f"(median of {args.rounds} round(s)); job seconds are the jobs' own, from `sweep_summary.csv`.",
        "",
        "| launcher | wall clock (s) | median job (s) | sum of jobs (s) |",
        "|---|---|---|---|",
    ]
    for arm in ARMS:
        per_round = sum(job_seconds[arm]) / args.rounds
        lines.append(
            f"| {arm} | {statistics.median(walls[arm]):.1f} | {statistics.median(job_seconds[arm]):.1f} | "
            f"{per_round:.1f} |"
        )
    lines += ["", f"Wall-clock ratio basic / joblib: **{basic / joblib:.2f}** (above 1: joblib finishes first)."]
    write_section("sweep", lines, args.results)


if __name__ == "__main__":
    main()

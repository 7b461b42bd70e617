"""Issue 7's targets: train ``experiment=rcgan_waves`` (its step budget, or minutes), score its best and last
checkpoints with ``src/evaluate.py``, and write the 'waves' section of bench/results.md.

    python bench/waves.py                              # the preset as train.py runs it (non-saturating loss)
    python bench/waves.py --minutes 20                 # as many iterations as 20 minutes give
    python bench/waves.py --tag seed2 --set seed=2     # another seed, in its own run dir
    python bench/waves.py --loss wgan_gp               # the LSTM critic with a gradient penalty
    python bench/waves.py --report-only                # rebuild the section from finished runs
    python bench/waves.py --rescore --out DIR          # score DIR's finished runs again (after a metric change)

Each run trains in its own run dir, ``<out>/rcgan_<loss>[_<tag>]`` (replaced when run again), on ``--threads``
threads (1: these LSTMs are too small for intra-op threads to pay). The budget: the preset's own
``trainer.max_steps`` by default (a run then repeats to the digit on any machine with the same CPU kernels, and
the report says how many minutes it took), or ``--minutes M``, Lightning's ``trainer.max_time`` with no step or
epoch limit (as many iterations as the machine manages: they varied more than 2x between the machines of this
project). Scored: ``best_waves.ckpt`` (the lowest ``val/ks_worst`` of the run's validation draws,
conf/metrics/sequence.yaml) and ``last.ckpt``. The section has one column per
scored checkpoint of every finished run under ``<out>``, so runs made one after the other (or side by side,
one core each) fill it. The reference is the test split redrawn with ``--test-per-class`` waves per class
(the preset's own split has 200, too few for KS distances near 0.03): its own seed, never trained on.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from report import machine, write_section  # noqa: E402

from ganzoo.metrics.sequence import report_rows  # noqa: E402

CKPT = "<run dir>/checkpoints/<best_waves|last>.ckpt"
# Scored checkpoints: the run's lowest val/ks_worst (conf/metrics/sequence.yaml: chosen on a validation draw,
# never on the test split scored here) and its last one.
CHECKPOINTS = {"best": "best_waves", "last": "last"}


def run(command: list[str], threads: int) -> None:
    """Run one command from the repo root, its output passing through; a failure ends the benchmark."""
    print("$ " + " ".join(command), flush=True)
    env = os.environ | {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    subprocess.run([sys.executable, *command], cwd=ROOT.parent, env=env, check=True)


def train_and_score(args: argparse.Namespace) -> None:
    """Train one run for ``args.minutes`` and score its last checkpoint: ``<run dir>/checkpoints/metrics.json``
    and the sweep figures beside it."""
    run_dir = args.out / f"rcgan_{args.loss}{'_' + args.tag if args.tag else ''}"
    shutil.rmtree(run_dir, ignore_errors=True)
    budget = []
    if args.minutes is not None:
        hours, minutes = divmod(args.minutes, 60)
        budget = [f"+trainer.max_time=00:{hours:02d}:{minutes:02d}:00", "trainer.max_epochs=-1", "trainer.max_steps=-1"]
    train = [
        "src/train.py",
        "experiment=rcgan_waves",
        f"loss={args.loss}",
        *budget,
        "logger=csv",
        "callbacks.progress=null",
        "+trainer.enable_progress_bar=false",
        *args.set,
        f"hydra.run.dir={run_dir}",
    ]
    run(train, args.threads)
    commands = {
        "bench": "python bench/waves.py " + " ".join(sys.argv[1:]),
        "train": "python " + " ".join(train[:-1]),  # without this machine's run dir
        "evaluate": "python " + " ".join(score(run_dir, args)),
    }
    (run_dir / "bench_commands.json").write_text(json.dumps(commands, indent=2) + "\n")


def score(run_dir: Path, args: argparse.Namespace) -> list[str]:
    """Score a run's checkpoints into ``<run dir>/checkpoints/metrics_<best|last>.json`` (and the sweep figures
    beside them); returns the evaluate.py command, with ``CKPT`` for the checkpoint."""
    evaluate = [
        "src/evaluate.py",
        f"ckpt_path={CKPT}",
        f"sequence.test_per_class={args.test_per_class}",
        *args.eval_set,
    ]
    for which in CHECKPOINTS:
        path = run_dir / "checkpoints" / f"{CHECKPOINTS[which]}.ckpt"
        if path.exists():  # best_waves.ckpt: only with the sequence metrics callback (metrics=sequence)
            out = f"out={path.with_name(f'metrics_{which}.json')}"
            run([evaluate[0], f"ckpt_path={path}", *evaluate[2:], out], args.threads)
    return evaluate


def rescore(args: argparse.Namespace) -> None:
    """Score every finished run under ``args.out`` again (after a change to the metrics), training nothing; each
    run's commands then name the evaluate.py command it was scored with last."""
    finished = finished_runs(args.out)
    if not finished:
        raise SystemExit(f"no finished runs under {args.out} to score again")
    for run_dir in finished:
        commands_file = run_dir / "bench_commands.json"
        commands = json.loads(commands_file.read_text())
        commands["evaluate"] = "python " + " ".join(score(run_dir, args))
        commands_file.write_text(json.dumps(commands, indent=2) + "\n")


def finished_runs(out: Path) -> list[Path]:
    """The runs under ``out`` whose commands are written: that happens after their last scoring, so a neighbour
    still training or being scored into the same --out (runs side by side) is left out, not read half-written."""
    return [run for run in sorted(out.glob("rcgan_*")) if (run / "bench_commands.json").exists()]


def write_report(out: Path) -> None:
    """The 'waves' section: metric rows (target, real floor, then one column per finished run) and, per run,
    its training facts and commands."""
    finished = finished_runs(out)
    scored = [
        (run, which)
        for run in finished
        for which in CHECKPOINTS
        if (run / "checkpoints" / f"metrics_{which}.json").exists()
    ]
    if not scored:
        raise SystemExit(f"no finished runs under {out} (rcgan_<loss>/checkpoints/metrics_<best|last>.json)")
    reports = [json.loads((run / "checkpoints" / f"metrics_{which}.json").read_text()) for run, which in scored]
    names = [
        f"{run.name.removeprefix('rcgan_')}, {which} (G step {report['gen_step']})"
        for (run, which), report in zip(scored, reports, strict=True)
    ]
    runs = list(dict.fromkeys(run for run, _ in scored))
    rows = [[[cell.replace("|", "\\|") for cell in row] for row in report_rows(r)] for r in reports]  # for Markdown
    columns = [{label: f"{value} {mark}".strip() for label, value, _, _, mark in run_rows} for run_rows in rows]
    first = reports[0]
    lines = [
        "## Time series: RCGAN on the waves set (issue 7 targets)",
        "",
        f"`python bench/waves.py` on {machine()}. Each run: `experiment=rcgan_waves` (its own step budget "
        "unless the command gives minutes), "
        "then `src/evaluate.py` on two of its checkpoints: *best*, the lowest `val/ks_worst` (the worst class's "
        "frequency or amplitude KS, scored during training against a redrawn validation split, never the test "
        "data scored here) and *last*. Each: "
        f"{first['n']} class-balanced samples against "
        f"{first['n_reference']} held-out real waves (the test split redrawn larger, never trained on); "
        f"real floor: {first.get('n_floor', 0)} real training waves against the same reference. "
        "pass / FAIL: the samples against the issue's target.",
        "",
        "| metric | target | real floor | " + " | ".join(f"RCGAN, {name}" for name in names) + " |",
        "|---|---|---|" + "---|" * len(names),
    ]
    for label, _, floor, goal, _ in rows[0]:
        lines.append(f"| {label} | {goal} | {floor} | " + " | ".join(c.get(label, "") for c in columns) + " |")
    lines.append("")
    for run in runs:
        report = reports[[r for r, _ in scored].index(run)]
        name = run.name.removeprefix("rcgan_")
        summary = json.loads((run / "run_summary.json").read_text())
        commands = json.loads((run / "bench_commands.json").read_text())
        lines.append(
            f"- **{name}**: `{commands['bench']}`: {summary['gen_step']} generator / {summary['disc_step']} critic "
            f"iterations in {summary['seconds'] / 60:.1f} training minutes of `{commands['train']}`, then "
            f"`{commands['evaluate']}`. Sweep: latent {report['sweep'].get('latent', '-')}, grid "
            f"{report['sweep'].get('grid', '-')}. Figures: `<run dir>/samples/latest.png`, "
            f"`<run dir>/checkpoints/metrics_<best|last>_sweep_<class>.png`."
        )
    write_section("waves", lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--minutes", type=int, default=None, help="a wall-clock budget instead of the preset's trainer.max_steps"
    )
    parser.add_argument("--loss", default="nonsaturating", help="a conf/loss name, e.g. wgan_gp")
    parser.add_argument("--out", type=Path, default=ROOT.parent / "outputs" / "bench_waves")
    parser.add_argument("--tag", default="", help="run dir rcgan_<loss>_<tag>: runs that differ by --set only")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--test-per-class", type=int, default=1000)
    parser.add_argument("--set", nargs="*", default=[], help="extra train.py overrides")
    parser.add_argument("--eval-set", nargs="*", default=[], help="extra evaluate.py overrides")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--rescore", action="store_true", help="score the finished runs under --out again")
    args = parser.parse_args()
    if args.minutes is not None and args.minutes < 1:
        parser.error("--minutes must be >= 1")
    if args.rescore and args.report_only:
        parser.error("--rescore and --report-only exclude each other: --rescore also rewrites the report")
    torch.set_num_threads(args.threads)  # what machine() reports, as the runs use
    if args.rescore:
        rescore(args)
    elif not args.report_only:
        train_and_score(args)
    write_report(args.out)


if __name__ == "__main__":
    main()

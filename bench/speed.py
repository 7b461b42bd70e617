"""Training speed of each model on MNIST through the real config and Trainer; writes bench/results.md.

    python bench/speed.py [--batches 120] [--warmup 20] [--models gan dcgan infogan] [--losses nonsaturating wgan_gp]

One batch = one critic step + one generator step (n_critic=1), the default batch size and nets. Only
the batches after the warm-up are timed. Ratios between rows come from one run on one machine. Each row runs in
a fresh process, so its peak memory (resident set; on a GPU also the peak of CUDA tensors) is its own.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytorch_lightning as pl
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from conftest import compose_config  # noqa: E402  (the same composition the tests use)
from report import machine, write_section  # noqa: E402

from ganzoo.pipeline import train  # noqa: E402


class BatchTimer(pl.Callback):
    """Time (of ``clock``: wall by default, or CPU) of the batches from ``warmup`` on, and the wall seconds of the
    first batch alone (compilation shows there; its worker processes are outside this process's CPU time)."""

    def __init__(self, warmup: int, clock: Callable[[], float] = time.perf_counter) -> None:
        self.warmup, self.start, self.end, self.timed, self.clock = warmup, None, None, 0, clock
        self.first_batch_s, self.first_start = 0.0, 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == 0:
            self.first_start = time.perf_counter()
        if batch_idx == self.warmup:
            self.start = self.clock()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx == 0:
            self.first_batch_s = time.perf_counter() - self.first_start
        if batch_idx >= self.warmup:
            self.end, self.timed = self.clock(), batch_idx - self.warmup + 1


def bench_config(model: str, loss: str, batches: int, data_dir: str, out: Path, extra: Sequence[str] = ()):
    """The composed config every benchmark of the training step uses: ``batches`` batches of n_critic=1."""
    return compose_config(
        [
            f"model={model}",
            f"loss={loss}",
            "model.n_critic=1",
            f"paths.data_dir={data_dir}",
            "logger=none",
            "~callbacks.progress",
            "+trainer.enable_progress_bar=false",  # else Lightning adds its default bar, redrawn every batch
            "callbacks.samples.every_n_gen_steps=100000",
            "callbacks.image_metrics.every_n_gen_steps=100000",  # scored apart (bench/metrics.py), not per step
            "trainer.enable_model_summary=false",
            f"trainer.max_steps={2 * batches}",
            *extra,
        ],
        out,
    )


def measure(
    model: str,
    loss: str,
    batches: int,
    warmup: int,
    data_dir: str,
    extra: Sequence[str] = (),
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[float, int, float]:
    """(batches per second after the warm-up, batch size, seconds of the first batch) of one configuration;
    ``extra``: more overrides (``model.compile=true``, ...); ``clock``: wall (default) or CPU time."""
    timer = BatchTimer(warmup, clock)
    with tempfile.TemporaryDirectory() as out:
        cfg = bench_config(model, loss, batches, data_dir, Path(out), extra)
        train(cfg, extra_callbacks=[timer])
    return timer.timed / (timer.end - timer.start), cfg.data.batch_size, timer.first_batch_s


def measure_with_memory(model: str, loss: str, batches: int, warmup: int, data_dir: str) -> tuple[float, int, float]:
    """(batches per second, batch size, peak MiB) measured in this process: call it in a fresh one."""
    rate, batch_size, _ = measure(model, loss, batches, warmup, data_dir)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    if torch.cuda.is_available():
        peak = torch.cuda.max_memory_allocated() / 2**20
    return rate, batch_size, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=120)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--models", nargs="+", default=["gan", "dcgan", "infogan"])
    parser.add_argument("--losses", nargs="+", default=["nonsaturating", "wgan_gp"])
    args = parser.parse_args()
    data_dir = os.environ.get("GANZOO_DATA_DIR", str(ROOT / "data"))

    rows = []
    spawn = multiprocessing.get_context("spawn")
    for model in args.models:
        for loss in args.losses:
            with ProcessPoolExecutor(1, mp_context=spawn) as child:
                job = child.submit(measure_with_memory, model, loss, args.batches, args.warmup, data_dir)
                rate, batch_size, peak = job.result()
            rows.append((model, loss, rate, peak))
            print(f"{model:8s} {loss:14s} {rate:7.2f} batches/s of {batch_size}, peak {peak:.0f} MiB", flush=True)

    base = rows[0][2]
    lines = [
        f"## Training speed (MNIST, batch {batch_size}, n_critic=1: one batch = one D step + one G step)",
        "",
        f"`python bench/speed.py --batches {args.batches} --warmup {args.warmup}` on {machine()}. "
        f"Timed after {args.warmup} warm-up batches; ratios are within this run.",
        "",
        "| model | loss | batches/s (= generator iterations/s) | images/s | relative to first row | peak MiB |",
        "|---|---|---|---|---|---|",
    ]
    memory = "CUDA tensors" if torch.cuda.is_available() else "the process's resident set, in-memory MNIST included"
    lines += [f"| {m} | {lo} | {r:.2f} | {r * batch_size:.0f} | {r / base:.2f} | {p:.0f} |" for m, lo, r, p in rows]
    lines += ["", f"Peak memory: {memory}."]
    write_section("speed", lines)


if __name__ == "__main__":
    main()

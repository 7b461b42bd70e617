"""Training speed of each model on MNIST through the real config and Trainer; writes bench/results.md.

    python bench/speed.py [--batches 120] [--warmup 20] [--models gan dcgan]

One batch = one critic step + one generator step (n_critic=1), the default batch size and nets. Only
the batches after the warm-up are timed. Ratios between rows come from one run on one machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import pytorch_lightning as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from conftest import compose_config  # noqa: E402  (the same composition the tests use)
from report import machine, write_section  # noqa: E402

from ganzoo.pipeline import train  # noqa: E402


class BatchTimer(pl.Callback):
    """Wall time of the batches from ``warmup`` on, and of the first batch alone (compilation shows there)."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.end, self.timed = warmup, None, None, 0
        self.first_batch_s = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx in (0, self.warmup):
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx == 0:
            self.first_batch_s = time.perf_counter() - self.start
        if batch_idx >= self.warmup:
            self.end, self.timed = time.perf_counter(), batch_idx - self.warmup + 1


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
            "trainer.enable_model_summary=false",
            f"trainer.max_steps={2 * batches}",
            *extra,
        ],
        out,
    )


def measure(
    model: str, loss: str, batches: int, warmup: int, data_dir: str, extra: Sequence[str] = ()
) -> tuple[float, int, float]:
    """(batches per second after the warm-up, batch size, seconds of the first batch) of one configuration;
    ``extra``: more overrides (``model.compile=true``, ...)."""
    timer = BatchTimer(warmup)
    with tempfile.TemporaryDirectory() as out:
        cfg = bench_config(model, loss, batches, data_dir, Path(out), extra)
        train(cfg, extra_callbacks=[timer])
    return timer.timed / (timer.end - timer.start), cfg.data.batch_size, timer.first_batch_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=120)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--models", nargs="+", default=["gan", "dcgan"])
    parser.add_argument("--losses", nargs="+", default=["nonsaturating", "wgan_gp"])
    args = parser.parse_args()
    data_dir = os.environ.get("GANZOO_DATA_DIR", str(ROOT / "data"))

    rows = []
    for model in args.models:
        for loss in args.losses:
            rate, batch_size, _ = measure(model, loss, args.batches, args.warmup, data_dir)
            rows.append((model, loss, rate))
            print(f"{model:8s} {loss:14s} {rate:7.2f} batches/s of {batch_size}", flush=True)

    base = rows[0][2]
    lines = [
        f"## Training speed (MNIST, batch {batch_size}, n_critic=1: one batch = one D step + one G step)",
        "",
        f"`python bench/speed.py --batches {args.batches} --warmup {args.warmup}` on {machine()}. "
        f"Timed after {args.warmup} warm-up batches; ratios are within this run.",
        "",
        "| model | loss | batches/s (= generator iterations/s) | images/s | relative to first row |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {m} | {lo} | {r:.2f} | {r * batch_size:.0f} | {r / base:.2f} |" for m, lo, r in rows]
    write_section("speed", lines)


if __name__ == "__main__":
    main()

"""Cost of the image metrics; writes the 'metrics' section of bench/results.md.

    python bench/metrics.py [--n 10000] [--train-gen-steps 1000]

1. Scoring ``n`` 28x28 images (FID + KID + IS, then precision/recall and class statistics) in the evaluator's
   feature space with evaluate.py's settings (KID: 100 subsets of 1000). Generation is excluded: the "samples"
   are MNIST training images. The reference statistics are built before timing, once per process, as in use.
2. The overhead during training: the default DCGAN run (``make train``'s config) for ``--train-gen-steps``
   generator iterations with the default ImageMetrics callback; time spent scoring over time spent training,
   both measured in the same run.

The evaluator is read from GANZOO_CACHE_DIR (default .cache/), trained first if missing (not timed).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytorch_lightning as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from conftest import compose_config  # noqa: E402  (the same composition the tests use)
from report import machine, write_section  # noqa: E402

from ganzoo.callbacks.metrics import ImageMetrics  # noqa: E402
from ganzoo.data.mnist import load_split  # noqa: E402
from ganzoo.metrics.image import feature_space  # noqa: E402
from ganzoo.pipeline import train  # noqa: E402


def scoring_seconds(n: int, data_dir: str, cache_dir: str) -> tuple[float, float]:
    """(seconds for FID + KID + IS of n images, seconds for precision/recall + class statistics on top)."""
    space = feature_space("MNIST", data_dir, cache_dir, kid_subsets=100, kid_subset_size=1000)
    images, _ = load_split("MNIST", "train", data_dir, cache_dir)
    images = images[np.random.default_rng(0).permutation(len(images))[:n]]
    space.scorer.score(images[:500])  # warm-up: first-call allocations
    scorer, calls = space.scorer, []
    precision_recall = scorer.precision_recall

    def timed_precision_recall(features):
        started = time.perf_counter()
        result = precision_recall(features)
        calls.append(time.perf_counter() - started)
        return result

    scorer.precision_recall = timed_precision_recall
    started = time.perf_counter()
    scorer.score(images)
    total = time.perf_counter() - started
    scorer.precision_recall = precision_recall
    return total - calls[0], calls[0]


class TrainTimer(pl.Callback):
    """Wall time of the training loop (on_train_start to on_train_end) and the ImageMetrics share of it."""

    def on_train_start(self, trainer, pl_module) -> None:
        self.start = time.perf_counter()

    def on_train_end(self, trainer, pl_module) -> None:
        self.seconds = time.perf_counter() - self.start
        metrics = [c for c in trainer.callbacks if isinstance(c, ImageMetrics)]
        self.metrics_seconds = metrics[0].seconds
        self.scorings = pl_module.gen_step // metrics[0].every_n_gen_steps + (
            pl_module.gen_step % metrics[0].every_n_gen_steps != 0
        )


def training_overhead(gen_steps: int, data_dir: str, cache_dir: str) -> tuple[TrainTimer, dict]:
    timer = TrainTimer()
    with tempfile.TemporaryDirectory() as out:
        cfg = compose_config(
            [
                f"paths.data_dir={data_dir}",
                f"paths.cache_dir={cache_dir}",
                "logger=none",
                "~callbacks.progress",
                f"trainer.max_steps={2 * gen_steps}",
            ],
            Path(out),
        )
        train(cfg, extra_callbacks=[timer])
    return timer, cfg.callbacks.image_metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--train-gen-steps", type=int, default=1000)
    args = parser.parse_args()
    data_dir = os.environ.get("GANZOO_DATA_DIR", str(ROOT / "data"))
    cache_dir = os.environ.get("GANZOO_CACHE_DIR", str(ROOT / ".cache"))

    fid_kid_is, pr = scoring_seconds(args.n, data_dir, cache_dir)
    print(f"scoring {args.n}: FID+KID+IS {fid_kid_is:.2f} s, precision/recall + classes {pr:.2f} s", flush=True)
    timer, options = training_overhead(args.train_gen_steps, data_dir, cache_dir)
    share = timer.metrics_seconds / timer.seconds
    print(f"training {timer.seconds:.1f} s, of which image metrics {timer.metrics_seconds:.1f} s ({share:.1%})")

    write_section(
        "metrics",
        [
            "## Image metrics (MNIST evaluator feature space)",
            "",
            f"`python bench/metrics.py --n {args.n} --train-gen-steps {args.train_gen_steps}` on {machine()}.",
            "",
            "| what | seconds |",
            "|---|---|",
            f"| FID + KID + IS of {args.n} images (KID 100 subsets of 1000; generation excluded) | {fid_kid_is:.2f} |",
            f"| precision/recall (k=5) + class statistics of the same {args.n}, on top | {pr:.2f} |",
            "",
            f"Overhead during the default DCGAN training (`make train` config, {args.train_gen_steps} generator "
            f"iterations, {options.n_samples} samples scored every {options.every_n_gen_steps} generator iterations "
            f"and on the last batch: {timer.scorings} scorings): {timer.metrics_seconds:.1f} s of "
            f"{timer.seconds:.1f} s training = **{share:.1%}**.",
        ],
    )


if __name__ == "__main__":
    main()

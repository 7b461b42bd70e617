"""Issue 4's targets, scored from finished runs; writes the 'conditional' section of bench/results.md.

    python bench/conditional.py RUN_DIR [RUN_DIR ...] [--ckpt last.ckpt] [--n 10000]

Each RUN_DIR is a train.py output dir (its overrides, run_summary.json and checkpoints/ are read). Per model:
- CGAN: how often ganzoo's MNIST evaluator agrees with the label of ``n`` class-conditional samples
  (uniform labels, seeded).
- InfoGAN: ``metrics.codes.code_accuracy_report``: code values mapped to digits by the evaluator's reading of
  ``n`` generated samples (Hungarian matching), then the real test split classified by Q's categorical head
  through that mapping (the paper's figure), with the test-label-matched accuracy beside it.
- SSGAN: the test error of D's classifier on the 10 000 test images.
Training time and iterations come from the run's own run_summary.json (the time of ``trainer.fit``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from report import machine, run_record, write_section  # noqa: E402

from ganzoo.data.mnist import load_split  # noqa: E402
from ganzoo.metrics.codes import classifier_error, code_accuracy_report, predict_classes  # noqa: E402
from ganzoo.metrics.evaluator import load_evaluator  # noqa: E402
from ganzoo.pipeline import load_model  # noqa: E402


def score(run_dir: Path, ckpt: str, n: int, data_dir: str, cache_dir: str) -> dict:
    model = load_model(run_dir / "checkpoints" / ckpt)
    evaluator = load_evaluator("MNIST", cache_dir, data_dir)
    test_images, test_labels = load_split("MNIST", "test", data_dir, cache_dir)
    test_x = torch.from_numpy(test_images.copy()).unsqueeze(1).float() / 127.5 - 1
    test_y = torch.from_numpy(test_labels.copy()).long()
    kind = type(model).__name__
    if kind == "InfoGAN":
        report = code_accuracy_report(model, lambda x: predict_classes(evaluator, x), test_x, test_y, n=n)
        figure = f"{report['test_accuracy']:.4f} (test-label matched: {report['test_accuracy_best_matching']:.4f})"
        what = "Q's categorical code -> digit accuracy on the test split (mapping from generated samples)"
    elif hasattr(model, "classify"):
        error = classifier_error(model.classify, test_x, test_y)
        figure, what = f"{error:.4f}", "D's test error"
    else:
        torch.manual_seed(0)
        labels = model.sample_conditions(n)
        images = model.sample(latent=model.sample_latent(n), cond=labels)
        accuracy = float((predict_classes(evaluator, images) == labels.cpu()).float().mean())
        figure, what = f"{accuracy:.4f}", f"evaluator label accuracy on {n} conditional samples"
    return {"model": kind, "what": what, "figure": figure, **run_record(run_dir), "ckpt": ckpt}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--ckpt", default="last.ckpt")
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--results", type=Path, default=ROOT / "results.md", help="the file to write the section in")
    args = parser.parse_args()
    data_dir = os.environ.get("GANZOO_DATA_DIR", str(ROOT.parent / "data"))
    cache_dir = os.environ.get("GANZOO_CACHE_DIR", str(ROOT.parent / ".cache"))
    rows = [score(run, args.ckpt, args.n, data_dir, cache_dir) for run in args.runs]
    for row in rows:
        print(row, flush=True)
    lines = [
        "## Conditional and code-driven GANs (issue 4 targets)",
        "",
        f"`python bench/conditional.py <run dirs> --ckpt {args.ckpt} --n {args.n}` on {machine()}; "
        "training minutes are the runs' own (trainer.fit), on this machine.",
        "",
        "| model | measured | value | generator iterations | training minutes | command |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['model']} | {r['what']} | {r['figure']} | {r['gen_step']} | {r['minutes']:.1f} | `{r['command']}` |"
        for r in rows
    ]
    write_section("conditional", lines, args.results)


if __name__ == "__main__":
    main()

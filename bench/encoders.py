"""Issue 5's targets, scored from finished runs; writes the 'encoders' section of bench/results.md.

    python bench/encoders.py RUN_DIR [RUN_DIR ...] [--ckpt last.ckpt]

Each RUN_DIR is a train.py output dir. Per model, on the full MNIST splits (60 000 training images as the
reference / probe training set, the 10 000 test images scored):
- BiGAN / AAE features: 1-NN accuracy (the BiGAN paper's protocol) and a logistic-regression probe, with the
  same figures for the same architecture *untrained* (its initial weights, same seed) beside them: random
  features of MNIST are already good for 1-NN, so the untrained figure is the baseline a learned encoder
  must beat; and the reconstruction MSE on the test images.
- semi-supervised AAE: test error of the encoder's class head.
- clustering AAE: test accuracy of the categorical code, each cluster mapped to its majority digit.
The raw-pixel 1-NN accuracy is reported once, as the reference of all.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch
import yaml
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from report import machine, run_record, write_section  # noqa: E402

from ganzoo.callbacks.encoders import reconstruction_mse  # noqa: E402
from ganzoo.data.mnist import load_split  # noqa: E402
from ganzoo.features import extract  # noqa: E402
from ganzoo.metrics.codes import classifier_error, mapped_accuracy, match_codes  # noqa: E402
from ganzoo.metrics.features import knn_accuracy, linear_probe_accuracy  # noqa: E402
from ganzoo.pipeline import build_model, load_model  # noqa: E402


def mnist(split: str, data_dir: str, cache_dir: str) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = load_split("MNIST", split, data_dir, cache_dir)
    return torch.from_numpy(images.copy()).unsqueeze(1).float() / 127.5 - 1, torch.from_numpy(labels.copy()).long()


def feature_scores(model, train, test) -> str:
    train_f, test_f = extract(model, train[0]), extract(model, test[0])
    knn = knn_accuracy(train_f, train[1], test_f, test[1])
    probe = linear_probe_accuracy(train_f, train[1], test_f, test[1])
    return f"1-NN {knn:.4f}, probe {probe:.4f}"


def score(run_dir: Path, ckpt: str, train, test) -> dict:
    model = load_model(run_dir / "checkpoints" / ckpt)
    kind = type(model).__name__
    config = OmegaConf.create(model.config)
    torch.manual_seed(yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())["seed"])
    untrained = build_model(config).eval()
    figures = [f"trained: {feature_scores(model, train, test)}", f"untrained: {feature_scores(untrained, train, test)}"]
    figures.append(f"reconstruction MSE {reconstruction_mse(model, *test):.4f}")
    if kind == "AAE" and model.is_classifier:
        figures.insert(0, f"**test error {classifier_error(model.classify, *test):.4f}**")
    elif kind == "AAE" and model.prior == "categorical":
        codes = model.predict_codes(test[0])
        mapping = match_codes(codes, test[1], model.num_categories, 10, "majority")
        figures.insert(0, f"**clustering accuracy {mapped_accuracy(codes, mapping, test[1]):.4f}** (majority)")
    model_name = kind if kind != "AAE" else f"AAE ({model.prior}, {model.mode})"
    return {"model": model_name, "figures": "; ".join(figures), **run_record(run_dir)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--ckpt", default="last.ckpt")
    parser.add_argument("--section", default="encoders", help="results.md section to (re)write")
    args = parser.parse_args()
    data_dir = os.environ.get("GANZOO_DATA_DIR", str(ROOT.parent / "data"))
    cache_dir = os.environ.get("GANZOO_CACHE_DIR", str(ROOT.parent / ".cache"))
    train, test = mnist("train", data_dir, cache_dir), mnist("test", data_dir, cache_dir)
    raw = knn_accuracy(train[0].flatten(1), train[1], test[0].flatten(1), test[1])
    print(f"raw-pixel 1-NN: {raw:.4f}", flush=True)
    rows = []
    for run in args.runs:
        rows.append(score(run, args.ckpt, train, test))
        print(rows[-1], flush=True)
    lines = [
        "## Encoders and features (issue 5 targets)",
        "",
        f"`python bench/encoders.py <run dirs> --ckpt {args.ckpt}` on {machine()}; training minutes are the runs' "
        "own (trainer.fit). Features scored on the full MNIST splits: 60 000 training images as the 1-NN "
        "reference and the probe's training set, 10 000 test images. *Untrained* is the same architecture at its "
        f"initial weights (same seed). Raw-pixel 1-NN accuracy for reference: **{raw:.4f}**.",
        "",
        "| model | measured | generator iterations | training minutes | command |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['model']} | {r['figures']} | {r['gen_step']} | {r['minutes']:.1f} | `{r['command']}` |" for r in rows
    ]
    write_section(args.section, lines)


if __name__ == "__main__":
    main()

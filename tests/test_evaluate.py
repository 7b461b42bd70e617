"""src/evaluate.py end to end: a real (tiny) checkpoint through the CLI, an npz in-process, and its errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import compose_config, run_cli
from test_metrics import reduced_evaluator_cache

from ganzoo.metrics.image import evaluate
from ganzoo.pipeline import report_user_errors, train


@pytest.fixture(scope="session")
def evaluator_cache(tmp_path_factory, data_dir):
    return reduced_evaluator_cache(tmp_path_factory, data_dir)


METRICS = {"fid", "kid", "is", "precision", "recall", "class_entropy", "classes_below_1pct"}


def eval_config(tmp_path, data_dir, cache_dir, *overrides: str):
    return compose_config(
        [f"paths.data_dir={data_dir}", f"paths.cache_dir={cache_dir}", *overrides], tmp_path / "eval", "eval"
    )


def test_checkpoint_end_to_end(train_config, tmp_path, data_dir, evaluator_cache):
    train(train_config("model=gan", "trainer.max_steps=4"))
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    result = run_cli(
        "evaluate.py",
        f"ckpt_path={ckpt}",
        "n=300",
        "metrics.kid_subsets=10",
        f"paths.data_dir={data_dir}",
        f"paths.cache_dir={evaluator_cache}",
    )
    assert result.returncode == 0, result.stderr
    assert "FID" in result.stdout and "floor" in result.stdout
    report = json.loads((ckpt.parent / "metrics.json").read_text())
    assert report["dataset"] == "MNIST" and report["n"] == 300 and report["source"] == str(ckpt)
    samples, floor = report["evaluator"]["samples"], report["evaluator"]["floor"]
    assert samples.keys() >= METRICS and floor.keys() >= METRICS
    # Two generator steps from scratch are far from digits; 300 real images are close to them.
    assert samples["fid"] > 10 * floor["fid"] and floor["is"] > samples["is"] + 3


def test_npz_samples_with_labels(tmp_path, data_dir, evaluator_cache, mnist_test):
    images, labels = mnist_test
    np.savez_compressed(tmp_path / "s.npz", images=images[:400], labels=labels[:400])
    cfg = eval_config(
        tmp_path, data_dir, evaluator_cache, f"samples={tmp_path / 's.npz'}", "data=mnist", "metrics.kid_subsets=10"
    )
    report = evaluate(cfg)
    assert report["n"] == 400  # n=10000 asked, the file holds 400: all are scored
    assert report["evaluator"]["samples"]["label_accuracy"] >= 0.97
    assert json.loads((tmp_path / "metrics.json").read_text()) == report


@pytest.fixture(scope="module")
def mnist_test(data_dir):
    from ganzoo.data.mnist import load_split

    return load_split("MNIST", "test", data_dir)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["samples=missing.npz", "data=mnist"], "samples file missing.npz does not exist"),
        (["samples=x.npz"], "which data set? add data=mnist"),
        ([], "nothing to score"),
        (["ckpt_path=nowhere.ckpt"], "checkpoint nowhere.ckpt does not exist"),
        (["metrics.inception=true"], "weights-inception-2015-12-05-6726825d.pth"),
    ],
)
def test_user_errors_are_one_line(
    tmp_path, data_dir, evaluator_cache, mnist_test, capsys, monkeypatch, overrides, message
):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    np.savez_compressed(tmp_path / "x.npz", images=mnist_test[0][:50])
    if overrides == ["metrics.inception=true"]:
        overrides = [f"samples={tmp_path / 'x.npz'}", "data=mnist", *overrides]
    cfg = eval_config(tmp_path, data_dir, evaluator_cache, *overrides)
    with pytest.raises(SystemExit):
        report_user_errors(evaluate, cfg)
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and message in error and "\n" not in error

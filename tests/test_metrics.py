"""Image metrics on real MNIST: real data scores like real data, noise and dropped classes do not.

A reduced evaluator (one epoch on 30 000 training images) is trained once per session into a temporary cache;
the full one (``python src/evaluate.py evaluator.train=true data=mnist``) is covered by the slow test.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ganzoo.data.mnist import load_split
from ganzoo.metrics.evaluator import (
    WeightsError,
    evaluator_paths,
    load_evaluator,
    save_evaluator,
    train_evaluator,
)
from ganzoo.metrics.image import INCEPTION_FILE, ImageScorer, evaluate_images, feature_space, inception_weights_path

REDUCED = {"epochs": 1, "limit": 30000}


def reduced_evaluator_cache(tmp_path_factory, data_dir) -> Path:
    """A cache dir holding a reduced MNIST evaluator, trained on first use in this session (test files share it)."""
    cache = tmp_path_factory.getbasetemp() / "evaluator-cache"
    if not evaluator_paths("MNIST", cache)[1].is_file():
        save_evaluator(train_evaluator("MNIST", data_dir, seed=0, **REDUCED), cache)
    return cache


@pytest.fixture(scope="session")
def evaluator_cache(tmp_path_factory, data_dir):
    return reduced_evaluator_cache(tmp_path_factory, data_dir)


@pytest.fixture(scope="module")
def mnist(data_dir):
    train_images, train_labels = load_split("MNIST", "train", data_dir)
    test_images, test_labels = load_split("MNIST", "test", data_dir)
    return train_images, train_labels, test_images, test_labels


@pytest.fixture(scope="module")
def score(evaluator_cache, data_dir):
    """``score(images, labels=None)``: the full report of evaluate_images with the reduced evaluator."""

    def run(images, labels=None, floor=False):
        return evaluate_images(
            images, "MNIST", data_dir=data_dir, cache_dir=evaluator_cache, labels=labels, floor=floor, kid_subsets=10
        )

    return run


def test_reduced_evaluator_is_accurate(evaluator_cache, data_dir):
    evaluator = load_evaluator("MNIST", evaluator_cache, data_dir, train_if_missing=False)
    assert evaluator.info.test_accuracy >= 0.98, evaluator.info


def real_subset(images: np.ndarray, n: int, seed: int = 1) -> np.ndarray:
    """n training images at random (a different subset from the floor's, which uses seed 0)."""
    return images[np.random.default_rng(seed).permutation(len(images))[:n]]


@pytest.fixture(scope="module")
def real_report(score, mnist):
    """The report of 5000 real training images, with the floor (several tests compare against it)."""
    return score(real_subset(mnist[0], 5000), floor=True)


def test_real_training_images_score_like_the_test_split(real_report):
    report = real_report
    samples, floor = report["evaluator"]["samples"], report["evaluator"]["floor"]
    assert report["n"] == floor["n"] == 5000 and report["n_reference"] == 10000
    assert samples["fid"] < 2 * floor["fid"] + 0.5, (samples["fid"], floor["fid"])
    # The reduced evaluator's ceiling; the full one gives IS >= 9.5 (test_full_evaluator_thresholds).
    assert samples["is"] >= 9.0
    # k-NN precision/recall (k=5) of real against real data: the floor says the same.
    assert min(samples["precision"], samples["recall"]) >= 0.9, samples
    assert abs(samples["precision"] - floor["precision"]) < 0.05 and abs(samples["recall"] - floor["recall"]) < 0.05
    assert samples["class_entropy"] > 0.99 and samples["classes_below_1pct"] == 0


def test_uniform_noise_scores_as_noise(score, real_report):
    noise = np.random.default_rng(0).integers(0, 256, size=(2000, 28, 28), dtype=np.uint8)
    report = score(noise)["evaluator"]
    assert report["samples"]["fid"] > 50 * real_report["evaluator"]["floor"]["fid"] + 10
    assert report["samples"]["is"] < 1.5
    # No real digit lies near the noise. (Precision is not asserted: a few outlying real digits have
    # k-NN balls wide enough to hold the tight noise cluster, a known trait of the k-NN estimate.)
    assert report["samples"]["recall"] < 0.05


def test_dropping_five_classes_shows_in_entropy_and_recall(score, mnist, real_report):
    train_images, train_labels, _, _ = mnist
    full = real_report["evaluator"]["samples"]
    dropped = score(real_subset(train_images[train_labels < 5], 5000))["evaluator"]["samples"]
    assert dropped["class_entropy"] < np.log(5) / np.log(10) + 0.05 < full["class_entropy"]
    assert dropped["classes_below_1pct"] >= 5
    assert dropped["recall"] < 0.7 < full["recall"]
    assert dropped["is"] < 5.5  # at most 5 equally likely classes: IS <= 5
    assert dropped["precision"] > full["precision"] - 0.05  # each image is still a real digit


def test_label_agreement_of_conditional_samples(score, mnist):
    _, _, test_images, test_labels = mnist
    right = score(test_images[:2000], labels=test_labels[:2000])["evaluator"]["samples"]
    wrong = score(test_images[:2000], labels=(test_labels[:2000] + 1) % 10)["evaluator"]["samples"]
    assert right["label_accuracy"] >= 0.97 and wrong["label_accuracy"] <= 0.02


def test_float_and_uint8_samples_score_the_same(score, mnist):
    _, _, test_images, _ = mnist
    as_float = torch.from_numpy(test_images[:500]).unsqueeze(1).float() / 127.5 - 1
    from_uint8 = score(test_images[:500])["evaluator"]["samples"]
    from_float = score(as_float)["evaluator"]["samples"]
    assert from_float["fid"] == pytest.approx(from_uint8["fid"]) and from_float["is"] == pytest.approx(from_uint8["is"])


def test_training_is_reproducible(data_dir):
    first, again, other = (train_evaluator("MNIST", data_dir, seed=seed, epochs=1, limit=512) for seed in (0, 0, 1))
    assert first.info.sha256 == again.info.sha256 != other.info.sha256


def test_cached_evaluator_round_trip_and_damage(tmp_path, data_dir):
    evaluator = train_evaluator("MNIST", data_dir, seed=0, epochs=1, limit=512)
    weights_path = save_evaluator(evaluator, tmp_path)
    assert sorted(p.name for p in weights_path.parent.iterdir()) == ["MNIST.json", "MNIST.pt"]  # no temp files
    loaded = load_evaluator("MNIST", tmp_path, data_dir, train_if_missing=False)
    assert loaded.info == evaluator.info
    torch.save({k: v + 1 for k, v in evaluator.state_dict().items()}, weights_path)
    with pytest.raises(WeightsError, match="does not match the SHA-256"):
        load_evaluator("MNIST", tmp_path, data_dir)
    with pytest.raises(WeightsError, match="evaluator.train=true data=fashion_mnist"):
        load_evaluator("FashionMNIST", tmp_path, data_dir, train_if_missing=False)


def test_missing_inception_weights_is_one_clear_error(tmp_path, monkeypatch, evaluator_cache, data_dir, mnist):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    hub_file = tmp_path / "torch" / "hub" / "checkpoints" / INCEPTION_FILE
    with pytest.raises(WeightsError) as err:
        evaluate_images(mnist[2][:100], data_dir=data_dir, cache_dir=evaluator_cache, inception=True)
    assert str(hub_file) in str(err.value) and "never downloads" in str(err.value)
    with pytest.raises(WeightsError, match=f"not found at {tmp_path}/elsewhere.pth"):
        inception_weights_path(tmp_path / "elsewhere.pth")
    hub_file.parent.mkdir(parents=True)
    hub_file.touch()
    assert inception_weights_path() == hub_file


class PixelFeatures(nn.Module):
    """A custom feature extractor: 7x7 average-pooled pixels, optionally with a 'logits' head."""

    def __init__(self, with_logits: bool = False) -> None:
        super().__init__()
        self.head = nn.Linear(49, 10) if with_logits else None

    def forward(self, images: torch.Tensor):
        features = nn.functional.avg_pool2d(images.float() / 255, 4).flatten(1)
        return (features, self.head(features)) if self.head is not None else features


@pytest.mark.parametrize("with_logits", [False, True])
def test_custom_feature_extractor(mnist, with_logits):
    train_images, _, test_images, _ = mnist
    scorer = ImageScorer(PixelFeatures(with_logits), test_images[:2000], kid_subsets=10)
    real = scorer.score(train_images[:2000])
    noise = scorer.score(np.random.default_rng(0).integers(0, 256, size=(2000, 28, 28), dtype=np.uint8))
    assert real["fid"] < noise["fid"] / 10 and real["kid"] < noise["kid"] / 10
    assert real["recall"] > 0.5 > noise["recall"]
    assert ("is" in real) == ("class_entropy" in real) == with_logits


def test_reference_statistics_are_computed_once(evaluator_cache, data_dir, mnist):
    space = feature_space("MNIST", data_dir, evaluator_cache)
    assert space is feature_space("MNIST", data_dir, evaluator_cache)
    before = space.scorer.fid.real_features_num_samples.item()
    space.scorer.score(mnist[0][:100])
    assert before == space.scorer.fid.real_features_num_samples.item() == 10000


@pytest.mark.slow
def test_full_evaluator_thresholds(data_dir, tmp_path, mnist):
    """The shipped settings: >= 99 % on MNIST (IS of real digits >= 9.5), >= 90 % on Fashion-MNIST."""
    for dataset, target in (("MNIST", 0.99), ("FashionMNIST", 0.90)):
        assert load_evaluator(dataset, tmp_path, data_dir).info.test_accuracy >= target
    report = evaluate_images(real_subset(mnist[0], 10000), data_dir=data_dir, cache_dir=tmp_path, kid_subsets=10)
    samples, floor = report["evaluator"]["samples"], report["evaluator"]["floor"]
    assert samples["is"] >= 9.5 and samples["fid"] < 2 * floor["fid"] + 0.5
    assert min(samples["precision"], samples["recall"]) >= 0.9


def test_callback_logs_metrics_and_keeps_the_best_fid_checkpoint(train_config, tmp_path, evaluator_cache):
    import pandas as pd

    from ganzoo.pipeline import train

    metrics = train(
        train_config(
            "model=gan",
            "metrics=image",  # what data=mnist selects outside the fast test settings
            "trainer.max_steps=14",  # 7 batches: generator iterations 1..7, scored at 4 and on the last batch
            "callbacks.image_metrics.every_n_gen_steps=4",
            "callbacks.image_metrics.n_samples=200",
            f"callbacks.image_metrics.cache_dir={evaluator_cache}",
        )
    )
    assert {"val/fid", "val/kid", "val/is", "val/precision", "val/recall", "val/class_entropy"} <= metrics.keys()
    logged = pd.read_csv(next((tmp_path / "run").rglob("metrics.csv")))
    fid, floor = logged["val/fid"].dropna(), logged["val/fid_floor"].dropna()
    assert len(fid) == len(floor) == 2 and (fid > 0).all()
    assert (floor < fid.min() / 2).all() and floor.nunique() == 1  # the floor at n=200, computed once
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "best_fid.ckpt", weights_only=True)
    tracker = next(v for k, v in checkpoint["callbacks"].items() if "val/fid" in k)
    assert float(tracker["best_model_score"]) == pytest.approx(fid.min())
    assert checkpoint["ganzoo"]["gen_step"] == (4 if fid.iloc[0] < fid.iloc[1] else 7)
    # The metrics (and the evaluator inside them) stay out of the model's checkpoint.
    assert not [k for k in checkpoint["state_dict"] if any(w in k for w in ("fid", "kid", "inception", "evaluator"))]


def test_image_metrics_come_with_image_data_only(train_config):
    assert "image_metrics" in train_config("data=mnist", fast=False).callbacks
    assert "image_metrics" in train_config("data=fashion_mnist", fast=False).callbacks
    assert "image_metrics" not in train_config("data=mnist", "metrics=none", fast=False).callbacks
    assert "image_metrics" not in train_config("data=waves", "model=rgan", fast=False).callbacks

"""The augmentation study (issue 5, item 4) on real MNIST, with a tiny conditional generator trained for 6 steps.

What matters here is the plumbing, not the accuracy: both arms run for the same steps, the augmented arm's batches
really hold synthetic images at the configured share, a seed gives the same numbers twice, the report says which
labels the generator saw, and an unconditional checkpoint is refused in one line.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
import torch
from conftest import FAST, compose_config, run_cli

import ganzoo.augment as augment
from ganzoo.augment import Labelled, labelled_subset, leakage, load_mnist, mix_batch, run, section_lines
from ganzoo.pipeline import train

TINY = ["model.generator.width=8", "model.discriminator.width=8"]
STEPS, BATCH = 20, 64


@pytest.fixture(scope="module", autouse=True)
def decode_mnist_once():
    """Each study and training run decodes the gzipped IDX files again (about 1 s each): decode each split once."""
    cached = functools.lru_cache(maxsize=None)(augment.load_split)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("ganzoo.data.mnist.load_split", cached)
        patch.setattr(augment, "load_split", cached)
        yield


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, data_dir):
    """``checkpoint(model)``: last.ckpt of a tiny 6-step run on the first 100 training images, trained once."""
    paths: dict[str, Path] = {}

    def get(model: str) -> Path:
        if model not in paths:
            run_dir = tmp_path_factory.mktemp(model)
            overrides = [*FAST, f"model={model}", *TINY, "trainer.max_steps=6", "data.limit=100"]
            train(compose_config([*overrides, f"paths.data_dir={data_dir}"], run_dir))
            paths[model] = run_dir / "checkpoints" / "last.ckpt"
        return paths[model]

    return get


def study_config(ckpt: Path, out_dir: Path, data_dir: Path, *overrides: str):
    return compose_config(
        [
            f"ckpt_path={ckpt}",
            "labelled=[100]",
            "seeds=[0]",
            f"steps={STEPS}",
            f"batch_size={BATCH}",
            "synthetic_per_class=10",
            "width=4",
            f"data_dir={data_dir}",
            f"out={out_dir}/augment.json",
            "results_md=null",
            *overrides,
        ],
        out_dir,
        "augment",
    )


def test_study_writes_both_arms_and_is_deterministic(checkpoint, tmp_path, data_dir):
    cfg = study_config(checkpoint("dcgan_cgan"), tmp_path, data_dir)
    result = run(cfg)
    assert json.loads((tmp_path / "augment.json").read_text()) == json.loads(json.dumps(result))
    assert {(r["labelled"], r["seed"], r["arm"]) for r in result["runs"]} == {(100, 0, "real"), (100, 0, "augmented")}
    assert all(0 <= r["accuracy"] <= 1 for r in result["runs"])
    seen = {r["arm"]: r["synthetic_images_seen"] for r in result["runs"]}
    assert seen == {"real": 0, "augmented": STEPS * BATCH // 2}  # real_fraction 0.5: half of every batch
    (row,) = result["summary"]
    assert row["labelled"] == 100 and row["verdict"] == "one seed: cannot tell"
    assert row["gain_mean"] == pytest.approx(row["augmented_mean"] - row["real_mean"])
    # The generator was trained with data.limit=100: exactly the classifier's first 100 labels, a fair comparison.
    assert result["generator_data_limit"] == 100 and row["fair"] and "classifier's own" in row["generator_saw"]
    again = run(study_config(checkpoint("dcgan_cgan"), tmp_path / "again", data_dir))
    assert [r["accuracy"] for r in again["runs"]] == [r["accuracy"] for r in result["runs"]]

    lines = "\n".join(section_lines(result, "this machine"))
    assert str(checkpoint("dcgan_cgan")) in lines and "data.limit=100" in lines and "python src/augment.py" in lines
    assert "| labels the generator saw |" in lines and "fair semi-supervised result" in lines


def test_mix_batch_draws_the_configured_share_from_the_synthetic_pool():
    real = Labelled(-torch.ones(5, 1, 28, 28), torch.zeros(5, dtype=torch.long))
    synthetic = Labelled(torch.ones(50, 1, 28, 28), torch.ones(50, dtype=torch.long))
    generator = torch.Generator().manual_seed(0)
    for real_fraction, n_synthetic in [(0.5, 32), (0.25, 48), (0.0, 64)]:
        images, labels, is_synthetic = mix_batch(real, synthetic, 64, real_fraction, generator)
        assert int(is_synthetic.sum()) == n_synthetic
        assert torch.equal(images[:, 0, 0, 0] > 0, is_synthetic) and torch.equal(labels == 1, is_synthetic)
    images, labels, is_synthetic = mix_batch(real, None, 64, 0.5, generator)  # the real-only arm
    assert not is_synthetic.any() and (images < 0).all() and len(labels) == 64


def test_labelled_subsets(data_dir):
    train = load_mnist("train", data_dir, None)
    first = labelled_subset(train, 100, "first", seed=3)
    assert torch.equal(first.labels, train.labels[:100])  # what data.limit=100 trains a generator on
    assert first.images.min() >= -1 and first.images.max() <= 1
    balanced = labelled_subset(train, 100, "balanced", seed=3)
    assert torch.bincount(balanced.labels, minlength=10).tolist() == [10] * 10
    assert not torch.equal(balanced.labels, labelled_subset(train, 100, "balanced", seed=4).labels)


def test_leakage_says_which_labels_the_generator_saw():
    assert leakage(100, "first", 100) == ("first 100 (the classifier's own)", True)
    assert leakage(1000, "first", 100)[1]  # a generator on fewer of the same labels adds none
    text, fair = leakage(100, "first", None)
    assert not fair and "all 60 000" in text and "59 900 more" in text
    assert not leakage(100, "balanced", 100)[1]  # balanced subset: not the generator's first 100


def test_unconditional_checkpoint_is_refused(checkpoint, tmp_path, data_dir):
    ckpt = checkpoint("dcgan")
    with pytest.raises(ValueError, match="not class-conditional") as raised:
        run(study_config(ckpt, tmp_path, data_dir))
    message = str(raised.value)
    assert str(ckpt) in message and "model=dcgan_cgan" in message and "\n" not in message
    result = run_cli("augment.py", f"ckpt_path={ckpt}", f"data_dir={data_dir}", "results_md=null", timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"error: {message}"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["real_fraction=1.0"], "real_fraction must be in"),
        (["subset=random"], "subset must be one of"),
        (["subset=balanced", "labelled=[15]"], "multiples of 10"),
    ],
)
def test_bad_settings_are_refused_before_any_work(tmp_path, data_dir, overrides, message):
    with pytest.raises(ValueError, match=message):
        run(study_config(tmp_path / "never_read.ckpt", tmp_path, data_dir, *overrides))

"""Bad input is refused before training, in one line that names the key or file and the fix: learning rates,
a checkpoint of another model, empty data sets, damaged IDX files. (Unknown keys, n_critic and latent_dim:
test_entrypoints.py; bad CSV columns and cells: test_tabular_data.py; damaged checkpoints: test_reliability.py.)"""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import pytest
from conftest import FAST, run_cli

from ganzoo.data.idx import DataError, read_idx
from ganzoo.data.mnist import MNISTDataModule, load_split
from ganzoo.data.tabular import TabularDataModule
from ganzoo.pipeline import report_user_errors, train

TINY_DCGAN = ["model=dcgan", "model.generator.width=8", "model.discriminator.width=8", "data.limit=32"]


def user_error(cfg, capsys) -> str:
    """The one line train.py prints for ``cfg`` (it exits 1 with it, without a traceback)."""
    with pytest.raises(SystemExit) as exit_info:
        report_user_errors(train, cfg)
    assert exit_info.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


# ---- learning rates -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("model.optimizer_g.lr=-1", "model.optimizer_g.lr"),
        ("model.optimizer_d.lr=0", "model.optimizer_d.lr"),
        ("trick.unrolled.lr=-0.001", "trick.unrolled.lr"),
    ],
)
def test_non_positive_learning_rate_is_refused_by_key(train_config, tmp_path, capsys, override, key):
    extra = ["trick=[unrolled]"] if override.startswith("trick") else []
    line = user_error(train_config(*extra, override), capsys)
    assert f"{key} must be a finite number > 0" in line, line
    assert not (tmp_path / "run" / "checkpoints").exists()  # refused before training


# ---- a checkpoint of another model ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dcgan_run(tmp_path_factory, data_dir):
    """A real run of train.py (so Hydra records its overrides beside the checkpoint)."""
    run = tmp_path_factory.mktemp("dcgan") / "run"
    args = [*FAST, *TINY_DCGAN, "trainer.max_steps=2", f"paths.data_dir={data_dir}", f"hydra.run.dir={run}"]
    result = run_cli("train.py", *args)
    assert result.returncode == 0, result.stderr[-3000:]
    return run


def test_checkpoint_of_other_nets_is_refused_naming_both_and_the_fix(train_config, tmp_path, capsys, dcgan_run):
    last = dcgan_run / "checkpoints" / "last.ckpt"
    line = user_error(train_config("model=gan", "data.limit=32", f"ckpt_path={last}"), capsys)
    assert str(last) in line
    assert "model.discriminator._target_=ganzoo.nets.conv.DCGANDiscriminator" in line, line
    assert "model.discriminator._target_=ganzoo.nets.mlp.MLPDiscriminator" in line, line
    assert "model=dcgan model.generator.width=8 model.discriminator.width=8" in line  # the overrides it had
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_checkpoint_of_another_model_class_is_refused(train_config, capsys, dcgan_run):
    last = dcgan_run / "checkpoints" / "last.ckpt"
    line = user_error(train_config("model=cgan", "data.limit=32", f"ckpt_path={last}"), capsys)
    assert "model._target_=ganzoo.models.GAN" in line and "model._target_=ganzoo.models.cgan.CGAN" in line, line


def test_checkpoint_of_differently_sized_nets_names_the_key(train_config, capsys, dcgan_run):
    cfg = train_config(*TINY_DCGAN, "model.generator.width=16", f"ckpt_path={dcgan_run}/checkpoints/last.ckpt")
    line = user_error(cfg, capsys)
    assert "trained with model.generator.width=8, but this run has model.generator.width=16" in line, line


def test_checkpoint_of_the_same_model_resumes(train_config, dcgan_run):
    """The check does not refuse the right model (a resume 2 -> 4 steps)."""
    train(train_config(*TINY_DCGAN, "trainer.max_steps=4", f"ckpt_path={dcgan_run}/checkpoints/last.ckpt"))


# ---- empty data sets ------------------------------------------------------------------------------------------
def test_mnist_limit_zero_is_refused(train_config, capsys):
    line = user_error(train_config("data.limit=0"), capsys)
    assert "data.limit=0" in line, line


@pytest.mark.parametrize("content", ["age,job,income\n", ""])
def test_table_without_rows_is_refused_by_name(tmp_path, content):
    table = tmp_path / "people.csv"
    table.write_text(content)
    with pytest.raises(DataError, match=rf"{table}.*(no rows|No columns)"):
        TabularDataModule(str(table), batch_size=4).setup()


def test_table_limit_zero_is_refused(tmp_path):
    table = tmp_path / "people.csv"
    table.write_text("age,job\n30,cook\n40,smith\n")
    with pytest.raises(ValueError, match=r"data\.limit must be >= 1"):
        TabularDataModule(str(table), batch_size=1, limit=0).setup()


# ---- damaged IDX files ----------------------------------------------------------------------------------------
def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


def test_valid_idx_round_trips(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "x-idx3-ubyte").write_bytes(idx_bytes(images))
    (tmp_path / "x-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images)))
    assert np.array_equal(read_idx(tmp_path / "x-idx3-ubyte"), images)
    assert np.array_equal(read_idx(tmp_path / "x-idx3-ubyte.gz"), images)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda raw: raw[: len(raw) - 5], "truncated or corrupt"),
        (lambda raw: raw + b"\0", "truncated or corrupt"),
        (lambda raw: raw[:6], "truncated or corrupt"),  # cut inside the header
        (lambda raw: b"\x01\x02" + raw[2:], "bad magic"),
        (lambda raw: raw[:2] + b"\x0d" + raw[3:], "bad magic"),  # float32, not unsigned bytes
        (lambda raw: b"", "bad magic"),
    ],
)
def test_damaged_idx_file_is_named(tmp_path, damage, message):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(damage(idx_bytes(np.zeros((3, 4, 4), dtype=np.uint8))))
    with pytest.raises(DataError, match=rf"{path}.*{message}.*re-?download"):
        read_idx(path)


def test_corrupt_gzip_is_named(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((3, 4, 4), dtype=np.uint8)))[:-12])
    with pytest.raises(DataError, match=rf"cannot read {path}.*delete it"):
        read_idx(path)


def test_damaged_mnist_file_stops_the_data_module_by_name(tmp_path, data_dir):
    """A real MNIST folder with one file cut short: the data module names that file."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        shutil.copy(data_dir / "MNIST" / "raw" / name, raw / name)
    images = gzip.decompress((data_dir / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").read_bytes())
    (raw / "train-images-idx3-ubyte").write_bytes(images[: len(images) // 2])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte is truncated"):
        MNISTDataModule(str(tmp_path), download=False).prepare_data()


def test_images_and_labels_that_disagree_are_named(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "train-images-idx3-ubyte").write_bytes(idx_bytes(np.zeros((3, 28, 28), dtype=np.uint8)))
    (raw / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(2, dtype=np.uint8)))
    with pytest.raises(DataError, match=r"disagree: images \(3, 28, 28\), labels \(2,\)"):
        load_split("MNIST", "train", tmp_path)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.n_critic=abc", "model.n_critic must be int, got 'abc' (str)"),
        ("model.latent_dim=1.5", "model.latent_dim must be int, got 1.5 (float)"),
        ("data.batch_size=x", "data.batch_size must be int, got 'x' (str)"),
        ("model.grad_clip_d=abc", "model.grad_clip_d must be float or null, got 'abc' (str)"),
        ("model.discriminator.norm=3", "model.discriminator.norm must be str, got 3 (int)"),
    ],
)
def test_a_mistyped_value_is_named_before_anything_is_built(train_config, capsys, override, message):
    assert user_error(train_config(override), capsys) == f"error: {message}"


def test_every_shipped_config_passes_the_type_check(train_config):
    from ganzoo.validation import check_types

    for overrides in (
        [],
        ["model=bigan", "loss=wgan_gp"],
        ["experiment=aae_semi"],
        ["experiment=ssgan_mnist"],
        ["experiment=rcgan_waves"],
        ["experiment=adult_wgan_gp"],
        ["experiment=adult_income"],
        ["experiment=ring", "trick=[unrolled,ema]"],
        ["model=infogan", "trick=[spectral_norm,minibatch_disc]"],
    ):
        check_types(train_config(*overrides, fast=False))

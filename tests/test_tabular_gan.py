"""The tabular GAN on real Adult rows: every loss trains, checkpoints sample tables alone, conditioning, packing,
and a short run that learns the category frequencies."""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import compose_config, run_cli
from hydra.utils import instantiate

from ganzoo.data.tabular_schema import infer_schema
from ganzoo.data.tabular_transform import TableTransformer
from ganzoo.metrics.tabular import TableScorer, align, real_parts, sample_table
from ganzoo.nets.tabular import TabularCritic, TabularGenerator
from ganzoo.pipeline import load_model, train

pytestmark = pytest.mark.usefixtures("one_thread")

LOSSES = ["minimax", "nonsaturating", "wgan", "wgan_gp", "lsgan", "hinge"]
# A real subset and small nets; the logger and progress bar off the hot path.
TABLE = [
    "data=adult",
    "model=tabular_gan",
    "data.limit=2000",
    "data.gmm_max_rows=300",
    "data.batch_size=100",
    "model.latent_dim=32",
    "model.generator.hidden=[64,64]",
    "model.discriminator.hidden=[64,64]",
    "callbacks.samples=null",
    "~callbacks.progress",
    "logger=csv",
    "trainer.log_every_n_steps=50",
    "trainer.enable_model_summary=false",
    "metrics=none",  # the table metrics' own test turns them on
]
# The preset, conditional on income, at a learning rate that moves the frequencies within 100 batches; its EMA of
# G (which sampling uses) at a decay that follows G within them.
QUALITY = [
    "experiment=adult_wgan_gp",
    *TABLE[2:],
    "data.condition_on=income",
    "model.optimizer_g.lr=1e-3",
    "model.optimizer_d.lr=1e-3",
    "trick.ema.decay=0.9",
    "trainer.max_steps=200",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
    """(checkpoint path, real table) of a 100-batch WGAN-GP run of the Adult preset, conditional on income."""
    run = tmp_path_factory.mktemp("tabular") / "run"
    cfg = compose_config([*QUALITY, f"paths.data_dir={data_dir}"], run)
    train(cfg)
    return run / "checkpoints" / "last.ckpt", instantiate(cfg.data).load_table()[0]


def frequencies(table: pd.DataFrame, column: str) -> pd.Series:
    return table[column].value_counts(normalize=True, dropna=False)


def category_tv(fake: pd.DataFrame, real: pd.DataFrame, columns: list[str]) -> float:
    """Mean total-variation distance between the category frequencies (missing included) of ``columns``."""
    distances = [0.5 * frequencies(real, c).sub(frequencies(fake, c), fill_value=0.0).abs().sum() for c in columns]
    return float(np.mean(distances))


@pytest.mark.parametrize("gumbel_tau", [None, 0.2])
def test_generator_activates_each_span_by_its_kind(gumbel_tau):
    spans = [("tanh", 1), ("softmax", 3), ("linear", 1), ("softmax", 2)]
    generator = TabularGenerator(8, spans, num_classes=2, hidden=(16, 16), gumbel_tau=gumbel_tau)
    rows = generator(torch.randn(32, 8), torch.randint(0, 2, (32,)))
    assert rows.shape == (32, 7)
    assert rows[:, 0].abs().max() <= 1
    for block in (rows[:, 1:4], rows[:, 5:7]):
        assert (block >= 0).all() and torch.allclose(block.sum(1), torch.ones(32))


def test_gumbel_draws_follow_each_spans_softmax():
    """In training, every softmax span is a near one-hot Gumbel-softmax draw whose category is distributed as the
    span's softmax; eval mode gives the softmax itself. Logits differ by span, so a mixed-up span index shows."""
    spans = [("softmax", 3), ("tanh", 1), ("softmax", 2), ("linear", 1), ("softmax", 4)]
    generator = TabularGenerator(4, spans, hidden=(8,), gumbel_tau=0.2)
    softmax_units = [0, 1, 2, 4, 5, 7, 8, 9, 10]
    logits = torch.tensor([[2.0, 0.0, -1.0, 0.5, -0.5, 1.0, 0.0, -2.0, 0.3]]).expand(40_000, -1)
    torch.manual_seed(0)
    draws = generator._softmax_spans(logits)
    generator.eval()
    probabilities = generator._softmax_spans(logits)[0]
    for span in (slice(0, 3), slice(3, 5), slice(5, 9)):
        assert torch.allclose(probabilities[span], logits[0, span].softmax(0), atol=1e-6)
        block = draws[:, span]
        assert torch.allclose(block.sum(1), torch.ones(len(block)), atol=1e-5)
        assert block.max(1).values.median() > 0.99  # tau 0.2: near one-hot
        frequencies = torch.bincount(block.argmax(1), minlength=block.shape[1]) / len(block)
        assert torch.allclose(frequencies, probabilities[span], atol=0.01), (frequencies, probabilities[span])
    assert len(softmax_units) == generator.softmax_units.numel()
    assert generator.softmax_units.tolist() == softmax_units


def test_critic_scores_packs_and_refuses_batch_norm():
    critic = TabularCritic(data_dim=7, num_classes=2, hidden=(16,), norm="layer", pac=4)
    assert critic(torch.rand(12, 7), torch.randint(0, 2, (12,))).shape == (3,)
    with pytest.raises(ValueError, match="does not split into packs of model.discriminator.pac=4"):
        critic(torch.rand(10, 7), torch.randint(0, 2, (10,)))
    with pytest.raises(ValueError, match="no batch norm"):
        TabularCritic(data_dim=7, norm="batch")


@pytest.mark.parametrize("loss", LOSSES)
def test_each_loss_trains_with_packed_critic(train_config, tmp_path, loss):
    cfg = train_config(
        *TABLE,
        f"loss={loss}",
        "data.continuous_encoding=minmax",
        "model.discriminator.pac=2",
        "model.n_critic=2",
        "trainer.max_steps=6",
        fast=False,
    )
    metrics = train(cfg)
    assert {"d/loss", "g/loss"} <= metrics.keys()
    assert all(math.isfinite(v) for v in metrics.values()), metrics
    ckpt = torch.load(tmp_path / "run/checkpoints/last.ckpt", weights_only=True)
    assert (ckpt["ganzoo"]["gen_step"], ckpt["ganzoo"]["disc_step"]) == (2, 4)


def test_checkpoint_alone_samples_the_original_table(trained):
    ckpt, real = trained
    model = load_model(ckpt)  # weights_only load, no data module
    fake = model.sample_table(300, seed=0)
    assert list(fake.columns) == list(real.columns) and len(fake) == 300
    assert fake.dtypes.to_dict() == real.dtypes.to_dict()
    assert set(fake["workclass"].dropna()) <= set(real["workclass"].dropna())


def assert_state_round_trips(transformer: TableTransformer, table: pd.DataFrame) -> None:
    """The plain state survives a weights_only save/load and rebuilds a transformer that codes ``table`` alike."""
    buffer = io.BytesIO()
    torch.save(transformer.state_dict(), buffer)
    buffer.seek(0)
    restored = TableTransformer.from_state_dict(torch.load(buffer, weights_only=True))
    encoded = transformer.transform(table)
    np.testing.assert_array_equal(restored.transform(table), encoded)
    pd.testing.assert_frame_equal(restored.inverse_transform(encoded), transformer.inverse_transform(encoded))


def test_transformer_state_round_trips_on_adult(trained):
    ckpt, real = trained
    schema = load_model(ckpt).transformer.schema
    assert_state_round_trips(TableTransformer(schema, gmm_max_rows=300).fit(real), real)


@pytest.mark.parametrize("encoding", ["minmax", "standard", "mode_specific"])
def test_transformer_state_round_trips_dates_zones_and_dtypes(encoding):
    rng = np.random.default_rng(0)
    table = pd.DataFrame(
        {
            "day": pd.date_range("2020-01-01", periods=300, freq="D"),
            "hour": pd.date_range("2021-03-01", periods=300, freq="h", tz="Europe/Berlin"),
            "kind": pd.Categorical(rng.choice(["a", "b", "c"], 300)),
            "flag": rng.choice([True, False], 300),
            "x": np.where(np.arange(300) == 5, np.nan, rng.normal(size=300)),
            "k": rng.integers(0, 3, 300),
        }
    )
    schema = infer_schema(table, datetime=["day", "hour"])
    assert_state_round_trips(TableTransformer(schema, encoding, gmm_max_rows=200).fit(table), table)


def test_table_metrics_are_logged_and_the_least_detectable_checkpoint_kept(tmp_path, data_dir):
    """data=adult selects metrics=table: val/table_quality and val/detection_auc of rows decoded as sample.py does,
    against the held-out half evaluate.py uses as its floor (not the half it scores tables against), and
    best_table.ckpt holds the generator of the lowest detection AUC."""
    run = tmp_path / "run"
    overrides = [o for o in TABLE if o != "metrics=none"]
    cfg = compose_config(
        [
            *overrides,
            "trainer.max_epochs=1",  # 16 batches of the 1 600 training rows
            "callbacks.table_metrics.every_n_gen_steps=5",
            "callbacks.table_metrics.n_samples=300",
            f"paths.data_dir={data_dir}",
        ],
        run,
    )
    metrics = train(cfg)
    rows = pd.read_csv(run / "csv" / "metrics.csv").dropna(subset=["val/detection_auc"])
    # Every 5 generator iterations and the last one (global steps count the critic's and G's steps).
    assert (rows["step"] // 2).tolist() == [5, 10, 15, 16]
    assert rows["val/detection_auc"].between(0, 1).all() and rows["val/table_quality"].between(0, 1).all()
    # The last scores are the final generator's 300 rows against the floor half of the held-out rows.
    model = load_model(run / "checkpoints" / "last.ckpt")
    parts, schema = real_parts(instantiate(cfg.data))
    table = align(sample_table(model, 300, 0), parts["train"], schema.kinds, "t")
    floor = TableScorer(parts["floor"], parts["train"], schema.kinds, dcr_rows=1)
    assert metrics["val/detection_auc"] == pytest.approx(floor.detection_auc(table))
    assert metrics["val/table_quality"] == pytest.approx(floor.quality(table))
    assert metrics["val/table_quality"] != pytest.approx(
        TableScorer(parts["reference"], parts["train"], schema.kinds, dcr_rows=1).quality(table)
    )
    best = rows.loc[rows["val/detection_auc"].idxmin()]
    stored = torch.load(run / "checkpoints" / "best_table.ckpt", map_location="cpu", weights_only=False)
    assert stored["ganzoo"]["gen_step"] == int(best["step"]) // 2


def test_sample_cli_writes_a_csv(trained, tmp_path):
    ckpt, real = trained
    out = tmp_path / "x.csv"
    result = run_cli("sample.py", f"ckpt_path={ckpt}", "n=100", f"out={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    table = pd.read_csv(out)
    assert len(table) == 100 and list(table.columns) == list(real.columns)
    assert 0 < (table["income"] == ">50K").sum() < 100  # labels drawn by their frequencies
    # condition=<category>: every row asked for that income; a category the column lacks is a one-line error.
    result = run_cli("sample.py", f"ckpt_path={ckpt}", "n=100", f"out={out}", "condition='>50K'")
    assert result.returncode == 0, result.stderr[-3000:]
    assert set(pd.read_csv(out)["income"]) == {">50K"}
    result = run_cli("sample.py", f"ckpt_path={ckpt}", "n=100", f"out={out}", "condition=rich")
    assert result.returncode != 0 and "'rich' is not a category of 'income'" in result.stderr


def test_conditional_sampling_keeps_the_requested_label(trained):
    model = load_model(trained[0])
    assert set(model.sample_table(200, label=">50K")["income"]) == {">50K"}
    with pytest.raises(ValueError, match="not a category of 'income'"):
        model.sample_table(10, label="rich")
    # Without a label, the labels follow the training frequencies (about a quarter earn >50K).
    share = (model.sample_table(2000)["income"] == ">50K").mean()
    assert 0.15 < share < 0.35


def test_short_run_learns_category_frequencies(trained):
    """Fails if training is broken: an untrained generator's categories are close to uniform."""
    ckpt, real = trained
    model = load_model(ckpt)
    columns = ["workclass", "marital-status", "relationship", "race", "sex", "native-country"]
    torch.manual_seed(0)
    trained_tv = category_tv(model.sample_table(2000, seed=0), real, columns)
    for module in [*model.generator.modules(), *model.tricks.modules()]:  # the preset samples from the EMA of G
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    initial_tv = category_tv(model.sample_table(2000, seed=0), real, columns)
    assert initial_tv > 0.35 and trained_tv < 0.5 * initial_tv, (initial_tv, trained_tv)


def test_resume_rebuilds_nothing_and_continues(trained, train_config):
    cfg = train_config(*QUALITY, "trainer.max_steps=204", f"ckpt_path={trained[0]}", fast=False)
    metrics = train(cfg)
    assert all(math.isfinite(v) for v in metrics.values()), metrics


def test_batch_not_divisible_by_pac_is_a_clear_error(train_config):
    cfg = train_config(*TABLE, "data.continuous_encoding=minmax", "model.discriminator.pac=3", fast=False)
    with pytest.raises(ValueError, match=r"data.batch_size=100 is not a multiple of model.discriminator.pac=3"):
        train(cfg)


def test_image_data_is_a_clear_error(train_config):
    cfg = train_config("model=tabular_gan", "callbacks.samples=null")
    with pytest.raises(ValueError, match="model=tabular_gan needs a table"):
        train(cfg)

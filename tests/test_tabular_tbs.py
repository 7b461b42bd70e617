"""CTGAN's conditional vector and training-by-sampling (``model.training_by_sampling=true``) on real Adult rows:
the log-frequency sampler, training steps whose real rows match their conditions, the ``g/cond`` term and its
gradient, and checkpoints that sample tables alone."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from conftest import compose_config
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from scipy.stats import chisquare

from ganzoo.data.tabular_sampler import ConditionSampler
from ganzoo.data.tabular_schema import CATEGORICAL
from ganzoo.metrics.tabular import sample_table
from ganzoo.pipeline import load_model, train

pytestmark = pytest.mark.usefixtures("one_thread")

# A real subset and small nets, WGAN-GP on packs of 2, 40 batches. G learns fast and D barely (lr 3e-3 and 1e-5),
# so G's match of its conditions comes from g/cond (without the term, the cross-entropy of the test below rises).
TBS = [
    "data=adult",
    "model=tabular_gan",
    "loss=wgan_gp",
    "model.training_by_sampling=true",
    "data.limit=2000",
    "data.gmm_max_rows=300",
    "data.batch_size=100",
    "model.latent_dim=32",
    "model.generator.hidden=[64,64]",
    "model.discriminator.hidden=[64,64]",
    "model.discriminator.pac=2",
    "model.n_critic=1",
    "model.optimizer_g.lr=3e-3",
    "model.optimizer_d.lr=1e-5",
    "trainer.max_epochs=-1",
    "trainer.max_steps=80",
    "callbacks.samples=null",
    "~callbacks.progress",
    "logger=csv",
    "trainer.log_every_n_steps=5",
    "trainer.enable_model_summary=false",
    "metrics=none",
]


def set_up_adult(tmp_path_factory, data_dir, *overrides):
    cfg = compose_config([*TBS, *overrides, f"paths.data_dir={data_dir}"], tmp_path_factory.mktemp("data") / "run")
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    return datamodule


@pytest.fixture(scope="module")
def adult(tmp_path_factory, data_dir):
    """The set-up Adult data module of the runs below (2000 rows, 1600 of them training rows)."""
    return set_up_adult(tmp_path_factory, data_dir)


@pytest.fixture(scope="module")
def adult_income(tmp_path_factory, data_dir):
    """The same, conditioned on income: its batches' labels are the rows' income."""
    return set_up_adult(tmp_path_factory, data_dir, "data.condition_on=income")


def categorical_spans(datamodule):
    categorical = set(datamodule.transformer.schema.of_kind(CATEGORICAL))
    return [span for span in datamodule.transformer.output_info if span.column in categorical]


class RealRowsMatchConditions(pl.Callback):
    """Watches every critic step of a run: the real rows D compares must have the categories their conditional
    vectors set, and the fakes must be generated for those same vectors."""

    def __init__(self) -> None:
        self.checked = 0

    def on_train_start(self, trainer, pl_module) -> None:
        critic_batches = pl_module.critic_batches

        def checked(batch, fake_cond):
            real, fake = critic_batches(batch, fake_cond)
            cond, classes = pl_module.conditions(batch), pl_module.num_classes
            assert cond is not None and cond.shape == (len(real), classes + pl_module.sampler.cond_dim)
            assert fake_cond is cond and fake.shape == real.shape
            # The real rows' categorical spans side by side, in the layout of the conditional vector.
            categories = torch.cat([real[:, span.slice] for span in pl_module.cond_spans], 1)
            assert (categories.gather(1, cond[:, classes:].argmax(1, keepdim=True)) == 1).all()
            if classes:  # with data.condition_on, the label one-hot in front is the real row's own label
                label = next(s for s in pl_module.transformer.output_info if s.column == pl_module.condition_on)
                assert torch.equal(cond[:, :classes], real[:, label.slice])
            self.checked += 1
            return real, fake

        pl_module.critic_batches = checked


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
    """(run dir, last metrics, batches checked) of a 40-batch training-by-sampling run."""
    run = tmp_path_factory.mktemp("tbs") / "run"
    check = RealRowsMatchConditions()
    metrics = train(compose_config([*TBS, f"paths.data_dir={data_dir}"], run), [check])
    return run, metrics, check.checked


@pytest.fixture(scope="module")
def trained_both(tmp_path_factory, data_dir):
    """The same run conditioned on income as well (``data.condition_on=income``)."""
    run = tmp_path_factory.mktemp("tbs_income") / "run"
    check = RealRowsMatchConditions()
    metrics = train(compose_config([*TBS, "data.condition_on=income", f"paths.data_dir={data_dir}"], run), [check])
    return run, metrics, check.checked


# ---- (1) the sampler ----------------------------------------------------------------------------------------
def test_sampler_follows_log_frequencies_and_draws_rows_having_the_category(adult):
    spans = categorical_spans(adult)
    rows = adult.train_set.tensors[0]
    sampler = ConditionSampler.fit(rows, spans)
    assert sampler.cond_dim == sum(span.width for span in spans)
    assert set(sampler.state_dict()) == {"counts"}  # the frequencies travel in checkpoints, the row index does not
    n = 40_000
    draw = sampler.sample_train(n, generator=torch.Generator().manual_seed(0))
    # Exactly one 1 per vector, in the chosen column's slots, at the chosen category.
    assert torch.equal(draw.cond.sum(1), torch.ones(n)) and set(draw.cond.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(draw.cond.argmax(1), sampler.offsets[draw.columns] + draw.categories)
    # Columns uniform; within a column, categories by log(1 + count) (chi-square at every column).
    share = torch.bincount(draw.columns, minlength=len(spans)) / n
    assert (share - 1 / len(spans)).abs().max() < 0.01, share
    for j, span in enumerate(spans):
        counts = rows[:, span.slice].sum(0).double()
        observed = torch.bincount(draw.categories[draw.columns == j], minlength=span.width).numpy()
        expected = (torch.log1p(counts) / torch.log1p(counts).sum()).numpy() * observed.sum()
        assert chisquare(observed, expected).pvalue > 1e-3, (span.column, observed, expected)
        # The log flattens the frequencies: the rarest category is drawn far more often than its share.
        rarest = int(counts.argmin())
        assert observed[rarest] / observed.sum() > 1.2 * counts[rarest] / counts.sum(), span.column
        # Every real row drawn has the chosen category in the chosen column.
        chosen = draw.columns == j
        assert torch.equal(rows[draw.rows[chosen]][:, span.slice].argmax(1), draw.categories[chosen])


def test_unconditioned_draws_follow_the_training_frequencies(adult):
    spans = categorical_spans(adult)
    rows = adult.train_set.tensors[0]
    sampler = ConditionSampler.fit(rows, spans)
    cond = sampler.sample_original(40_000, generator=torch.Generator().manual_seed(1))
    for first, span in zip(sampler.offsets.tolist(), spans, strict=True):
        chosen = cond[:, first : first + span.width]  # the column's slots in the conditional vector
        picked = chosen[chosen.sum(1) == 1]
        share, real = picked.mean(0), rows[:, span.slice].mean(0)
        assert (share - real).abs().max() < 0.05, (span.column, share, real)


def test_the_sampler_refuses_non_one_hot_rows(adult):
    spans = categorical_spans(adult)
    with pytest.raises(ValueError, match="not one-hot"):
        ConditionSampler.fit(torch.rand(10, adult.transformer.output_dim), spans)


# ---- (2) training and sampling ---------------------------------------------------------------------------------
def test_training_logs_a_finite_cond_term_with_matching_real_rows(trained):
    run, metrics, checked = trained
    assert checked == 40
    assert {"d/loss", "g/loss", "g/cond", "g/adv"} <= metrics.keys(), metrics.keys()
    assert all(math.isfinite(v) for v in metrics.values()), metrics


def test_checkpoint_alone_samples_tables_with_conditional_vectors(trained, adult):
    model = load_model(trained[0] / "checkpoints" / "last.ckpt")
    assert model.generator.cond_dim == model.discriminator.cond_dim == model.sampler.cond_dim > 0
    fitted = ConditionSampler.fit(adult.train_set.tensors[0], categorical_spans(adult))
    assert torch.equal(model.sampler.counts, fitted.counts)  # the frequencies came back with the weights
    cond = model.sample_conditions(50)
    assert cond.shape == (50, model.sampler.cond_dim) and torch.equal(cond.sum(1), torch.ones(50))
    real = adult.train_table
    for fake in (model.sample_table(500, seed=0), sample_table(model, 500, seed=0)):
        assert list(fake.columns) == list(real.columns) and len(fake) == 500
        for column in real.columns:
            if not real[column].isna().any():
                assert not fake[column].isna().any(), column


def test_vectors_drawn_for_a_label_follow_that_labels_rows(adult_income):
    """Per-label counts: vectors drawn for the rows of one income label have the categories of that label's
    training rows (husbands are 3 in 4 of the >50K rows and 1 in 3 of the others), not the overall mix."""
    adult = adult_income
    spans, (rows, labels) = categorical_spans(adult), adult.train_set.tensors[:2]
    assert adult.num_classes == 2 and 0.1 < labels.float().mean() < 0.4  # >50K: about 1 row in 4
    income = [span.column for span in spans].index("income")
    spans = spans[:income] + spans[income + 1 :]  # the label column is not in the vector
    sampler = ConditionSampler.fit(rows, spans, labels, adult.num_classes)
    assert set(sampler.state_dict()) == {"counts", "label_counts"}
    n, generator = 60_000, torch.Generator().manual_seed(2)
    for label in range(adult.num_classes):
        cond = sampler.sample_original(n, generator, labels=torch.full((n,), label))
        own = rows[labels == label]
        for first, span in zip(sampler.offsets.tolist(), spans, strict=True):
            chosen = cond[:, first : first + span.width]
            share, real = chosen[chosen.sum(1) == 1].mean(0), own[:, span.slice].mean(0)
            assert (share - real).abs().max() < 0.05, (label, span.column, share, real)
    with pytest.raises(ValueError, match="no counts per label"):
        ConditionSampler.fit(rows, spans).sample_original(5, labels=torch.zeros(5, dtype=torch.long))


def test_training_by_sampling_with_a_condition_column(trained_both, adult_income):
    """``data.condition_on`` with training-by-sampling: the nets read the label one-hot and the vector over the
    other categorical columns; every critic step's real rows match both (checked by the callback); a checkpoint
    alone samples rows for a requested label whose categories follow that label's real rows."""
    run, metrics, checked = trained_both
    assert checked == 40 and {"g/cond", "g/adv"} <= metrics.keys()
    assert all(math.isfinite(v) for v in metrics.values()), metrics
    model = load_model(run / "checkpoints" / "last.ckpt")
    assert model.condition_on == "income" and "income" not in [span.column for span in model.cond_spans]
    assert model.generator.cond_dim == model.num_classes + model.sampler.cond_dim
    cond = model.sample_conditions(4000)
    assert torch.equal(model.labels_of(cond).bincount(minlength=2) > 400, torch.tensor([True, True]))
    real = adult_income.train_table
    for label in ("<=50K", ">50K"):
        fake = model.sample_table(600, label=label, seed=0)
        assert (fake["income"] == label).all() and list(fake.columns) == list(real.columns)
    unconditional = model.sample_table(4000, seed=0)
    share = (unconditional["income"] == ">50K").mean()
    assert abs(share - (real["income"] == ">50K").mean()) < 0.04, share


# ---- (3) the generator's cross-entropy term ----------------------------------------------------------------------
def test_cond_loss_is_the_chosen_columns_cross_entropy_and_only_reaches_its_span(trained):
    model = load_model(trained[0] / "checkpoints" / "last.ckpt")
    n, spans = 64, model.cond_spans
    logits = torch.randn(n, model.transformer.output_dim, requires_grad=True)
    slots = model.sample_conditions(n).argmax(1)
    loss = model.cond_loss(logits, slots)
    loss.backward()
    offsets = np.cumsum([0] + [span.width for span in spans])
    column = np.searchsorted(offsets, slots.numpy(), side="right") - 1
    expected = torch.stack(
        [
            F.cross_entropy(logits[i : i + 1, spans[j].slice], torch.tensor([int(slots[i]) - offsets[j]]))
            for i, j in enumerate(column)
        ]
    ).mean()
    torch.testing.assert_close(loss, expected)
    reached = logits.grad != 0
    for i, j in enumerate(column):
        inside = torch.zeros(logits.shape[1], dtype=torch.bool)
        inside[spans[j].slice] = True
        assert reached[i, inside].all() and not reached[i, ~inside].any()


def test_training_lowers_the_cond_term(trained):
    """Fails if g/cond does not train G: the trained G's cross-entropy on fresh conditions is well below that of
    the same G with its weights reset."""
    model = load_model(trained[0] / "checkpoints" / "last.ckpt")

    def cond_term() -> float:
        torch.manual_seed(0)
        cond = model.sample_conditions(1000)
        with torch.no_grad(), model._generator_outputs() as (logits, _rows):
            model.generate(model.sample_latent(1000), cond)
        return float(model.cond_loss(logits[-1], cond.argmax(1)))

    trained_term = cond_term()
    for module in model.generator.modules():
        if module is not model.generator and hasattr(module, "reset_parameters"):
            module.reset_parameters()
    initial_term = cond_term()
    assert trained_term < 0.6 * initial_term, (initial_term, trained_term)


# ---- (4) the auxiliary label classifier (model.classifier_weight, with data.condition_on) ------------------------
CLASSIFIED = [*[o for o in TBS if o != "model.training_by_sampling=true"], "data.condition_on=income"]
CLASSIFIED += ["model.optimizer_d.lr=1e-3"]  # the classifier learns in D's optimizer: faster than TBS's 1e-5


@pytest.fixture(scope="module")
def classified(tmp_path_factory, data_dir):
    """{classifier_weight: loaded last.ckpt} of two 40-batch income-conditioned runs alike but for the weight."""
    models = {}
    for weight in (0.0, 3.0):
        run = tmp_path_factory.mktemp(f"classifier_{weight:g}") / "run"
        overrides = [*CLASSIFIED, f"model.classifier_weight={weight}", f"paths.data_dir={data_dir}"]
        metrics = train(compose_config(overrides, run))
        assert ("g/classifier" in metrics) == (weight > 0) and all(math.isfinite(v) for v in metrics.values())
        models[weight] = load_model(run / "checkpoints" / "last.ckpt").eval()
    return models


def test_the_label_classifier_learns_real_rows_and_steers_the_fakes_to_their_labels(classified, adult_income):
    """The classifier learns income from the other columns of real rows (held-out accuracy above the majority
    share), its weights are in the checkpoint and in D's optimizer, and G's term makes rows requested for >50K
    look like >50K to it: fails if G's term ignores the requested labels or the classifier never learns."""
    model, plain = classified[3.0], classified[0.0]
    assert plain.classifier is None and "classifier.net.0.weight" in model.state_dict()
    label = next(s for s in model.transformer.output_info if s.column == "income")
    assert label.slice.start not in model.classifier.keep.tolist()  # it never reads the label itself
    held_out = adult_income.test_table  # rows the run never trained on, with categories it knows
    for column in model.transformer.schema.of_kind(CATEGORICAL):
        held_out = held_out[held_out[column].isin(model.transformer.categories(column))]
    rows = torch.from_numpy(model.transformer.transform(held_out)).float()
    labels = torch.from_numpy(adult_income.conditions(held_out))
    with torch.no_grad():
        accuracy = float((model.classifier(rows).argmax(1) == labels).float().mean())
    majority = float(labels.bincount().max() / len(labels))
    assert accuracy > majority + 0.02, (accuracy, majority)

    def share_judged(generator_model, index: int) -> float:
        torch.manual_seed(0)
        cond = generator_model.requested_conditions(2000, [">50K", "<=50K"][index])
        with torch.no_grad():
            fakes = generator_model.sample(2000, cond=cond)
            return float((model.classifier(fakes).argmax(1) == generator_model.labels_of(cond)).float().mean())

    high = model.label_index(">50K")
    steered, unsteered = share_judged(model, 0), share_judged(plain, 0)
    assert model.labels_of(model.requested_conditions(3, ">50K")).tolist() == [high] * 3
    assert steered > unsteered + 0.3 and steered > 0.5, (steered, unsteered)
    assert share_judged(model, 1) > 0.9


def test_classifier_with_training_by_sampling_and_its_errors(tmp_path, data_dir):
    """With training-by-sampling the classifier reads the label off the conditional vector's one-hot (here with the
    real_level loss, whose per-label level is in the checkpoint); without a condition column, with a negative
    weight or an unknown loss, a one-line error."""
    overrides = [*TBS, "data.condition_on=income", "model.classifier_weight=1", "trainer.max_steps=6"]
    overrides += ["model.classifier_loss=real_level", f"paths.data_dir={data_dir}"]
    metrics = train(compose_config(overrides, tmp_path / "run"))
    assert {"d/classifier", "g/classifier", "g/cond"} <= metrics.keys()
    level = load_model(tmp_path / "run" / "checkpoints" / "last.ckpt").classifier_real_ce  # both labels were seen
    assert level.isfinite().all() and (level > 0).all(), level
    with pytest.raises((ValueError, InstantiationException), match="classifier_loss='hinge' is not one of"):
        train(compose_config([*overrides, "model.classifier_loss=hinge"], tmp_path / "r4"))
    with pytest.raises(ValueError, match="classifier of the condition label: set data.condition_on"):
        train(compose_config([*TBS, "model.classifier_weight=1", f"paths.data_dir={data_dir}"], tmp_path / "r2"))
    with pytest.raises((ValueError, InstantiationException), match="classifier_weight must be >= 0"):
        negative = [*CLASSIFIED, "model.classifier_weight=-1", f"paths.data_dir={data_dir}"]
        train(compose_config(negative, tmp_path / "r3"))


def test_real_level_pushes_the_fakes_only_up_to_real_rows_recognisability(classified):
    """``model.classifier_loss=real_level``: the running per-label loss on real rows starts at the first batch's
    mean and moves by 1 % a batch (labels absent from a batch keep theirs); G's term is, per label, the excess of
    the fakes' mean cross-entropy over that level, weighted by the label's share, with no gradient below it; the
    level is measured on a fixed tenth of the training rows that the classifier never learns from."""
    model = copy.deepcopy(classified[3.0])  # the module-scoped fixture's model stays as trained
    model.classifier_loss = "real_level"
    model.register_buffer("classifier_real_ce", torch.full((2,), float("nan")))
    model._track_real_level(torch.tensor([1.0, 3.0, 0.5]), torch.tensor([0, 0, 1]))
    assert model.classifier_real_ce.tolist() == [2.0, 0.5]
    model._track_real_level(torch.tensor([4.0]), torch.tensor([0]))
    assert model.classifier_real_ce.tolist() == pytest.approx([0.99 * 2.0 + 0.01 * 4.0, 0.5])

    logits = torch.randn(6, 2, generator=torch.Generator().manual_seed(0), requires_grad=True)
    labels = torch.tensor([0, 0, 0, 0, 1, 1])
    losses = F.cross_entropy(logits, labels, reduction="none").detach()
    model.classifier_real_ce.copy_(torch.tensor([losses[:4].mean() - 0.25, losses[4:].mean() + 0.25]))
    term = model.classifier_term(logits, labels)
    assert term.item() == pytest.approx(4 / 6 * 0.25, abs=1e-6)  # label 0 above its level by 0.25, label 1 below
    term.backward()
    assert logits.grad[:4].abs().sum() > 0 and logits.grad[4:].abs().sum() == 0
    model.classifier_real_ce.fill_(float("inf"))  # every label below its level: nothing to push
    assert float(model.classifier_term(logits, labels)) == 0.0
    model.classifier_loss = "cross_entropy"
    assert float(model.classifier_term(logits, labels)) == pytest.approx(float(losses.mean()))

    # The rows that set the level are a fixed tenth of the training rows, never among those the classifier learns.
    rows, labels = torch.arange(1000.0)[:, None], torch.arange(1000) % 2
    model._split_level_rows(rows, labels)
    level, fit = set(model.level_rows[:, 0].tolist()), set(model.fit_rows[:, 0].tolist())
    assert len(level) == 100 and len(fit) == 900 and level.isdisjoint(fit)
    assert (model.level_labels == model.level_rows[:, 0].long() % 2).all()
    assert (model.fit_labels == model.fit_rows[:, 0].long() % 2).all()
    model._split_level_rows(rows, labels)
    assert set(model.level_rows[:, 0].tolist()) == level  # the same rows in every fit (and resumed run)

"""CGAN, InfoGAN and the semi-supervised GAN (issue 4) on a real MNIST subset, through the composed configs.

Tiny nets and a few steps: every model with several losses, label and code plumbing into G, D and sample.py's
npz, the InfoGAN information term's gradients and optimizer ownership, the SSGAN labelled subset (fixed by seed,
n per class, kept across checkpoints and resumes, never the batch labels), and the code-matching metric.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FAST, compose_config
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from PIL import Image

from ganzoo.metrics.codes import classifier_error, code_accuracy_report, mapped_accuracy, match_codes
from ganzoo.models.labelled import random_shift, select_labelled
from ganzoo.nets.conditional import critic_features
from ganzoo.pipeline import build_model, load_checkpoint, load_model, sample, train

TINY = {
    "cgan": ["model.generator.hidden=[32]", "model.discriminator.hidden=[32]"],
    "dcgan_cgan": ["model.generator.width=8", "model.discriminator.width=8"],
    "infogan": ["model.generator.width=8", "model.discriminator.width=8", "model.q_head.hidden=16"],
    "ssgan": ["model.generator.hidden=[32]", "model.discriminator.hidden=[32,16]", "model.labelled_batch_size=20"],
}
LOSSES = ["nonsaturating", "wgan_gp", "hinge"]
# Terms each variant adds to the base loop's, per player.
EXTRA_TERMS = {
    "cgan": (set(), set()),
    "dcgan_cgan": (set(), set()),
    "infogan": ({"info_cat", "info_cont"}, {"info_cat", "info_cont"}),
    "ssgan": ({"supervised"}, {"feature_matching"}),
}
LIMIT = 256  # FAST's data.limit: the training images every run sees


def tiny_config(model: str, output_dir: Path, *overrides: str):
    return compose_config([*FAST, f"model={model}", *TINY[model], "model.n_critic=2", *overrides], output_dir)


@pytest.fixture(scope="module", autouse=True)
def decode_mnist_once():
    """Every run decodes the gzipped IDX files again (about 1 s each on this machine): within this module,
    decode each split once. The arrays are only read (the data module copies them into tensors)."""
    import ganzoo.data.mnist as mnist

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mnist, "load_split", functools.lru_cache(maxsize=None)(mnist.load_split))
        yield


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
    """``trained(model, loss, *overrides)``: the run dir of a tiny 6-step run, trained once per module."""
    runs: dict[tuple, tuple[Path, dict[str, float]]] = {}

    def get(model: str, loss: str = "nonsaturating", *overrides: str) -> tuple[Path, dict[str, float]]:
        key = (model, loss, *overrides)
        if key not in runs:
            run_dir = tmp_path_factory.mktemp(f"{model}-{loss}")
            cfg = tiny_config(
                model, run_dir, f"loss={loss}", "trainer.max_steps=6", f"paths.data_dir={data_dir}", *overrides
            )
            runs[key] = run_dir, train(cfg)
        return runs[key]

    return get


@pytest.fixture(scope="module")
def mnist_batch(data_dir) -> tuple[torch.Tensor, torch.Tensor]:
    """The first 32 real training images and labels."""
    cfg = compose_config([*FAST, f"paths.data_dir={data_dir}"], Path("unused"))
    datamodule = instantiate(cfg.data)
    datamodule.setup()
    images, labels = datamodule.train_set.tensors
    return images[:32], labels[:32]


def build(model: str, *overrides: str):
    return build_model(tiny_config(model, Path("unused"), *overrides))


def write_samples(run_dir: Path, n: int = 40, *overrides: str) -> dict[str, np.ndarray]:
    out = run_dir / "samples.npz"
    cfg = compose_config(
        [f"ckpt_path={run_dir}/checkpoints/last.ckpt", f"n={n}", f"out={out}", *overrides], run_dir, "sample"
    )
    sample(cfg)
    assert out.with_suffix(".png").is_file()
    with np.load(out) as archive:
        return dict(archive)


# ---- every model with every loss ------------------------------------------------------------------------
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("model", list(TINY))
def test_model_trains_with_loss(trained, model, loss):
    run_dir, metrics = trained(model, loss)
    assert all(math.isfinite(v) for v in metrics.values()), metrics
    d_extra, g_extra = EXTRA_TERMS[model]
    assert {f"d/{t}" for t in d_extra} | {f"g/{t}" for t in g_extra} | {"d/loss", "g/loss"} <= metrics.keys()
    ckpt = load_checkpoint(run_dir / "checkpoints/last.ckpt")
    assert (ckpt["ganzoo"]["gen_step"], ckpt["ganzoo"]["disc_step"]) == (2, 4)  # 6 optimizer steps, n_critic=2


def test_infogan_trains_with_weight_clipping_that_spares_q(trained):
    run_dir, metrics = trained("infogan", "wgan")
    assert all(math.isfinite(v) for v in metrics.values()), metrics
    state = load_checkpoint(run_dir / "checkpoints/last.ckpt")["state_dict"]
    critic = [t for k, t in state.items() if k.startswith("discriminator.") and "running_" not in k]
    assert max(t.abs().max().item() for t in critic if t.is_floating_point()) <= 0.01 + 1e-7
    # Q is not part of the critic's Lipschitz constraint: clipping it to 0.01 would leave it unable to learn.
    q_weights = [t for k, t in state.items() if k.startswith("q_head.") and k.endswith("weight")]
    assert max(t.abs().max().item() for t in q_weights) > 0.01


# ---- CGAN ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["cgan", "dcgan_cgan"])
def test_cgan_feeds_the_batch_labels_to_g_and_d(mnist_batch, model):
    gan = build(model)
    images, labels = mnist_batch
    seen = {"generator": [], "discriminator": []}
    for name in seen:
        getattr(gan, name).register_forward_hook(lambda m, args, out, name=name: seen[name].append(args[1]))
    gan.discriminator_terms((images, labels))
    gan.generator_terms((images, labels))
    assert len(seen["generator"]) == 2 and len(seen["discriminator"]) == 3  # D: real + fake, then G's fake
    for got in seen["generator"] + seen["discriminator"]:
        assert torch.equal(got, labels)
    # The label changes what G makes and how D scores it.
    gan.eval()
    z = gan.sample_latent(4)
    zeros, ones = torch.zeros(4, dtype=torch.long), torch.ones(4, dtype=torch.long)
    assert not torch.allclose(gan.generator(z, zeros), gan.generator(z, ones))
    assert not torch.allclose(gan.discriminator(images[:4], zeros), gan.discriminator(images[:4], ones))


def test_cgan_samples_carry_labels_and_grid_rows_are_classes(trained):
    run_dir, _ = trained("cgan")
    arrays = write_samples(run_dir)
    assert arrays["images"].shape == (40, 28, 28) and arrays["images"].dtype == np.uint8
    assert arrays["labels"].shape == (40,) and set(arrays["labels"].tolist()) <= set(range(10))
    assert len(set(arrays["labels"].tolist())) > 3  # uniform labels, not one class
    model = load_model(run_dir / "checkpoints/last.ckpt")
    assert torch.equal(model.fixed_labels.view(10, 10), torch.arange(10).repeat_interleave(10).view(10, 10))
    assert model.sample_fixed().shape == (100, 1, 28, 28)
    grid = Image.open(run_dir / "samples/latest.png")
    assert grid.size == (10 * 30 + 2, 10 * 30 + 2)  # 10 x 10 cells of 28 px and 2 px padding: one row per class


def test_sample_condition_asks_every_sample_for_one_class(trained):
    run_dir, _ = trained("cgan")
    arrays = write_samples(run_dir, 20, "condition=3")
    assert arrays["labels"].tolist() == [3] * 20
    for bad in ("10", "'3'"):
        with pytest.raises(ValueError, match="is not a class of this model; pass an integer 0-9"):
            write_samples(run_dir, 20, f"condition={bad}")
    with pytest.raises(ValueError, match="this checkpoint is not conditional"):
        write_samples(trained("infogan")[0], 20, "condition=3")


# ---- InfoGAN ------------------------------------------------------------------------------------------------
def test_infogan_latent_holds_the_codes():
    gan = build("infogan")
    latent = gan.sample_latent(500)
    assert latent.shape == (500, 62 + 10 + 2)
    z, categories, continuous = gan.split_latent(latent)
    assert torch.equal(gan.compose_latent(z, categories, continuous), latent)
    assert set(categories.tolist()) == set(range(10))
    assert continuous.min() >= -1 and continuous.max() <= 1 and continuous.std() > 0.4  # U(-1, 1)
    _, fixed_categories, _ = gan.split_latent(gan.fixed_noise)
    assert torch.equal(fixed_categories.view(10, 10), torch.arange(10).repeat_interleave(10).view(10, 10))
    sweep = gan.traversal_latents(code=1, steps=5, span=2.0)
    z, categories, continuous = gan.split_latent(sweep)
    assert torch.equal(categories, torch.arange(10).repeat_interleave(5))
    assert torch.allclose(continuous[:5, 1], torch.linspace(-2, 2, 5)) and not continuous[:, 0].any()
    assert torch.equal(z, z[:1].expand_as(z))


def test_infogan_information_term_reaches_g_q_and_body_but_not_the_adversarial_head():
    gan = build("infogan")
    fake = gan.generate(gan.sample_latent(16))
    gan.discriminate(fake)  # the loop's order: D scores the fake, Q reads the same body features
    terms = gan.information_terms()
    assert set(terms) == {"info_cat", "info_cont"}
    sum(terms.values()).backward()

    def grad_norm(params) -> float:
        return sum(0.0 if p.grad is None else p.grad.abs().sum().item() for p in params)

    assert grad_norm(gan.generator.parameters()) > 0
    assert grad_norm(gan.q_head.parameters()) > 0
    assert grad_norm(gan.discriminator.net[:-1].parameters()) > 0  # the shared body
    assert all(p.grad is None for p in gan.discriminator.net[-1].parameters())  # the adversarial head


def test_infogan_q_and_body_belong_to_d_optimizer_only():
    gan = build("infogan")
    opt_g, opt_d = gan.configure_optimizers()
    ids = lambda params: {id(p) for p in params}  # noqa: E731
    g_params = ids(p for group in opt_g.param_groups for p in group["params"])
    d_params = ids(p for group in opt_d.param_groups for p in group["params"])
    assert g_params == ids(gan.generator.parameters())
    assert d_params == ids(gan.discriminator.parameters()) | ids(gan.q_head.parameters())
    assert not g_params & d_params


def test_infogan_gradient_penalty_sees_the_adversarial_head_only(mnist_batch):
    gan = build("infogan", "loss=wgan_gp")
    q_inputs = []
    gan.q_head.register_forward_hook(lambda m, args, out: q_inputs.append(args[0].shape[0]))
    terms = gan.discriminator_terms(mnist_batch)
    assert {"gp", "info_cat", "info_cont"} <= terms.keys()
    assert q_inputs == [32]  # Q read the fake batch once: not the real batch, not the interpolates
    assert gan.discriminate(mnist_batch[0]).shape == (32,)


def test_infogan_continuous_warmup_ramps_lambda_cont_from_zero():
    gan = build(
        "infogan", "model.continuous_loss=mse", "model.lambda_cont=0.4", "model.continuous_warmup={start: 10, end: 20}"
    )
    weights = []
    for step in (0, 10, 15, 20, 50):
        gan.gen_step = step
        weights.append(gan.continuous_weight())
    assert weights == pytest.approx([0.0, 0.0, 0.2, 0.4, 0.4])
    gan.gen_step = 15
    latent = gan.sample_latent(16)
    gan.discriminate(gan.generate(latent))
    terms = gan.information_terms()
    mean = gan.q_head(critic_features(gan.discriminator, gan.generate(latent)))[1]
    # the term is the ramped weight times the unit-variance NLL of the codes that made the batch
    expected = 0.2 * 0.5 * torch.nn.functional.mse_loss(mean, gan.split_latent(latent)[2])
    assert terms["info_cont"].item() == pytest.approx(expected.item(), rel=1e-4)
    with pytest.raises(InstantiationException, match="continuous_warmup needs 0 <= start < end"):
        build("infogan", "model.continuous_warmup={start: 20, end: 10}")


def test_infogan_samples_carry_codes_traversals_and_survive_a_checkpoint(trained, mnist_batch):
    run_dir, _ = trained("infogan")
    arrays = write_samples(run_dir)
    assert arrays["images"].shape == (40, 28, 28)
    assert arrays["codes"].shape == (40,) and set(arrays["codes"].tolist()) <= set(range(10))
    assert arrays["continuous_codes"].shape == (40, 2) and np.abs(arrays["continuous_codes"]).max() <= 1
    for code in (0, 1):  # one traversal figure per continuous code: 10 rows (categories) x 10 columns
        assert Image.open(run_dir / f"samples/traversal_c{code}_latest.png").size == (302, 302)
    model = load_model(run_dir / "checkpoints/last.ckpt")
    state = load_checkpoint(run_dir / "checkpoints/last.ckpt")["state_dict"]
    assert torch.equal(model.q_head.net[0].weight, state["q_head.net.0.weight"])
    assert torch.equal(model.fixed_noise, state["fixed_noise"])
    images = mnist_batch[0]
    expected = model.q_head(critic_features(model.discriminator, images))[0].argmax(1)
    assert torch.equal(model.predict_codes(images), expected)


def test_code_matching_and_accuracy():
    classes = torch.arange(10).repeat(20)
    permutation = torch.randperm(10, generator=torch.Generator().manual_seed(1))
    codes = permutation[classes]  # code value permutation[k] always means class k
    for method in ("hungarian", "majority"):
        mapping = match_codes(codes, classes, 10, 10, method)
        assert torch.equal(mapping[permutation], torch.arange(10))
        assert mapped_accuracy(codes, mapping, classes) == 1.0
    # Two code values that both mostly show class 0: majority maps both to 0, Hungarian keeps it one-to-one.
    codes, classes = torch.tensor([0, 0, 0, 1, 1, 1]), torch.tensor([0, 0, 1, 0, 0, 1])
    assert match_codes(codes, classes, 2, 2, "majority").tolist() == [0, 0]
    assert sorted(match_codes(codes, classes, 2, 2, "hungarian").tolist()) == [0, 1]
    with pytest.raises(ValueError, match="matching method"):
        match_codes(codes, classes, 2, 2, "best")


def test_code_accuracy_report_uses_generated_samples_for_the_mapping(mnist_batch):
    gan = build("infogan")
    # A stand-in evaluator that sees class 9 - c in every sample of code c: the mapping must recover that.
    predicted = {}

    def classify(images: torch.Tensor) -> torch.Tensor:
        latent = gan.sample_latent(len(images), generator=torch.Generator().manual_seed(0))
        predicted["classes"] = 9 - gan.latent_codes(latent)["codes"]
        return predicted["classes"]

    images, labels = mnist_batch
    report = code_accuracy_report(gan, classify, images, labels, n=200, seed=0)
    assert report["mapping"] == list(range(9, -1, -1))
    assert report["generated_accuracy"] == 1.0
    test_codes = gan.predict_codes(images)
    assert report["test_accuracy"] == float(((9 - test_codes) == labels).float().mean())
    assert report["test_accuracy_best_matching"] >= report["test_accuracy"]


# ---- SSGAN --------------------------------------------------------------------------------------------------
def test_ssgan_labelled_subset_is_fixed_by_seed_with_n_per_class(mnist_batch, data_dir):
    from ganzoo.data.mnist import load_split

    _, labels = load_split("MNIST", "train", str(data_dir))
    labels = torch.from_numpy(labels)
    index = select_labelled(labels, per_class=10, num_classes=10, seed=0)
    assert torch.equal(torch.bincount(labels[index], minlength=10), torch.full((10,), 10))
    assert len(set(index.tolist())) == 100
    assert torch.equal(index, select_labelled(labels, 10, 10, seed=0))
    assert not torch.equal(index, select_labelled(labels, 10, 10, seed=1))
    with pytest.raises(ValueError, match="model.labels_per_class"):
        select_labelled(labels[:50], 10, 10, seed=0)


def _shift_between(before, after, bound):
    """The (dy, dx) offset of the padded crop that turns ``before`` into ``after``, or None."""
    padded = torch.nn.functional.pad(before, (bound,) * 4, value=-1.0)
    size = before.shape[-1]
    for dy in range(2 * bound + 1):
        for dx in range(2 * bound + 1):
            if torch.equal(padded[:, dy : dy + size, dx : dx + size], after):
                return dy, dx
    return None


def test_labelled_shift_moves_each_labelled_image_within_the_bound(mnist_batch):
    images, labels = mnist_batch  # MNIST in [-1, 1]: the background is -1
    shifted = random_shift(images[:40], 2, generator=torch.Generator().manual_seed(0))
    assert shifted.shape == images[:40].shape
    moves = [_shift_between(a, b, 2) for a, b in zip(images[:40], shifted, strict=True)]
    assert None not in moves, "an image was changed by more than a shift of up to 2 pixels"
    assert len(set(moves)) > 5  # each image draws its own shift
    assert torch.equal(random_shift(images, 0), images)
    # the model's labelled batches are such shifts of the subset's images, with their own labels
    gan = build("ssgan", "model.labelled_shift=2")
    index = select_labelled(labels, 2, 10, seed=0)
    gan.labelled_index, gan.labelled_images, gan.labelled_targets = index, images[index], labels[index]
    drawn, targets = gan.labelled_batch()
    assert len(drawn) == 20
    unchanged = 0
    for image, target in zip(drawn, targets, strict=True):
        sources = [k for k in range(20) if _shift_between(images[index[k]], image, 2) is not None]
        assert sources and all(labels[index[k]] == target for k in sources)
        unchanged += any(torch.equal(images[index[k]], image) for k in sources)
    assert unchanged < 10  # 1 in 25 shifts is (0, 0)
    with pytest.raises(InstantiationException, match="labelled_shift"):
        build("ssgan", "model.labelled_shift=-1")


def test_ssgan_scores_by_logsumexp_and_never_reads_batch_labels(mnist_batch):
    gan = build("ssgan")
    images, labels = mnist_batch
    index = select_labelled(labels, 2, 10, seed=0)
    gan.labelled_index, gan.labelled_images, gan.labelled_targets = index, images[index], labels[index]
    gan.eval()  # no noise: D's outputs are deterministic
    logits = gan.discriminator(images)
    assert torch.allclose(gan.discriminate(images), torch.logsumexp(logits, dim=1))
    terms = []
    for batch_labels in (labels, torch.full_like(labels, -1)):  # -1 would break any cross-entropy that read it
        torch.manual_seed(0)
        terms.append(gan.discriminator_terms((images, batch_labels)))
    assert terms[0].keys() == terms[1].keys() >= {"real", "fake", "supervised"}
    assert all(torch.equal(terms[0][k], terms[1][k]) for k in terms[0])
    assert torch.allclose(terms[0]["supervised"], torch.nn.functional.cross_entropy(logits[index], labels[index]))


def test_ssgan_checkpoint_and_resume_keep_the_labelled_subset(trained, data_dir, mnist_batch):
    run_dir, metrics = trained("ssgan")
    ckpt_path = run_dir / "checkpoints/last.ckpt"
    state = load_checkpoint(ckpt_path)["state_dict"]
    from ganzoo.data.mnist import load_split

    images, labels = load_split("MNIST", "train", data_dir)
    expected = select_labelled(torch.from_numpy(labels[:LIMIT]), 10, 10, seed=42)  # labelled_seed: ${seed}
    assert torch.equal(state["labelled_index"], expected)
    assert torch.equal(state["labelled_targets"], torch.from_numpy(labels[expected.numpy()]))
    assert state["labelled_images"].shape == (100, 1, 28, 28)
    model = load_model(ckpt_path)  # sample.py's path: the buffers take the checkpoint's shapes and values
    assert torch.equal(model.labelled_index, expected)
    error = classifier_error(model.classify, *mnist_batch)
    assert 0.0 <= error <= 1.0
    # Resuming under another seed keeps the checkpoint's subset.
    resumed = tiny_config(
        "ssgan",
        run_dir / "resumed",
        f"paths.data_dir={data_dir}",
        "trainer.max_steps=9",
        "seed=7",
        f"ckpt_path={ckpt_path}",
    )
    train(resumed)
    state = load_checkpoint(run_dir / "resumed/checkpoints/last.ckpt")["state_dict"]
    assert torch.equal(state["labelled_index"], expected)

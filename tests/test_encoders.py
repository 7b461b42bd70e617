"""BiGAN, the adversarial autoencoder and the feature API (issue 5) on a real MNIST subset, through the configs.

Gradient routing (BiGAN's E learns only through D's joint input; the AAE's encoder from reconstruction and
from D; no player moves in the other's step), the inverted-label objective, each AAE prior and mode for a few
steps with checkpoints that reload, the feature API's shape and determinism, the features CLI's npz, and the
1-NN / linear-probe metrics on cases with known answers.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import FAST, compose_config
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from ganzoo.features import extract
from ganzoo.metrics.features import knn_accuracy, linear_probe_accuracy
from ganzoo.nets.encoders import pack_pair
from ganzoo.pipeline import build_model, features, load_checkpoint, load_model, train

TINY = {
    "bigan": [
        "model.generator.hidden=[32]",
        "model.encoder.hidden=[32]",
        "model.discriminator.x_hidden=[32]",
        "model.discriminator.joint_hidden=[16]",
        "model.latent_dim=8",
    ],
    "aae": ["model.generator.hidden=[32]", "model.encoder.hidden=[32]", "model.discriminator.hidden=[16]"],
}
PROBES = ["callbacks.feature_probe.n_train=200", "callbacks.feature_probe.n_test=50"]


def tiny_config(model: str, output_dir: Path, *overrides: str):
    return compose_config([*FAST, f"model={model}", *TINY[model], *PROBES, *overrides], output_dir)


def build(model: str, *overrides: str):
    torch.manual_seed(0)
    return build_model(tiny_config(model, Path("unused"), *overrides))


@pytest.fixture(scope="module")
def batch(data_dir) -> tuple[torch.Tensor, torch.Tensor]:
    """The first 32 real training images and their labels."""
    datamodule = instantiate(compose_config([*FAST, f"paths.data_dir={data_dir}"], Path("unused")).data)
    datamodule.setup("fit")
    images, labels = datamodule.train_set.tensors
    return images[:32], labels[:32]


def grads(module: torch.nn.Module) -> list[torch.Tensor | None]:
    return [p.grad for p in module.parameters()]


def moved(module: torch.nn.Module) -> bool:
    return any(g is not None and g.abs().sum() > 0 for g in grads(module))


# ---- BiGAN -----------------------------------------------------------------------------------------------------
def test_bigan_encoder_learns_only_through_the_joint_input_of_d(batch):
    gan = build("bigan")
    gan.generator_terms(batch)["adv_encoded"].backward()
    assert moved(gan.encoder) and not moved(gan.generator)  # the (x, E(x)) term moves E, not G
    gan.zero_grad(set_to_none=True)
    # Cut D's view of the code: D's joint layer ignores z. E then gets no gradient at all.
    joint = gan.discriminator.net[0]
    with torch.no_grad():
        joint.weight[:, -gan.latent_dim :] = 0
    sum(gan.generator_terms(batch).values()).backward()
    assert not moved(gan.encoder)
    assert moved(gan.generator)


def test_bigan_critic_step_builds_no_graph_through_g_or_e(batch):
    gan = build("bigan")
    terms = gan.discriminator_terms(batch)
    assert terms.keys() == {"real", "fake"}
    sum(terms.values()).backward()
    assert moved(gan.discriminator)
    assert all(g is None for g in grads(gan.generator) + grads(gan.encoder))


def test_bigan_trains_g_and_e_with_inverted_labels(batch):
    gan = build("bigan").eval()  # no dropout or batch statistics: D is a fixed function
    x = batch[0]
    torch.manual_seed(3)
    terms = gan.generator_terms(batch)
    torch.manual_seed(3)
    z = gan.sample_latent(len(x))
    encoded = gan.discriminator(pack_pair(x, gan.encoder(x)))
    generated = gan.discriminator(pack_pair(gan.generator(z), z))
    # Non-saturating for both: G wants D(G(z), z) real, E wants D(x, E(x)) fake.
    assert torch.allclose(terms["adv_generated"], F.softplus(-generated).mean(), atol=1e-6)
    assert torch.allclose(terms["adv_encoded"], F.softplus(encoded).mean(), atol=1e-6)


def test_bigan_uniform_prior_and_refused_losses():
    gan = build("bigan")
    z = gan.sample_latent(2000)
    assert z.shape == (2000, 8) and z.min() >= -1 and z.max() <= 1 and abs(float(z.mean())) < 0.05
    for loss in ("loss_sensitive", "cramer"):
        with pytest.raises(InstantiationException, match="swapped"):
            build("bigan", f"loss={loss}")


@pytest.mark.parametrize("loss", ["nonsaturating", "wgan_gp"])
def test_bigan_trains_logs_features_and_reloads(tmp_path, data_dir, loss):
    cfg = tiny_config(
        "bigan",
        tmp_path,
        f"loss={loss}",
        "model.n_critic=2",  # 8 batches: 4 generator iterations
        f"paths.data_dir={data_dir}",
        "callbacks.feature_probe.every_n_gen_steps=2",
    )
    metrics = train(cfg)
    assert 0.0 <= metrics["val/knn_accuracy"] <= 1.0 and 0.0 <= metrics["val/probe_accuracy"] <= 1.0
    assert math.isfinite(metrics["val/reconstruction_mse"])
    assert (tmp_path / "samples/reconstructions_latest.png").is_file()
    model = load_model(tmp_path / "checkpoints/last.ckpt")
    state = load_checkpoint(tmp_path / "checkpoints/last.ckpt")["state_dict"]
    assert all(torch.equal(v, state[f"encoder.{k}"]) for k, v in model.encoder.state_dict().items())
    assert model.reconstruct(torch.zeros(2, 1, 28, 28)).shape == (2, 1, 28, 28)


# ---- the adversarial autoencoder -----------------------------------------------------------------------------
def test_aae_encoder_gets_reconstruction_and_adversarial_gradients(batch):
    aae = build("aae")
    terms = aae.generator_terms(batch)
    assert terms.keys() == {"adv", "reconstruction"}
    terms["adv"].backward(retain_graph=True)
    assert moved(aae.encoder) and not moved(aae.generator)  # the code's adversarial term: encoder only
    aae.zero_grad(set_to_none=True)
    terms["reconstruction"].backward()
    assert moved(aae.encoder) and moved(aae.generator)
    aae.zero_grad(set_to_none=True)
    d_terms = aae.discriminator_terms(batch)
    sum(d_terms.values()).backward()
    assert moved(aae.discriminator)
    assert all(g is None for g in grads(aae.encoder) + grads(aae.generator))


def test_aae_split_critic_judges_y_and_z_apart(batch):
    aae = build("aae", "experiment=aae_semi", "model.split_critic=true", "model.labelled_batch_size=20")
    d_y, d_z = aae.discriminator.parts
    code = aae.encode(batch[0]).detach().requires_grad_(True)
    scores = aae.discriminator(code)
    assert scores.shape == (32, 2)
    scores[:, 0].sum().backward()  # y's score reads y (the first 10 columns) and moves only y's D
    assert code.grad[:, :10].abs().sum() > 0 and code.grad[:, 10:].abs().sum() == 0
    assert moved(d_y) and not moved(d_z)
    aae.zero_grad(set_to_none=True)
    sum(aae.discriminator_terms(batch).values()).backward()
    assert moved(d_y) and moved(d_z)  # the loss terms average both parts: each D learns
    with pytest.raises(InstantiationException, match="split_critic=true .* needs model.prior=categorical"):
        build("aae", "model.split_critic=true")


def test_aae_priors():
    gaussian = build("aae").sample_latent(5000)
    assert gaussian.shape == (5000, 2) and abs(float(gaussian.std()) - 5.0) < 0.2
    mixture = build("aae", "model.prior=mixture").sample_latent(5000)
    radius = mixture.norm(dim=1)
    assert abs(float(radius.mean()) - 4.0) < 0.1
    angles = torch.atan2(mixture[:, 1], mixture[:, 0]) % (2 * math.pi)
    nearest = torch.round(angles / (2 * math.pi / 10)) % 10
    assert len(nearest.unique()) == 10
    cat = build("aae", "model.prior=categorical", "model.latent_dim=3", "model.num_categories=16")
    latent = cat.sample_latent(4000)
    one_hot, style = latent.split([16, 3], dim=1)
    assert latent.shape == (4000, 19) and torch.equal(one_hot.sum(1), torch.ones(4000))
    assert one_hot.sum(0).min() > 150  # all 16 values drawn
    assert cat.encode(torch.zeros(4, 1, 28, 28))[:, :16].sum(1).allclose(torch.ones(4))  # a softmax
    with pytest.raises(InstantiationException, match="latent_dim=2"):
        build("aae", "model.prior=mixture", "model.latent_dim=3")
    with pytest.raises(InstantiationException, match="prior=categorical"):
        build("aae", "model.mode=semi_supervised")


AAE_SETTINGS = {
    "gaussian": [],
    "mixture_supervised": ["model.prior=mixture", "model.mode=supervised"],
    "semi": ["experiment=aae_semi", "model.labelled_batch_size=20", "data.batch_size=32"],
    "cluster": ["experiment=aae_cluster", "data.batch_size=32"],
    "semi_split": ["experiment=aae_semi", "model.split_critic=true", "model.labelled_batch_size=20"],
}


@pytest.mark.parametrize("setting", AAE_SETTINGS)
def test_aae_trains_with_each_prior_and_mode(tmp_path, data_dir, batch, setting):
    overrides = [*AAE_SETTINGS[setting], f"paths.data_dir={data_dir}", "trainer.max_steps=12"]
    metrics = train(tiny_config("aae", tmp_path, *overrides))
    assert math.isfinite(metrics["g/reconstruction"])
    model = load_model(tmp_path / "checkpoints/last.ckpt")
    images = model.sample(8)
    assert images.shape == (8, 1, 28, 28) and images.abs().max() <= 1
    figures = {p.name for p in (tmp_path / "samples").glob("*_latest.png")}
    assert "reconstructions_latest.png" in figures
    if setting in ("gaussian", "mixture_supervised"):
        assert {"code_scatter_latest.png", "code_lattice_latest.png"} <= figures
    if setting == "mixture_supervised":
        assert "style_latest.png" in figures
        assert model.reconstruct(batch[0][:4], batch[1][:4]).shape == (4, 1, 28, 28)
    if setting.startswith("semi"):
        assert "g/supervised" in metrics and model.labelled_index.numel() == 100
        logits = model.eval().encoder_outputs(batch[0])[0]
        assert torch.equal(model.classify(batch[0]), logits.argmax(1))
    if setting == "cluster":
        assert set(model.predict_codes(batch[0]).tolist()) <= set(range(16))


# ---- the feature API -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["bigan", "aae"])
def test_extract_is_deterministic_and_restores_train_mode(batch, model):
    net = build(model).train()
    first, second = extract(net, batch[0]), extract(net, batch[0])
    assert first.shape == (32, 8 if model == "bigan" else 2) and first.dtype == torch.float32
    assert torch.equal(first, second)  # eval mode: batch statistics and dropout do not enter
    assert torch.allclose(extract(net, batch[0], batch_size=7), first, atol=1e-5)  # nor the batching
    assert net.encoder.training and net.discriminator.training
    assert not first.requires_grad


def test_extract_refuses_a_model_without_features():
    with pytest.raises(ValueError, match="no feature map"):
        extract(torch.nn.Linear(2, 2), torch.zeros(1, 2))


def test_features_cli_writes_npz_for_both_splits(tmp_path, data_dir, batch):
    run = tmp_path / "run"
    train(tiny_config("bigan", run, f"paths.data_dir={data_dir}", "trainer.max_steps=4"))
    out = tmp_path / "f.npz"
    cfg = compose_config(
        [f"ckpt_path={run}/checkpoints/last.ckpt", f"out={out}", "limit=100", f"data_dir={data_dir}"],
        tmp_path,
        config_name="features",
    )
    features(cfg)
    arrays = np.load(out)
    assert arrays["train_features"].shape == (100, 8) and arrays["test_features"].shape == (100, 8)
    assert arrays["test_labels"].shape == (100,) and np.array_equal(arrays["train_labels"][:32], batch[1].numpy())
    model = load_model(run / "checkpoints/last.ckpt")  # the same features as the API gives for those images
    assert np.allclose(arrays["train_features"][:32], extract(model, batch[0]).numpy(), atol=1e-6)


def test_knn_and_probe_accuracy_on_known_cases():
    train_f = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    train_y = torch.tensor([0, 1, 2])
    test_f = torch.tensor([[1.0, 1.0], [9.0, 1.0], [1.0, 9.0], [9.0, 0.0]])
    assert knn_accuracy(train_f, train_y, test_f, torch.tensor([0, 1, 2, 1]), chunk=2) == 1.0
    assert knn_accuracy(train_f, train_y, test_f, torch.tensor([0, 1, 2, 0])) == 0.75
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(400, 5, generator=generator)
    y = (x[:, 0] > 0).long()
    assert linear_probe_accuracy(x[:300], y[:300], x[300:], y[300:]) > 0.95
    assert linear_probe_accuracy(x[:300], torch.randint(2, (300,), generator=generator), x[300:], y[300:]) < 0.8

"""Each training trick does what it says, composes from ``conf/trick/`` and trains with model=gan.

Unit checks build the real module from the real config (``build_model``) and call its hooks on small
batches; the training checks run the real loop on a tiny MNIST subset.
"""

from __future__ import annotations

import copy
import math
from functools import partial
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra.errors import ConfigCompositionException, InstantiationException
from hydra.utils import instantiate
from torch import nn

from ganzoo.data.waves import make_waves
from ganzoo.losses import LeastSquaresLoss, MinimaxLoss
from ganzoo.nets.recurrent import spectral_cdf
from ganzoo.pipeline import build_model, build_trainer, load_model, train
from ganzoo.tricks.base import StepView
from ganzoo.tricks.minibatch_discrimination import MinibatchFeatures
from ganzoo.tricks.mmd_matching import _EMBEDDINGS, MMDMatching
from ganzoo.tricks.unrolled import UnrolledGAN

CONF_TRICKS = sorted(p.stem for p in (Path(__file__).parents[1] / "conf" / "trick").glob("*.yaml"))
GLOBAL_TRICKS = {"ttur", "adam_g_sgd_d"}  # optimizer settings only: nothing under cfg.trick
# A tiny MLP GAN on 64 MNIST images, batches of 16 (4 batches per epoch).
TINY = [
    "model=gan",
    "model.generator.hidden=[32]",
    "model.discriminator.hidden=[32]",
    "data.limit=64",
    "data.batch_size=16",
    "callbacks.samples.every_n_gen_steps=1000",
]


def images(n: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def batch(n: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    return images(n, seed), torch.zeros(n, dtype=torch.int64)


@pytest.fixture
def model_with(train_config):
    """``model_with("trick=[...]", ...)``: the module a tiny config builds (not trained)."""

    def make(*overrides: str):
        torch.manual_seed(0)
        return build_model(train_config(*TINY, *overrides))

    return make


# ---- every config composes and trains ----------------------------------------------------------------
def test_all_tricks_have_a_config():
    expected = {"label_smoothing", "label_flip", "instance_noise", "feature_matching", "minibatch_disc"}
    expected |= {"historical_averaging", "vbn", "d_pretrain", "dropout_g", "ttur", "adam_g_sgd_d"}
    expected |= {"unrolled", "ema", "spectral_norm", "r1", "mmd_matching"}
    assert expected <= set(CONF_TRICKS)


@pytest.mark.parametrize("trick", CONF_TRICKS)
def test_every_trick_config_trains_a_few_steps(train_config, tmp_path, trick):
    extra = ["trick.d_pretrain.steps=2"] if trick == "d_pretrain" else []
    metrics = train(train_config(*TINY, f"trick=[{trick}]", "trainer.max_steps=4", *extra))
    assert {"d/loss", "g/loss"} <= metrics.keys()
    assert all(math.isfinite(v) for v in metrics.values()), metrics
    state = torch.load(tmp_path / "run/checkpoints/last.ckpt", weights_only=True)
    assert state["ganzoo"]["gen_step"] >= 1
    if trick not in GLOBAL_TRICKS:
        assert state["ganzoo"]["config"]["trick"].keys() == {trick}  # stored, so load_model rebuilds it


def test_tricks_combine(train_config, tmp_path):
    cfg = train_config(*TINY, "trick=[label_smoothing,instance_noise,ema]", "trainer.max_steps=8")
    assert list(cfg.trick) == ["label_smoothing", "instance_noise", "ema"]
    metrics = train(cfg)
    assert all(math.isfinite(v) for v in metrics.values())
    model = load_model(tmp_path / "run/checkpoints/last.ckpt")
    assert list(model.tricks) == ["label_smoothing", "instance_noise", "ema"]
    assert model.sample(4).shape == (4, 1, 28, 28)


def test_structural_tricks_combine_with_unrolling(train_config):
    cfg = train_config(*TINY, "trick=[minibatch_disc,spectral_norm,unrolled,historical_averaging,ema,vbn]")
    metrics = train(cfg)
    assert all(math.isfinite(v) for v in metrics.values())


def test_optimizer_tricks_set_the_optimizers(model_with):
    model = model_with("trick=[ttur,adam_g_sgd_d]")
    opt_g, opt_d = model.configure_optimizers()
    assert isinstance(opt_g, torch.optim.Adam) and isinstance(opt_d, torch.optim.SGD)
    assert (opt_g.param_groups[0]["lr"], opt_d.param_groups[0]["lr"]) == (1e-4, 4e-4)


def test_a_misspelled_trick_key_is_an_error_naming_it(train_config):
    with pytest.raises(ConfigCompositionException, match="smoothing"):
        train_config(*TINY, "trick=[label_smoothing]", "trick.label_smoothing.smoothing=0.8")


# ---- targets: label smoothing and flipping ------------------------------------------------------------
def test_label_smoothing_changes_real_targets_only(model_with):
    real_logits, fake_logits = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -3.0])
    targets = model_with("trick=[label_smoothing]").d_targets(real_logits, fake_logits)
    assert targets["real_target"].tolist() == pytest.approx([0.9, 0.9])
    assert targets["fake_target"].tolist() == [0.0, 0.0]
    assert model_with().d_targets(real_logits, fake_logits) == {}  # no trick: the loss keeps its own targets

    plain = MinimaxLoss().d_terms(real_logits, fake_logits)
    smoothed = MinimaxLoss().d_terms(real_logits, fake_logits, **targets)
    sig = torch.sigmoid(real_logits)
    expected_real = -(0.9 * sig.log() + 0.1 * (1 - sig).log()).mean()
    assert smoothed["real"].item() == pytest.approx(expected_real.item(), rel=1e-5)
    assert smoothed["real"].item() != pytest.approx(plain["real"].item())
    assert smoothed["fake"].item() == pytest.approx(plain["fake"].item())
    # LSGAN: a target t maps onto its coding as a + t (b - a).
    ls = LeastSquaresLoss(real_target=1.0, fake_target=-1.0).d_terms(real_logits, fake_logits, **targets)
    assert ls["real"].item() == pytest.approx((0.5 * (real_logits - 0.8) ** 2).mean().item())


def test_label_smoothing_reaches_the_d_loss_in_training(model_with):
    model = model_with("trick=[label_smoothing]", "loss=minimax")
    terms = model.discriminator_terms(batch())
    real_logits = model.discriminate(images())
    expected = torch.nn.functional.binary_cross_entropy_with_logits(real_logits, torch.full_like(real_logits, 0.9))
    assert terms["real"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_label_flip_flips_with_probability_p(model_with):
    torch.manual_seed(0)
    model = model_with("trick=[label_flip]", "trick.label_flip.p=0.25")
    targets = model.d_targets(torch.zeros(20_000), torch.zeros(20_000))
    assert set(targets["real_target"].unique().tolist()) == {0.0, 1.0}
    assert (1 - targets["real_target"]).mean().item() == pytest.approx(0.25, abs=0.02)
    assert targets["fake_target"].mean().item() == pytest.approx(0.25, abs=0.02)


@pytest.mark.parametrize("trick", ["label_smoothing", "label_flip"])
@pytest.mark.parametrize("loss", ["wgan", "hinge", "cramer"])
def test_target_tricks_reject_losses_without_targets(model_with, trick, loss):
    with pytest.raises((ValueError, InstantiationException), match=rf"trick\.{trick} .*Loss.*loss=minimax"):
        model_with(f"trick=[{trick}]", f"loss={loss}")


# ---- instance noise ---------------------------------------------------------------------------------------
def test_instance_noise_anneals_to_zero_at_k(model_with):
    model = model_with(
        "trick=[instance_noise]", "trick.instance_noise.sigma=0.5", "trick.instance_noise.anneal_steps=10"
    )
    x = torch.zeros(50_000)
    assert model.d_input(x).std().item() == pytest.approx(0.5, rel=0.02)
    model.gen_step = 5
    assert model.d_input(x).std().item() == pytest.approx(0.25, rel=0.02)
    for step in (10, 11, 1000):
        model.gen_step = step
        assert model.d_input(x) is x
        assert model.tricks["instance_noise"].current_sigma(step) == 0


def test_instance_noise_reaches_real_and_fake_inputs(model_with):
    model = model_with("trick=[instance_noise]", "trick.instance_noise.sigma=1.0")
    seen = []
    model.discriminate = lambda x, cond=None: seen.append(x) or x.flatten(1).sum(1)
    real = torch.zeros(4, 1, 28, 28)
    model.discriminator_terms((real, None))
    model.generator_terms((real, None))
    assert len(seen) == 3  # D step: real and fake; G step: fake
    assert seen[0].std().item() == pytest.approx(1.0, rel=0.05)  # the real batch is noised (it was all zeros)
    assert seen[1].abs().max() > 1 and seen[2].abs().max() > 1  # G's tanh outputs are in [-1, 1]: noised too


# ---- feature matching -------------------------------------------------------------------------------------
def test_feature_matching_replaces_g_loss_with_mean_feature_distance(model_with):
    model = model_with("trick=[feature_matching]")
    trick, body = model.tricks["feature_matching"], model.discriminator.net[:-1]  # input of the last linear
    real, fake = images(8, 0), images(8, 1).requires_grad_(True)
    assert torch.allclose(trick.features(model, real, None), body(real))
    view = StepView(None, real, fake, None, None, model.discriminate)
    terms = trick.g_terms(model, view, {"adv": torch.tensor(3.0)})
    assert set(terms) == {"feature_matching"}
    expected = (body(real).mean(0) - body(fake).mean(0)).pow(2).sum()
    assert terms["feature_matching"].item() == pytest.approx(expected.item(), rel=1e-5)
    (grad,) = torch.autograd.grad(terms["feature_matching"], fake)
    assert grad.abs().sum() > 0  # G gets a gradient through the fakes

    named = model_with(
        "trick=[feature_matching]",
        "trick.feature_matching.layer=net.1",
        "trick.feature_matching.replace_adversarial=false",
    )
    assert torch.allclose(
        named.tricks["feature_matching"].features(named, real, None), named.discriminator.net[:2](real)
    )
    assert "adv" in named.tricks["feature_matching"].g_terms(named, view, {"adv": torch.tensor(3.0)})


def test_feature_matching_rejects_an_unknown_layer(model_with):
    with pytest.raises((ValueError, InstantiationException), match="layer='net.99'"):
        model_with("trick=[feature_matching]", "trick.feature_matching.layer=net.99")


# ---- MMD matching ------------------------------------------------------------------------------------------
def _view(real, fake, cond=None, fake_cond=None) -> StepView:
    return StepView(None, real, fake, cond, fake_cond, lambda x: x)


def test_mmd_matching_compares_within_each_class_when_labels_are_the_condition():
    """Fakes that are the real sines and sawtooths with their labels swapped: the same set as the real batch,
    so the whole-batch MMD^2 is that of a set with itself (<= 0 for this estimator), but per class it
    compares sines with sawtooths and is large."""
    x, y, _ = make_waves(64, seed=0)
    per_class, whole = MMDMatching(features=["spectrum"]), MMDMatching(features=["spectrum"], per_class=False)
    swapped = _view(x, x.clone(), y, 1 - y)
    term = lambda trick, view: trick.g_terms(None, view, {"adv": torch.tensor(0.5)})["mmd"].item()
    assert term(whole, swapped) <= 0
    assert term(per_class, swapped) > 0.03
    assert term(per_class, _view(x, x.clone(), y, y)) <= 0  # labels kept: each class against itself
    weighted = MMDMatching(features=["spectrum"], weight=3.0).g_terms(None, swapped, {"adv": torch.tensor(0.5)})
    assert weighted["adv"].item() == 0.5
    assert weighted["mmd"].item() == pytest.approx(3 * term(per_class, swapped), rel=1e-5)
    one_each = _view(x[[0, 70]], x[[0, 70]], y[[0, 70]], y[[0, 70]])  # a class needs 2 real and 2 fake samples
    assert "mmd" not in per_class.g_terms(None, one_each, {})


def test_mmd_matching_spectrum_ignores_the_phase_and_raw_does_not():
    """Waves with whole cycles per window, shifted in time: the same magnitude spectra, other raw values."""
    t = torch.arange(30) / 30
    freq = torch.randint(1, 6, (64, 1), generator=torch.Generator().manual_seed(0)).float()
    real = torch.sin(2 * math.pi * freq * t).unsqueeze(-1)
    shifted = real.roll(7, dims=1)
    spectrum, raw = MMDMatching(features=["spectrum"]), MMDMatching(features=["raw"])
    # distance(real, real) is the estimator's value for identical sets (slightly below 0)
    assert spectrum.distance(real, shifted).item() == pytest.approx(spectrum.distance(real, real).item(), abs=1e-4)
    assert raw.distance(real, shifted).item() > raw.distance(real, real).item() + 0.05
    both = MMDMatching(features=["raw", "spectrum"]).distance(real, shifted).item()
    assert both == pytest.approx(raw.distance(real, shifted).item() + spectrum.distance(real, shifted).item(), rel=1e-5)


def test_mmd_matching_shape_ignores_the_scale_and_weighs_quiet_waves_as_loud_ones():
    """``shape`` divides each wave by its RMS: a scaled copy of the set is no different, while the quietest
    sawtooths drawn as sines (same frequency, amplitude and phase) count for more than in raw values, where
    the amplitude's spread sets the kernels' bandwidths."""
    saw, _, params = make_waves(128, seed=0, shapes=("sawtooth",))
    sine, _, _ = make_waves(128, seed=0, shapes=("sine",))
    shape, raw = MMDMatching(features=["shape"]), MMDMatching(features=["raw"])
    assert shape.distance(saw, 0.5 * saw).item() == pytest.approx(shape.distance(saw, saw).item(), abs=1e-4)
    assert raw.distance(saw, 0.5 * saw).item() > raw.distance(saw, saw).item() + 0.05
    quiet = torch.as_tensor(params["amp"] < 0.25).view(-1, 1, 1)
    smoothed = torch.where(quiet, sine, saw)
    excess = {
        name: m.distance(saw, smoothed).item() - m.distance(saw, saw).item()
        for name, m in (("shape", shape), ("raw", raw))
    }
    assert excess["shape"] > 1.5 * excess["raw"] > 0, excess


def test_spectral_cdf_distance_grows_with_the_frequency_gap_where_the_spectrum_saturates():
    """Sines of 1-5 whole cycles: in the cumulative power spectrum each is farther from the 1-cycle one than the
    last, in the magnitude spectrum all are equally far (their peaks never overlap), which is why MMD^2 on
    spectra alone hardly sees which frequencies a set covers. Neither amplitude nor a shift in time moves it."""
    t = torch.arange(30) / 30
    sines = torch.stack([torch.sin(2 * math.pi * f * t) for f in range(1, 6)]).unsqueeze(-1)
    gaps = {name: (fn(sines)[1:] - fn(sines)[0]).norm(dim=1) for name, fn in _EMBEDDINGS.items()}
    assert (gaps["spectral_cdf"].diff() > 0.1).all() and gaps["spectral_cdf"][-1] > 1.8 * gaps["spectral_cdf"][0]
    assert gaps["spectrum"].max() < 1.01 * gaps["spectrum"].min()
    assert spectral_cdf(0.2 * sines) == pytest.approx(spectral_cdf(sines), abs=1e-3)
    assert spectral_cdf(sines.roll(7, dims=1)) == pytest.approx(spectral_cdf(sines), abs=1e-5)
    with pytest.raises(ValueError, match=r"\['spectral_cdf'\] needs sequences"):
        MMDMatching(features=["raw", "spectral_cdf"]).distance(images(4), images(4, 1))


def test_mmd_matching_gradient_pulls_fakes_towards_the_real_set():
    """Gradient descent on the fakes themselves through the term: a narrowed set (one frequency) spreads out
    towards the real frequencies, in the spectrum and in raw values."""
    x, y, _ = make_waves(32, seed=1, shapes=("sine",))
    fake = (x[:1] + 0.05 * torch.randn(32, 30, 1, generator=torch.Generator().manual_seed(0))).requires_grad_(True)
    trick = MMDMatching(features=["raw", "spectrum"])
    start = trick.distance(x, fake.detach()).item()
    opt = torch.optim.Adam([fake], lr=0.02)
    for _ in range(150):
        opt.zero_grad()
        trick.g_terms(None, _view(x, fake, y, y), {})["mmd"].backward()
        opt.step()
    assert trick.distance(x, fake.detach()).item() < 0.3 * start


def test_mmd_matching_memory_compares_fakes_with_the_newest_real_samples_of_earlier_batches():
    """With memory=48, the fourth batch's fakes are compared with the 48 reals of the three batches before it
    plus its own 16, class by class: the same value as the memoryless term on that pooled batch. The first
    batch, with an empty bank, gets the memoryless value."""
    x, y, _ = make_waves(200, seed=2)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x, y = x[order], y[order]
    batches = [(x[i : i + 16], y[i : i + 16]) for i in range(0, 64, 16)]
    fake, fake_y = x[100:132] + 0.1, y[100:132]
    remembering, plain = MMDMatching(features=["raw", "spectrum"], memory=48), MMDMatching(features=["raw", "spectrum"])
    values = [remembering.g_terms(None, _view(r, fake, c, fake_y), {})["mmd"].item() for r, c in batches]
    pooled = _view(x[:64], fake, y[:64], fake_y)  # batch 4: 48 remembered (batches 1-3) + its own 16
    assert values[3] == pytest.approx(plain.g_terms(None, pooled, {})["mmd"].item(), rel=1e-5)
    assert values[0] == pytest.approx(
        plain.g_terms(None, _view(batches[0][0], fake, batches[0][1], fake_y), {})["mmd"].item(), rel=1e-5
    )
    assert len(remembering._bank) == 48 and torch.equal(remembering._bank, x[16:64])
    assert torch.equal(remembering._bank_labels, y[16:64])


def test_mmd_matching_rejects_bad_settings():
    with pytest.raises(ValueError, match="features must be a non-empty list"):
        MMDMatching(features=["fft"])
    with pytest.raises(ValueError, match=r"weight must be > 0"):
        MMDMatching(weight=0)
    with pytest.raises(ValueError, match=r"memory must be >= 0"):
        MMDMatching(memory=-1)
    with pytest.raises(ValueError, match=r"needs sequences .* use features=\[raw\]"):
        MMDMatching(features=["spectrum"]).distance(images(4), images(4, 1))


# ---- latent tails ------------------------------------------------------------------------------------------
def test_latent_tails_give_each_player_the_loss_terms_of_samples_from_the_widened_latent(model_with):
    """D's extra term is the loss's own fake term on G(scale z) and trains D only; G's is its adversarial term
    on such samples and reaches G. Samples of 3 z lie further from G(0) than samples of z."""
    model = model_with("trick=[latent_tails]", "trick.latent_tails.scale=3", "trick.latent_tails.fraction=0.5")
    trick = model.tricks["latent_tails"]
    view = StepView(None, images(8, 0), images(8, 1), None, None, partial(model.discriminate, cond=None))
    torch.manual_seed(1)
    terms = trick.d_terms(model, view, {"fake": torch.tensor(1.0)})
    torch.manual_seed(1)
    tails, cond = trick.tail_fakes(model, view)
    assert tails.shape == (4, 1, 28, 28) and cond is None  # half the batch
    assert terms["fake"].item() == 1.0  # the step's own terms are kept
    assert terms["tails"].item() == pytest.approx(F.softplus(model.discriminate(tails)).mean().item(), rel=1e-5)
    d_weight, g_weight = model.discriminator.net[1].weight, model.generator.net[0].weight
    assert torch.autograd.grad(terms["tails"], d_weight, retain_graph=True)[0].abs().sum() > 0
    assert torch.autograd.grad(terms["tails"], g_weight, allow_unused=True)[0] is None  # G's samples are detached

    torch.manual_seed(2)
    g_tails = trick.g_terms(model, view, {})["tails"]
    torch.manual_seed(2)
    tails, _ = trick.tail_fakes(model, view)
    assert g_tails.item() == pytest.approx(F.softplus(-model.discriminate(tails)).mean().item(), rel=1e-5)
    assert torch.autograd.grad(g_tails, g_weight)[0].abs().sum() > 0

    model.eval()  # G's batch norm: one sample (the centre) at a time
    with torch.no_grad():
        centre = model.generate(torch.zeros(1, model.latent_dim))
        torch.manual_seed(3)
        far = (trick.tail_fakes(model, StepView(None, images(256), None, None, None, None))[0] - centre).flatten(1)
        near = (model.generate(model.sample_latent(128)) - centre).flatten(1)
    far, near = far.norm(dim=1), near.norm(dim=1)
    assert far.mean() > 1.2 * near.mean()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["trick.latent_tails.scale=1.0"], r"scale must be > 1"),
        (["trick.latent_tails.fraction=1.5"], r"fraction must be in \(0, 1\]"),
        (["loss=cramer"], r"needs a loss whose critic terms have a fake part .*CramerLoss"),
        (["loss=loss_sensitive"], r"needs a loss whose critic terms have a fake part"),
    ],
)
def test_latent_tails_reject_bad_settings(model_with, overrides, message):
    with pytest.raises((ValueError, InstantiationException), match=message):
        model_with("trick=[latent_tails]", *overrides)


@pytest.mark.parametrize(
    ("model", "message"),
    [("infogan", r"InfoGAN's latent is not one"), ("ssgan", r"base loop's critic terms; SSGAN has its own")],
)
def test_latent_tails_reject_models_they_cannot_apply_to(train_config, model, message):
    with pytest.raises((ValueError, InstantiationException), match=message):
        build_model(train_config(f"model={model}", "trick=[latent_tails]"))


# ---- minibatch discrimination ------------------------------------------------------------------------------
def test_minibatch_features_match_the_paper_formula():
    layer = MinibatchFeatures(in_features=1, kernels=1, kernel_dim=1)
    with torch.no_grad():
        layer.T.fill_(1.0)
    out = layer(torch.tensor([[0.0], [1.0], [3.0]]))
    e = math.exp
    expected = [1 + e(-1) + e(-3), e(-1) + 1 + e(-2), e(-3) + e(-2) + 1]  # o_i = sum_j exp(-|M_i - M_j|_1)
    assert out[:, 0].tolist() == [0.0, 1.0, 3.0]
    assert out[:, 1].tolist() == pytest.approx(expected)


def test_minibatch_discrimination_makes_scores_depend_on_the_batch(model_with):
    x, others = images(4, 0), images(4, 1)
    plain, mbd = model_with(), model_with("trick=[minibatch_disc]")
    assert isinstance(mbd.discriminator.net[-1][0], MinibatchFeatures)
    assert torch.allclose(plain.discriminate(x)[:2], plain.discriminate(torch.cat([x[:2], others]))[:2])
    assert not torch.allclose(mbd.discriminate(x)[:2], mbd.discriminate(torch.cat([x[:2], others]))[:2])
    d_params = {id(p) for p in mbd.configure_optimizers()[1].param_groups[0]["params"]}
    assert id(mbd.discriminator.net[-1][0].T) in d_params  # the new tensor is trained with D


# ---- historical averaging -----------------------------------------------------------------------------------
def test_historical_average_is_the_mean_of_past_parameters(model_with):
    model = model_with("trick=[historical_averaging]", "trick.historical_averaging.weight=0.5")
    trick, net = model.tricks["historical_averaging"], model.discriminator
    snapshots = [copy.deepcopy(net.state_dict())]
    for _ in range(3):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
        trick.after_d_step(model)
        snapshots.append(copy.deepcopy(net.state_dict()))
    name = "net.1.weight"
    mean = torch.stack([s[name] for s in snapshots]).mean(0)
    assert torch.allclose(trick.means["d"].get_buffer("mean__net__1__weight"), mean, atol=1e-6)
    expected = 0.5 * sum(
        (p - torch.stack([s[n] for s in snapshots]).mean(0)).pow(2).sum() for n, p in net.named_parameters()
    )
    view = StepView(None, images(), images(), None, None, model.discriminate)
    assert trick.d_terms(model, view, {})["hist_avg"].item() == pytest.approx(expected.item(), rel=1e-4)


def test_historical_average_state_survives_resume(train_config, tmp_path):
    args = [*TINY, "trick=[historical_averaging]", "trainer.max_epochs=-1"]
    train(train_config(*args, "trainer.max_steps=16"))
    full = torch.load(tmp_path / "run/checkpoints/last.ckpt", weights_only=True)
    (tmp_path / "run").rename(tmp_path / "full")
    train(train_config(*args, "trainer.max_steps=8"))
    half = (tmp_path / "run/checkpoints/last.ckpt").rename(tmp_path / "half.ckpt")
    half_state = torch.load(half, weights_only=True)["state_dict"]
    assert half_state["tricks.historical_averaging.means.d.count"].item() == 1 + 4  # initial + 4 critic steps
    train(train_config(*args, "trainer.max_steps=16", f"ckpt_path={half}"))
    resumed = torch.load(tmp_path / "run/checkpoints/last.ckpt", weights_only=True)["state_dict"]
    averages = [k for k in full["state_dict"] if k.startswith("tricks.historical_averaging.")]
    assert len(averages) > 4
    for key in averages:
        assert torch.equal(full["state_dict"][key], resumed[key]), key
    assert resumed["tricks.historical_averaging.means.g.count"].item() == 1 + 8


# ---- EMA -------------------------------------------------------------------------------------------------------
def test_ema_weights_differ_and_are_what_sample_uses(train_config, tmp_path):
    train(train_config(*TINY, "trick=[ema]", "trick.ema.decay=0.9", "trainer.max_steps=10", "trainer.max_epochs=-1"))
    model = load_model(tmp_path / "run/checkpoints/last.ckpt")  # the path sample.py and evaluate.py take
    ema = model.tricks["ema"].average
    assert ema.n_averaged.item() == 5
    raw, averaged = dict(model.generator.named_parameters()), dict(ema.module.named_parameters())
    assert raw.keys() == averaged.keys()
    assert all(not torch.equal(raw[k], averaged[k]) for k in raw)
    z = torch.randn(6, model.latent_dim)
    samples = model.sample(latent=z)
    with torch.no_grad():
        assert torch.equal(samples, ema.module.eval()(z))
        assert not torch.allclose(samples, model.generator.eval()(z))
    assert model.generator is not ema.module  # sampling put the trained G back


def test_ema_start_copies_g_until_then(train_config, tmp_path):
    """With start = the run's 5 generator iterations the copy is G itself; from start 3 it is the copy made after
    3 iterations averaged with the next 2."""
    common = (*TINY, "trick=[ema]", "trick.ema.decay=0.5", "trainer.max_steps=10", "trainer.max_epochs=-1")
    for start, n_averaged in ((5, 1), (3, 3)):
        train(train_config(*common, f"trick.ema.start={start}"))
        model = load_model(tmp_path / "run/checkpoints/last.ckpt")
        ema = model.tricks["ema"].average
        assert ema.n_averaged.item() == n_averaged  # the copy counts as one
        raw, copy = dict(model.generator.named_parameters()), dict(ema.module.named_parameters())
        assert all(torch.equal(raw[k], copy[k]) == (start == 5) for k in raw), start
        (tmp_path / "run").rename(tmp_path / f"start{start}")


# ---- unrolled GAN ------------------------------------------------------------------------------------------------
class SpyUnrolled(UnrolledGAN):
    """Records D's parameters, buffers and optimizer state around every unrolling."""

    checks: list[bool]

    def g_critic(self, module, batch, discriminate):
        before = _d_state(module)
        critic = super().g_critic(module, batch, discriminate)
        critic(module.real_inputs(batch), None).sum()  # use the look-ahead critic, as G's step does
        self.checks.append(_same(before, _d_state(module)))
        self._before = before
        return critic

    def after_g_step(self, module):
        # G's backward and step are done: D's real state is still what it was before unrolling.
        self.checks.append(_same(self._before, _d_state(module), ignore_grads=True))


def _d_state(module) -> dict[str, torch.Tensor]:
    state = {f"param.{k}": v.detach().clone() for k, v in module.discriminator.state_dict().items()}
    state |= {f"grad.{k}": p.grad.clone() for k, p in module.discriminator.named_parameters() if p.grad is not None}
    opt_d = module.optimizers(use_pl_optimizer=False)[1]
    for i, p in enumerate(module.discriminator.parameters()):
        for key, value in opt_d.state[p].items():
            state[f"opt.{i}.{key}"] = value.clone()
    return state


def _same(a: dict, b: dict, ignore_grads: bool = False) -> bool:
    keys = {k for k in a if not (ignore_grads and k.startswith("grad."))}
    return keys <= b.keys() and all(torch.equal(a[k], b[k]) for k in keys)


@pytest.mark.parametrize("second_order", [True, False])
def test_unrolling_leaves_d_and_its_optimizer_state_untouched(train_config, second_order):
    overrides = ["trick=[unrolled]", "model.discriminator.norm=batch", f"trick.unrolled.second_order={second_order}"]
    cfg = train_config(*TINY, *overrides, "trainer.max_steps=6")  # batch norm: D has running statistics too
    model = build_model(cfg)
    spy = SpyUnrolled(steps=3, second_order=second_order, inner="adam", lr=0.05)  # large lr: D_k moves far
    spy.checks = []
    model.tricks["unrolled"] = spy
    build_trainer(cfg).fit(model, datamodule=instantiate(cfg.data))
    assert len(spy.checks) == 6 and all(spy.checks)  # 3 generator steps, each checked twice


def test_unrolled_critic_looks_ahead_and_second_order_changes_g_gradient(model_with):
    model = model_with("trick=[unrolled]", "trick.unrolled.lr=0.1", "trick.unrolled.inner=sgd")
    data, z = batch(16), torch.randn(16, model.latent_dim)
    assert all(p.grad is None for p in model.discriminator.parameters())

    def g_gradient(second_order: bool) -> tuple[torch.Tensor, torch.Tensor]:
        model.tricks["unrolled"].second_order = second_order
        torch.manual_seed(0)
        critic = model.generator_critic(data)
        fake = model.generate(z)
        loss = model.loss.g_terms(critic(fake, None))["adv"]
        params = list(model.generator.parameters())
        return torch.cat([g.flatten() for g in torch.autograd.grad(loss, params)]), critic(fake, None).detach()

    first_grad, first_scores = g_gradient(False)
    second_grad, second_scores = g_gradient(True)
    # The look-ahead critic is not D; both variants simulate the same D_k (same seed), so their scores agree,
    # but the second-order gradient has the extra term through D_k's dependence on G.
    assert not torch.allclose(first_scores, model.discriminate(model.generate(z)).detach())
    assert torch.allclose(first_scores, second_scores, atol=1e-5)
    assert not torch.allclose(first_grad, second_grad, rtol=1e-3, atol=1e-7)
    assert all(p.grad is None for p in model.discriminator.parameters())  # D's own parameters are not in the graph


# ---- spectral norm and R1 --------------------------------------------------------------------------------------
def test_spectral_norm_keeps_d_top_singular_values_near_one(train_config, tmp_path):
    train(train_config(*TINY, "trick=[spectral_norm]", "trainer.max_steps=10"))
    model = load_model(tmp_path / "run/checkpoints/last.ckpt")
    layers = [m for m in model.discriminator.modules() if isinstance(m, nn.Linear)]
    assert len(layers) == 2
    for layer in layers:
        assert torch.linalg.matrix_norm(layer.weight.detach().flatten(1), ord=2).item() == pytest.approx(1.0, abs=0.05)
    plain = [m for m in build_model(train_config(*TINY)).discriminator.modules() if isinstance(m, nn.Linear)]
    assert any(abs(torch.linalg.matrix_norm(m.weight.detach(), ord=2).item() - 1) > 0.2 for m in plain)


def test_r1_penalty_value_and_gradients_come_from_real_data_only(model_with):
    model = model_with("trick=[r1]", "trick.r1.gamma=4.0")
    w = torch.randn(1, 1, 28, 28)
    critic = lambda x: (x * w).flatten(1).sum(1)  # grad_x D = w: R1 = gamma / 2 * ||w||^2
    real, fake = images(5, 0), images(5, 1).requires_grad_(True)
    r1 = model.tricks["r1"].d_terms(model, StepView(None, real, fake, None, None, critic), {})["r1"]
    assert r1.item() == pytest.approx(2.0 * w.pow(2).sum().item(), rel=1e-5)

    d = model.discriminate
    view = StepView(None, real, fake, None, None, d)
    r1 = model.tricks["r1"].d_terms(model, view, {"fake": d(fake).mean()})["r1"]
    assert torch.autograd.grad(r1, fake, allow_unused=True, retain_graph=True) == (None,)
    weights = model.discriminator.net[1].weight
    assert torch.autograd.grad(r1, weights)[0].abs().sum() > 0  # it trains D
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model.tricks["r1"].d_terms(model, view, {})["r1"].dtype == torch.float32


# ---- D pre-training, dropout noise, VBN ---------------------------------------------------------------------------
def test_d_pretraining_skips_generator_steps_for_k_critic_steps(train_config, tmp_path):
    # 5 critic-only batches (5 optimizer steps), then 3 batches of critic + generator (6 steps).
    train(
        train_config(
            *TINY, "trick=[d_pretrain]", "trick.d_pretrain.steps=5", "trainer.max_steps=11", "trainer.max_epochs=-1"
        )
    )
    state = torch.load(tmp_path / "run/checkpoints/last.ckpt", weights_only=True)["ganzoo"]
    assert (state["disc_step"], state["gen_step"]) == (8, 3)


def test_dropout_noise_in_g(model_with):
    z = torch.randn(4, 100)
    noisy = model_with("trick=[dropout_g]")
    assert not torch.equal(noisy.sample(latent=z), noisy.sample(latent=z))  # on at sampling time too
    quiet = model_with("trick=[dropout_g]", "trick.dropout_g.at_sampling=false")
    assert torch.equal(quiet.sample(latent=z), quiet.sample(latent=z))
    quiet.generator.train()
    assert not torch.equal(quiet.generator(z), quiet.generator(z))
    assert noisy.state_dict().keys() == model_with().state_dict().keys()  # hooks, not new parameters


def test_virtual_batch_norm_makes_each_sample_independent_of_its_batch(model_with):
    z = torch.randn(6, 100)
    plain, vbn = model_with(), model_with("trick=[vbn]", "trick.vbn.reference_size=16")
    plain.generator.train(), vbn.generator.train()
    with torch.no_grad():
        assert not torch.allclose(plain.generator(z)[:2], plain.generator(z[:2]), atol=1e-5)  # batch norm mixes
        assert torch.allclose(vbn.generator(z)[:2], vbn.generator(z[:2]), atol=1e-5)
        assert torch.allclose(vbn.generator(z), vbn.sample(latent=z), atol=1e-5)  # no train/eval difference
    state = vbn.state_dict()
    assert state["tricks.vbn.reference_latent"].shape == (16, 100)
    assert not any("running_mean" in k for k in state if k.startswith("generator."))

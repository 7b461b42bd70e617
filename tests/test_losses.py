"""Losses against hand-computed values; the gradient penalty against an analytic critic."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ganzoo.losses import (
    HingeLoss,
    LeastSquaresLoss,
    MinimaxLoss,
    NonSaturatingLoss,
    WassersteinGPLoss,
    WassersteinLoss,
    gradient_penalty,
)

REAL = torch.tensor([2.0, -1.0])
FAKE = torch.tensor([0.5, -3.0])


def sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def test_minimax_and_nonsaturating_match_their_definitions():
    d = MinimaxLoss().d_terms(REAL, FAKE)
    assert d["real"].item() == pytest.approx(mean(-math.log(sig(r)) for r in REAL.tolist()))
    assert d["fake"].item() == pytest.approx(mean(-math.log(1 - sig(f)) for f in FAKE.tolist()))
    # Saturating G minimises log(1 - D(G(z))); non-saturating G minimises -log D(G(z)).
    assert MinimaxLoss().g_terms(FAKE)["adv"].item() == pytest.approx(mean(math.log(1 - sig(f)) for f in FAKE.tolist()))
    assert NonSaturatingLoss().g_terms(FAKE)["adv"].item() == pytest.approx(
        mean(-math.log(sig(f)) for f in FAKE.tolist())
    )
    assert NonSaturatingLoss().d_terms(REAL, FAKE)["real"] == d["real"]


def test_minimax_is_numerically_stable_for_confident_logits():
    big = torch.tensor([80.0, -80.0])
    for terms in (MinimaxLoss().d_terms(big, -big), MinimaxLoss().g_terms(big), NonSaturatingLoss().g_terms(-big)):
        assert all(torch.isfinite(v) for v in terms.values())


def test_wasserstein_hinge_least_squares_values():
    w = WassersteinLoss().d_terms(REAL, FAKE)
    assert (w["real"] + w["fake"]).item() == pytest.approx(FAKE.mean().item() - REAL.mean().item())
    assert WassersteinLoss().g_terms(FAKE)["adv"].item() == pytest.approx(-FAKE.mean().item())
    h = HingeLoss().d_terms(REAL, FAKE)
    assert h["real"].item() == pytest.approx(mean(max(0, 1 - r) for r in REAL.tolist()))  # (0 + 2) / 2
    assert h["fake"].item() == pytest.approx(mean(max(0, 1 + f) for f in FAKE.tolist()))  # (1.5 + 0) / 2
    ls = LeastSquaresLoss().d_terms(REAL, FAKE)
    assert ls["real"].item() == pytest.approx(0.5 * mean((r - 1) ** 2 for r in REAL.tolist()))
    assert ls["fake"].item() == pytest.approx(0.5 * mean(f**2 for f in FAKE.tolist()))
    assert LeastSquaresLoss().g_terms(FAKE)["adv"].item() == pytest.approx(
        0.5 * mean((f - 1) ** 2 for f in FAKE.tolist())
    )


def test_weight_clipping_clamps_every_critic_parameter():
    critic = nn.Linear(4, 1)
    nn.init.constant_(critic.weight, 0.5)
    nn.init.constant_(critic.bias, -0.3)
    WassersteinLoss(clip_value=0.01).after_d_step(critic)
    assert critic.weight.abs().max().item() == pytest.approx(0.01)
    assert critic.bias.item() == pytest.approx(-0.01)


class QuadraticCritic(nn.Module):
    """D(x) = sum(x**2) per sample: grad = 2x, so the per-sample gradient norm is 2 * ||x||."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.pow(2).flatten(1).sum(1)


def test_gradient_penalty_is_per_sample_over_all_non_batch_dims():
    # Linear critic w.x on images: the gradient is w everywhere, norm ||w|| for every sample.
    w = torch.full((1, 3, 4, 4), 0.25)  # ||w|| = 0.25 * sqrt(48)
    critic = lambda x: (x * w).flatten(1).sum(1)
    real, fake = torch.randn(5, 3, 4, 4), torch.randn(5, 3, 4, 4)
    expected = (0.25 * math.sqrt(48) - 1) ** 2
    assert gradient_penalty(critic, real, fake).item() == pytest.approx(expected, rel=1e-5)

    # Quadratic critic with real == fake: x_hat == x, so the penalty is mean_i (2||x_i|| - 1)^2 exactly,
    # which differs from a batch-wide norm or a per-pixel norm.
    x = torch.randn(6, 1, 5, 5)
    per_sample = ((2 * x.flatten(1).norm(dim=1) - 1) ** 2).mean()
    batch_wide = (2 * x.norm() - 1) ** 2
    got = gradient_penalty(QuadraticCritic(), x, x.clone())
    assert got.item() == pytest.approx(per_sample.item(), rel=1e-5)
    assert not math.isclose(got.item(), batch_wide.item(), rel_tol=1e-2)


def test_gradient_penalty_is_differentiable_with_respect_to_the_critic():
    critic = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 1))
    real, fake = torch.randn(4, 1, 4, 4), torch.randn(4, 1, 4, 4)
    gp = WassersteinGPLoss(gp_weight=10.0).penalty_terms(lambda x: critic(x).squeeze(1), real, fake)["gp"]
    gp.backward()
    # Input gradients depend on every weight (not on the last bias): the penalty trains the critic.
    assert all(layer.weight.grad.abs().sum() > 0 for layer in (critic[1], critic[3]))


def test_gradient_penalty_stays_fp32_under_autocast():
    critic = nn.Sequential(nn.Flatten(), nn.Linear(16, 1))
    real, fake = torch.randn(4, 1, 4, 4), torch.randn(4, 1, 4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        gp = gradient_penalty(lambda x: critic(x).squeeze(1), real, fake)
    assert gp.dtype == torch.float32


@pytest.mark.parametrize("bad", [lambda: WassersteinLoss(clip_value=-1), lambda: WassersteinGPLoss(gp_weight=-1)])
def test_negative_weights_are_rejected(bad):
    with pytest.raises(ValueError, match=">= 0"):
        bad()


# ---- loss-sensitive GAN and Cramér GAN (issue 6) ------------------------------------------------------------------
def test_loss_sensitive_terms_match_hand_computed_values():
    from ganzoo.losses import LossSensitiveLoss

    real = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    fake = torch.tensor([[1.0, -1.0], [1.0, 0.0]])  # Delta = mean |x - G(z)| = 1.0 and 0.5, times margin_scale 2
    real_logits, fake_logits = torch.tensor([0.5, -1.0]), torch.tensor([2.0, 0.25])  # L = |D|: 0.5, 1 and 2, 0.25
    loss = LossSensitiveLoss(slack_weight=3.0, margin_scale=2.0, gp_weight=0.0)
    terms = loss.critic_terms(lambda x: x.sum(1), real, fake, real_logits, fake_logits)
    # slack: relu(2 + 0.5 - 2) = 0.5 and relu(1 + 1 - 0.25) = 1.75
    assert set(terms) == {"real", "slack"}
    assert terms["real"].item() == pytest.approx((0.5 + 1.0) / 2)
    assert terms["slack"].item() == pytest.approx(3.0 * (0.5 + 1.75) / 2)
    assert loss.g_terms(fake_logits)["adv"].item() == pytest.approx((2.0 + 0.25) / 2)


def test_loss_sensitive_lipschitz_penalty_is_one_sided():
    from ganzoo.losses import LossSensitiveLoss

    real, fake = torch.randn(4, 3), torch.randn(4, 3)
    for scale, expected in ((0.5, 0.0), (2.0, 1.0)):  # ||grad|| = scale * sqrt(3) / sqrt(3) = scale
        w = torch.full((3,), scale / math.sqrt(3))
        critic = lambda x, w=w: x @ w
        terms = LossSensitiveLoss(gp_weight=10.0).critic_terms(critic, real, fake, critic(real), critic(fake))
        assert terms["gp"].item() == pytest.approx(10.0 * expected, abs=1e-5)


def test_cramer_terms_match_hand_computed_values():
    from ganzoo.losses import CramerLoss

    h_real = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    h_fake = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])  # x_g rows, then x'_g rows
    loss = CramerLoss(critic_dim=2)
    d = loss.d_terms(h_real, h_fake)
    # f(x) = ||h(x) - h(x'_g)|| - ||h(x)||: f(x_r) = (5 - 5, 1 - 0) and f(x_g) = (0 - 0, sqrt(2) - 1)
    assert d["real"].item() == pytest.approx(-0.5)
    assert d["fake"].item() == pytest.approx((math.sqrt(2) - 1) / 2)
    # L_g = ||h_r - h_g|| + ||h_r - h'_g|| - ||h_g - h'_g||: (5 + 5 - 0, 1 + 1 - sqrt(2))
    assert loss.g_terms(h_fake, real_logits=h_real)["adv"].item() == pytest.approx((12 - math.sqrt(2)) / 2)
    with pytest.raises(ValueError, match="real_logits"):
        loss.g_terms(h_fake)


def test_cramer_gradient_penalty_is_on_f_with_the_second_fake_batch():
    from ganzoo.losses import CramerLoss

    # h(x) = 2x and h(x'_g) = 20: on interpolates in (0, 1), f(x) = |2x - 20| - |2x| = 20 - 4x, so ||grad f|| = 4
    # and the penalty is (4 - 1)^2 = 9; a penalty on h alone (or with x'_g left out) would give (2 - 1)^2 = 1.
    real, fake = torch.rand(6, 1), torch.cat([torch.rand(6, 1), torch.full((6, 1), 10.0)])
    gp = CramerLoss(gp_weight=1.0, critic_dim=1).penalty_terms(lambda x: 2 * x, real, fake)["gp"]
    assert gp.item() == pytest.approx(9.0, rel=1e-5)


def test_cramer_widens_the_critic_to_a_vector():
    from ganzoo.losses import CramerLoss
    from ganzoo.nets.mlp import MLPDiscriminator

    critic = MLPDiscriminator(hidden=[16])
    CramerLoss(critic_dim=8).prepare(critic)
    assert critic(torch.randn(3, 1, 28, 28)).shape == (3, 8)
    CramerLoss(critic_dim=8).prepare(critic)  # idempotent
    with pytest.raises(ValueError, match="critic_dim=4"):
        CramerLoss(critic_dim=4).prepare(critic)


@pytest.mark.parametrize("loss", ["loss_sensitive", "cramer"])
def test_new_losses_train_a_few_steps(train_config, tmp_path, loss):
    from ganzoo.pipeline import train

    cfg = train_config("model=gan", f"loss={loss}", "model.n_critic=2", "trainer.max_steps=6")
    cfg.model.generator.hidden, cfg.model.discriminator.hidden = [32], [32]
    metrics = train(cfg)
    assert {"d/loss", "g/loss", "d/gp"} <= metrics.keys()
    assert all(math.isfinite(v) for v in metrics.values()), metrics
    state = torch.load(tmp_path / "run/checkpoints/last.ckpt", weights_only=True)
    assert state["ganzoo"]["gen_step"] == 2
    if loss == "cramer":  # D's last layer (after Linear, LayerNorm, LeakyReLU) gives a 256-d h
        assert state["state_dict"]["discriminator.net.4.weight"].shape == (256, 32)

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

"""Adversarial objectives. Each loss maps raw discriminator outputs (logits / critic scores, one per
sample) to named loss terms; it knows nothing of data sets or networks beyond the critic callable the
gradient penalty needs.

Terms are returned as ``{name: scalar}``; the training loop sums them and logs each under ``d/`` or ``g/``.

Most losses only need D's outputs (:meth:`AdversarialLoss.d_terms`, :meth:`AdversarialLoss.g_terms`) plus,
for penalties, the critic callable. Three class attributes and two methods let the others fit the same loop:

- ``has_targets``: D's terms take per-sample targets (1 = real, 0 = fake), so label smoothing and label
  flipping apply (the BCE losses and LSGAN);
- ``n_fakes``: independent fake batches the loss needs per real batch; the loop stacks them along the batch
  dimension (Cramer GAN: 2) and the loss splits them;
- ``g_uses_real``: ``g_terms`` also receives D's outputs on the real batch (Cramer GAN's energy distance);
- :meth:`AdversarialLoss.critic_terms`: all of D's terms from the samples, the outputs and the critic
  (loss-sensitive GAN's margin needs the samples themselves);
- :meth:`AdversarialLoss.prepare`: adapt D once before training (Cramer GAN's vector-valued critic).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganzoo.nets.layers import last_linear, replace_module

Critic = Callable[[Tensor], Tensor]
Target = Tensor | float  # a target probability of being real: one number, or one per output


class AdversarialLoss:
    """Base class. Subclasses implement :meth:`d_terms` and :meth:`g_terms`."""

    has_targets: ClassVar[bool] = False
    n_fakes: ClassVar[int] = 1
    g_uses_real: ClassVar[bool] = False

    def d_terms(self, real_logits: Tensor, fake_logits: Tensor) -> dict[str, Tensor]:
        raise NotImplementedError

    def g_terms(self, fake_logits: Tensor) -> dict[str, Tensor]:
        raise NotImplementedError

    def penalty_terms(self, critic: Critic, real: Tensor, fake: Tensor) -> dict[str, Tensor]:
        """Regularisers that need the critic itself (e.g. the gradient penalty). None by default."""
        return {}

    def critic_terms(
        self, critic: Critic, real: Tensor, fake: Tensor, real_logits: Tensor, fake_logits: Tensor, **targets: Tensor
    ) -> dict[str, Tensor]:
        """All of D's terms for one critic step: by default the output terms plus the penalties. ``targets``
        (``real_target``, ``fake_target``) are given only when a trick adjusts them and ``has_targets``."""
        return self.d_terms(real_logits, fake_logits, **targets) | self.penalty_terms(critic, real, fake)

    def prepare(self, discriminator: nn.Module) -> None:
        """Adapt D once, before its optimizer is built (Cramer GAN's vector critic). Nothing by default."""

    def after_d_step(self, discriminator: nn.Module) -> None:
        """Called after every optimizer step of D (e.g. weight clipping). Nothing by default."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class MinimaxLoss(AdversarialLoss):
    """The original saturating game (Goodfellow et al. 2014): G minimises log(1 - D(G(z))).

    With logits l: -log sigmoid(l) = softplus(-l) and log(1 - sigmoid(l)) = -softplus(l). D's terms are the
    binary cross-entropy against targets 1 (real) and 0 (fake), or against the targets a trick sets.
    """

    has_targets = True

    def d_terms(
        self, real_logits: Tensor, fake_logits: Tensor, real_target: Target = 1.0, fake_target: Target = 0.0
    ) -> dict[str, Tensor]:
        return {"real": _bce(real_logits, real_target), "fake": _bce(fake_logits, fake_target)}

    def g_terms(self, fake_logits: Tensor) -> dict[str, Tensor]:
        return {"adv": -F.softplus(fake_logits).mean()}


def _bce(logits: Tensor, target: Target) -> Tensor:
    """Mean BCE of logits against a target probability t (a number or one per output):
    t * softplus(-l) + (1 - t) * softplus(l), which for t = 1 or 0 is exactly the untargeted form."""
    return (target * F.softplus(-logits) + (1 - target) * F.softplus(logits)).mean()


class NonSaturatingLoss(MinimaxLoss):
    """The same D objective; G maximises log D(G(z)) instead, which has strong gradients early on."""

    def g_terms(self, fake_logits: Tensor) -> dict[str, Tensor]:
        return {"adv": F.softplus(-fake_logits).mean()}


class WassersteinLoss(AdversarialLoss):
    """WGAN (Arjovsky et al. 2017): the critic maximises E[D(x)] - E[D(G(z))].

    ``clip_value`` > 0 clips every critic parameter to [-c, c] *after* each critic step (the
    original Lipschitz constraint); use 0 when another constraint (gradient penalty) is used.
    """

    def __init__(self, clip_value: float = 0.01) -> None:
        if clip_value < 0:
            raise ValueError(f"loss.clip_value must be >= 0, got {clip_value}")
        self.clip_value = clip_value

    def d_terms(self, real_logits: Tensor, fake_logits: Tensor) -> dict[str, Tensor]:
        return {"real": -real_logits.mean(), "fake": fake_logits.mean()}

    def g_terms(self, fake_logits: Tensor) -> dict[str, Tensor]:
        return {"adv": -fake_logits.mean()}

    @torch.no_grad()
    def after_d_step(self, discriminator: nn.Module) -> None:
        if self.clip_value > 0:
            for p in discriminator.parameters():
                p.clamp_(-self.clip_value, self.clip_value)


def gradient_penalty(
    critic: Critic, real: Tensor, fake: Tensor, target: float = 1.0, one_sided: bool = False
) -> Tensor:
    """E[(||grad_x D(x_hat)||_2 - target)^2] over random interpolates x_hat of real and fake; ``one_sided``
    penalises only norms above ``target`` (a Lipschitz bound, not a unit-norm target).

    One norm per sample, over all of its non-batch dimensions. Computed in float32 with autocast off:
    under fp16 AMP Lightning's grad scaler does not scale ``torch.autograd.grad``, so a half-precision
    penalty overflows or underflows.
    """
    device_type = real.device.type
    with torch.autocast(device_type=device_type, enabled=False):
        real, fake = real.float(), fake.detach().float()
        alpha = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device)
        mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
        (grads,) = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
        excess = grads.flatten(1).norm(2, dim=1) - target
        return ((F.relu(excess) if one_sided else excess) ** 2).mean()


class WassersteinGPLoss(WassersteinLoss):
    """WGAN-GP (Gulrajani et al. 2017): WGAN without clipping, plus lambda * gradient penalty."""

    def __init__(self, gp_weight: float = 10.0) -> None:
        super().__init__(clip_value=0.0)
        if gp_weight < 0:
            raise ValueError(f"loss.gp_weight must be >= 0, got {gp_weight}")
        self.gp_weight = gp_weight

    def penalty_terms(self, critic: Critic, real: Tensor, fake: Tensor) -> dict[str, Tensor]:
        return {"gp": self.gp_weight * gradient_penalty(critic, real, fake)}


class LeastSquaresLoss(AdversarialLoss):
    """LSGAN (Mao et al. 2017) with the 0-1 coding: D pushes real to b=1 and fake to a=0, G pushes fake to c=1.

    Trick targets t (1 = real, 0 = fake; e.g. 0.9 with label smoothing) map onto the coding as a + t (b - a).
    """

    has_targets = True

    def __init__(self, real_target: float = 1.0, fake_target: float = 0.0, gen_target: float = 1.0) -> None:
        self.real_target, self.fake_target, self.gen_target = real_target, fake_target, gen_target

    def d_terms(
        self, real_logits: Tensor, fake_logits: Tensor, real_target: Target = 1.0, fake_target: Target = 0.0
    ) -> dict[str, Tensor]:
        a, b = self.fake_target, self.real_target
        return {
            "real": 0.5 * (real_logits - (a + real_target * (b - a))).pow(2).mean(),
            "fake": 0.5 * (fake_logits - (a + fake_target * (b - a))).pow(2).mean(),
        }

    def g_terms(self, fake_logits: Tensor) -> dict[str, Tensor]:
        return {"adv": 0.5 * (fake_logits - self.gen_target).pow(2).mean()}


class HingeLoss(AdversarialLoss):
    """Hinge loss (Lim & Ye 2017; Miyato et al. 2018): D: relu(1 - D(x)) + relu(1 + D(G(z))); G: -D(G(z))."""

    def d_terms(self, real_logits: Tensor, fake_logits: Tensor) -> dict[str, Tensor]:
        return {"real": F.relu(1 - real_logits).mean(), "fake": F.relu(1 + fake_logits).mean()}

    def g_terms(self, fake_logits: Tensor) -> dict[str, Tensor]:
        return {"adv": -fake_logits.mean()}


def _per_sample(logits: Tensor) -> Tensor:
    """One value per sample: per-step critic scores (B, T) are averaged over the steps."""
    return logits.reshape(logits.shape[0], -1).mean(1)


class LossSensitiveLoss(AdversarialLoss):
    """Loss-sensitive GAN (Qi 2017, "Loss-Sensitive Generative Adversarial Networks on Lipschitz Densities").

    D is a loss function L(x) >= 0 that must be smaller on a real x than on a fake G(z) by a data-dependent
    margin Delta(x, G(z)), with slack for the pairs that violate it (eq. 6 of the paper):

        D: E[L(x)] + lambda E[(Delta(x, G(z)) + L(x) - L(G(z)))_+] + Lipschitz regulariser
        G: E[L(G(z))]

    ``L(x) = |D(x)|`` keeps the loss non-negative, as the paper's loss function is (a raw score would let
    E[L(x)] fall without bound: the slack term does not change when every score shifts by the same amount).
    ``Delta`` is the L1 distance of the paired real and fake samples, averaged over their elements (so it does
    not grow with the image size) and scaled by ``margin_scale``. The paper's Lipschitz condition on L is
    enforced with a one-sided gradient penalty (``||grad L|| <= 1`` on interpolates, weight ``gp_weight``)
    instead of its weight decay. Terms: ``real``, ``slack`` (lambda-weighted), ``gp``.
    """

    def __init__(self, slack_weight: float = 1.0, margin_scale: float = 1.0, gp_weight: float = 10.0) -> None:
        for key, value in (("slack_weight", slack_weight), ("margin_scale", margin_scale), ("gp_weight", gp_weight)):
            if value < 0:
                raise ValueError(f"loss.{key} must be >= 0, got {value}")
        self.slack_weight, self.margin_scale, self.gp_weight = slack_weight, margin_scale, gp_weight

    def margin(self, real: Tensor, fake: Tensor) -> Tensor:
        """Delta(x, G(z)) per pair: mean absolute difference, times ``margin_scale``."""
        return self.margin_scale * (real - fake).abs().flatten(1).mean(1)

    def critic_terms(
        self, critic: Critic, real: Tensor, fake: Tensor, real_logits: Tensor, fake_logits: Tensor, **targets: Tensor
    ) -> dict[str, Tensor]:
        loss_real, loss_fake = _per_sample(real_logits.abs()), _per_sample(fake_logits.abs())
        slack = F.relu(self.margin(real, fake.detach()) + loss_real - loss_fake)
        terms = {"real": loss_real.mean(), "slack": self.slack_weight * slack.mean()}
        if self.gp_weight > 0:
            terms["gp"] = self.gp_weight * gradient_penalty(critic, real, fake, one_sided=True)
        return terms

    def d_terms(self, real_logits: Tensor, fake_logits: Tensor) -> dict[str, Tensor]:
        raise NotImplementedError("the loss-sensitive margin needs the samples: call critic_terms")

    def g_terms(self, fake_logits: Tensor) -> dict[str, Tensor]:
        return {"adv": _per_sample(fake_logits.abs()).mean()}


def _vectors(h: Tensor) -> Tensor:
    """Critic outputs as one vector per sample: (B,) -> (B, 1), (B, k) as is, (B, T, ...) flattened."""
    return h.reshape(h.shape[0], -1)


def _cramer_critic(h: Tensor, h_fake2: Tensor) -> Tensor:
    """Bellemare et al.'s f(x) = ||h(x) - h(x'_g)|| - ||h(x)||, per sample, given h(x) and h(x'_g)."""
    return (h - h_fake2).norm(dim=1) - h.norm(dim=1)


class CramerLoss(AdversarialLoss):
    """Cramer GAN (Bellemare et al. 2017, "The Cramer Distance as a Solution to Biased Wasserstein Gradients",
    Algorithm 1): an energy distance between real and generated samples in the space of a learned map h.

    With x_r real and x_g, x'_g two independent fakes:
        G: L_g = ||h(x_r) - h(x_g)|| + ||h(x_r) - h(x'_g)|| - ||h(x_g) - h(x'_g)||
        f(x) = ||h(x) - h(x'_g)|| - ||h(x)||
        D: -(f(x_r) - f(x_g)) + lambda (||grad f(x_hat)|| - 1)^2,  x_hat between x_r and x_g

    How it fits the one loop: ``n_fakes = 2`` makes the loop generate a double fake batch (x_g stacked on
    x'_g) that the loss splits in halves; ``g_uses_real`` gives ``g_terms`` D's outputs on the real batch too;
    the penalty gets the critic callable, from which it builds f. h is D's output: :meth:`prepare` widens D's
    last linear layer from 1 to ``critic_dim`` outputs (the paper uses 256); ``critic_dim=1`` keeps a scalar h.
    D must not use batch norm (the penalty is per sample): the config sets layer norm.
    """

    n_fakes = 2
    g_uses_real = True

    def __init__(self, gp_weight: float = 10.0, critic_dim: int = 256) -> None:
        if gp_weight < 0:
            raise ValueError(f"loss.gp_weight must be >= 0, got {gp_weight}")
        if critic_dim < 1:
            raise ValueError(f"loss.critic_dim must be >= 1, got {critic_dim}")
        self.gp_weight, self.critic_dim = gp_weight, critic_dim

    def prepare(self, discriminator: nn.Module) -> None:
        name, layer = last_linear(discriminator)
        if layer.out_features == self.critic_dim:
            return
        if layer.out_features != 1:
            raise ValueError(
                f"loss.critic_dim={self.critic_dim} but D's last linear layer {name!r} has {layer.out_features} "
                f"outputs; use a critic with one output (ganzoo widens it) or set loss.critic_dim={layer.out_features}"
            )
        widened = nn.Linear(layer.in_features, self.critic_dim, bias=layer.bias is not None)
        replace_module(discriminator, name, widened.to(layer.weight.device, layer.weight.dtype))

    def d_terms(self, real_logits: Tensor, fake_logits: Tensor) -> dict[str, Tensor]:
        h_fake, h_fake2 = _vectors(fake_logits).chunk(2)
        h_real = _vectors(real_logits)
        return {
            "real": -_cramer_critic(h_real, h_fake2).mean(),
            "fake": _cramer_critic(h_fake, h_fake2).mean(),
        }

    def penalty_terms(self, critic: Critic, real: Tensor, fake: Tensor) -> dict[str, Tensor]:
        if self.gp_weight == 0:
            return {}
        fake, fake2 = fake.chunk(2)
        h_fake2 = _vectors(critic(fake2)).float()
        f = lambda x: _cramer_critic(_vectors(critic(x)), h_fake2)
        return {"gp": self.gp_weight * gradient_penalty(f, real, fake)}

    def g_terms(self, fake_logits: Tensor, real_logits: Tensor | None = None) -> dict[str, Tensor]:
        if real_logits is None:
            raise ValueError("CramerLoss.g_terms needs real_logits (D's outputs on the real batch)")
        h_fake, h_fake2 = _vectors(fake_logits).chunk(2)
        h_real = _vectors(real_logits)
        energy = (h_real - h_fake).norm(dim=1) + (h_real - h_fake2).norm(dim=1) - (h_fake - h_fake2).norm(dim=1)
        return {"adv": energy.mean()}

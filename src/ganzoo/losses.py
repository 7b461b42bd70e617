"""Adversarial objectives. Each loss maps raw discriminator outputs (logits / critic scores, one per
sample) to named loss terms; it knows nothing of data sets or networks beyond the critic callable the
gradient penalty needs.

Terms are returned as ``{name: scalar}``; the training loop sums them and logs each under ``d/`` or ``g/``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Critic = Callable[[Tensor], Tensor]


class AdversarialLoss:
    """Base class. Subclasses implement :meth:`d_terms` and :meth:`g_terms`."""

    def d_terms(self, real_logits: Tensor, fake_logits: Tensor) -> dict[str, Tensor]:
        raise NotImplementedError

    def g_terms(self, fake_logits: Tensor) -> dict[str, Tensor]:
        raise NotImplementedError

    def penalty_terms(self, critic: Critic, real: Tensor, fake: Tensor) -> dict[str, Tensor]:
        """Regularisers that need the critic itself (e.g. the gradient penalty). None by default."""
        return {}

    def after_d_step(self, discriminator: nn.Module) -> None:
        """Called after every optimizer step of D (e.g. weight clipping). Nothing by default."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class MinimaxLoss(AdversarialLoss):
    """The original saturating game (Goodfellow et al. 2014): G minimises log(1 - D(G(z))).

    With logits l: -log sigmoid(l) = softplus(-l) and log(1 - sigmoid(l)) = -softplus(l).
    """

    def d_terms(self, real_logits: Tensor, fake_logits: Tensor) -> dict[str, Tensor]:
        return {"real": F.softplus(-real_logits).mean(), "fake": F.softplus(fake_logits).mean()}

    def g_terms(self, fake_logits: Tensor) -> dict[str, Tensor]:
        return {"adv": -F.softplus(fake_logits).mean()}


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


def gradient_penalty(critic: Critic, real: Tensor, fake: Tensor, target: float = 1.0) -> Tensor:
    """E[(||grad_x D(x_hat)||_2 - target)^2] over random interpolates x_hat of real and fake.

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
        norms = grads.flatten(1).norm(2, dim=1)
        return ((norms - target) ** 2).mean()


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
    """LSGAN (Mao et al. 2017) with the 0-1 coding: D pushes real to b=1 and fake to a=0, G pushes fake to c=1."""

    def __init__(self, real_target: float = 1.0, fake_target: float = 0.0, gen_target: float = 1.0) -> None:
        self.real_target, self.fake_target, self.gen_target = real_target, fake_target, gen_target

    def d_terms(self, real_logits: Tensor, fake_logits: Tensor) -> dict[str, Tensor]:
        return {
            "real": 0.5 * (real_logits - self.real_target).pow(2).mean(),
            "fake": 0.5 * (fake_logits - self.fake_target).pow(2).mean(),
        }

    def g_terms(self, fake_logits: Tensor) -> dict[str, Tensor]:
        return {"adv": 0.5 * (fake_logits - self.gen_target).pow(2).mean()}


class HingeLoss(AdversarialLoss):
    """Hinge loss (Lim & Ye 2017; Miyato et al. 2018): D: relu(1 - D(x)) + relu(1 + D(G(z))); G: -D(G(z))."""

    def d_terms(self, real_logits: Tensor, fake_logits: Tensor) -> dict[str, Tensor]:
        return {"real": F.relu(1 - real_logits).mean(), "fake": F.relu(1 + fake_logits).mean()}

    def g_terms(self, fake_logits: Tensor) -> dict[str, Tensor]:
        return {"adv": -fake_logits.mean()}

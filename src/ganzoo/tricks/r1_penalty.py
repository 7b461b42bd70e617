"""R1 gradient penalty (Mescheder et al. 2018, "Which Training Methods for GANs do actually Converge?", eq. 9).

D's loss gets (gamma / 2) E_x ||grad_x D(x)||^2 on *real* data only: it penalises D for having a gradient on
the data manifold, which makes the Dirac-GAN dynamics converge. One squared norm per sample over all its
non-batch dimensions; computed in float32 with autocast off, like ``losses.gradient_penalty`` (Lightning's
AMP grad scaler does not scale ``torch.autograd.grad``). Term: ``d/r1``.

Knob: ``gamma`` (> 0; 10 by default, the paper's value for most of its experiments).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ganzoo.tricks.base import Critic, StepView, Terms, Trick, check_positive

if TYPE_CHECKING:
    from ganzoo.models.base import AdversarialModule


def r1_penalty(critic: Critic, real: Tensor) -> Tensor:
    """E ||grad_x D(x)||^2 over the real batch, differentiable with respect to D's parameters."""
    with torch.autocast(device_type=real.device.type, enabled=False):
        x = real.detach().float().requires_grad_(True)
        (grads,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
        return grads.flatten(1).pow(2).sum(1).mean()


class R1Penalty(Trick):
    def __init__(self, gamma: float = 10.0) -> None:
        super().__init__()
        check_positive("r1", gamma=gamma)
        self.gamma = gamma

    def d_terms(self, module: AdversarialModule, view: StepView, terms: Terms) -> Terms:
        return terms | {"r1": self.gamma / 2 * r1_penalty(view.critic, view.real)}

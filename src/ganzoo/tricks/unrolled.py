"""Unrolled GAN (Metz et al. 2017, "Unrolled Generative Adversarial Networks").

G is trained against a look-ahead copy of D: starting from D's current parameters, ``steps`` (k) critic
updates are simulated on fresh fakes and the current real batch, and G's loss is D_k's score of G's fakes.
G thus anticipates how D will react to it, which counters mode collapse.

- ``second_order: true`` (the paper's form): the fakes of the simulated updates carry G's graph and the
  updates are built with ``create_graph``, so G's gradient includes how D_k depends on G (eq. 12's second
  term). ``false``: the cheaper first-order variant -- D_k is a constant for G's gradient.
- The simulation is functional (``torch.func.functional_call`` on cloned parameters and buffers): D's real
  parameters, its batch-norm statistics and its optimizer state are never written. D's own steps are as usual.
- ``inner``: the simulated update rule. ``adam`` (default) is Adam's update started from copies of D's
  optimizer moments (what the paper's reference code did: it unrolled D's own Adam optimizer), using D's
  optimizer betas and eps (Adam's defaults (0.5, 0.999), 1e-8 if D's optimizer has none); the denominator is
  sqrt(v_hat + eps^2), which equals Adam's up to eps and stays differentiable where a gradient is exactly 0.
  ``sgd``: plain gradient steps theta <- theta - lr * g.
- ``lr``: the simulated step size; null uses D's optimizer learning rate.
- The simulated objective is the loss's critic terms (targets and penalties included); trick terms (R1,
  historical averaging) are left out of the look-ahead.

Knobs: ``steps`` (k >= 1; the paper uses 5 and 10 on its mixture of Gaussians), ``second_order``, ``inner``,
``lr``. Cost: about (k + 1) forward and backward passes of D per generator step (more with second order).
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from ganzoo.tricks.base import Discriminate, Trick

if TYPE_CHECKING:
    from ganzoo.models.base import AdversarialModule

INNER_RULES = ("adam", "sgd")
Moment = tuple[Tensor, Tensor, float]  # Adam's (exp_avg, exp_avg_sq, step) of one parameter


class _Scorer(nn.Module):
    """The module's own ``discriminate`` as a forward pass, so ``functional_call`` can swap D's tensors under
    it (variants that post-process D's output, e.g. the semi-supervised GAN's logsumexp, keep doing so)."""

    def __init__(self, module: AdversarialModule) -> None:
        super().__init__()
        self.discriminator = module.discriminator
        self._discriminate = module.discriminate

    def forward(self, x: Tensor, cond: Tensor | None) -> Tensor:
        return self._discriminate(x, cond)


class UnrolledGAN(Trick):
    def __init__(self, steps: int = 5, second_order: bool = True, inner: str = "adam", lr: float | None = None) -> None:
        super().__init__()
        if steps < 1:
            raise ValueError(f"trick.unrolled.steps must be >= 1, got {steps}")
        if inner not in INNER_RULES:
            raise ValueError(f"trick.unrolled.inner must be one of {INNER_RULES}, got {inner!r}")
        if lr is not None and lr <= 0:
            raise ValueError(f"trick.unrolled.lr must be > 0 or null, got {lr}")
        self.steps, self.second_order, self.inner, self.lr = steps, second_order, inner, lr

    def g_critic(self, module: AdversarialModule, batch: Any, discriminate: Discriminate) -> Discriminate:
        scorer = _Scorer(module)
        return _with_state(scorer, self.unroll(module, batch, scorer))

    def d_optimizer(self, module: AdversarialModule) -> torch.optim.Optimizer | None:
        """D's optimizer (read only: its hyper-parameters and moments seed the simulated steps)."""
        try:
            module.trainer  # noqa: B018 -- raises when the module is not attached to a trainer
        except RuntimeError:
            return None
        return module.optimizers(use_pl_optimizer=False)[1]

    def unroll(self, module: AdversarialModule, batch: Any, scorer: _Scorer) -> dict[str, Tensor]:
        """D's parameters (as ``discriminator.*`` tensors, with cloned buffers) after ``steps`` simulated updates."""
        net = module.discriminator
        optimizer = self.d_optimizer(module)
        hyper = optimizer.param_groups[0] if optimizer is not None else {}
        lr = self.lr or hyper.get("lr")
        if lr is None:
            raise ValueError("trick.unrolled.lr must be set when D has no optimizer to read it from")
        betas, eps = hyper.get("betas", (0.5, 0.999)), hyper.get("eps", 1e-8)
        names = [f"discriminator.{name}" for name, _ in net.named_parameters()]
        params = [p.detach().clone().requires_grad_(True) for p in net.parameters()]
        moments = [_adam_state(optimizer, p) for p in net.parameters()]
        buffers = {f"discriminator.{n}": b.clone() for n, b in net.named_buffers()}  # BN statistics update these

        real, cond = module.d_input(module.real_inputs(batch)), module.conditions(batch)
        n_fakes = module.loss.n_fakes
        fake_cond = cond if cond is None or n_fakes == 1 else torch.cat([cond] * n_fakes)
        for _ in range(self.steps):
            critic = _with_state(scorer, dict(zip(names, params, strict=True)) | buffers)
            with torch.set_grad_enabled(self.second_order):  # first order: D_k does not depend on G
                fake = module.generate(module.sample_latent(real.shape[0] * n_fakes), fake_cond)
            fake = module.d_input(fake)
            real_logits, fake_logits = critic(real, cond), critic(fake, fake_cond)
            targets = module.d_targets(real_logits, fake_logits)
            terms = module.loss.critic_terms(
                partial(critic, cond=cond), real, fake, real_logits, fake_logits, **targets
            )
            loss = sum(terms.values())
            grads = torch.autograd.grad(loss, params, create_graph=self.second_order, allow_unused=True)
            steps = [self._update(p, g, m, lr, betas, eps) for p, g, m in zip(params, grads, moments, strict=True)]
            params, moments = [p for p, _ in steps], [m for _, m in steps]
        return dict(zip(names, params, strict=True)) | buffers

    def _update(
        self, p: Tensor, g: Tensor | None, moment: Moment, lr: float, betas: tuple[float, float], eps: float
    ) -> tuple[Tensor, Moment]:
        """One simulated step of one parameter: (new parameter, new Adam moments)."""
        if g is None:  # a parameter the objective does not reach
            return p, moment
        if self.inner == "sgd":
            new = p - lr * g
        else:
            m, v, t = moment
            t += 1
            m, v = betas[0] * m + (1 - betas[0]) * g, betas[1] * v + (1 - betas[1]) * g * g
            m_hat, v_hat = m / (1 - betas[0] ** t), v / (1 - betas[1] ** t)
            new = p - lr * m_hat / torch.sqrt(v_hat + eps * eps)
            moment = (m, v, t)
        if self.second_order:
            return new, moment
        # First order: cut the graph, so the next simulated step starts from constants.
        return new.detach().requires_grad_(True), (moment[0].detach(), moment[1].detach(), moment[2])


def _with_state(scorer: _Scorer, state: dict[str, Tensor]) -> Discriminate:
    """``discriminate(x, cond)`` with D's tensors replaced by ``state``."""
    return lambda x, cond=None: functional_call(scorer, state, (x, cond))


def _adam_state(optimizer: torch.optim.Optimizer | None, param: Tensor) -> Moment:
    """Copies of Adam's (exp_avg, exp_avg_sq, step) for ``param``; zeros when D's optimizer has none yet."""
    state = optimizer.state.get(param, {}) if optimizer is not None else {}
    if "exp_avg" not in state or "exp_avg_sq" not in state:
        return torch.zeros_like(param), torch.zeros_like(param), 0.0
    return state["exp_avg"].detach().clone(), state["exp_avg_sq"].detach().clone(), float(state.get("step", 0))

"""The trick API: one small ``nn.Module`` per trick, called by :class:`~ganzoo.models.base.AdversarialModule`
at a few fixed points of the one loop.

A trick is an ``nn.Module`` so that its state (an EMA copy of G, historical averages, a reference batch)
lives in buffers and submodules: the module keeps its tricks in an ``nn.ModuleDict`` named ``tricks``, so
their state is in every checkpoint's ``state_dict`` (``tricks.<name>.*``), moves with ``.to(device)`` and
is restored on resume with no extra code.

Every hook has a do-nothing default; a trick overrides the ones it needs. In the order the loop calls them:

=====================  ====================================================================================
``setup``              once, after the nets are built and before the optimizers: wrap or re-parametrise nets
``d_input``            every input of D, real or fake, in both players' steps (instance noise)
``d_targets``          D's per-sample targets (1 = real, 0 = fake) for losses that have them (label smoothing)
``d_terms``            D's loss terms of a critic step; return them with yours added (R1, historical average)
``after_d_step``       after each optimizer step of D (historical average bookkeeping)
``generator_may_step`` whether the generator steps after this critic step (D pre-training)
``g_critic``           the critic G's loss is computed through (unrolled GAN's look-ahead copy of D)
``g_terms``            G's loss terms; return them with yours added or replaced (feature matching)
``after_g_step``       after each optimizer step of G (EMA, historical average)
``sampling_generator`` the generator ``sample()`` uses, or None (EMA)
=====================  ====================================================================================

Tricks run in the order they are listed (``trick=[a,b]``), except :meth:`Trick.setup`, which runs in
``setup_order`` (structure first, then re-parametrisation, then copies of the final nets).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from torch import Tensor, nn

if TYPE_CHECKING:
    from ganzoo.models.base import AdversarialModule

Critic = Callable[[Tensor], Tensor]
Discriminate = Callable[[Tensor, Tensor | None], Tensor]  # D with its conditions as an argument
Terms = dict[str, Tensor]


@dataclass
class StepView:
    """What a trick's ``d_terms`` / ``g_terms`` hook may look at in the current step.

    ``real`` is the real batch as D saw it in the critic step (after ``d_input``); in the generator step it
    is the untransformed batch (a trick that shows it to D applies ``module.d_input`` itself). ``fake`` is
    what D scored: detached in the critic step, carrying G's graph in the generator step; it holds
    ``loss.n_fakes`` stacked batches, made for ``fake_cond``. ``critic`` is D with the real batch's
    conditions ``cond`` bound (in the generator step: the critic G is trained against).
    """

    batch: Any
    real: Tensor
    fake: Tensor
    cond: Tensor | None
    fake_cond: Tensor | None
    critic: Critic


class Trick(nn.Module):
    """Base class of the training tricks: every hook does nothing. See the module docstring for the hooks.

    Class attributes a trick may set:
      ``needs_targets``: the trick adjusts D's real/fake targets, so the loss must have targets
      (minimax, nonsaturating, lsgan); the module checks this at build time.
      ``setup_order``: when its ``setup`` runs relative to other tricks'. 0 changes the nets' structure
      (minibatch discrimination, VBN), 1 re-parametrises weights (spectral norm), 2 attaches hooks (dropout,
      feature matching), 3 copies or snapshots the final parameters (EMA, historical averaging).
    """

    needs_targets: ClassVar[bool] = False
    setup_order: ClassVar[int] = 2

    def setup(self, module: AdversarialModule) -> None:
        """Once, when the nets exist and before the optimizers are built."""

    def d_input(self, module: AdversarialModule, x: Tensor) -> Tensor:
        return x

    def d_targets(self, module: AdversarialModule, real_target: Tensor, fake_target: Tensor) -> tuple[Tensor, Tensor]:
        return real_target, fake_target

    def d_terms(self, module: AdversarialModule, view: StepView, terms: Terms) -> Terms:
        return terms

    def after_d_step(self, module: AdversarialModule) -> None:
        """After each optimizer step of D."""

    def generator_may_step(self, module: AdversarialModule) -> bool:
        return True

    def g_critic(self, module: AdversarialModule, batch: Any, discriminate: Discriminate) -> Discriminate:
        """``discriminate(x, cond)`` for G's loss in this step; ``discriminate`` is what earlier tricks gave."""
        return discriminate

    def g_terms(self, module: AdversarialModule, view: StepView, terms: Terms) -> Terms:
        return terms

    def after_g_step(self, module: AdversarialModule) -> None:
        """After each optimizer step of G."""

    def sampling_generator(self, module: AdversarialModule) -> nn.Module | None:
        return None

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in vars(self).items() if not k.startswith("_") and k != "training")


# ---- small helpers shared by tricks that edit networks ---------------------------------------------------
def check_positive(trick: str, **values: float) -> None:
    """One-line errors for knobs that must be > 0."""
    for key, value in values.items():
        if value <= 0:
            raise ValueError(f"trick.{trick}.{key} must be > 0, got {value}")


def check_probability(trick: str, **values: float) -> None:
    for key, value in values.items():
        if not 0 <= value <= 1:
            raise ValueError(f"trick.{trick}.{key} must be in [0, 1], got {value}")

"""Latent tails: both players also see G's samples from a widened latent, ``scale * z`` with z ~ N(0, I).

A generator is trained where its latent is dense. Where the latent is rare (2 sigma out along a direction:
2 % of draws, and a latent sweep's or a traversal's corners go there on purpose) little of D's signal ever
reaches it, and G extrapolates: on the waves (README, issue 7) a latent sweep's corners came out as ramps of
under one cycle and near-flat lines, outside the real waves' frequency and amplitude ranges, which a
classifier trained on real waves then mislabels. This trick shows D, in every critic step, ``n`` more fakes
made from ``scale * z`` (as fakes, the loss's own fake term) and adds to G's loss its adversarial term on
``n`` such fakes: G is told that its outputs there must look real too, so its map saturates at the edges of
the data instead of running past them.

What it does not do: it does not ask G's widened samples to follow the data's *distribution* (MMD matching and
the main fake batch, drawn from N(0, I), still decide that); only that each one be a plausible sample. The
extra samples cost G forward passes (and backward ones in its step) and D passes over ``n`` samples per step.

On the waves preset it did not remove the sweeps' label flips (README, issue 7: four seeds met 60 and 56 of
64 targets at weight 1, 62 and 61 at weight 0.25, against the preset's 62 and 60, with 1.1-1.5x the training
minutes), so it is off there.

Knobs:
  ``scale``: the widened latent's standard deviation (> 1 to reach past the dense region; 1.5 puts 18 % of
  the draws past 2 sigma along any one direction, against 4.6 % of N(0, I)).
  ``fraction``: ``n`` as a fraction of the real batch (rounded, at least 1), made for the conditions of the
  batch's first ``n`` samples (a shuffled batch: a random draw of the data's labels).
  ``weight``: the weight of both players' extra terms (``d/tails``, ``g/tails``).

For models whose whole latent is N(0, I) (``latent_is_gaussian``) and whose critic terms are the base loop's:
GAN, DCGAN, CGAN, RGAN / RCGAN; InfoGAN's codes, BiGAN's pairs and the adversarial autoencoder's priors are not
a Gaussian to widen, and the semi-supervised GAN's K+1-way critic has terms of its own.
With the losses whose critic terms split into ``real`` and ``fake`` parts (all but the loss-sensitive and
Cramer GANs), so that the tail fakes add a fake term of the loss's own kind.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ganzoo.losses import AdversarialLoss
from ganzoo.tricks.base import StepView, Terms, Trick, check_positive

if TYPE_CHECKING:
    from ganzoo.models.base import AdversarialModule


class LatentTails(Trick):
    def __init__(self, scale: float = 1.5, fraction: float = 0.5, weight: float = 1.0) -> None:
        super().__init__()
        check_positive("latent_tails", weight=weight)
        if not 0 < fraction <= 1:
            raise ValueError(f"trick.latent_tails.fraction must be in (0, 1] (of the batch), got {fraction}")
        if scale <= 1:
            raise ValueError(f"trick.latent_tails.scale must be > 1 (a wider latent than N(0, I)), got {scale}")
        self.scale, self.fraction, self.weight = scale, fraction, weight

    def setup(self, module: AdversarialModule) -> None:
        from ganzoo.models.base import AdversarialModule  # here: the models import the trick API

        name = type(module).__name__
        if not getattr(module, "latent_is_gaussian", False):
            raise ValueError(f"trick.latent_tails widens an N(0, I) latent; {name}'s latent is not one: drop the trick")
        if type(module).discriminator_terms is not AdversarialModule.discriminator_terms:
            raise ValueError(
                f"trick.latent_tails adds to the base loop's critic terms; {name} has its own: drop the trick"
            )
        loss = module.loss
        if not _fake_term_of_its_own(loss):
            raise ValueError(
                f"trick.latent_tails needs a loss whose critic terms have a fake part of their own, not "
                f"{type(loss).__name__}: use nonsaturating, minimax, lsgan, hinge, wgan or wgan_gp"
            )

    def tail_fakes(self, module: AdversarialModule, view: StepView) -> tuple[Tensor, Tensor | None]:
        """G's samples (through ``d_input``) from ``scale * z`` for the first ``n`` of the batch's conditions."""
        n = max(1, round(self.fraction * view.real.shape[0]))
        cond = None if view.cond is None else view.cond[:n]
        return module.d_input(module.generate(self.scale * module.sample_latent(n), cond)), cond

    def d_terms(self, module: AdversarialModule, view: StepView, terms: Terms) -> Terms:
        with torch.no_grad():
            fake, cond = self.tail_fakes(module, view)
        logits = view.critic(fake, cond=cond)
        return terms | {"tails": self.weight * module.loss.d_terms(logits.detach(), logits)["fake"]}

    def g_terms(self, module: AdversarialModule, view: StepView, terms: Terms) -> Terms:
        fake, cond = self.tail_fakes(module, view)
        adv = module.loss.g_terms(view.critic(fake, cond=cond))  # the critic G is trained against
        return terms | {"tails": self.weight * sum(adv.values())}


def _fake_term_of_its_own(loss: AdversarialLoss) -> bool:
    """Whether the loss's critic terms have a ``fake`` part that reads D's outputs on one fake batch alone."""
    if loss.n_fakes != 1 or loss.g_uses_real or type(loss).critic_terms is not AdversarialLoss.critic_terms:
        return False  # Cramer GAN's pairs of fakes, the loss-sensitive margin on the samples themselves
    return "fake" in loss.d_terms(torch.zeros(2), torch.zeros(2))

"""BiGAN (Donahue et al. 2016, "Adversarial Feature Learning"; the same model as ALI, Dumoulin et al. 2016).

A generator G(z) and an encoder E(x) play together against a discriminator on *joint* pairs: D learns to tell
(x, E(x)) for data x from (G(z), z) for prior z. At the optimum E inverts G, so E(x) is a learned feature of x
(section 3 of the paper), and G(E(x)) reconstructs x although no reconstruction loss is ever trained.

How it fits the one loop:
- D reads one packed tensor per pair, ``[flatten(x) | z]`` (:func:`ganzoo.nets.encoders.pack_pair`), so every
  loss, penalty (the WGAN-GP penalty interpolates image and code together) and D-input trick works on pairs.
  :meth:`critic_batches` makes the two batches of pairs; E is frozen in the critic step like G.
- G and E are one player: E's parameters are a second group of G's optimizer. Their step uses the loss's own
  D terms with the two batches' roles swapped (the paper's "inverted labels", section 3.4): D's real term on
  (G(z), z) and its fake term on (x, E(x)). With ``loss=nonsaturating`` that is the non-saturating objective for
  both G and E; with ``loss=wgan_gp`` it is -D(G(z), z) + D(x, E(x)) (penalties belong to D and are left out).
  Losses without separate real and fake terms (loss_sensitive, cramer) are refused.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ganzoo.losses import AdversarialLoss
from ganzoo.models.base import AdversarialModule, Terms
from ganzoo.nets.encoders import pack_pair
from ganzoo.tricks.base import StepView

PRIORS = ("uniform", "gaussian")


def check_swappable_loss(loss: AdversarialLoss, model: str) -> None:
    """The losses whose D terms can train the other player with real and fake swapped (inverted labels)."""
    if loss.n_fakes != 1 or loss.g_uses_real or type(loss).critic_terms is not AdversarialLoss.critic_terms:
        raise ValueError(
            f"model={model} trains its encoder with the loss's real and fake terms swapped, which "
            f"{type(loss).__name__} does not have separately; use loss=nonsaturating, minimax, lsgan, hinge, "
            f"wgan or wgan_gp"
        )


class BiGAN(AdversarialModule):
    """G(z) and E(x) against D(x, z). ``discriminator`` reads packed pairs (e.g.
    :class:`ganzoo.nets.encoders.JointMLPDiscriminator`); ``encoder`` maps images to ``latent_dim`` codes."""

    latent_is_gaussian = False  # D scores (x, z) pairs, and the prior may be uniform

    def __init__(self, *args: Any, encoder: nn.Module, prior: str = "uniform", **kwargs: Any) -> None:
        """The arguments of :class:`AdversarialModule`, plus E and the prior of z: ``uniform`` on [-1, 1]^d
        (the paper's MNIST setting) or ``gaussian`` N(0, I)."""
        if prior not in PRIORS:
            raise ValueError(f"model.prior must be one of {PRIORS}, got {prior!r}")
        self.prior = prior  # before the base __init__, which draws the fixed noise
        loss = kwargs.get("loss")
        if loss is not None:
            check_swappable_loss(loss, "bigan")
        super().__init__(*args, **kwargs)
        self.encoder = encoder

    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        if self.prior == "gaussian":
            return super().sample_latent(n, generator)
        device = self.device if generator is None else "cpu"
        return torch.rand(n, self.latent_dim, device=device, generator=generator) * 2 - 1

    # ---- hooks of the base loop ----------------------------------------------------------------------------
    def critic_batches(self, batch: Any, fake_cond: Tensor | None) -> tuple[Tensor, Tensor]:
        """(x, E(x)) pairs against (G(z), z) pairs, packed; no graph through G or E."""
        x = self.real_inputs(batch)
        with torch.no_grad():
            z = self.sample_latent(x.shape[0])
            return pack_pair(x, self.encoder(x)), pack_pair(self.generate(z), z)

    def generator_terms(self, batch: Any) -> Terms:
        """G and E together: the loss's D terms with real and fake swapped (inverted labels)."""
        x = self.real_inputs(batch)
        z = self.sample_latent(x.shape[0])
        encoded = self.d_input(pack_pair(x, self.encoder(x)))
        generated = self.d_input(pack_pair(self.generate(z), z))
        swapped = self.loss.d_terms(self.discriminate(generated), self.discriminate(encoded))
        terms = {"adv_generated": swapped["real"], "adv_encoded": swapped["fake"]}
        view = StepView(batch, encoded, generated, None, None, self.discriminate)
        return self.trick_g_terms(view, terms)

    def generator_player(self) -> list[nn.Module]:
        return [self.generator, self.encoder]  # G and E are one player, in G's optimizer with G's settings

    # ---- the encoder as a feature extractor --------------------------------------------------------------
    def extract_features(self, images: Tensor) -> Tensor:
        """E(x), the BiGAN feature of each image (call through :func:`ganzoo.features.extract`)."""
        return self.encoder(images)

    def reconstruct(self, images: Tensor) -> Tensor:
        """G(E(x)): what G makes of the code E reads from x (no reconstruction loss trains this)."""
        return self.generate(self.encoder(images))

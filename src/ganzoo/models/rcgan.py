"""Recurrent GANs for sequences: RGAN and its conditional form RCGAN (Esteban et al. 2017, "Real-valued
(Medical) Time Series Generation with Recurrent Conditional GANs").

Both use the base loop unchanged. What differs is the latent: fresh noise at every time step, shape
(n, seq_len, latent_dim) (section 2.1), read by an LSTM generator. The LSTM discriminator scores every
step (B, T); the losses average over all scores, which is the paper's per-step cross-entropy. RCGAN
conditions G and D on the class label (section 2.2), fed to both at every step.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ganzoo.losses import AdversarialLoss
from ganzoo.models.base import AdversarialModule, OptimizerFactory
from ganzoo.models.cgan import ClassConditional
from ganzoo.nets.recurrent import LSTMDiscriminator, SequenceGenerator

# Critic ``norm`` settings that hold for an LSTM critic without any normalisation layer: nothing couples the
# samples of a batch, which is what ``loss=wgan_gp`` asks for when it sets ``norm: layer``.
BATCH_INDEPENDENT_NORMS = ("none", "layer")


class CriticLSTM(LSTMDiscriminator):
    """:class:`LSTMDiscriminator` that accepts the ``norm`` key shared by ganzoo's critic configs.

    ``loss=wgan_gp`` sets ``model.discriminator.norm: layer`` so that the gradient penalty stays per
    sample; this critic has no normalisation layer, so ``none`` and ``layer`` both hold as they are, and
    ``batch`` (which it cannot honour) is an error.
    """

    def __init__(self, *args: Any, norm: str = "none", **kwargs: Any) -> None:
        if norm not in BATCH_INDEPENDENT_NORMS:
            raise ValueError(f"model.discriminator.norm must be one of {BATCH_INDEPENDENT_NORMS}, got {norm!r}")
        super().__init__(*args, **kwargs)


LATENTS = ("per_step", "per_sequence")


class RGAN(AdversarialModule):
    """Recurrent GAN (Esteban et al. 2017, section 2.1): G maps per-step noise z_1..z_T to x_1..x_T.

    The latent of one sample has the generator's ``latent_shape`` (seq_len, latent_dim). ``latent``:
    ``per_step`` (the paper: fresh noise at every step) or ``per_sequence`` (one N(0, I) vector repeated at
    every step: the sequence's global factors, frequency and amplitude here, then live in a latent_dim-d
    space that a 2-D sweep can move through, and no step-level noise reaches the output).
    """

    def __init__(
        self,
        generator: SequenceGenerator,
        discriminator: LSTMDiscriminator,
        loss: AdversarialLoss,
        latent_dim: int,
        optimizer_g: OptimizerFactory,
        optimizer_d: OptimizerFactory,
        latent: str = "per_step",
        **kwargs: Any,
    ) -> None:
        if generator.latent_shape[1] != latent_dim:
            raise ValueError(f"generator reads {generator.latent_shape[1]} noise features per step, not {latent_dim}")
        if latent not in LATENTS:
            raise ValueError(f"model.latent must be one of {LATENTS}, got {latent!r}")
        if getattr(generator, "one_latent_per_sequence", False) and latent != "per_sequence":
            raise ValueError(
                f"{type(generator).__name__} reads one latent vector per sequence, not model.latent={latent}: "
                "set model.latent=per_sequence"
            )
        self.latent = latent  # before the base builds its fixed noise with sample_latent
        super().__init__(generator, discriminator, loss, latent_dim, optimizer_g, optimizer_d, **kwargs)

    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """N(0, I) noise (n, seq_len, latent_dim): fresh at every step, or one draw repeated (``per_sequence``)."""
        device = self.device if generator is None else "cpu"
        seq_len, width = self.generator.latent_shape
        if self.latent == "per_sequence":
            z = torch.randn(n, 1, width, device=device, generator=generator)
            return z.expand(n, seq_len, width).contiguous()
        return torch.randn(n, seq_len, width, device=device, generator=generator)


class RCGAN(ClassConditional, RGAN):
    """Recurrent conditional GAN (Esteban et al. 2017, section 2.2): G and D both read the class label.

    Training fakes take the labels of the real batch; :meth:`sample` without labels draws them uniformly.
    The progress figure uses fixed labels, ``fixed_labels`` (equal blocks of each class, in order), kept
    in a buffer so they are saved with the fixed noise.
    """

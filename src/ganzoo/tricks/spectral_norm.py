"""Spectral normalisation (Miyato et al. 2018, "Spectral Normalization for Generative Adversarial Networks").

Every linear and convolution weight W of D is divided by its largest singular value, estimated by power
iteration (one step per forward pass, persistent vectors u, v saved as buffers), which bounds D's Lipschitz
constant by the product of the other layers'. Uses ``torch.nn.utils.parametrizations.spectral_norm``; a
convolution's weight is normalised as the (out, in * k * k) matrix, as in the paper.

Knobs: ``n_power_iterations`` (>= 1), ``generator`` (also normalise G, as SAGAN does; default false).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

from ganzoo.tricks.base import Trick

if TYPE_CHECKING:
    from ganzoo.models.base import AdversarialModule

NORMALISED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


class SpectralNorm(Trick):
    setup_order = 1  # after structural changes (minibatch discrimination adds a linear layer), before copies

    def __init__(self, n_power_iterations: int = 1, generator: bool = False) -> None:
        super().__init__()
        if n_power_iterations < 1:
            raise ValueError(f"trick.spectral_norm.n_power_iterations must be >= 1, got {n_power_iterations}")
        self.n_power_iterations, self.generator = n_power_iterations, generator

    def setup(self, module: AdversarialModule) -> None:
        nets = {"D": module.discriminator} | ({"G": module.generator} if self.generator else {})
        for player, net in nets.items():
            layers = [m for m in net.modules() if isinstance(m, NORMALISED) and not parametrize.is_parametrized(m)]
            if not layers:
                raise ValueError(f"trick.spectral_norm found no linear or convolution layer in {player}")
            for layer in layers:
                spectral_norm(layer, n_power_iterations=self.n_power_iterations)

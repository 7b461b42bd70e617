"""DCGAN (Radford et al. 2015): strided (transposed) convolutions, norm + ReLU / LeakyReLU, tanh output.

Works for any square size s0 * 2**k with a base size s0 in 4..7 (28 = 7 * 4, 32 = 4 * 8, 64 = 4 * 16).
"""

from __future__ import annotations

import torch
from torch import nn

from ganzoo.nets.layers import init_dcgan_weights, norm_layer


def upsampling_plan(image_size: int) -> tuple[int, int]:
    """(base size, number of stride-2 stages) for a square image size, or a clear error."""
    for stages in range(1, 8):
        base, rest = divmod(image_size, 2**stages)
        if rest == 0 and 4 <= base <= 7:
            return base, stages
    raise ValueError(
        f"DCGAN nets cannot produce image_size={image_size}: it must be b * 2**k with b in 4..7 and k >= 1 "
        f"(e.g. 28, 32, 64)"
    )


def _check_hidden(hidden: int | None) -> None:
    if hidden is not None and hidden < 1:
        raise ValueError(f"hidden (a fully connected layer's width) must be >= 1 or null, got {hidden}")


class DCGANGenerator(nn.Module):
    """``hidden``: an extra fully connected layer (linear, norm, ReLU) before the projection to the base
    resolution, as in InfoGAN's MNIST generator (FC 1024 -> FC 7x7x128 -> deconvs; Chen et al. 2016, C.1)."""

    def __init__(
        self,
        latent_dim: int,
        channels: int = 1,
        image_size: int = 28,
        width: int = 64,
        norm: str = "batch",
        hidden: int | None = None,
    ) -> None:
        super().__init__()
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")
        _check_hidden(hidden)
        self.base, stages = upsampling_plan(image_size)
        top = width * 2 ** (stages - 1)  # channels at the base resolution, halved at each stage
        stem: list[nn.Module] = []
        if hidden is not None:
            stem = [nn.Linear(latent_dim, hidden, bias=False), norm_layer(norm, hidden, spatial=False), nn.ReLU(True)]
            latent_dim = hidden
        self.project = nn.Sequential(
            *stem,
            nn.Linear(latent_dim, top * self.base * self.base, bias=False),
            nn.Unflatten(1, (top, self.base, self.base)),
            norm_layer(norm, top, spatial=True),
            nn.ReLU(True),
        )
        blocks: list[nn.Module] = []
        ch = top
        for _ in range(stages - 1):
            blocks += [
                nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False),
                norm_layer(norm, ch // 2, spatial=True),
                nn.ReLU(True),
            ]
            ch //= 2
        blocks += [nn.ConvTranspose2d(ch, channels, 4, 2, 1), nn.Tanh()]
        self.blocks = nn.Sequential(*blocks)
        init_dcgan_weights(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.project(z))


class DCGANDiscriminator(nn.Module):
    """Strided convs down to the base resolution, then one linear logit. No norm on the first layer
    (as in DCGAN); use ``norm='layer'`` (or 'none') for critics trained with a gradient penalty. ``hidden``: a
    fully connected layer (linear, norm, leaky ReLU) before the logit, as in InfoGAN's MNIST D (its output is the
    body's features a Q head reads)."""

    def __init__(
        self, channels: int = 1, image_size: int = 28, width: int = 64, norm: str = "batch", hidden: int | None = None
    ) -> None:
        super().__init__()
        _check_hidden(hidden)
        base, stages = upsampling_plan(image_size)
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        ch = width
        for _ in range(stages - 1):
            layers += [
                nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=norm == "none"),
                norm_layer(norm, ch * 2, spatial=True),
                nn.LeakyReLU(0.2, True),
            ]
            ch *= 2
        layers.append(nn.Flatten())
        features = ch * base * base
        if hidden is not None:
            layers += [
                nn.Linear(features, hidden, bias=norm == "none"),
                norm_layer(norm, hidden, spatial=False),
                nn.LeakyReLU(0.2, True),
            ]
            features = hidden
        layers.append(nn.Linear(features, 1))
        self.net = nn.Sequential(*layers)
        init_dcgan_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)

"""Fully connected G and D, as in the original GAN paper family (Goodfellow et al. 2014)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from ganzoo.nets.layers import norm_layer


class MLPGenerator(nn.Module):
    """z -> hidden layers (LeakyReLU, optional norm) -> tanh image of shape (channels, size, size)."""

    def __init__(
        self,
        latent_dim: int,
        channels: int = 1,
        image_size: int = 28,
        hidden: Sequence[int] = (256, 512, 1024),
        norm: str = "batch",
    ) -> None:
        super().__init__()
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")
        self.shape = (channels, image_size, image_size)
        layers: list[nn.Module] = []
        width = latent_dim
        for out in hidden:
            layers += [nn.Linear(width, out), norm_layer(norm, out, spatial=False), nn.LeakyReLU(0.2)]
            width = out
        layers += [nn.Linear(width, math.prod(self.shape)), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(z.shape[0], *self.shape)


class MLPDiscriminator(nn.Module):
    """Flattened image -> hidden layers (LeakyReLU, optional norm) -> one logit per sample."""

    def __init__(
        self,
        channels: int = 1,
        image_size: int = 28,
        hidden: Sequence[int] = (512, 256),
        norm: str = "none",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = channels * image_size * image_size
        for out in hidden:
            layers += [nn.Linear(width, out), norm_layer(norm, out, spatial=False), nn.LeakyReLU(0.2)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = out
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)

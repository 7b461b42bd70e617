"""Nets that read images into codes: the encoders of BiGAN and the adversarial autoencoder, and BiGAN's joint D.

- :class:`MLPEncoder`: flattened image -> hidden layers -> a linear code (BiGAN's E, the AAE's q(z|x)).
- :class:`JointMLPDiscriminator`: BiGAN's D(x, z) (Donahue et al. 2016, section 3; their permutation-invariant
  MNIST nets): x goes through its own hidden layers, the code is concatenated to those features, and joint layers
  give one logit. It reads one *packed* tensor ``[flatten(x) | z]`` (see :func:`pack_pair`), so every loss and
  penalty of ``ganzoo.losses`` works on pairs unchanged: the WGAN-GP penalty interpolates x and z together.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ganzoo.nets.toy import _hidden_layers


def pack_pair(x: Tensor, z: Tensor) -> Tensor:
    """``[flatten(x) | z]``, (B, prod(x.shape[1:]) + z.shape[1]): the one tensor a joint D reads."""
    return torch.cat([x.flatten(1), z.to(x.dtype)], dim=1)


class MLPEncoder(nn.Module):
    """Image (B, C, H, W) -> hidden layers (linear, norm, activation) -> linear code (B, code_dim)."""

    def __init__(
        self,
        code_dim: int,
        channels: int = 1,
        image_size: int = 28,
        hidden: Sequence[int] = (1024, 1024),
        norm: str = "batch",
        activation: str = "leaky_relu",
    ) -> None:
        super().__init__()
        if code_dim < 1:
            raise ValueError(f"an encoder's code_dim must be >= 1, got {code_dim}")
        layers, width = _hidden_layers(channels * image_size * image_size, hidden, norm, activation)
        self.net = nn.Sequential(nn.Flatten(), *layers, nn.Linear(width, code_dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class JointMLPDiscriminator(nn.Module):
    """BiGAN's D(x, z) on packed pairs: x -> ``x_hidden`` layers; [features | z] -> ``joint_hidden`` -> logit.

    ``norm`` applies to the joint layers only (the first layer on x has none, as in DCGAN); ``dropout`` follows
    every hidden layer (the BiGAN paper's D uses dropout on MNIST).
    """

    def __init__(
        self,
        latent_dim: int,
        channels: int = 1,
        image_size: int = 28,
        x_hidden: Sequence[int] = (1024,),
        joint_hidden: Sequence[int] = (1024,),
        norm: str = "none",
        activation: str = "leaky_relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if latent_dim < 1:
            raise ValueError(f"model.latent_dim must be >= 1, got {latent_dim}")
        self.x_dim, self.latent_dim = channels * image_size * image_size, latent_dim
        x_layers, x_width = _hidden_layers(self.x_dim, x_hidden, "none", activation, dropout)
        joint_layers, width = _hidden_layers(x_width + latent_dim, joint_hidden, norm, activation, dropout)
        self.x_net = nn.Sequential(*x_layers)
        self.net = nn.Sequential(*joint_layers, nn.Linear(width, 1))

    def forward(self, pair: Tensor) -> Tensor:
        if pair.dim() != 2 or pair.shape[1] != self.x_dim + self.latent_dim:
            raise ValueError(
                f"JointMLPDiscriminator reads packed pairs (B, {self.x_dim} + {self.latent_dim}), got "
                f"{tuple(pair.shape)}: pack them with ganzoo.nets.encoders.pack_pair"
            )
        x, z = pair.split([self.x_dim, self.latent_dim], dim=1)
        return self.net(torch.cat([self.x_net(x), z], dim=1)).squeeze(1)

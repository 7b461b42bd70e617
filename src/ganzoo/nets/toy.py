"""Small fully connected G and D on flat vectors, for the toy data sets (ring, grid, curves).

Sized after the 2-D mixture experiment of the unrolled GAN paper (Metz et al. 2016, appendix): G and D with
two hidden layers of 128 ReLU units, a linear output for G (the data are not bounded to [-1, 1]) and one logit
for D. The image MLPs of ``ganzoo.nets.mlp`` reshape to images; these keep samples as (N, dim) vectors.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ganzoo.nets.layers import norm_layer

ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(0.2), "tanh": nn.Tanh}


def _activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def _hidden_layers(
    width: int, hidden: Sequence[int], norm: str, activation: str, dropout: float = 0.0
) -> tuple[list[nn.Module], int]:
    """Linear -> norm -> activation (-> dropout) per entry of ``hidden``; returns the layers and the last width."""
    if any(h < 1 for h in hidden):
        raise ValueError(f"hidden layer widths must be >= 1, got {list(hidden)}")
    layers: list[nn.Module] = []
    for out in hidden:
        layers += [nn.Linear(width, out), norm_layer(norm, out, spatial=False), _activation(activation)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = out
    return layers, width


class VectorGenerator(nn.Module):
    """z (N, latent_dim) -> hidden layers -> linear output (N, dim)."""

    def __init__(
        self,
        latent_dim: int,
        dim: int,
        hidden: Sequence[int] = (128, 128),
        norm: str = "none",
        activation: str = "relu",
    ) -> None:
        super().__init__()
        if latent_dim < 1 or dim < 1:
            raise ValueError(f"latent_dim and dim must be >= 1, got {latent_dim} and {dim}")
        layers, width = _hidden_layers(latent_dim, hidden, norm, activation)
        self.net = nn.Sequential(*layers, nn.Linear(width, dim))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class VectorDiscriminator(nn.Module):
    """x (N, dim) -> hidden layers -> one logit per sample (N,).

    Laid out like ``MLPDiscriminator``: one ``net`` Sequential whose last module is the linear logit layer,
    so tricks that reach into D's last features treat both alike. ``input_scale`` multiplies the input first
    (the unrolled GAN paper divides its ring data by 4 to bring it to about [-1, 1]).
    """

    def __init__(
        self,
        dim: int,
        hidden: Sequence[int] = (128, 128),
        norm: str = "none",
        activation: str = "relu",
        dropout: float = 0.0,
        input_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        layers, width = _hidden_layers(dim, hidden, norm, activation, dropout)
        self.input_scale = input_scale
        self.net = nn.Sequential(*layers, nn.Linear(width, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * self.input_scale).squeeze(1)

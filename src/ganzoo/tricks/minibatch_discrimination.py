"""Minibatch discrimination (Salimans et al. 2016, "Improved Techniques for Training GANs", section 3.2).

D sees how close each sample is to the others of its batch, so a generator that collapses to one mode is
easy to spot. With f(x_i) in R^A the features entering D's last linear layer and a learned tensor T in
R^(A x B x C): M_i = f(x_i) T in R^(B x C), c_b(x_i, x_j) = exp(-||M_i,b - M_j,b||_1), and
o(x_i)_b = sum_j c_b(x_i, x_j) (over the whole batch, as in the paper). The last layer then reads
[f(x_i), o(x_i)]. D scores real and fake batches separately, as in the paper, so o compares like with like.

``setup`` replaces D's last ``nn.Linear(A, k)`` by ``Sequential(MinibatchFeatures, Linear(A + B, k))``, the
old weights copied into the first A columns. Knobs: ``kernels`` (B), ``kernel_dim`` (C).
D's features before the last layer must be (N, A): per-step sequence critics are not supported.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from ganzoo.nets.layers import last_linear, replace_module
from ganzoo.tricks.base import Trick, check_positive

if TYPE_CHECKING:
    from ganzoo.models.base import AdversarialModule


class MinibatchFeatures(nn.Module):
    """f (N, A) -> [f, o] (N, A + kernels): the minibatch similarity features of Salimans et al."""

    def __init__(self, in_features: int, kernels: int, kernel_dim: int) -> None:
        super().__init__()
        self.kernels, self.kernel_dim = kernels, kernel_dim
        self.T = nn.Parameter(torch.randn(in_features, kernels * kernel_dim) / math.sqrt(in_features))

    def forward(self, f: Tensor) -> Tensor:
        if f.dim() != 2:
            shape = tuple(f.shape)
            raise ValueError(f"trick.minibatch_disc needs D features (N, A) before D's last layer, got {shape}")
        m = (f @ self.T).view(len(f), self.kernels, self.kernel_dim).transpose(0, 1)  # (kernels, N, C)
        # L1 distances of every pair, per kernel; cdist avoids the (N, N, kernels, C) difference tensor
        # (about 2.5x faster at N=256) and supports the double backward a gradient penalty needs.
        l1 = torch.cdist(m, m, p=1)  # (kernels, N, N)
        return torch.cat([f, torch.exp(-l1).sum(2).T], dim=1)


class MinibatchDiscrimination(Trick):
    setup_order = 0

    def __init__(self, kernels: int = 50, kernel_dim: int = 5) -> None:
        super().__init__()
        check_positive("minibatch_disc", kernels=kernels, kernel_dim=kernel_dim)
        self.kernels, self.kernel_dim = kernels, kernel_dim

    def setup(self, module: AdversarialModule) -> None:
        name, old = last_linear(module.discriminator)
        new = nn.Linear(old.in_features + self.kernels, old.out_features, bias=old.bias is not None)
        with torch.no_grad():  # start from D's own last layer; the new columns read the similarity features
            new.weight[:, : old.in_features] = old.weight
            if old.bias is not None:
                new.bias.copy_(old.bias)
        features = MinibatchFeatures(old.in_features, self.kernels, self.kernel_dim)
        replace_module(module.discriminator, name, nn.Sequential(features, new).to(old.weight.device))

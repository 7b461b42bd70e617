"""Nets for the conditional and code-driven GANs: CGAN, InfoGAN and the semi-supervised GAN.

- CGAN (Mirza & Osindero 2014): G reads ``[z, one_hot(y)]``; the MLP D reads ``[x, one_hot(y)]``; the conv D is a
  projection discriminator (Miyato & Koyama 2018, "cGANs with Projection Discriminator"), which adds
  ``<embed(y), phi(x)>`` to the unconditional score. Each is a subclass of the unconditional net.
- InfoGAN (Chen et al. 2016): the Q head (:class:`QHead`) reads the features of an unconditional D's body;
  :func:`critic_features` / :func:`critic_score` split such a D into body and adversarial head.
- Improved-GAN (Salimans et al. 2016): :class:`NoisyMLPClassifier`, a K-class D with Gaussian noise on its layers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm as apply_weight_norm

from ganzoo.nets.conv import DCGANDiscriminator, DCGANGenerator
from ganzoo.nets.layers import norm_layer
from ganzoo.nets.mlp import MLPDiscriminator, MLPGenerator


def _check_classes(num_classes: int) -> None:
    if num_classes < 2:
        raise ValueError(f"model.num_classes must be >= 2 for a conditional net, got {num_classes}")


def with_one_hot(inputs: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """``inputs`` flattened to (B, F) with the one-hot of ``labels`` appended: (B, F + num_classes)."""
    return torch.cat([inputs.flatten(1), F.one_hot(labels.long(), num_classes).to(inputs.dtype)], dim=1)


# ---- CGAN ------------------------------------------------------------------------------------------------
class OneHotLatent:
    """Mixin for a generator class that reads ``[z, one_hot(y)]``: it is built with ``latent_dim + num_classes``
    inputs and called as ``forward(z, labels)``. Put it first: ``class G(OneHotLatent, MLPGenerator)``."""

    def __init__(self, latent_dim: int, num_classes: int, **kwargs) -> None:
        _check_classes(num_classes)
        super().__init__(latent_dim + num_classes, **kwargs)
        self.num_classes = num_classes

    def forward(self, z: Tensor, labels: Tensor) -> Tensor:
        return super().forward(with_one_hot(z, labels, self.num_classes))


class ConditionalMLPGenerator(OneHotLatent, MLPGenerator):
    """CGAN generator (Mirza & Osindero 2014, section 4.1): :class:`MLPGenerator` on ``[z, one_hot(y)]``."""


class ConditionalDCGANGenerator(OneHotLatent, DCGANGenerator):
    """:class:`DCGANGenerator` on ``[z, one_hot(y)]``: the label enters through the first (linear) projection."""


class ConditionalMLPDiscriminator(MLPDiscriminator):
    """CGAN discriminator (Mirza & Osindero 2014): :class:`MLPDiscriminator` on ``[flatten(x), one_hot(y)]``."""

    def __init__(self, num_classes: int, **kwargs) -> None:
        _check_classes(num_classes)
        super().__init__(**kwargs)
        self.num_classes = num_classes
        first = self.net[1]  # net = Flatten, Linear, ...: widen the first linear layer by the one-hot
        self.net[1] = nn.Linear(first.in_features + num_classes, first.out_features)

    def forward(self, x: Tensor, labels: Tensor) -> Tensor:
        return self.net[1:](with_one_hot(x, labels, self.num_classes)).squeeze(1)


class ProjectionDiscriminator(DCGANDiscriminator):
    """DCGAN critic with a projection head (Miyato & Koyama 2018, eq. 3): ``psi(phi(x)) + <embed(y), phi(x)>``.

    ``phi`` is the conv body, ``psi`` the unconditional linear head. The label changes the score through an
    inner product, not the input, so the critic stays one scalar per sample (the gradient penalty needs that).
    """

    def __init__(self, num_classes: int, **kwargs) -> None:
        _check_classes(num_classes)
        super().__init__(**kwargs)
        self.embed = nn.Embedding(num_classes, self.net[-1].in_features)
        nn.init.normal_(self.embed.weight, 0.0, 0.02)  # the DCGAN scale of the other weights

    def forward(self, x: Tensor, labels: Tensor) -> Tensor:
        features = self.net[:-1](x)
        projection = (self.embed(labels) * features).sum(1, keepdim=True)
        # (B, 1) -> (B,); a critic widened to a vector (loss=cramer) gets the projection on every component.
        return (self.net[-1](features) + projection).squeeze(1)


# ---- InfoGAN ---------------------------------------------------------------------------------------------
def _check_splittable(discriminator: nn.Module) -> None:
    net = getattr(discriminator, "net", None)
    if not (isinstance(net, nn.Sequential) and isinstance(net[-1], nn.Linear) and net[-1].out_features == 1):
        raise ValueError(
            f"model.discriminator ({type(discriminator).__name__}) must hold `net`, an nn.Sequential ending in "
            f"Linear(features, 1), to share its body with a Q head; use MLPDiscriminator or DCGANDiscriminator"
        )


def critic_feature_dim(discriminator: nn.Module) -> int:
    """Width of the features an unconditional D (MLP or DCGAN) computes before its final linear score."""
    _check_splittable(discriminator)
    return discriminator.net[-1].in_features


def critic_features(discriminator: nn.Module, x: Tensor) -> Tensor:
    """The body of an unconditional D: every layer but the final linear score, (B, features)."""
    return discriminator.net[:-1](x)


def critic_score(discriminator: nn.Module, features: Tensor) -> Tensor:
    """The adversarial head of an unconditional D on its body's features: one score per sample, (B,)."""
    return discriminator.net[-1](features).squeeze(1)


class QHead(nn.Module):
    """InfoGAN's Q head (Chen et al. 2016, appendix C.1: FC 128, BN, leaky ReLU, FC to the code parameters).

    Reads D's body features; returns the categorical code's logits (B, K) and, per continuous code, the mean
    and log-variance of a factored Gaussian (B, C) each.
    """

    def __init__(
        self, in_features: int, num_categories: int, num_continuous: int, hidden: int = 128, norm: str = "batch"
    ) -> None:
        super().__init__()
        if hidden < 1:
            raise ValueError(f"model.q_head.hidden must be >= 1, got {hidden}")
        self.num_categories, self.num_continuous = num_categories, num_continuous
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden),
            norm_layer(norm, hidden, spatial=False),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, num_categories + 2 * num_continuous),
        )

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        out = self.net(features)
        return out.split([self.num_categories, self.num_continuous, self.num_continuous], dim=1)


# ---- Improved-GAN semi-supervised D ----------------------------------------------------------------------
class GaussianNoise(nn.Module):
    """Adds N(0, std^2) noise in training mode only (Salimans et al. 2016 regularise D this way)."""

    def __init__(self, std: float) -> None:
        super().__init__()
        if std < 0:
            raise ValueError(f"Gaussian noise std must be >= 0, got {std}")
        self.std = std

    def forward(self, x: Tensor) -> Tensor:
        return x + self.std * torch.randn_like(x) if self.training and self.std > 0 else x

    def extra_repr(self) -> str:
        return f"std={self.std}"


class NoisyMLPClassifier(nn.Module):
    """The MNIST D of Improved-GAN (Salimans et al. 2016, section 5 and their code): fully connected layers
    1000-500-250-250-250, Gaussian noise on the input (std 0.3) and on every layer's output (std 0.5),
    weight normalisation, K raw logits (no softmax: losses take logits).

    :meth:`features` is the last hidden layer, the layer G matches the statistics of (feature matching).
    """

    def __init__(
        self,
        num_classes: int = 10,
        channels: int = 1,
        image_size: int = 28,
        hidden: Sequence[int] = (1000, 500, 250, 250, 250),
        input_noise: float = 0.3,
        hidden_noise: float = 0.5,
        weight_norm: bool = True,
        norm: str = "none",
    ) -> None:
        super().__init__()
        _check_classes(num_classes)
        if not hidden:
            raise ValueError("model.discriminator.hidden must list at least one layer width")

        def linear(n_in: int, n_out: int) -> nn.Module:
            layer = nn.Linear(n_in, n_out)
            return apply_weight_norm(layer) if weight_norm else layer

        layers: list[nn.Module] = [nn.Flatten(), GaussianNoise(input_noise)]
        width = channels * image_size * image_size
        for i, out in enumerate(hidden):
            if i > 0:
                layers.append(GaussianNoise(hidden_noise))
            layers += [linear(width, out), norm_layer(norm, out, spatial=False), nn.LeakyReLU(0.2)]
            width = out
        self.body = nn.Sequential(*layers)
        self.head = nn.Sequential(GaussianNoise(hidden_noise), linear(width, num_classes))

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))

"""Network shapes and the image sizes DCGAN nets can and cannot produce."""

from __future__ import annotations

import pytest
import torch

from ganzoo.nets.conv import DCGANDiscriminator, DCGANGenerator
from ganzoo.nets.layers import norm_layer
from ganzoo.nets.mlp import MLPDiscriminator, MLPGenerator


@pytest.mark.parametrize(("size", "channels"), [(28, 1), (32, 3), (64, 1)])
def test_dcgan_generator_and_discriminator_shapes(size, channels):
    g = DCGANGenerator(latent_dim=16, channels=channels, image_size=size, width=8)
    d = DCGANDiscriminator(channels=channels, image_size=size, width=8)
    images = g(torch.randn(5, 16))
    assert images.shape == (5, channels, size, size)
    assert images.abs().max() <= 1  # tanh output, the data's [-1, 1] range
    assert d(images).shape == (5,)


def test_dcgan_rejects_sizes_it_cannot_produce():
    with pytest.raises(ValueError, match=r"image_size=30.*b \* 2\*\*k"):
        DCGANGenerator(latent_dim=8, image_size=30)


def test_mlp_shapes_and_bad_latent():
    g, d = MLPGenerator(latent_dim=10, hidden=(32,)), MLPDiscriminator(hidden=(32,))
    assert g(torch.randn(4, 10)).shape == (4, 1, 28, 28)
    assert d(torch.randn(4, 1, 28, 28)).shape == (4,)
    with pytest.raises(ValueError, match="latent_dim must be >= 1"):
        MLPGenerator(latent_dim=0)


def test_layer_norm_critic_is_per_sample():
    """With norm='layer' a sample's score does not depend on the rest of the batch (gradient penalty needs it)."""
    torch.manual_seed(0)
    d = DCGANDiscriminator(image_size=28, width=8, norm="layer").train()
    x = torch.randn(6, 1, 28, 28)
    assert torch.allclose(d(x)[:2], d(x[:2]), atol=1e-5)
    bn = DCGANDiscriminator(image_size=28, width=8, norm="batch").train()
    assert not torch.allclose(bn(x)[:2], bn(x[:2]), atol=1e-5)


def test_unknown_norm_is_an_error():
    with pytest.raises(ValueError, match="unknown norm 'group'"):
        norm_layer("group", 8, spatial=True)

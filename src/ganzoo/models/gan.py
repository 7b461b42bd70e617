"""Unconditional GAN: the base loop as it is. ``model=gan`` gives it MLP nets, ``model=dcgan`` conv nets."""

from ganzoo.models.base import AdversarialModule


class GAN(AdversarialModule):
    """G(z) against D(x); every behaviour comes from :class:`AdversarialModule` and the chosen loss."""

from ganzoo.models.base import AdversarialModule
from ganzoo.models.gan import GAN

__all__ = ["GAN", "AdversarialModule"]

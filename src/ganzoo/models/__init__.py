from ganzoo.models.base import AdversarialModule
from ganzoo.models.cgan import CGAN
from ganzoo.models.gan import GAN
from ganzoo.models.infogan import InfoGAN
from ganzoo.models.ssgan import SSGAN

__all__ = ["CGAN", "GAN", "SSGAN", "AdversarialModule", "InfoGAN"]

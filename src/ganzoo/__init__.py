"""ganzoo: classic GAN variants as Lightning modules, composed from Hydra configs."""

__version__ = "0.1.0"

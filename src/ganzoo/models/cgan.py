"""Conditional GAN (Mirza & Osindero 2014, "Conditional Generative Adversarial Nets"): G(z, y) against D(x, y).

The base loop already threads a condition through G and D (:meth:`AdversarialModule.conditions`); this
variant says what it is. Training fakes take the labels of the real batch (so the fake label distribution is
the data's); :meth:`sample` without labels draws them uniformly; the progress grid has one row per class.
``model=cgan`` uses MLP nets with the one-hot label concatenated to both inputs, ``model=dcgan_cgan`` DCGAN
nets with a one-hot input to G and a projection discriminator.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ganzoo.models.base import AdversarialModule


class ClassConditional:
    """Mixin for class-label conditioning (CGAN, RCGAN): batches are (x, labels), training fakes take the
    real batch's labels, sampling draws them uniformly. ``fixed_labels`` (equal blocks of each class, in
    order) is a buffer, so the progress figures keep their labels across resumes; with
    ``n_fixed_samples = 10 * num_classes`` each row of an image grid is one class. Put it before the
    :class:`AdversarialModule` subclass it conditions: ``class CGAN(ClassConditional, AdversarialModule)``."""

    def __init__(self, *args: Any, num_classes: int, **kwargs: Any) -> None:
        """The arguments of the module it is mixed into, plus the number of classes the nets embed."""
        if num_classes < 2:
            raise ValueError(f"model.num_classes must be >= 2 for a conditional model, got {num_classes}")
        super().__init__(*args, **kwargs)
        self.num_classes = num_classes
        n_fixed = len(self.fixed_noise)
        self.register_buffer("fixed_labels", torch.arange(n_fixed) * num_classes // n_fixed)

    def conditions(self, batch: Any) -> Tensor:
        """The batch's labels: a batch is (images, labels)."""
        return batch[1]

    def sample_conditions(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Uniform labels over the ``num_classes`` classes."""
        device = self.device if generator is None else "cpu"
        return torch.randint(self.num_classes, (n,), device=device, generator=generator)

    def sample_fixed(self) -> Tensor:
        return self.sample(latent=self.fixed_noise, cond=self.fixed_labels)

    def setup(self, stage: str) -> None:
        # Nets are built before the data: check that they embed as many classes as the data has.
        data_classes = getattr(self.trainer.datamodule, "num_classes", None)
        if data_classes is not None and data_classes != self.num_classes:
            raise ValueError(f"model.num_classes={self.num_classes} but the data has {data_classes} classes")


class CGAN(ClassConditional, AdversarialModule):
    """Class-conditional GAN: :class:`ClassConditional` on the base loop, with the nets of ``model=cgan``."""

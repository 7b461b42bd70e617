"""Instance noise (Sønderby et al. 2016, "Amortised MAP Inference for Image Super-resolution", section 3.4;
Arjovsky & Bottou 2017, "Towards Principled Methods for Training GANs", section 3).

Gaussian noise is added to every input of D, real and fake, in both players' steps, so the real and the
generated distributions overlap and D's gradients stay informative. Its standard deviation falls linearly
from ``sigma`` to 0 over the first ``anneal_steps`` generator iterations (``module.gen_step``) and stays 0.

Knobs: ``sigma`` (> 0, in data units: images are in [-1, 1]), ``anneal_steps`` (> 0).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ganzoo.tricks.base import Trick, check_positive

if TYPE_CHECKING:
    from ganzoo.models.base import AdversarialModule


class InstanceNoise(Trick):
    def __init__(self, sigma: float = 0.1, anneal_steps: int = 2000) -> None:
        super().__init__()
        check_positive("instance_noise", sigma=sigma, anneal_steps=anneal_steps)
        self.sigma, self.anneal_steps = sigma, anneal_steps

    def current_sigma(self, gen_step: int) -> float:
        return self.sigma * max(0.0, 1.0 - gen_step / self.anneal_steps)

    def d_input(self, module: AdversarialModule, x: Tensor) -> Tensor:
        sigma = self.current_sigma(module.gen_step)
        return x if sigma == 0 else x + sigma * torch.randn_like(x)

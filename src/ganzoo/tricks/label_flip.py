"""Label flipping noise (Chintala et al., "How to Train a GAN?" / ganhacks, tip 6: "make the labels noisy
for the discriminator").

In every critic step each of D's targets is flipped (t -> 1 - t) independently with probability ``p``:
a few real samples are labelled fake and a few fakes real, which keeps D from becoming over-confident.

Knobs: ``p`` in [0, 1) (0.05 by default). Needs a loss with targets (minimax, nonsaturating, lsgan).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ganzoo.tricks.base import Trick

if TYPE_CHECKING:
    from ganzoo.models.base import AdversarialModule


class LabelFlip(Trick):
    needs_targets = True

    def __init__(self, p: float = 0.05) -> None:
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"trick.label_flip.p must be in [0, 1), got {p}")
        self.p = p

    def d_targets(self, module: AdversarialModule, real_target: Tensor, fake_target: Tensor) -> tuple[Tensor, Tensor]:
        return self._flip(real_target), self._flip(fake_target)

    def _flip(self, target: Tensor) -> Tensor:
        flipped = torch.rand_like(target) < self.p
        return torch.where(flipped, 1 - target, target)

"""One-sided label smoothing (Salimans et al. 2016, "Improved Techniques for Training GANs", section 3.4).

D's positive targets become ``real_target`` (0.9) instead of 1; the negative (fake) targets stay 0, since
smoothing them too would move D's optimum towards the generator's samples (section 3.4).

Knobs: ``real_target`` in (0, 1]. Needs a loss with targets (minimax, nonsaturating, lsgan).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor

from ganzoo.tricks.base import Trick

if TYPE_CHECKING:
    from ganzoo.models.base import AdversarialModule


class LabelSmoothing(Trick):
    needs_targets = True

    def __init__(self, real_target: float = 0.9) -> None:
        super().__init__()
        if not 0 < real_target <= 1:
            raise ValueError(f"trick.label_smoothing.real_target must be in (0, 1], got {real_target}")
        self.real_target = real_target

    def d_targets(self, module: AdversarialModule, real_target: Tensor, fake_target: Tensor) -> tuple[Tensor, Tensor]:
        # Scales every positive target (a real one, or a fake one that label flipping made positive); zeros stay.
        return real_target * self.real_target, fake_target * self.real_target

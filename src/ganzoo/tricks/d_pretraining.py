"""Discriminator pre-training: the first ``steps`` critic steps train D alone, with no generator step.

Goodfellow et al. 2014 (Algorithm 1) train D for k steps per G step and discuss keeping D near its optimum;
ganhacks (tip 14) and the WGAN reference code (100 critic iterations at the start) train D more at first.
After the pre-training the loop alternates as usual (``model.n_critic`` / ``model.n_gen``).

Knobs: ``steps`` (>= 0): critic steps before the first generator step may follow one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ganzoo.tricks.base import Trick

if TYPE_CHECKING:
    from ganzoo.models.base import AdversarialModule


class DPretraining(Trick):
    def __init__(self, steps: int = 100) -> None:
        super().__init__()
        if steps < 0:
            raise ValueError(f"trick.d_pretrain.steps must be >= 0, got {steps}")
        self.steps = steps

    def generator_may_step(self, module: AdversarialModule) -> bool:
        # The loop asks after counting the critic step it has just done.
        return module.disc_step > self.steps

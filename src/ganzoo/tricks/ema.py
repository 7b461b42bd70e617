"""Exponential moving average of G's weights (Yazıcı et al. 2019, "The Unusual Effectiveness of Averaging in
GAN Training"; used by Karras et al.'s progressive GAN and StyleGAN).

After every generator step, theta_ema <- decay * theta_ema + (1 - decay) * theta (the first step copies
theta). Batch-norm statistics are averaged the same way. G keeps training on its raw weights; everything that
samples -- ``module.sample()``, the progress grids, metric callbacks, ``sample.py``, ``evaluate.py`` -- uses
the averaged copy. The copy is a submodule of this trick (``tricks.ema.average.*`` in the checkpoint).

Knobs: ``decay`` in (0, 1) (0.999 by default; the first steps' copy is rough until ~1 / (1 - decay) steps).
``start`` (generator iterations, 0 by default): until then the copy follows G exactly and the average begins
there, as SWA starts late. For a long average (decay 0.9999: about 10 000 iterations) that would otherwise keep
the random initial weights and the early, rough generators in it for most of a run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ganzoo.tricks.base import Trick

if TYPE_CHECKING:
    from ganzoo.models.base import AdversarialModule


class EMA(Trick):
    setup_order = 3  # copy G once every other trick has shaped it

    def __init__(self, decay: float = 0.999, start: int = 0) -> None:
        super().__init__()
        if not 0 < decay < 1:
            raise ValueError(f"trick.ema.decay must be in (0, 1), got {decay}")
        if start < 0:
            raise ValueError(f"trick.ema.start must be >= 0 generator iterations, got {start}")
        self.decay, self.start = decay, start

    def setup(self, module: AdversarialModule) -> None:
        self.average = AveragedModel(module.generator, multi_avg_fn=get_ema_multi_avg_fn(self.decay), use_buffers=True)
        self.average.requires_grad_(False)  # never trained, and no optimizer holds it

    def after_g_step(self, module: AdversarialModule) -> None:
        if module.gen_step < self.start:  # not averaging yet: the next update copies G
            self.average.n_averaged.zero_()
        self.average.update_parameters(module.generator)

    def sampling_generator(self, module: AdversarialModule) -> nn.Module:
        return self.average.module

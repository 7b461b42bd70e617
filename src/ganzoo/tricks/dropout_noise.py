"""Dropout as G's noise source (Isola et al. 2017, "Image-to-Image Translation with Conditional Adversarial
Networks", section 2.1; ganhacks tip 17: "use dropouts in G in both train and test phase").

Dropout with probability ``p`` is applied to the output of every hidden activation of G (ReLU, LeakyReLU,
ELU, GELU, SiLU, PReLU, SELU; not the output tanh), through forward hooks, so G's parameters and checkpoint
keys do not change. With ``at_sampling`` (default, as in the paper) it stays on in eval mode, so samples
carry the same noise; without it, sampling is deterministic given z.

Knobs: ``p`` in (0, 1), ``at_sampling``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch.nn.functional as F
from torch import Tensor, nn

from ganzoo.tricks.base import Trick

if TYPE_CHECKING:
    from ganzoo.models.base import AdversarialModule

HIDDEN_ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.PReLU, nn.SELU)


class DropoutNoise(Trick):
    def __init__(self, p: float = 0.5, at_sampling: bool = True) -> None:
        super().__init__()
        if not 0 < p < 1:
            raise ValueError(f"trick.dropout_g.p must be in (0, 1), got {p}")
        self.p, self.at_sampling = p, at_sampling

    def setup(self, module: AdversarialModule) -> None:
        layers = [m for m in module.generator.modules() if isinstance(m, HIDDEN_ACTIVATIONS)]
        if not layers:
            name = type(module.generator).__name__
            raise ValueError(f"trick.dropout_g found no hidden activation layer in G ({name}); drop the trick")
        for layer in layers:
            layer.register_forward_hook(self._drop)

    def _drop(self, layer: nn.Module, inputs: Any, output: Tensor) -> Tensor:
        return F.dropout(output, self.p, training=self.at_sampling or layer.training)

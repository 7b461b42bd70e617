"""Feature matching (Salimans et al. 2016, "Improved Techniques for Training GANs", section 3.1).

G matches the statistics of D's intermediate features instead of maximising D's output: its loss is
``||E f(x) - E f(G(z))||^2`` with f the activations of one layer of D, averaged over the batch. The real
statistics are a fixed target (no gradient); D trains as usual.

Knobs:
  ``layer``: dotted name of a submodule of D whose *output* is f (e.g. ``net.4``); null (default) takes the
  *input* of D's last linear layer, i.e. the features its score is read from.
  ``weight``: the term's weight (term ``g/feature_matching``).
  ``replace_adversarial``: drop G's adversarial term ``adv`` (the paper's form; default) or keep both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ganzoo.nets.layers import last_linear
from ganzoo.tricks.base import StepView, Terms, Trick, check_positive

if TYPE_CHECKING:
    from ganzoo.models.base import AdversarialModule


class FeatureMatching(Trick):
    def __init__(self, layer: str | None = None, weight: float = 1.0, replace_adversarial: bool = True) -> None:
        super().__init__()
        check_positive("feature_matching", weight=weight)
        self.layer, self.weight, self.replace_adversarial = layer, weight, replace_adversarial

    def setup(self, module: AdversarialModule) -> None:
        if self.layer is None:
            return
        names = [name for name, _ in module.discriminator.named_modules() if name]
        if self.layer not in names:
            raise ValueError(f"trick.feature_matching.layer={self.layer!r} is not a layer of D; choose one of {names}")

    def features(self, module: AdversarialModule, x: Tensor, cond: Tensor | None) -> Tensor:
        """f(x), one row per sample, captured by a hook that lives only for this one forward pass of D."""
        captured: list[Tensor] = []
        if self.layer is None:
            _, layer = last_linear(module.discriminator)
            handle = layer.register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
        else:
            layer = module.discriminator.get_submodule(self.layer)
            handle = layer.register_forward_hook(lambda _m, _args, out: captured.append(_first(out)))
        try:
            module.discriminate(x, cond)
        finally:
            handle.remove()
        return captured[-1].flatten(1)

    def g_terms(self, module: AdversarialModule, view: StepView, terms: Terms) -> Terms:
        with torch.no_grad():
            real_mean = self.features(module, module.d_input(view.real), view.cond).mean(0)
        fake_mean = self.features(module, view.fake, view.fake_cond).mean(0)
        if self.replace_adversarial:
            terms = {name: value for name, value in terms.items() if name != "adv"}
        return terms | {"feature_matching": self.weight * (real_mean - fake_mean).pow(2).sum()}


def _first(output: Any) -> Tensor:
    """A layer's output tensor (LSTMs return a tuple whose first item is the output)."""
    return output[0] if isinstance(output, tuple) else output

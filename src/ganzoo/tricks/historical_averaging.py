"""Historical averaging (Salimans et al. 2016, "Improved Techniques for Training GANs", section 3.3).

Each player's loss gets ``weight * ||theta - theta_bar||^2``, with theta_bar the mean of that player's
parameters over all past steps (including their initial values). It damps the oscillations of
fictitious-play-like dynamics. The running means and step counts are buffers of this trick, so they are in
every checkpoint and a resumed run continues them exactly.

Knobs: ``weight`` (> 0; the paper gives none), ``players`` (a subset of [g, d]). Terms: ``g/hist_avg``,
``d/hist_avg``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from ganzoo.tricks.base import StepView, Terms, Trick, check_positive

if TYPE_CHECKING:
    from ganzoo.models.base import AdversarialModule

PLAYERS = ("g", "d")


class RunningMean(nn.Module):
    """The mean of a network's parameters over the times :meth:`update` saw them, as buffers."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.register_buffer("count", torch.ones((), dtype=torch.int64))
        for name, param in net.named_parameters():
            self.register_buffer(_buffer_name(name), param.detach().clone())

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        self.count += 1
        for name, param in net.named_parameters():
            mean = self.get_buffer(_buffer_name(name))
            mean += (param.detach() - mean) / self.count

    def distance(self, net: nn.Module) -> Tensor:
        """sum ||theta - theta_bar||^2 over the parameters, differentiable in theta."""
        return sum((p - self.get_buffer(_buffer_name(n))).pow(2).sum() for n, p in net.named_parameters())


def _buffer_name(param_name: str) -> str:
    return "mean__" + param_name.replace(".", "__")


class HistoricalAveraging(Trick):
    setup_order = 3  # after every trick that adds or renames parameters

    def __init__(self, weight: float = 0.01, players: Sequence[str] = PLAYERS) -> None:
        super().__init__()
        check_positive("historical_averaging", weight=weight)
        if not players or set(players) - set(PLAYERS):
            raise ValueError(f"trick.historical_averaging.players must be a subset of {list(PLAYERS)}, got {players}")
        self.weight, self.players = weight, tuple(players)

    def setup(self, module: AdversarialModule) -> None:
        self.means = nn.ModuleDict({p: RunningMean(_net(module, p)) for p in self.players})

    def d_terms(self, module: AdversarialModule, view: StepView, terms: Terms) -> Terms:
        return self._add_penalty(module, "d", terms)

    def g_terms(self, module: AdversarialModule, view: StepView, terms: Terms) -> Terms:
        return self._add_penalty(module, "g", terms)

    def after_d_step(self, module: AdversarialModule) -> None:
        if "d" in self.means:
            self.means["d"].update(module.discriminator)

    def after_g_step(self, module: AdversarialModule) -> None:
        if "g" in self.means:
            self.means["g"].update(module.generator)

    def _add_penalty(self, module: AdversarialModule, player: str, terms: Terms) -> Terms:
        if player not in self.means:
            return terms
        return terms | {"hist_avg": self.weight * self.means[player].distance(_net(module, player))}


def _net(module: AdversarialModule, player: str) -> nn.Module:
    return module.generator if player == "g" else module.discriminator

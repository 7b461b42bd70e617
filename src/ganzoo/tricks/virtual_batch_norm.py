"""Virtual batch normalisation (Salimans et al. 2016, "Improved Techniques for Training GANs", section 3.4).

Batch norm makes each generated sample depend on the others of its batch. VBN normalises every sample with
the statistics of a *reference batch*, chosen once and fixed, together with the sample itself. Here the
reference batch is a fixed latent batch (a buffer of this trick, so it is saved in checkpoints): every
forward pass of G runs the reference latents in front of the real ones; each VBN layer normalises the
reference rows with the reference statistics and every other row with the statistics of the reference rows
plus that row ((n * mean_ref + x_i) / (n + 1), likewise for the second moment); the reference rows are
dropped from G's output. It costs a forward pass of ``reference_size`` more samples per call, and it works
the same in train and eval mode (there are no running statistics).

``setup`` replaces each BatchNorm1d/2d of G by a :class:`VirtualBatchNorm` layer (same name, same affine
parameters). Unconditional generators only (G called with the latent alone).

Knobs: ``reference_size`` (> 1), ``seed`` (the reference latents' seed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ganzoo.nets.layers import replace_module
from ganzoo.tricks.base import Trick

if TYPE_CHECKING:
    from ganzoo.models.base import AdversarialModule


class VirtualBatchNorm(nn.Module):
    """Normalises rows [n:] with the statistics of rows [:n] plus the row itself, rows [:n] with their own."""

    def __init__(self, num_features: int, reference_size: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.reference_size, self.eps = reference_size, eps
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))

    def forward(self, x: Tensor) -> Tensor:
        n = self.reference_size
        spatial = list(range(2, x.dim()))  # per-channel statistics pool over these, as batch norm does
        size = x[0, 0].numel()  # values per channel per sample
        ref, rows = x[:n], x[n:]
        ref_sum, ref_sq = ref.sum([0, *spatial], keepdim=True), ref.pow(2).sum([0, *spatial], keepdim=True)
        row_sum = rows.sum(spatial, keepdim=True) if spatial else rows
        row_sq = rows.pow(2).sum(spatial, keepdim=True) if spatial else rows.pow(2)
        ref_out = self._normalise(ref, ref_sum / (n * size), ref_sq / (n * size))
        rows_out = self._normalise(rows, (ref_sum + row_sum) / ((n + 1) * size), (ref_sq + row_sq) / ((n + 1) * size))
        shape = (1, -1, *[1] * len(spatial))
        return torch.cat([ref_out, rows_out]) * self.weight.view(shape) + self.bias.view(shape)

    def _normalise(self, x: Tensor, mean: Tensor, second_moment: Tensor) -> Tensor:
        var = (second_moment - mean.pow(2)).clamp_min(0)
        return (x - mean) / torch.sqrt(var + self.eps)


class VirtualBatchNormTrick(Trick):
    setup_order = 0

    def __init__(self, reference_size: int = 64, seed: int = 0) -> None:
        super().__init__()
        if reference_size < 2:
            raise ValueError(f"trick.vbn.reference_size must be >= 2, got {reference_size}")
        self.reference_size, self.seed = reference_size, seed

    def setup(self, module: AdversarialModule) -> None:
        norms = [(n, m) for n, m in module.generator.named_modules() if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d)]
        if not norms:
            raise ValueError("trick.vbn found no BatchNorm layer in G to replace; use a G with norm: batch")
        for name, bn in norms:
            vbn = VirtualBatchNorm(bn.num_features, self.reference_size, bn.eps).to(bn.weight.device)
            if bn.affine:
                vbn.weight.data.copy_(bn.weight.data)
                vbn.bias.data.copy_(bn.bias.data)
            replace_module(module.generator, name, vbn)
        latents = module.sample_latent(self.reference_size, generator=torch.Generator().manual_seed(self.seed))
        self.register_buffer("reference_latent", latents.to(module.device))
        module.generator.register_forward_pre_hook(self._prepend_reference)
        module.generator.register_forward_hook(self._drop_reference)

    def _prepend_reference(self, generator: nn.Module, args: tuple[Any, ...]) -> tuple[Tensor]:
        if len(args) != 1:
            raise ValueError("trick.vbn supports unconditional generators only (G called with the latent alone)")
        (latent,) = args
        return (torch.cat([self.reference_latent.to(latent.device, latent.dtype), latent]),)

    def _drop_reference(self, generator: nn.Module, args: Any, output: Tensor) -> Tensor:
        return output[self.reference_size :]

"""Generator and critic for encoded tables (one row = concatenated spans of a ``TableTransformer``).

The shapes follow CTGAN (Xu et al. 2019, "Modeling Tabular Data using Conditional GAN", section 4.4):
the generator stacks residual blocks whose outputs are concatenated to their inputs, then activates each
span of the row by its kind; the critic is an MLP with LeakyReLU and dropout that reads ``pac`` rows at
once (PacGAN: Lin et al. 2018, "PacGAN: The power of two samples in generative adversarial networks").

The nets know a row only as a list of ``(kind, width)`` spans, kind in ``softmax | tanh | linear``.
Both take a condition in one of two forms: ``num_classes`` (an integer label per row, one-hot encoded here) or
``cond_dim`` (a float vector per row, concatenated as it is: CTGAN's conditional vector).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganzoo.nets.toy import _hidden_layers

SPAN_KINDS = ("softmax", "tanh", "linear")
CRITIC_NORMS = ("layer", "none")


def condition_width(num_classes: int, cond_dim: int) -> int:
    """Width the condition adds to a net's input; a net takes labels or vectors, not both."""
    if num_classes < 0 or cond_dim < 0:
        raise ValueError(f"num_classes and cond_dim must be >= 0, got {num_classes} and {cond_dim}")
    if num_classes and cond_dim:
        raise ValueError(
            f"a net is conditioned on labels (num_classes={num_classes}) or on vectors (cond_dim={cond_dim}), not both"
        )
    return num_classes + cond_dim


def with_condition(x: Tensor, cond: Tensor | None, num_classes: int, cond_dim: int = 0) -> Tensor:
    """``x`` with the condition appended: the one-hot of the labels ``cond`` (``num_classes``), or the float
    vectors ``cond`` (n, ``cond_dim``) as they are; ``x`` itself when unconditional."""
    if num_classes == 0 and cond_dim == 0:
        return x
    if cond is None:
        wanted = f"{num_classes} classes (one label per row)" if num_classes else f"vectors of width {cond_dim}"
        raise ValueError(f"this net is conditional on {wanted}; pass cond")
    if num_classes:
        return torch.cat([x, F.one_hot(cond.long(), num_classes).to(x.dtype)], dim=1)
    if cond.shape != (x.shape[0], cond_dim):
        raise ValueError(f"cond must have shape ({x.shape[0]}, {cond_dim}), got {tuple(cond.shape)}")
    return torch.cat([x, cond.to(x.dtype)], dim=1)


class Residual(nn.Module):
    """CTGAN's residual block: ReLU(BN(Linear(x))) concatenated to x, so every block widens the features."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.fc, self.bn = nn.Linear(in_features, out_features), nn.BatchNorm1d(out_features)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([F.relu(self.bn(self.fc(x))), x], dim=1)


class TabularGenerator(nn.Module):
    """(z, condition) -> residual blocks -> one linear layer -> each span activated by its kind.

    Softmax spans give probabilities (the critic reads them as they are, and decoding samples from them).
    With ``gumbel_tau`` set, training draws Gumbel-softmax relaxed samples at that temperature instead, as
    CTGAN does (tau 0.2); in eval mode the plain softmax is returned, whose categorical distribution is the
    one the Gumbel-softmax samples come from (Jang et al. 2017).
    """

    def __init__(
        self,
        latent_dim: int,
        spans: Sequence[tuple[str, int]],
        num_classes: int = 0,
        hidden: Sequence[int] = (256, 256),
        gumbel_tau: float | None = None,
        cond_dim: int = 0,
    ) -> None:
        super().__init__()
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")
        if gumbel_tau is not None and gumbel_tau <= 0:
            raise ValueError(f"model.generator.gumbel_tau must be > 0 or null, got {gumbel_tau}")
        if unknown := sorted({kind for kind, _ in spans} - set(SPAN_KINDS)):
            raise ValueError(f"unknown span kinds {unknown}; expected {SPAN_KINDS}")
        self.spans = [(kind, int(width)) for kind, width in spans]
        self.num_classes, self.cond_dim, self.gumbel_tau = num_classes, cond_dim, gumbel_tau
        blocks: list[nn.Module] = []
        width = latent_dim + condition_width(num_classes, cond_dim)
        for out in hidden:
            blocks.append(Residual(width, out))
            width += out
        self.body = nn.Sequential(*blocks)
        self.head = nn.Linear(width, sum(w for _, w in self.spans))
        # Every span is activated by a few ops over the whole row, however many spans a table has (Sberbank's make
        # hundreds; on Adult's 21 the step time was the same either way): a mask of the tanh units, and for the
        # softmax units their positions and the index of their span, for one segmented softmax.
        kinds = [kind for kind, width in self.spans for _ in range(width)]
        spans_of_units = [i for i, (kind, width) in enumerate(self.spans) if kind == "softmax" for _ in range(width)]
        segment = torch.unique(torch.tensor(spans_of_units, dtype=torch.long), return_inverse=True)[1]
        self.register_buffer("tanh_mask", torch.tensor([kind == "tanh" for kind in kinds]), persistent=False)
        self.register_buffer(
            "softmax_units",
            torch.tensor([i for i, kind in enumerate(kinds) if kind == "softmax"], dtype=torch.long),
            persistent=False,
        )
        self.register_buffer("segment", segment.reshape(-1), persistent=False)
        self.n_softmax = sum(kind == "softmax" for kind, _ in self.spans)

    def forward(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        # ``head`` outputs the logits of every span (CTGAN's conditional loss reads the softmax spans' logits).
        logits = self.head(self.body(with_condition(z, cond, self.num_classes, self.cond_dim)))
        rows = torch.where(self.tanh_mask, torch.tanh(logits), logits)  # linear units stay as they are
        if not self.n_softmax:
            return rows
        return rows.index_copy(1, self.softmax_units, self._softmax_spans(logits[:, self.softmax_units]))

    def _softmax_spans(self, logits: Tensor) -> Tensor:
        """The softmax of each span of ``logits`` (the softmax units side by side; ``segment`` gives each unit's
        span), or in training with ``gumbel_tau`` a Gumbel-softmax sample (Jang et al. 2017)."""
        if self.training and self.gumbel_tau is not None:
            # -log(-log(U)): the same Gumbel(0, 1) draws as torch's -log(Exponential(1)), 3-4x faster on a CPU
            uniform = torch.rand_like(logits).clamp_min_(torch.finfo(logits.dtype).tiny)
            gumbels = -(-uniform.log()).log()
            logits = (logits + gumbels) / self.gumbel_tau
        index = self.segment.expand_as(logits)
        shape = (logits.shape[0], self.n_softmax)
        peak = logits.new_full(shape, -torch.inf).scatter_reduce(1, index, logits.detach(), "amax")
        exp = (logits - peak.gather(1, index)).exp()
        return exp / exp.new_zeros(shape).scatter_add(1, index, exp).gather(1, index)


class TabularCritic(nn.Module):
    """(row, condition) x ``pac`` rows -> [Linear -> norm -> LeakyReLU(0.2) -> Dropout] -> one score.

    No BatchNorm: it mixes the rows of a batch, which breaks the per-sample gradient penalty (WGAN-GP:
    Gulrajani et al. 2017, section 4); ``norm`` is ``layer`` or ``none``. Packing (PacGAN) reshapes a batch
    of B rows into B / pac critic inputs, each the concatenation of ``pac`` consecutive rows, and returns
    one score per pack. Note that ganzoo's gradient penalty takes one gradient norm per row, so with
    ``pac > 1`` it constrains each row of a pack, where CTGAN takes one norm per pack.
    """

    def __init__(
        self,
        data_dim: int,
        num_classes: int = 0,
        hidden: Sequence[int] = (256, 256),
        norm: str = "none",
        dropout: float = 0.5,
        pac: int = 1,
        cond_dim: int = 0,
    ) -> None:
        super().__init__()
        if norm not in CRITIC_NORMS:
            raise ValueError(f"model.discriminator.norm must be one of {CRITIC_NORMS} (no batch norm), got {norm!r}")
        if pac < 1:
            raise ValueError(f"model.discriminator.pac must be >= 1, got {pac}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"model.discriminator.dropout must be in [0, 1), got {dropout}")
        self.num_classes, self.cond_dim, self.pac = num_classes, cond_dim, pac
        layers: list[nn.Module] = []
        width = (data_dim + condition_width(num_classes, cond_dim)) * pac
        for out in hidden:
            layers += [nn.Linear(width, out), nn.LayerNorm(out) if norm == "layer" else nn.Identity()]
            layers += [nn.LeakyReLU(0.2), nn.Dropout(dropout)]
            width = out
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        if x.shape[0] % self.pac:
            raise ValueError(
                f"a batch of {x.shape[0]} rows does not split into packs of model.discriminator.pac={self.pac}; "
                f"make data.batch_size a multiple of {self.pac}"
            )
        rows = with_condition(x, cond, self.num_classes, self.cond_dim)
        return self.net(rows.reshape(-1, self.pac * rows.shape[1])).squeeze(1)


class LabelClassifier(nn.Module):
    """Encoded row -> logits of the condition label, reading only the columns ``keep`` (every span but the
    label's): [Linear -> LeakyReLU(0.2) -> Dropout] per hidden layer, then a linear layer of ``num_classes``.
    The auxiliary classifier of a conditional table GAN (CTAB-GAN: Zhao et al. 2021, section 3.2)."""

    def __init__(self, keep: Tensor, num_classes: int, hidden: Sequence[int] = (256, 256), dropout: float = 0.2):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"a label classifier needs >= 2 classes, got {num_classes}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"the label classifier's dropout must be in [0, 1), got {dropout}")
        self.register_buffer("keep", keep.long(), persistent=False)
        layers, width = _hidden_layers(len(keep), hidden, "none", "leaky_relu", dropout)
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, rows: Tensor) -> Tensor:
        return self.net(rows[:, self.keep])

"""CTGAN's conditional vector and training-by-sampling (Xu et al. 2019, "Modeling Tabular Data using
Conditional GAN", section 4.3).

The conditional vector concatenates one slot per category of every discrete (categorical) column of the
table, in the order of their spans in an encoded row. One draw for one row picks a column uniformly, then one
of its categories, and sets that slot to 1 (all others 0). In training the category is drawn with probability
proportional to log(1 + its count in the training rows), so rare categories are seen more often than their
frequency, and the real row shown beside it is drawn among the training rows that have that category
(*training-by-sampling*). For sampling with no condition asked for, the category is drawn with its empirical
frequency, so the generated table keeps the data's proportions.

Beside a label column (``data.condition_on``, whose one-hot the nets get next to the vector), the sampler made
with ``num_labels`` also counts each slot per label, so that a vector for sampling can be drawn given the label
asked for (:meth:`ConditionSampler.sample_original` with ``labels``): the pair then follows the data's joint
frequencies, and rows generated for one label get the categories of that label's rows.

:class:`ConditionSampler` is an ``nn.Module`` so that it moves with its model (``.to(device)``) and its
category counts travel in the model's ``state_dict``, hence in checkpoints. The row index that
training-by-sampling draws from is rebuilt from the data by :meth:`ConditionSampler.fit` and is not saved.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganzoo.data.tabular_transform import SOFTMAX, Span


class TrainingDraw(NamedTuple):
    """One training draw of ``n`` rows: ``cond`` (n, cond_dim) one-hot conditional vectors, the chosen
    ``columns`` (index among the discrete columns: the column mask as indices) and ``categories`` (index within
    the column), and ``rows``, indices of training rows that have the chosen category in the chosen column."""

    cond: Tensor
    columns: Tensor
    categories: Tensor
    rows: Tensor


class ConditionSampler(nn.Module):
    """Conditional vectors over discrete columns of the given one-hot ``widths`` (categories per column);
    ``num_labels`` > 0 also keeps the slot counts of each label of a condition column (see the module docstring)."""

    def __init__(self, widths: Sequence[int], num_labels: int = 0) -> None:
        super().__init__()
        if not widths or min(widths) < 1:
            raise ValueError(f"a condition sampler needs at least one discrete column of width >= 1, got {widths}")
        self.widths = [int(w) for w in widths]
        self.cond_dim = sum(self.widths)
        offsets = torch.tensor([0, *self.widths[:-1]]).cumsum(0)
        self.register_buffer("offsets", offsets, persistent=False)  # first slot of each column
        # grid[j, k]: slot of category k of column j; the column's padding points at an extra zero-weight slot.
        grid = torch.full((len(self.widths), max(self.widths)), self.cond_dim)
        for column, (first, width) in enumerate(zip(offsets.tolist(), self.widths, strict=True)):
            grid[column, :width] = torch.arange(first, first + width)
        self.register_buffer("grid", grid, persistent=False)
        self.register_buffer("counts", torch.zeros(self.cond_dim))  # training rows of each slot (checkpointed)
        # label_counts[y, s]: training rows of label y with slot s (checkpointed when there are labels).
        self.num_labels = int(num_labels)
        self.register_buffer("label_counts", torch.zeros(self.num_labels, self.cond_dim), persistent=num_labels > 0)
        # Row index of training-by-sampling: the rows of slot s are row_order[row_start[s] : row_start[s] + counts[s]].
        self.register_buffer("row_order", torch.zeros(0, dtype=torch.long), persistent=False)
        self.register_buffer("row_start", torch.zeros(self.cond_dim, dtype=torch.long), persistent=False)

    @classmethod
    def fit(
        cls, data: Tensor, spans: Sequence[Span], labels: Tensor | None = None, num_labels: int = 0
    ) -> ConditionSampler:
        """The sampler of the encoded training rows ``data`` (n, output_dim) for the discrete columns' one-hot
        ``spans`` (softmax spans of ``TableTransformer.output_info``, one per categorical column); with ``labels``
        (n,) in ``range(num_labels)``, it also counts the slots of each label."""
        if kinds := sorted({span.kind for span in spans} - {SOFTMAX}):
            raise ValueError(f"conditional vectors are made of one-hot (softmax) spans, got spans of kind {kinds}")
        if (labels is None) != (num_labels == 0):
            raise ValueError("pass the rows' labels together with their number num_labels > 0, or neither")
        sampler = cls([span.width for span in spans], num_labels)
        blocks = [data[:, span.slice] for span in spans]
        if not all(torch.equal(block.sum(1), torch.ones_like(block[:, 0])) for block in blocks):
            raise ValueError("the discrete spans of the training rows are not one-hot; pass the encoded training rows")
        categories = torch.stack([block.argmax(1) for block in blocks], 1)  # (n, columns)
        slots = (categories + sampler.offsets).flatten()  # row-major: row i's slots at i * columns + j
        counts = torch.bincount(slots, minlength=sampler.cond_dim)
        sampler.counts.copy_(counts)
        if labels is not None:
            pairs = labels.long().repeat_interleave(len(spans)) * sampler.cond_dim + slots
            sampler.label_counts.copy_(
                torch.bincount(pairs, minlength=num_labels * sampler.cond_dim).view_as(sampler.label_counts)
            )
        sampler.row_order = torch.argsort(slots, stable=True) // len(spans)
        sampler.row_start = counts.cumsum(0) - counts
        return sampler.to(data.device)

    def category_weights(self, log_frequency: bool) -> Tensor:
        """(columns, max width) unnormalised category probabilities of each column: log(1 + count) or count."""
        if not self.counts.any():
            raise ValueError("the condition sampler has no category counts: fit it on the training rows first")
        weights = torch.log1p(self.counts) if log_frequency else self.counts
        return torch.cat([weights, weights.new_zeros(1)])[self.grid]

    def slots(self, columns: Tensor, categories: Tensor) -> Tensor:
        """Index into the conditional vector of category ``categories`` of discrete column ``columns``."""
        return self.offsets.to(columns.device)[columns] + categories

    def _draw(
        self, n: int, log_frequency: bool, generator: torch.Generator | None, labels: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        device = self.counts.device if generator is None else generator.device
        columns = torch.randint(len(self.widths), (n,), device=device, generator=generator)
        if labels is None:
            weights = self.category_weights(log_frequency).to(device)[columns]
        else:  # each row's category by the counts of its label's rows in its column
            counts = self.label_counts.to(device)[labels.to(device).long()]
            weights = torch.cat([counts, counts.new_zeros(n, 1)], 1).gather(1, self.grid.to(device)[columns])
        categories = torch.multinomial(weights, 1, generator=generator).squeeze(1)
        cond = F.one_hot(self.slots(columns, categories), self.cond_dim).float()
        return cond, columns, categories

    def sample_train(self, n: int, generator: torch.Generator | None = None) -> TrainingDraw:
        """``n`` training draws: column uniform, category by log(1 + count), and a real row having it.
        Drawn on the sampler's device, or on ``generator``'s when one is given."""
        if self.row_order.numel() == 0:
            raise ValueError("the condition sampler holds no training rows (restored from a checkpoint?): fit it")
        cond, columns, categories = self._draw(n, log_frequency=True, generator=generator)
        slots = self.slots(columns, categories)
        counts, starts = self.counts.to(slots.device)[slots], self.row_start.to(slots.device)[slots]
        offset = (torch.rand(n, device=slots.device, generator=generator) * counts).long()
        picks = starts + torch.minimum(offset, counts.long() - 1)
        return TrainingDraw(cond, columns, categories, self.row_order.to(slots.device)[picks])

    def sample_original(self, n: int, generator: torch.Generator | None = None, labels: Tensor | None = None) -> Tensor:
        """``n`` conditional vectors for unconditioned sampling: column uniform, category by its training frequency,
        or, given the ``labels`` (n,) of the rows, by its training frequency among the rows of each row's label."""
        if labels is not None:
            if not self.num_labels:
                raise ValueError("this sampler keeps no counts per label: fit it with the rows' labels")
            if not self.label_counts[labels.to(self.label_counts.device).long()].any(1).all():
                raise ValueError("a label asked for has no training rows, so no categories to draw for it")
        return self._draw(n, log_frequency=False, generator=generator, labels=labels)[0]

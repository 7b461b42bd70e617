"""Line-plot figures for sequence generators (RGAN / RCGAN, Esteban et al. 2017), as [0, 1] image tensors
(3, H, W), so they are saved and logged like the image grids.

- :func:`sequence_figure`: generated sequences beside real ones, one pair of rows per class.
- :func:`latent_sweep` and :func:`sweep_figure`: a 2-D grid of neighbouring latents at a fixed label, to see
  frequency and amplitude change smoothly (the latent-space interpolations of the paper's section 4.2).

Figures are drawn on matplotlib's Agg canvas directly (no pyplot), so no global backend state is touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

from ganzoo.models.base import AdversarialModule

CELL_INCHES = (1.3, 0.9)  # width, height of one sequence's cell
GAP = 0.25  # blank space between neighbouring sequences of a row, as a fraction of their length


def figure_to_tensor(fig: Figure) -> Tensor:
    """Render a figure on the Agg canvas: RGB floats (3, H, W) in [0, 1]."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    rgb = np.asarray(canvas.buffer_rgba())[..., :3].copy()
    return torch.from_numpy(rgb).permute(2, 0, 1).float() / 255


def _rows(rows: int, cols: int) -> tuple[Figure, np.ndarray]:
    """A figure of ``rows`` axes, each wide enough for ``cols`` sequences side by side. One axes per row,
    not per sequence: layout and drawing cost grow with the number of axes."""
    fig = Figure(figsize=(CELL_INCHES[0] * cols + 0.6, CELL_INCHES[1] * rows + 0.3), dpi=100)
    axes = np.atleast_1d(fig.subplots(rows, 1, sharey=True))
    fig.subplots_adjust(left=0.6 / fig.get_figwidth(), right=0.99, top=0.97, bottom=0.3 / fig.get_figheight())
    for ax in axes:
        ax.set_ylim(-1.05, 1.05)
        ax.set_xticks([])
        ax.tick_params(labelsize=5, length=2)
    return fig, axes


def _plot_row(ax: Axes, sequences: Tensor, colour: str, cols: int) -> None:
    """Sequences (n, T, C) side by side in one axes, each in its own cell of ``cols``; every channel drawn."""
    steps = sequences.shape[1]
    width = steps * (1 + GAP)
    ax.set_xlim(-GAP * steps / 2, cols * width - GAP * steps / 2)
    for i, seq in enumerate(sequences):
        ax.plot(np.arange(steps) + i * width, seq.numpy(), color=colour, linewidth=1.0)
    for i in range(1, cols):
        ax.axvline(i * width - GAP * steps / 2, color="0.85", linewidth=0.8)


def sequence_figure(
    fake: Tensor,
    fake_labels: Tensor | None = None,
    real: Tensor | None = None,
    real_labels: Tensor | None = None,
    class_names: Sequence[str] | None = None,
    per_class: int = 8,
) -> Tensor:
    """Generated sequences (N, T, C) beside real ones: per class a row of real and a row of generated
    sequences (``per_class`` panels each). Unlabelled fakes make one class of everything."""
    if fake_labels is None:
        fake_labels = torch.zeros(len(fake), dtype=torch.int64)
        real_labels = None if real is None else torch.zeros(len(real), dtype=torch.int64)
        class_names = [""]
    classes = torch.unique(fake_labels).tolist()
    names = [class_names[k] if class_names else f"class {k}" for k in classes]
    kinds = [("generated", fake, fake_labels, "tab:red")]
    if real is not None:
        kinds.insert(0, ("real", real, real_labels, "tab:blue"))
    fig, axes = _rows(len(classes) * len(kinds), per_class)
    for i, (k, name) in enumerate(zip(classes, names, strict=True)):
        for j, (kind, seqs, labels, colour) in enumerate(kinds):
            ax = axes[i * len(kinds) + j]
            ax.set_ylabel(f"{kind}\n{name}".strip(), fontsize=7)
            _plot_row(ax, seqs[labels == k][:per_class], colour, per_class)
    return figure_to_tensor(fig)


def _real_examples(datamodule: Any) -> tuple[Tensor, Tensor] | tuple[None, None]:
    """(x, labels) of the data module's held-out split if it has a labelled one (e.g. the waves set)."""
    held_out = getattr(datamodule, "held_out", None)
    tensors = getattr(held_out(), "tensors", ()) if callable(held_out) else ()
    return (tensors[0], tensors[1]) if len(tensors) == 2 else (None, None)


def progress_figure(trainer: pl.Trainer, pl_module: AdversarialModule, fake: Tensor) -> Tensor:
    """:func:`sequence_figure` of the fixed samples (with the module's ``fixed_labels`` if conditional)
    beside the first held-out sequences of each class; what :class:`SampleGrid` writes for sequence data."""
    real, real_labels = _real_examples(trainer.datamodule)
    fake_labels = getattr(pl_module, "fixed_labels", None)
    return sequence_figure(
        fake,
        None if fake_labels is None else fake_labels.cpu(),
        real,
        real_labels,
        getattr(trainer.datamodule, "shapes", None),
    )


def _sweep_plane(base: Tensor, generator: torch.Generator, directions: Tensor | None = None) -> Tensor:
    """Two orthonormal directions (2, *base.shape) of a latent shaped like ``base``, each of unit norm over the
    whole latent: ``directions`` (2, width) orthonormalised (the first kept as it points, the second made
    orthogonal to it), or a seeded random pair. For a per-step latent (T, D) they are time-constant: one
    D-vector at every step, scaled by 1/sqrt(T): frequency and amplitude belong to the whole sequence, and a
    direction that moves every step's noise alike is the plainest "global" direction of a per-step latent."""
    width = base.shape[-1]
    if width < 2:
        raise ValueError(f"a 2-D latent sweep needs at least 2 latent features (per step), got {width}")
    if directions is None:
        directions = torch.randn(width, 2, generator=generator).T  # the draws of earlier releases
    elif directions.shape != (2, width):
        raise ValueError(f"sweep directions must be (2, {width}), got {tuple(directions.shape)}")
    basis = torch.linalg.qr(directions.T.double().cpu())[0].T.float()  # (2, width), orthonormal rows
    steps = base.shape[0] if base.dim() == 2 else 1
    return basis[:, None, :].expand(2, steps, width).reshape(2, *base.shape) / steps**0.5


@torch.no_grad()
def latent_sweep(
    model: AdversarialModule,
    label: int | None,
    steps: int = 7,
    span: float = 2.0,
    seed: int = 0,
    directions: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Generated sequences on a ``steps`` x ``steps`` grid of a 2-D normal latent (a, b) embedded in the
    model's latent, at class ``label`` (None for unconditional models).

    The latent at (a, b) is z = z_rest + a * e1 + b * e2: e1, e2 are the orthonormal directions of
    :func:`_sweep_plane` (from ``directions`` (2, latent features per step), e.g. the ones that move frequency
    and amplitude most, else a seeded random plane) and z_rest a seeded N(0, I) draw with its components along
    e1 and e2 removed. So (a, b) are exactly the standard-normal coordinates of the latent in that plane and
    every grid point, a, b in linspace(-span, span, steps), is a typical latent of training (within ``span``
    sigma), not a point off the distribution G was trained on.

    Returns sequences (steps * steps, T, C) in row-major order (row = a, column = b) and their grid
    positions (steps * steps, 2) as (a, b). One row or column, e.g. ``sequences[positions[:, 0] == 0]``
    for odd ``steps``, is an ordered 1-D sweep for :func:`ganzoo.metrics.sequence.sweep_smoothness`.
    """
    if steps < 2 or span <= 0:
        raise ValueError(f"need steps >= 2 and span > 0, got {steps} and {span}")
    gen = torch.Generator().manual_seed(seed)
    base = model.sample_latent(1, generator=gen)[0].cpu()
    # A per-sequence latent (one N(0, I) vector repeated at every step) is swept as that vector: moving every
    # step by a * e1 moves its standard-normal coordinate by a (the per-step plane's 1 / sqrt(T) would not).
    seq_len = base.shape[0] if getattr(model, "latent", None) == "per_sequence" else None
    if seq_len is not None:
        base = base[0]
    plane = _sweep_plane(base, gen, directions)
    flat = plane.flatten(1)
    rest = (base.flatten() - (flat @ base.flatten()) @ flat).view_as(base)  # no components along e1, e2
    offsets = span * (2 * torch.arange(steps) / (steps - 1) - 1)  # linspace, but with an exact 0 in the middle
    positions = torch.cartesian_prod(offsets, offsets)
    latents = rest + (positions @ flat).view(len(positions), *base.shape)  # + a * e1 + b * e2
    if seq_len is not None:
        latents = latents[:, None].expand(len(latents), seq_len, *base.shape).contiguous()
    cond = None if label is None else torch.full((len(latents),), label, dtype=torch.int64)
    return model.sample(latent=latents.to(model.device), cond=cond), positions


def sweep_figure(sequences: Tensor, positions: Tensor, title: str = "") -> Tensor:
    """The sequences of :func:`latent_sweep` drawn on their grid: rows move along e1 (a), columns along e2 (b)."""
    row_values, col_values = (torch.unique(positions[:, i]) for i in (0, 1))
    fig, axes = _rows(len(row_values), len(col_values))
    for ax, row, value in zip(axes, sequences.split(len(col_values)), row_values.tolist(), strict=True):
        ax.set_ylabel(f"a = {value:+.2g}", fontsize=7)
        _plot_row(ax, row, "tab:red", len(col_values))
    scales = ", ".join(f"{v:+.2g}" for v in col_values.tolist())
    axes[-1].set_xlabel(f"b = {scales} (left to right)", fontsize=7)
    if title:
        fig.subplots_adjust(top=1 - 0.25 / fig.get_figheight())
        fig.suptitle(title, fontsize=8, y=1 - 0.05 / fig.get_figheight(), va="top")
    return figure_to_tensor(fig)

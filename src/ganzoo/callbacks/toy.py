"""Mode metrics and plots for the toy data sets (ring, grid, curves) during training.

Every ``every_n_gen_steps`` generator iterations and on the final batch, :class:`ToyMetrics` draws
``n_samples`` samples from a fixed latent seed, scores them with ``ganzoo.metrics.toy`` and logs
``val/<metric>`` (mixtures: ``val/modes``, ``val/high_quality``, ``val/kl_uniform``; curves: ``val/in_bounds``,
``val/a_range_error``, ``val/a_w1``, ``val/fit_rmse``; both: ``val/d_real`` and ``val/d_fake``, D's mean
sigmoid on held-out real points and on the samples; for a Wasserstein critic it is only a squashed score).
It writes a figure to ``<dirpath>/toy_<gen_step>.png`` (and ``latest.png``) and sends it to W&B / TensorBoard:

- ring / grid: a 2-D histogram of the samples (log colour scale) with dots for some of them, over the real
  mode centres and their 3-sigma circles; beside it, D's mean probability on real and fake over training.
- curves: the generated curves inside the band between the lower and upper curves of the real family, the
  histogram of their fitted a against U(lo, hi), and D's mean probability on real and fake (the tutorials'
  sign of convergence: both approach 0.5).

At the end of training it writes ``final.json`` (the last scores, step counters and training seconds) and
``final_samples.npy`` (the scored samples), which ``bench/study_ring.py`` collects into the study table.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.patches import Circle
from torch import Tensor

from ganzoo.callbacks.plots import figure_to_tensor
from ganzoo.callbacks.samples import PeriodicScorer, log_image, log_scores, save_png
from ganzoo.data.toy import CurvesDataModule, MixtureDataModule
from ganzoo.files import atomic_write, write_json
from ganzoo.metrics.toy import curve_bounds, curve_metrics, fit_a, mode_metrics
from ganzoo.models.base import AdversarialModule

N_DOTS = 500  # samples drawn as dots over the histogram: enough to see stragglers, few enough to see the density


# --- figures -----------------------------------------------------------------------------------------------


def mixture_extent(modes: np.ndarray) -> tuple[float, float, float, float]:
    """A square (x0, x1, y0, y1) around the mode centres with a quarter of their span as margin, so that
    every figure of one data set shares its axes and frames can be compared."""
    low, high = modes.min(0), modes.max(0)
    centre, half = (low + high) / 2, max(float((high - low).max()), 1.0) * 0.75
    return centre[0] - half, centre[0] + half, centre[1] - half, centre[1] + half


def draw_mixture(
    ax: Axes, samples: np.ndarray, modes: np.ndarray, std: float, n_std: float = 3.0, bins: int = 100
) -> None:
    """Samples (N, 2) as a log-scaled 2-D histogram with some dots, real modes as red crosses and circles
    of ``n_std`` sigma (the high-quality region)."""
    x0, x1, y0, y1 = mixture_extent(modes)
    counts, xe, ye = np.histogram2d(samples[:, 0], samples[:, 1], bins=bins, range=[[x0, x1], [y0, y1]])
    if counts.max() > 0:
        ax.pcolormesh(xe, ye, counts.T, norm=LogNorm(vmin=1, vmax=counts.max()), cmap="Blues", rasterized=True)
    ax.scatter(samples[:N_DOTS, 0], samples[:N_DOTS, 1], s=1.0, color="tab:blue", alpha=0.4, linewidths=0)
    ax.scatter(modes[:, 0], modes[:, 1], marker="x", s=12, color="tab:red", linewidths=0.8)
    for centre in modes:
        ax.add_patch(Circle(tuple(centre), n_std * std, fill=False, color="tab:red", linewidth=0.5))
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect("equal")
    ax.tick_params(labelsize=6, length=2)


def draw_curves(ax: Axes, curves: np.ndarray, xs: np.ndarray, a_range: tuple[float, float], n_curves: int = 32) -> None:
    """Up to ``n_curves`` generated curves (red) over the band of the real family (grey) and its bounds."""
    lower, upper = curve_bounds(xs, a_range)
    ax.fill_between(xs, lower, upper, color="0.9", zorder=0)
    for curve in curves[:n_curves]:
        ax.plot(xs, curve, color="tab:red", linewidth=0.6, alpha=0.6)
    ax.plot(xs, upper, color="black", linewidth=1.5, label=f"upper bound (a = {a_range[1]:g})")
    ax.plot(xs, lower, color="black", linewidth=1.5, linestyle="--", label=f"lower bound (a = {a_range[0]:g})")
    span = upper.max() - lower.min()
    ax.set_ylim(lower.min() - 0.3 * span, upper.max() + 0.3 * span)
    ax.legend(fontsize=6, loc="lower right")
    ax.set_xlabel("x", fontsize=7)
    ax.tick_params(labelsize=6, length=2)


def draw_a_histogram(ax: Axes, a: np.ndarray, a_range: tuple[float, float]) -> None:
    """Histogram (density) of the fitted a over a span twice the real range, against U(lo, hi)."""
    lo, hi = a_range
    width = hi - lo
    ax.hist(np.clip(a, lo - width, hi + width), bins=40, range=(lo - width, hi + width), density=True, color="tab:red")
    ax.plot([lo - width, lo, lo, hi, hi, hi + width], [0, 0, 1 / width, 1 / width, 0, 0], color="black", linewidth=1)
    ax.set_xlabel("fitted a (clipped to the axis)", fontsize=7)
    ax.tick_params(labelsize=6, length=2)


def draw_d_history(ax: Axes, history: list[dict[str, float]]) -> None:
    """D's mean probability on real and fake points at each scoring step; 0.5 is the equilibrium."""
    steps = [h["gen_step"] for h in history]
    ax.plot(steps, [h["d_real"] for h in history], marker=".", color="tab:blue", label="D(real)")
    ax.plot(steps, [h["d_fake"] for h in history], marker=".", color="tab:red", label="D(fake)")
    ax.axhline(0.5, color="0.5", linewidth=0.8, linestyle=":")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("generator iteration", fontsize=7)
    ax.set_ylabel("mean sigmoid(D)", fontsize=7)
    ax.legend(fontsize=6)
    ax.tick_params(labelsize=6, length=2)


def _title(scores: dict[str, float], keys: tuple[str, ...]) -> str:
    return ", ".join(f"{k} {scores[k]:.3g}" for k in keys)


def toy_figure(datamodule: Any, samples: np.ndarray, history: list[dict[str, float]], n_std: float = 3.0) -> Tensor:
    """The progress figure for a toy data module, as a [0, 1] image tensor (3, H, W); the last entry of
    ``history`` holds the scores of ``samples``."""
    scores = history[-1]
    if isinstance(datamodule, MixtureDataModule):
        fig = Figure(figsize=(8, 4), dpi=100)
        ax_samples, ax_d = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1]})
        draw_mixture(ax_samples, samples, datamodule.modes, datamodule.std, n_std)
        ax_samples.set_title(_title(scores, ("modes", "high_quality", "kl_uniform")), fontsize=7)
    else:
        fig = Figure(figsize=(12, 4), dpi=100)
        ax_curves, ax_a, ax_d = fig.subplots(1, 3)
        draw_curves(ax_curves, samples, datamodule.xs, datamodule.a_range)
        ax_curves.set_title(_title(scores, ("in_bounds", "fit_rmse")), fontsize=7)
        draw_a_histogram(ax_a, fit_a(samples, datamodule.xs)[0], datamodule.a_range)
        ax_a.set_title(_title(scores, ("a_range_error", "a_w1")), fontsize=7)
    draw_d_history(ax_d, history)
    ax_d.set_title(f"generator iteration {scores['gen_step']:.0f}", fontsize=7)
    fig.tight_layout()
    return figure_to_tensor(fig)


# --- the callback ------------------------------------------------------------------------------------------


class ToyMetrics(PeriodicScorer):
    """Score, log and plot samples of a toy data set every ``every_n_gen_steps`` generator iterations.

    The samples come from a fixed latent seed drawn in a forked RNG: consecutive scores compare the same
    noise, and training draws the same random numbers as without this callback. ``n_std``, ``min_fraction``
    and ``tolerance`` are the metric parameters of ``ganzoo.metrics.toy``. Rank 0 scores; the other ranks
    receive its figures by broadcast, so every rank logs the same values.
    """

    def __init__(
        self,
        dirpath: str,
        every_n_gen_steps: int = 250,
        n_samples: int = 2000,
        seed: int = 0,
        n_std: float = 3.0,
        min_fraction: float = 0.01,
        tolerance: float = 0.05,
        plot: bool = True,
    ) -> None:
        if every_n_gen_steps < 1:
            raise ValueError(f"callbacks.toy_metrics.every_n_gen_steps must be >= 1, got {every_n_gen_steps}")
        if n_samples < 100:
            raise ValueError(
                f"callbacks.toy_metrics.n_samples must be >= 100 (1 % of them covers a mode), got {n_samples}"
            )
        self.dirpath, self.every_n_gen_steps = Path(dirpath), every_n_gen_steps
        self.n_samples, self.seed = n_samples, seed
        self.metric_kwargs = {"n_std": n_std, "min_fraction": min_fraction, "tolerance": tolerance}
        self.plot = plot
        self.history: list[dict[str, float]] = []  # one entry per scoring: gen_step, d_real, d_fake, metrics
        self._started = 0.0
        self._samples: np.ndarray | None = None

    # ---- state kept across a resume: the history drawn in the D panel ---------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))

    # ---- hooks --------------------------------------------------------------------------------------------
    def on_fit_start(self, trainer: pl.Trainer, pl_module: AdversarialModule) -> None:
        if not isinstance(trainer.datamodule, MixtureDataModule | CurvesDataModule):
            kind = type(trainer.datamodule).__name__
            raise ValueError(f"ToyMetrics needs data=ring, grid or curves, got {kind}; use metrics=none with this data")

    def on_train_start(self, trainer: pl.Trainer, pl_module: AdversarialModule) -> None:
        self._started = time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: AdversarialModule, *args: Any) -> None:
        scores = self.scores_due(trainer, pl_module, lambda: self.evaluate(trainer, pl_module))
        if scores is None:
            return
        log_scores(trainer, pl_module, {f"val/{name}": value for name, value in scores.items() if name != "gen_step"})

    def on_train_end(self, trainer: pl.Trainer, pl_module: AdversarialModule) -> None:
        if not trainer.is_global_zero or self._samples is None:
            return
        final = {
            "gen_step": pl_module.gen_step,
            "disc_step": pl_module.disc_step,
            "global_step": trainer.global_step,
            "train_seconds": time.perf_counter() - self._started,
            "metrics": {k: v for k, v in self.history[-1].items() if k != "gen_step"},
        }
        self.dirpath.mkdir(parents=True, exist_ok=True)
        write_json(self.dirpath / "final.json", final)
        atomic_write(self.dirpath / "final_samples.npy", lambda tmp: np.save(tmp, self._samples))

    # ---- scoring and plotting ----------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, trainer: pl.Trainer, pl_module: AdversarialModule) -> dict[str, float]:
        """Score fresh samples, append them to the history, draw and log the figure; returns the scores."""
        datamodule = trainer.datamodule
        latent = pl_module.sample_latent(self.n_samples, generator=torch.Generator().manual_seed(self.seed))
        samples = pl_module.sample(latent=latent)
        real = datamodule.held_out().tensors[0][: self.n_samples]
        scores: dict[str, float] = {"gen_step": float(pl_module.gen_step)}
        scores |= _d_probabilities(pl_module, real, samples)
        points = samples.numpy().astype(np.float64)
        if isinstance(datamodule, MixtureDataModule):
            kwargs = {k: self.metric_kwargs[k] for k in ("n_std", "min_fraction")}
            scores |= mode_metrics(points, datamodule.modes, datamodule.std, **kwargs)
        else:
            scores |= curve_metrics(points, datamodule.xs, datamodule.a_range, self.metric_kwargs["tolerance"])
        self.history.append(scores)
        self._samples = samples.numpy()
        if self.plot:
            self._write_figure(trainer, datamodule, pl_module.gen_step)
        return scores

    def _write_figure(self, trainer: pl.Trainer, datamodule: Any, gen_step: int) -> None:
        figure = toy_figure(datamodule, self._samples, self.history, self.metric_kwargs["n_std"])
        path = save_png(figure, self.dirpath / f"toy_{gen_step:07d}.png")
        save_png(figure, self.dirpath / "latest.png")
        log_image(trainer, "toy", figure, path, gen_step)


def _d_probabilities(pl_module: AdversarialModule, real: Tensor, fake: Tensor) -> dict[str, float]:
    """D's mean sigmoid on real and fake points, with D in eval mode (no dropout) and restored after."""
    was_training = pl_module.discriminator.training
    pl_module.discriminator.eval()
    try:
        probs = [torch.sigmoid(pl_module.discriminate(x.to(pl_module.device))).mean().item() for x in (real, fake)]
    finally:
        pl_module.discriminator.train(was_training)
    return {"d_real": probs[0], "d_fake": probs[1]}

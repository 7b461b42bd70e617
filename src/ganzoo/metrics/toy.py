"""Mode and shape metrics for the toy data sets (``ganzoo.data.toy``), deterministic and cheap.

Gaussian mixtures (ring, grid), after the unrolled GAN paper (Metz et al. 2016) and the mode counts of
VEEGAN / PacGAN. Each sample is assigned to its nearest mode centre; with per-coordinate deviation sigma:

- ``high_quality``: the fraction of samples within ``n_std`` sigma (Euclidean distance, default 3) of their
  nearest mode. Real 2-D samples score 1 - exp(-n_std^2 / 2) = 0.989 at n_std = 3, not 1.
- ``modes``: the number of modes that hold at least ``min_fraction`` (default 1 %) of *all* samples within
  ``n_std`` sigma of them. A generator that spreads mass between the modes covers none.
- ``kl_uniform``: KL(p || uniform) = log K - H(p), where p is the histogram of the high-quality samples over
  the K modes. 0 when every mode gets the same share, log(K / m) when m modes share the mass equally. With no
  high-quality sample at all the histogram is empty; we report log K, the value of collapse onto one mode.

Curves y = a x^2 + (a - 1), a ~ U(lo, hi) (the 1-D "paintings" of the classic GAN tutorials). The family is
bounded pointwise by the curves of a = lo and a = hi, and y + 1 = a (x^2 + 1) makes a one least-squares fit:

- ``in_bounds``: the fraction of curves that lie, at every x, between the bound curves widened by
  ``tolerance`` (default 0.05, against values spanning 0 to 3).
- ``a_range_error``: the mean distance of the fitted a to [lo, hi] (0 for a curve whose a is in range).
- ``a_w1``: the Wasserstein-1 distance between the fitted a's and U(lo, hi), computed exactly; it is small
  only when the a's spread over the whole range (a generator drawing one good curve scores about 0.25).
- ``fit_rmse``: the root-mean-square residual of the fit; near 0 when the curves have the family's shape
  at all, whatever their a.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

Array = np.ndarray | torch.Tensor
MIXTURE_KEYS = ("modes", "high_quality", "kl_uniform")
CURVE_KEYS = ("in_bounds", "a_range_error", "a_w1", "fit_rmse")


def _points(x: Array, width: int | None = None) -> np.ndarray:
    points = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
    if points.ndim != 2 or len(points) == 0 or (width is not None and points.shape[1] != width):
        want = f"(N, {width})" if width is not None else "(N, D)"
        raise ValueError(f"samples must be a non-empty {want} array, got shape {points.shape}")
    return points


# --- Gaussian mixtures -----------------------------------------------------------------------------------


def nearest_mode(samples: Array, modes: Array) -> tuple[np.ndarray, np.ndarray]:
    """Index of each sample's nearest mode centre (N,) and the Euclidean distance to it (N,)."""
    centres = _points(modes)
    points = _points(samples, centres.shape[1])
    distances = np.linalg.norm(points[:, None, :] - centres[None, :, :], axis=-1)
    index = distances.argmin(1)
    return index, distances[np.arange(len(points)), index]


def mode_metrics(
    samples: Array, modes: Array, std: float, n_std: float = 3.0, min_fraction: float = 0.01
) -> dict[str, float]:
    """``modes``, ``high_quality`` and ``kl_uniform`` of samples (N, D) against mode centres (K, D)."""
    if std <= 0 or n_std <= 0:
        raise ValueError(f"std and n_std must be > 0, got {std} and {n_std}")
    if not 0 < min_fraction <= 1:
        raise ValueError(f"min_fraction must be in (0, 1], got {min_fraction}")
    index, distance = nearest_mode(samples, modes)
    n_modes = len(_points(modes))
    good = distance <= n_std * std
    counts = np.bincount(index[good], minlength=n_modes)
    if counts.sum() == 0:
        kl = float(np.log(n_modes))
    else:
        p = counts / counts.sum()
        kl = float(np.sum(p[p > 0] * np.log(p[p > 0] * n_modes)))
    return {
        "modes": float((counts >= min_fraction * len(index)).sum()),
        "high_quality": float(good.mean()),
        "kl_uniform": kl,
    }


# --- curves ----------------------------------------------------------------------------------------------


def fit_a(curves: Array, xs: Array) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares a of each curve (N, P) under y = a (x^2 + 1) - 1, and the RMS residual of each fit."""
    grid = np.asarray(xs, dtype=np.float64)
    y = _points(curves, len(grid))
    basis = grid**2 + 1
    a = (y + 1) @ basis / (basis @ basis)
    residual = (y + 1) - a[:, None] * basis
    return a, np.sqrt((residual**2).mean(1))


def w1_to_uniform(values: Array, low: float, high: float) -> float:
    """Exact Wasserstein-1 distance between the empirical distribution of ``values`` and U(low, high).

    W1 is the integral over u in [0, 1] of |Q_n(u) - Q(u)| with the empirical quantile function Q_n (the
    i-th smallest value on [(i-1)/n, i/n]) and Q(u) = low + u (high - low); each piece integrates in closed form.
    """
    if not low < high:
        raise ValueError(f"need low < high, got {low} and {high}")
    v = np.sort(np.asarray(values, dtype=np.float64).ravel())
    if len(v) == 0:
        raise ValueError("W1 needs at least one value")
    n, width = len(v), high - low
    # In units of the range: the i-th value's position c against u on its piece [left, right].
    c = (v - low) / width
    left, right = np.arange(n) / n, np.arange(1, n + 1) / n
    split = np.clip(c, left, right)  # |c - u| = c - u on [left, split] and u - c on [split, right]
    integral = (split - left) * (c - (left + split) / 2) + (right - split) * ((split + right) / 2 - c)
    return float(width * integral.sum())


def curve_bounds(xs: Array, a_range: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """The lower (a = low) and upper (a = high) curves of the family at ``xs``."""
    grid = np.asarray(xs, dtype=np.float64)
    low, high = (float(v) for v in a_range)
    return low * (grid**2 + 1) - 1, high * (grid**2 + 1) - 1


def curve_metrics(curves: Array, xs: Array, a_range: Sequence[float], tolerance: float = 0.05) -> dict[str, float]:
    """``in_bounds``, ``a_range_error``, ``a_w1`` and ``fit_rmse`` of curves (N, P) read at ``xs`` (P,)."""
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    low, high = (float(v) for v in a_range)
    y = _points(curves, len(np.asarray(xs)))
    lower, upper = curve_bounds(xs, (low, high))
    inside = ((y >= lower - tolerance) & (y <= upper + tolerance)).all(1)
    a, rmse = fit_a(y, xs)
    return {
        "in_bounds": float(inside.mean()),
        "a_range_error": float(np.maximum(low - a, 0).mean() + np.maximum(a - high, 0).mean()),
        "a_w1": w1_to_uniform(a, low, high),
        "fit_rmse": float(rmse.mean()),
    }

"""Toy data sets for watching mode collapse, generated in memory from the seed.

- **ring**: a mixture of 8 equally weighted 2-D Gaussians on a circle of radius 2 with standard deviation
  0.02, the mode-collapse test of the unrolled GAN paper (Metz et al. 2016, "Unrolled Generative
  Adversarial Networks", section 3.1 and its figure 1).
- **grid**: a 5 x 5 grid of 2-D Gaussians (means -4, -2, 0, 2, 4 on each axis, standard deviation 0.05), the
  harder variant used by later mode-collapse studies (VEEGAN, PacGAN).
- **curves**: the one-dimensional "paintings" of the classic GAN tutorials: each sample is the curve
  y = a x^2 + (a - 1) read at 15 equally spaced x in [-1, 1], with a ~ U(1, 2) per curve. Because y grows
  with a at every x, the family lies between the curves of a = 1 (lower bound, y = x^2) and a = 2 (upper
  bound, y = 2 x^2 + 1).

Samples are flat float32 vectors (N, dim): dim 2 for the mixtures, ``n_points`` for the curves. Each data
module holds the ground truth its metrics need (mode centres and sigma; x positions and the range of a), see
``ganzoo.metrics.toy``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import TensorDataset

from ganzoo.data.loading import InMemorySplits

# --- generators of the data ------------------------------------------------------------------------------


def ring_modes(n_modes: int = 8, radius: float = 2.0) -> np.ndarray:
    """Centres (n_modes, 2) equally spaced on a circle, the first on the positive x axis."""
    if n_modes < 1 or radius <= 0:
        raise ValueError(f"ring needs n_modes >= 1 and radius > 0, got {n_modes} and {radius}")
    angles = 2 * np.pi * np.arange(n_modes) / n_modes
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def grid_modes(side: int = 5, spacing: float = 2.0) -> np.ndarray:
    """Centres (side * side, 2) of a square grid centred on the origin, row by row."""
    if side < 1 or spacing <= 0:
        raise ValueError(f"grid needs side >= 1 and spacing > 0, got {side} and {spacing}")
    axis = spacing * (np.arange(side) - (side - 1) / 2)
    xs, ys = np.meshgrid(axis, axis, indexing="xy")
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def make_mixture(
    modes: np.ndarray, std: float, n: int, seed: int | np.random.SeedSequence = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` points of the equally weighted isotropic Gaussian mixture with these centres (K, D).

    Returns x float32 (n, D) and each point's mode index, int64 (n,).
    """
    if std <= 0:
        raise ValueError(f"std must be > 0, got {std}")
    if n < 1:
        raise ValueError(f"need at least one sample, got n={n}")
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(modes), n)
    x = modes[labels] + std * rng.standard_normal((n, modes.shape[1]))
    return torch.from_numpy(x).float(), torch.from_numpy(labels)


def curve_grid(n_points: int = 15) -> np.ndarray:
    """The x positions at which every curve is read: ``n_points`` equally spaced in [-1, 1]."""
    if n_points < 3:
        raise ValueError(f"curves need n_points >= 3 to pin down a parabola, got {n_points}")
    return np.linspace(-1.0, 1.0, n_points)


def curve_values(a: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """y = a x^2 + (a - 1) for each a (N,) at each x (P,): (N, P)."""
    return np.asarray(a, dtype=np.float64)[:, None] * (xs**2 + 1) - 1


def make_curves(
    n: int, n_points: int = 15, a_range: Sequence[float] = (1.0, 2.0), seed: int | np.random.SeedSequence = 0
) -> tuple[torch.Tensor, np.ndarray]:
    """``n`` curves y = a x^2 + (a - 1), a ~ U(a_range), on ``curve_grid(n_points)``.

    Returns x float32 (n, n_points) and the a of each curve (float64 (n,)).
    """
    if n < 1:
        raise ValueError(f"need at least one curve, got n={n}")
    lo, hi = _check_a_range(a_range)
    a = np.random.default_rng(seed).uniform(lo, hi, n)
    return torch.from_numpy(curve_values(a, curve_grid(n_points))).float(), a


def _check_a_range(a_range: Sequence[float]) -> tuple[float, float]:
    lo, hi = (float(v) for v in a_range)
    # a > 0 keeps every curve a parabola opening upwards, so the a = lo and a = hi curves bound the family.
    if not 0 < lo < hi:
        raise ValueError(f"a_range must be (low, high) with 0 < low < high, got {tuple(a_range)}")
    return lo, hi


# --- data modules ----------------------------------------------------------------------------------------


class ToyDataModule(InMemorySplits):
    """Train and test draws from independent child seeds of ``seed``; batches of flat vectors.

    Subclasses implement :meth:`_draw`. ``dim`` is checked against the data (model configs read it through
    ``${data.dim}``); ``held_out()`` is the test split, the reference that metrics and plots compare against.
    """

    def __init__(self, n_train: int, n_test: int, batch_size: int, seed: int, dim: int) -> None:
        super().__init__()
        if n_train < 1 or n_test < 1:
            raise ValueError(f"data.n_train and data.n_test must be >= 1, got {n_train} and {n_test}")
        if not 1 <= batch_size <= n_train:
            raise ValueError(f"data.batch_size={batch_size} must be in [1, data.n_train={n_train}]")
        self.sizes = {"train": n_train, "test": n_test}
        self.batch_size, self.seed, self.dim = batch_size, seed, dim


class MixtureDataModule(ToyDataModule):
    """An equally weighted mixture of isotropic 2-D Gaussians with centres ``modes`` and deviation ``std``."""

    def __init__(
        self, modes: np.ndarray, std: float, n_train: int, n_test: int, batch_size: int, seed: int, dim: int
    ) -> None:
        if dim != modes.shape[1]:
            raise ValueError(f"data.dim must be {modes.shape[1]} for this mixture, got {dim}")
        if std <= 0:
            raise ValueError(f"data.std must be > 0, got {std}")
        super().__init__(n_train, n_test, batch_size, seed, dim)
        self.modes, self.std = modes, float(std)

    def _draw(self, split: str, n: int, seed: np.random.SeedSequence) -> TensorDataset:
        return TensorDataset(*make_mixture(self.modes, self.std, n, seed))


class RingDataModule(MixtureDataModule):
    """``n_modes`` Gaussians on a circle (Metz et al. 2016: 8 modes, radius 2, std 0.02)."""

    def __init__(
        self,
        n_modes: int = 8,
        radius: float = 2.0,
        std: float = 0.02,
        n_train: int = 100_000,
        n_test: int = 10_000,
        batch_size: int = 512,
        seed: int = 0,
        dim: int = 2,
    ) -> None:
        super().__init__(ring_modes(n_modes, radius), std, n_train, n_test, batch_size, seed, dim)


class GridDataModule(MixtureDataModule):
    """``side`` x ``side`` Gaussians on a square grid ``spacing`` apart (default 5 x 5, spacing 2, std 0.05)."""

    def __init__(
        self,
        side: int = 5,
        spacing: float = 2.0,
        std: float = 0.05,
        n_train: int = 100_000,
        n_test: int = 10_000,
        batch_size: int = 512,
        seed: int = 0,
        dim: int = 2,
    ) -> None:
        super().__init__(grid_modes(side, spacing), std, n_train, n_test, batch_size, seed, dim)


class CurvesDataModule(ToyDataModule):
    """Curves y = a x^2 + (a - 1) on ``n_points`` x in [-1, 1], a ~ U(a_range); ``dim`` must equal ``n_points``."""

    def __init__(
        self,
        n_points: int = 15,
        a_range: Sequence[float] = (1.0, 2.0),
        n_train: int = 100_000,
        n_test: int = 10_000,
        batch_size: int = 64,
        seed: int = 0,
        dim: int = 15,
    ) -> None:
        if dim != n_points:
            raise ValueError(f"data.dim must equal data.n_points={n_points}, got {dim}")
        super().__init__(n_train, n_test, batch_size, seed, dim)
        self.xs = curve_grid(n_points)
        self.a_range = _check_a_range(a_range)

    def _draw(self, split: str, n: int, seed: np.random.SeedSequence) -> TensorDataset:
        x, a = make_curves(n, len(self.xs), self.a_range, seed)
        return TensorDataset(x, torch.from_numpy(a))

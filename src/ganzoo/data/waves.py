"""Synthetic periodic waves (sine vs sawtooth) as an in-memory LightningDataModule.

The set follows the "sine waves" experiment of the RCGAN paper (Esteban et al. 2017, section 4.1): each
sequence is ``amp * shape(2 pi freq t + phase)`` on ``t = 0, 1/seq_len, ..., (seq_len - 1)/seq_len``, so
``freq`` counts cycles per window, with frequency, amplitude and phase drawn uniformly per sequence. A
second shape (sawtooth) gives a label for conditional models. Every shape peaks at exactly +-1, so ``amp``
is the sequence's peak value (before noise). New shapes go into ``WAVE_SHAPES``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import TensorDataset

from ganzoo.data.loading import InMemorySplits


def sine(theta: np.ndarray) -> np.ndarray:
    """sin(theta): period 2 pi, peak 1."""
    return np.sin(theta)


def sawtooth(theta: np.ndarray) -> np.ndarray:
    """Rising ramp from -1 to 1 once per period 2 pi (peak 1), dropping back at theta = 0 mod 2 pi."""
    return 2.0 * np.mod(theta / (2.0 * np.pi), 1.0) - 1.0


# Shape name -> function of the phase angle (period 2 pi, values in [-1, 1]); the label is the index in the
# ``shapes`` argument. Add an entry to make a variant, e.g. WAVE_SHAPES["square"] = lambda t: np.sign(np.sin(t)).
WAVE_SHAPES: dict[str, Callable[[np.ndarray], np.ndarray]] = {"sine": sine, "sawtooth": sawtooth}
DEFAULT_SHAPES = ("sine", "sawtooth")


def _check_range(name: str, bounds: Sequence[float], low: float) -> tuple[float, float]:
    lo, hi = (float(b) for b in bounds)
    if not low <= lo <= hi:
        raise ValueError(f"{name} must be (low, high) with {low} <= low <= high, got {tuple(bounds)}")
    return lo, hi


def make_waves(
    n_per_class: int,
    seq_len: int = 30,
    freq_range: Sequence[float] = (1.0, 5.0),
    amp_range: Sequence[float] = (0.1, 0.9),
    noise_std: float = 0.0,
    seed: int | np.random.SeedSequence = 0,
    shapes: Sequence[str] = DEFAULT_SHAPES,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, np.ndarray]]:
    """``n_per_class`` waves of each shape, class by class, fully determined by ``seed``.

    Returns x float32 (N, seq_len, 1), labels int64 (N,) (index into ``shapes``: 0 = sine, 1 = sawtooth by
    default) and the ground truth ``{"freq", "amp", "phase"}`` (float64 arrays (N,); freq in cycles per
    window, phase in radians, uniform in [0, 2 pi)).
    """
    if n_per_class < 1 or seq_len < 2:
        raise ValueError(f"need n_per_class >= 1 and seq_len >= 2, got {n_per_class} and {seq_len}")
    if noise_std < 0:
        raise ValueError(f"noise_std must be >= 0, got {noise_std}")
    unknown = [s for s in shapes if s not in WAVE_SHAPES]
    if unknown or not shapes:
        raise ValueError(f"unknown wave shapes {unknown or shapes}; known: {sorted(WAVE_SHAPES)}")
    f_lo, f_hi = _check_range("freq_range", freq_range, 0.0)
    a_lo, a_hi = _check_range("amp_range", amp_range, 0.0)
    rng = np.random.default_rng(seed)
    n = n_per_class * len(shapes)
    labels = np.repeat(np.arange(len(shapes)), n_per_class)
    params = {
        "freq": rng.uniform(f_lo, f_hi, n),
        "amp": rng.uniform(a_lo, a_hi, n),
        "phase": rng.uniform(0.0, 2.0 * np.pi, n),
    }
    theta = 2.0 * np.pi * params["freq"][:, None] * (np.arange(seq_len) / seq_len) + params["phase"][:, None]
    x = np.empty((n, seq_len))
    for label, name in enumerate(shapes):
        rows = labels == label
        x[rows] = params["amp"][rows, None] * WAVE_SHAPES[name](theta[rows])
    x += noise_std * rng.standard_normal(x.shape)
    return torch.from_numpy(x).float().unsqueeze(-1), torch.from_numpy(labels), params


class WavesDataModule(InMemorySplits):
    """Train / val / test draws of ``make_waves`` from independent child seeds of ``seed``.

    ``n_per_class`` counts all splits together; ``val_fraction`` and ``test_fraction`` of each class go to
    val and test. Ground truth per split: ``self.params[split]``. ``held_out()`` is the test split.
    """

    splits = ("train", "val", "test")

    def __init__(
        self,
        n_per_class: int = 10000,
        seq_len: int = 30,
        freq_range: Sequence[float] = (1.0, 5.0),
        amp_range: Sequence[float] = (0.1, 0.9),
        noise_std: float = 0.0,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        batch_size: int = 64,
        seed: int = 0,
        shapes: Sequence[str] = DEFAULT_SHAPES,
        channels: int = 1,
    ) -> None:
        super().__init__()
        if channels != 1:
            raise ValueError(f"waves have one channel; got data.channels={channels}")
        if min(val_fraction, test_fraction) < 0 or val_fraction + test_fraction >= 1:
            raise ValueError(
                f"need val_fraction, test_fraction >= 0 summing below 1, got {val_fraction}, {test_fraction}"
            )
        self.sizes = self._split_sizes(n_per_class, val_fraction, test_fraction)
        if self.sizes["train"] * len(shapes) < batch_size or batch_size < 1:
            raise ValueError(f"data.batch_size={batch_size} must be in [1, {self.sizes['train'] * len(shapes)}]")
        self.wave_kwargs = dict(
            seq_len=seq_len, freq_range=tuple(freq_range), amp_range=tuple(amp_range), noise_std=noise_std
        )
        self.shapes, self.num_classes = tuple(shapes), len(shapes)
        self.batch_size, self.seed = batch_size, seed
        self.params: dict[str, dict[str, np.ndarray]] = {}

    @staticmethod
    def _split_sizes(n_per_class: int, val_fraction: float, test_fraction: float) -> dict[str, int]:
        val, test = round(n_per_class * val_fraction), round(n_per_class * test_fraction)
        sizes = {"train": n_per_class - val - test, "val": val, "test": test}
        if min(sizes.values()) < 1:
            raise ValueError(f"n_per_class={n_per_class} leaves an empty split: {sizes}")
        return sizes

    def _draw(self, split: str, n: int, seed: np.random.SeedSequence) -> TensorDataset:
        x, labels, self.params[split] = make_waves(n, seed=seed, shapes=self.shapes, **self.wave_kwargs)
        return TensorDataset(x, labels)

    def redraw(self, split: str, n_per_class: int) -> TensorDataset:
        """``split`` drawn again with ``n_per_class`` waves per class from the split's own child seed: a
        reference larger than the split itself (say, for KS distances near 0.03), still independent of the
        other splits. The stored split and its ground truth stay as they are."""
        x, labels, _ = make_waves(n_per_class, seed=self.child_seed(split), shapes=self.shapes, **self.wave_kwargs)
        return TensorDataset(x, labels)

    def held_out(self) -> TensorDataset:
        """The test split, for evaluation (never trained on); its ground truth is ``self.params['test']``."""
        return self.dataset("test")

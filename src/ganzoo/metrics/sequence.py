"""Metrics for generated time series (the waves set), deterministic given a seed.

- MMD^2 (unbiased, Gretton et al. 2012) with a mixture of RBF bandwidths around the median heuristic, as
  RCGAN (Esteban et al. 2017) uses MMD for its sine waves; the mixture keeps power when the fake set is a
  narrowed version of the real one, which the plain median bandwidth misses.
- Frequency / amplitude recovered from each sequence (FFT peak refined by least squares) and the KS
  distances of their distributions, real vs fake.
- TSTR / TRTS accuracy of a small sine-vs-sawtooth classifier (Esteban et al. 2017, section 5).
- Discriminative score |accuracy - 0.5| of a post-hoc GRU real-vs-fake classifier and the predictive score
  (next-step MAE) trained on fake, tested on real (Yoon et al. 2019, TimeGAN, section 5).
- Latent sweep smoothness: Spearman rho of the recovered frequency / amplitude along a sweep, label flips.
``evaluate`` is src/evaluate.py's report for sequence data: all of these beside the real-vs-real floor and
the targets of issue 7.
Inputs are (N, T, C) float tensors or arrays and int labels (N,).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import ConstantInputWarning, ks_2samp, spearmanr
from torch import nn

from ganzoo.data.waves import DEFAULT_SHAPES, WAVE_SHAPES
from ganzoo.files import write_json

log = logging.getLogger("ganzoo")
Array = np.ndarray | torch.Tensor
BANDWIDTH_SCALES = (0.25, 0.5, 1.0, 2.0, 4.0)


def _float_tensor(x: Array) -> torch.Tensor:
    x = torch.as_tensor(x, dtype=torch.float32)
    if x.dim() == 2:
        x = x.unsqueeze(-1)
    if x.dim() != 3:
        raise ValueError(f"sequences must be (N, T) or (N, T, C), got shape {tuple(x.shape)}")
    return x


def _labels(y: Array) -> torch.Tensor:
    return torch.as_tensor(y, dtype=torch.int64).reshape(-1)


# --- MMD ---------------------------------------------------------------------------------------------------


def _subsample(x: torch.Tensor, max_n: int, gen: torch.Generator) -> torch.Tensor:
    return x if len(x) <= max_n else x[torch.randperm(len(x), generator=gen)[:max_n]]


def mmd2_rbf(
    x: Array, y: Array, scales: Sequence[float] = BANDWIDTH_SCALES, max_n: int = 2000, seed: int = 0
) -> tuple[float, list[float]]:
    """Unbiased MMD^2 between two sets of sequences (flattened), and the RBF bandwidths used.

    The kernel is the mean of exp(-d^2 / (2 s^2)) over s = median pairwise distance of the pooled sets x
    ``scales``. Each set is randomly cut to ``max_n`` sequences (the cost is quadratic).
    """
    gen = torch.Generator().manual_seed(seed)
    a = _subsample(_float_tensor(x).flatten(1).double(), max_n, gen)
    b = _subsample(_float_tensor(y).flatten(1).double(), max_n, gen)
    mmd2, bandwidths = mmd2_unbiased(a, b, scales)
    return float(mmd2), bandwidths.tolist()


def mmd2_unbiased(
    a: torch.Tensor, b: torch.Tensor, scales: Sequence[float] = BANDWIDTH_SCALES
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unbiased MMD^2 of two sets of row vectors (n, F) and (m, F) under the median-heuristic RBF mixture, and
    the bandwidths. Differentiable in both sets (the bandwidths are constants: the median is taken without a
    gradient), and with no host sync, so a training loss can call it every step."""
    if min(len(a), len(b)) < 2:
        raise ValueError(f"MMD^2 needs at least 2 sequences per set, got {len(a)} and {len(b)}")
    pooled = torch.cat([a, b])
    sq_dist = torch.cdist(pooled, pooled).square()
    with torch.no_grad():
        rows, cols = torch.triu_indices(len(pooled), len(pooled), offset=1, device=pooled.device)
        median = sq_dist[rows, cols].sqrt().median().clamp_min(1e-12)
    bandwidths = median * torch.as_tensor(scales, dtype=pooled.dtype, device=pooled.device)
    kernel = sum(torch.exp(-sq_dist / (2 * s.square())) for s in bandwidths) / len(bandwidths)
    n = len(a)
    k_aa, k_bb, k_ab = kernel[:n, :n], kernel[n:, n:], kernel[:n, n:]
    off_diag_mean = lambda k: (k.sum() - k.diagonal().sum()) / (len(k) * (len(k) - 1))
    return off_diag_mean(k_aa) + off_diag_mean(k_bb) - 2 * k_ab.mean(), bandwidths


# --- frequency and amplitude -------------------------------------------------------------------------------


def fundamental_ratio(shape: Callable[[np.ndarray], np.ndarray], points: int = 4096) -> float:
    """Amplitude of a unit-peak shape's fundamental (sine: 1, sawtooth: 2 / pi), by numerical Fourier series."""
    theta = 2 * np.pi * np.arange(points) / points
    return float(2 * np.abs(np.mean(shape(theta) * np.exp(-1j * theta))))


def _sinusoid_bases(seq_len: int, freqs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per candidate frequency, an orthonormal basis (F, T, 3) of span{1, cos, sin} and the least-squares
    solver (F, 3, T) giving the coefficients of (1, cos, sin)."""
    angle = 2 * np.pi * freqs[:, None] * (np.arange(seq_len) / seq_len)
    design = np.stack([np.ones_like(angle), np.cos(angle), np.sin(angle)], axis=-1)
    return np.linalg.qr(design)[0], np.linalg.pinv(design)


def estimate_freq_amp(
    x: Array,
    labels: Array | None = None,
    shapes: Sequence[str] = DEFAULT_SHAPES,
    pad: int = 16,
    window: float = 0.5,
    step: float = 0.005,
    min_freq: float = 0.25,
    chunk: int = 256,
    with_phase: bool = False,
) -> tuple[np.ndarray, ...]:
    """Fundamental frequency (cycles per window) and amplitude of each sequence (first channel), and with
    ``with_phase`` the fundamental's phase at the first step (radians in [0, 2 pi): a sin(2 pi f t + phase)),
    where a generator's waves start (a generator that starts every wave at one point of its cycle bunches it).

    Coarse peak of the zero-padded FFT (mean removed), refined by a least-squares sinusoid fit on a grid of
    +-``window`` cycles (the FFT peak alone is biased by the negative-frequency image at 1-2 cycles). The
    amplitude is the fitted fundamental's; given labels, it is divided by the shape's fundamental ratio, which
    turns it into the peak value that ``make_waves`` calls ``amp``. Sawtooth estimates carry some bias from
    their harmonics (about 0.06 cycles and 3 % amplitude on average at seq_len=30); real and fake share it.
    A shape's phase and its fundamental's differ by a constant (a sawtooth's: pi), so a uniform phase stays one.
    """
    seqs = _float_tensor(x)[..., 0].double().numpy()
    seq_len = seqs.shape[1]
    spectrum = np.abs(np.fft.rfft(seqs - seqs.mean(1, keepdims=True), n=seq_len * pad))
    spectrum[:, 0] = 0.0
    grid = np.arange(min_freq, seq_len / 2 + step / 2, step)
    bases, solvers = _sinusoid_bases(seq_len, grid)
    centre = np.round((spectrum.argmax(1) / pad - min_freq) / step).astype(int)
    offsets = np.arange(-round(window / step), round(window / step) + 1)
    best = np.empty(len(seqs), dtype=int)
    for start in range(0, len(seqs), chunk):
        rows = slice(start, start + chunk)
        candidates = np.clip(centre[rows, None] + offsets, 0, len(grid) - 1)
        energy = (np.einsum("bgtk,bt->bgk", bases[candidates], seqs[rows]) ** 2).sum(-1)
        best[rows] = np.take_along_axis(candidates, energy.argmax(1)[:, None], 1)[:, 0]
    coef = np.einsum("bkt,bt->bk", solvers[best], seqs)
    amp = np.hypot(coef[:, 1], coef[:, 2])
    if labels is not None:
        ratios = np.array([fundamental_ratio(WAVE_SHAPES[s]) for s in shapes])
        amp = amp / ratios[_labels(labels).numpy()]
    if with_phase:  # a sin(w t + p) = a sin(p) cos(w t) + a cos(p) sin(w t)
        return grid[best], amp, np.mod(np.arctan2(coef[:, 1], coef[:, 2]), 2 * np.pi)
    return grid[best], amp


def kuiper(a: np.ndarray, b: np.ndarray) -> float:
    """Kuiper's two-sample statistic max(F_a - F_b) + max(F_b - F_a): the KS distance's version for angles,
    the same wherever the circle is cut (KS on a phase bunched around the cut would split the bunch)."""
    pooled = np.sort(np.concatenate([a, b]))
    gap = np.searchsorted(np.sort(a), pooled, "right") / len(a) - np.searchsorted(np.sort(b), pooled, "right") / len(b)
    return float(max(gap.max(), 0.0) + max(-gap.min(), 0.0))


# --- small torch models ------------------------------------------------------------------------------------


class ConvClassifier(nn.Module):
    """(B, T, C) -> class logits: two 1-D convolutions, global average pool, linear."""

    def __init__(self, channels: int, num_classes: int, width: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv1d(channels, width, 5, padding=2),
            nn.ReLU(),
            nn.Conv1d(width, 2 * width, 5, padding=2, stride=2),
            nn.ReLU(),
            nn.AdaptiveAvgPool1d(1),
            nn.Flatten(),
            nn.Linear(2 * width, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.transpose(1, 2))


class GRUNet(nn.Module):
    """(B, T, C) -> GRU -> linear: outputs per step if ``per_step``, else from the last step."""

    def __init__(self, channels: int, out_features: int, hidden: int = 16, per_step: bool = False) -> None:
        super().__init__()
        self.gru = nn.GRU(channels, hidden, batch_first=True)
        self.head = nn.Linear(hidden, out_features)
        self.per_step = per_step

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(x)
        return self.head(out if self.per_step else out[:, -1])


@contextmanager
def _one_thread() -> Iterator[None]:
    # These nets are tiny: intra-op threads cost more than they save (5-10x slower on 2 busy cores).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _fit(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    steps: int,
    seed: int,
    batch_size: int = 128,
    lr: float = 1e-2,
) -> nn.Module:
    """Adam on random minibatches drawn from a seeded generator."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    with _one_thread():
        for _ in range(steps):
            idx = torch.randint(len(inputs), (min(batch_size, len(inputs)),), generator=gen)
            opt.zero_grad()
            loss_fn(model(inputs[idx]), targets[idx]).backward()
            opt.step()
    return model.eval()


def _seeded(seed: int, build: Callable[[], nn.Module]) -> nn.Module:
    # Seeded initialization without touching the caller's global RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def train_classifier(x: Array, y: Array, num_classes: int = 2, steps: int = 300, seed: int = 0) -> nn.Module:
    """A ``ConvClassifier`` trained with cross-entropy on (x, y); returned in eval mode."""
    inputs, targets = _float_tensor(x), _labels(y)
    model = _seeded(seed, lambda: ConvClassifier(inputs.shape[2], num_classes))
    return _fit(model, inputs, targets, nn.functional.cross_entropy, steps, seed)


@torch.no_grad()
def predict(model: nn.Module, x: Array) -> torch.Tensor:
    """Argmax class of each sequence."""
    return model(_float_tensor(x)).argmax(1)


def accuracy(model: nn.Module, x: Array, y: Array) -> float:
    """Fraction of sequences whose predicted class is the label."""
    return float((predict(model, x) == _labels(y)).float().mean())


def tstr_trts(
    real_x: Array, real_y: Array, fake_x: Array, fake_y: Array, steps: int = 300, seed: int = 0
) -> tuple[float, float, nn.Module]:
    """Train-on-synthetic-test-on-real and train-on-real-test-on-synthetic accuracies (Esteban et al. 2017),
    and the classifier trained on real (reused to label sweeps)."""
    num_classes = int(max(_labels(real_y).max(), _labels(fake_y).max())) + 1
    on_fake = train_classifier(fake_x, fake_y, num_classes, steps, seed)
    on_real = train_classifier(real_x, real_y, num_classes, steps, seed)
    return accuracy(on_fake, real_x, real_y), accuracy(on_real, fake_x, fake_y), on_real


def _split(n: int, fraction: float, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    perm = torch.randperm(n, generator=gen)
    cut = int(round(n * fraction))
    return perm[cut:], perm[:cut]


def discriminative_score(
    real_x: Array, fake_x: Array, runs: int = 3, steps: int = 300, test_fraction: float = 0.2, seed: int = 0
) -> tuple[float, float]:
    """Mean and std over ``runs`` of |accuracy - 0.5| of a GRU classifying real vs fake on a held-out split
    (Yoon et al. 2019). Both sets are randomly cut to the same size so chance is 0.5."""
    real, fake = _float_tensor(real_x), _float_tensor(fake_x)
    n = min(len(real), len(fake))
    gen = torch.Generator().manual_seed(seed)
    inputs = torch.cat([_subsample(real, n, gen), _subsample(fake, n, gen)])
    targets = torch.cat([torch.ones(n), torch.zeros(n)])
    scores = []
    for run in range(runs):
        train, test = _split(2 * n, test_fraction, torch.Generator().manual_seed(seed + run))
        if len(test) == 0:
            raise ValueError(f"test_fraction={test_fraction} leaves no held-out sequences of {2 * n}")
        model = _seeded(seed + run, lambda: GRUNet(inputs.shape[2], 1))
        loss = lambda logits, t: nn.functional.binary_cross_entropy_with_logits(logits[:, 0], t)
        _fit(model, inputs[train], targets[train], loss, steps, seed + run)
        with torch.no_grad():
            acc = ((model(inputs[test])[:, 0] > 0).float() == targets[test]).float().mean().item()
        scores.append(abs(acc - 0.5))
    return float(np.mean(scores)), float(np.std(scores))


def predictive_mae(
    train_x: Array, test_x: Array, runs: int = 3, steps: int = 300, seed: int = 0
) -> tuple[float, float]:
    """Mean and std over ``runs`` GRUs (seeds ``seed``, ``seed + 1``, ...) of the MAE of predicting step t+1 from
    steps <= t, trained on ``train_x``, tested on ``test_x`` (Yoon et al. 2019's predictive score: train on fake,
    test on real; train on real for the reference). One GRU is not enough: on one checkpoint's samples six seeds
    gave synthetic / real ratios of 1.09-1.16 and real-trained MAEs 0.073-0.085, so one run could pass or fail
    the 1.15 target by the predictor's seed alone."""
    train, test = _float_tensor(train_x), _float_tensor(test_x)
    maes = []
    for run in range(runs):
        model = _seeded(seed + run, lambda: GRUNet(train.shape[2], train.shape[2], per_step=True))
        _fit(model, train[:, :-1], train[:, 1:], nn.functional.l1_loss, steps, seed + run)
        with torch.no_grad():
            maes.append(float((model(test[:, :-1]) - test[:, 1:]).abs().mean()))
    return float(np.mean(maes)), float(np.std(maes))


def sweep_smoothness(sweep_x: Array, classifier: nn.Module, shapes: Sequence[str] = DEFAULT_SHAPES) -> dict[str, float]:
    """Along an ordered latent sweep: Spearman rho of position vs recovered frequency and amplitude, and the
    number of times the classifier's predicted label changes between neighbours."""
    seqs = _float_tensor(sweep_x)
    if len(seqs) < 3:
        raise ValueError(f"a sweep needs at least 3 sequences, got {len(seqs)}")
    labels = predict(classifier, seqs)
    freq, amp = estimate_freq_amp(seqs, labels, shapes)
    position = np.arange(len(seqs))
    return {
        "sweep/rho_freq": float(spearmanr(position, freq).statistic),
        "sweep/rho_amp": float(spearmanr(position, amp).statistic),
        "sweep/label_flips": float((labels[1:] != labels[:-1]).sum()),
    }


# --- reports -----------------------------------------------------------------------------------------------


def distribution_distances(
    real: Array,
    real_y: Array,
    fake: Array,
    fake_y: Array | None,
    shapes: Sequence[str] = DEFAULT_SHAPES,
    seed: int = 0,
    max_n: int = 2000,
    real_estimates: tuple[np.ndarray, ...] | None = None,
) -> dict[str, float | list[float]]:
    """MMD^2 (with its bandwidths), the frequency / amplitude KS distances and the phase's Kuiper distance,
    overall (``<metric>/all``) and per class (``<metric>/<shape>``). The phase has no target in issue 7, but
    MMD^2 sees it and the KS rows do not: a generator whose waves all start at one point of their cycle fails
    MMD^2 with every KS passing. Unlabelled fakes (``fake_y=None``, an unconditional generator) get the
    overall group only, and amplitudes of real and fake alike are then the fundamental's, not the peak.
    ``real_estimates``: ``estimate_freq_amp(..., with_phase=True)`` of the real set (labelled as the fakes
    are), when already known;
    ``max_n``: the sequences per set of each MMD^2 (its cost is quadratic in it)."""
    real, real_y = _float_tensor(real), _labels(real_y)
    fake = _float_tensor(fake)
    labelled = fake_y is not None
    fake_y = _labels(fake_y) if labelled else torch.zeros(len(fake), dtype=torch.long)
    real_fa = real_estimates or estimate_freq_amp(real, real_y if labelled else None, shapes, with_phase=True)
    fake_fa = estimate_freq_amp(fake, fake_y if labelled else None, shapes, with_phase=True)
    groups = {"all": (torch.ones_like(real_y, dtype=torch.bool), torch.ones_like(fake_y, dtype=torch.bool))}
    if labelled:
        groups |= {name: (real_y == k, fake_y == k) for k, name in enumerate(shapes)}
    out: dict[str, float | list[float]] = {}
    for name, (r, f) in groups.items():
        if r.sum() < 2 or f.sum() < 2:
            continue  # a class the generator never produced has no distance; TSTR/TRTS show it
        out[f"mmd2/{name}"], out[f"mmd2_bandwidths/{name}"] = mmd2_rbf(real[r], fake[f], max_n=max_n, seed=seed)
        out[f"ks_freq/{name}"] = float(ks_2samp(real_fa[0][r.numpy()], fake_fa[0][f.numpy()]).statistic)
        out[f"ks_amp/{name}"] = float(ks_2samp(real_fa[1][r.numpy()], fake_fa[1][f.numpy()]).statistic)
        out[f"kuiper_phase/{name}"] = kuiper(real_fa[2][r.numpy()], fake_fa[2][f.numpy()])
    return out


def sequence_report(
    real_x: Array,
    real_y: Array,
    fake_x: Array,
    fake_y: Array,
    seed: int = 0,
    sweep_x: Array | None = None,
    shapes: Sequence[str] = DEFAULT_SHAPES,
    steps: int = 300,
    runs: int = 3,
) -> dict[str, float | list[float]]:
    """Every metric above for one fake set against a real (held-out) set; ``sweep_x`` adds sweep smoothness.

    Keys: ``mmd2/<group>``, ``mmd2_bandwidths/<group>``, ``ks_freq/<group>``, ``ks_amp/<group>`` (group: all
    or a shape name), ``tstr``, ``trts``, ``disc_score`` (+ ``_std``), ``pred_mae/tstr`` and ``pred_mae/trtr``
    (+ ``_std``; both tested on one half of the real set; TRTR trains on the other half; ``runs`` predictors
    each, as ``runs`` classifiers make the discriminative score), and ``sweep/*``.
    """
    real, fake, ry, fy = _float_tensor(real_x), _float_tensor(fake_x), _labels(real_y), _labels(fake_y)
    if len(real) != len(ry) or len(fake) != len(fy):
        raise ValueError(f"sequences and labels differ in length: {len(real)}/{len(ry)}, {len(fake)}/{len(fy)}")
    report = distribution_distances(real, ry, fake, fy, shapes, seed)
    report["tstr"], report["trts"], real_classifier = tstr_trts(real, ry, fake, fy, steps, seed)
    report["disc_score"], report["disc_score_std"] = discriminative_score(real, fake, runs, steps, seed=seed)
    real_train, real_test = _split(len(real), 0.5, torch.Generator().manual_seed(seed))
    report["pred_mae/tstr"], report["pred_mae/tstr_std"] = predictive_mae(fake, real[real_test], runs, steps, seed)
    report["pred_mae/trtr"], report["pred_mae/trtr_std"] = predictive_mae(
        real[real_train], real[real_test], runs, steps, seed
    )
    if sweep_x is not None:
        report |= sweep_smoothness(sweep_x, real_classifier, shapes)
    return report


def real_floor(real_x: Array, real_y: Array, seed: int = 0, **kwargs) -> dict[str, float | list[float]]:
    """``sequence_report`` of one random half of the real set against the other: the value of each metric
    that a perfect generator would get at this n."""
    real, ry = _float_tensor(real_x), _labels(real_y)
    first, second = _split(len(real), 0.5, torch.Generator().manual_seed(seed))
    return sequence_report(real[first], ry[first], real[second], ry[second], seed=seed, **kwargs)


# --- src/evaluate.py ---------------------------------------------------------------------------------------


def grid_smoothness(
    sequences: Array,
    positions: Array,
    classifier: nn.Module,
    shapes: Sequence[str] = DEFAULT_SHAPES,
    label: int | None = None,
) -> dict[str, Any]:
    """:func:`sweep_smoothness` along every row and every column of a 2-D sweep grid (``latent_sweep``).

    Per grid axis (a or b) the mean rho over the grid's lines along it; per quantity the axis with
    the larger |rho| is reported: the plane's two directions are random, so neither is "the frequency axis"
    in advance. A line along which a quantity does not change at all counts as rho = 0. Label flips are
    summed over all lines. Rho is blind to scale (a collapsed generator whose output barely moves can still
    order it perfectly), so the span (max - min) of each quantity over the grid comes with it.

    With the grid's class ``label`` (a conditional sweep), also ``off_label``: each grid point whose wave the
    classifier puts in another class, as its (a, b), that class and the wave's frequency and amplitude (read as
    that class's shape, as the rho are): what a label flip along a line comes from, and where in the grid it sits.
    """
    seqs, pos = _float_tensor(sequences), torch.as_tensor(positions)
    lines = {"a": [], "b": []}  # along a: fixed b (one grid column); along b: fixed a (one grid row)
    for axis, fixed in (("a", 1), ("b", 0)):
        for value in torch.unique(pos[:, fixed]):
            rows = pos[:, fixed] == value
            order = pos[rows, 1 - fixed].argsort()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConstantInputWarning)
                lines[axis].append(sweep_smoothness(seqs[rows][order], classifier, shapes))
    out: dict[str, float | str | list[float]] = {
        "label_flips": float(sum(line["sweep/label_flips"] for axis in lines.values() for line in axis))
    }
    for quantity in ("freq", "amp"):
        by_axis = [float(np.mean(np.nan_to_num([line[f"sweep/rho_{quantity}"] for line in lines[a]]))) for a in "ab"]
        best = int(np.argmax(np.abs(by_axis)))
        out |= {f"rho_{quantity}": by_axis[best], f"{quantity}_axis": "ab"[best], f"rho_{quantity}_by_axis": by_axis}
    predicted = predict(classifier, seqs)
    freq, amp = estimate_freq_amp(seqs, predicted, shapes)
    out |= {"freq_span": float(freq.max() - freq.min()), "amp_span": float(amp.max() - amp.min())}
    if label is not None:
        out["off_label"] = [
            {
                "a": float(pos[i, 0]),
                "b": float(pos[i, 1]),
                "class": shapes[c],
                "freq": float(freq[i]),
                "amp": float(amp[i]),
            }
            for i, c in enumerate(predicted.tolist())
            if c != label
        ]
    return out


# Issue 7's targets: report key -> (target, test of the samples' value). The MMD^2 and KS keys of a single
# class (and KS overall) take the per-class targets, by prefix.
TARGETS: dict[str, tuple[str, Callable[[float], bool]]] = {
    "mmd2/all": ("< 1e-3", lambda v: v < 1e-3),
    "disc_score": ("<= 0.05", lambda v: v <= 0.05),
    "tstr": (">= 0.97", lambda v: v >= 0.97),
    "trts": (">= 0.95", lambda v: v >= 0.95),
    "pred_mae/ratio": ("<= 1.15", lambda v: v <= 1.15),
    "sweep/rho_freq": ("|rho| >= 0.95", lambda v: abs(v) >= 0.95),
    "sweep/rho_amp": ("|rho| >= 0.95", lambda v: abs(v) >= 0.95),
    "sweep/label_flips": ("0", lambda v: v == 0),
}
PER_CLASS_TARGETS: dict[str, tuple[str, Callable[[float], bool]]] = {
    "mmd2": ("< 1.5e-3", lambda v: v < 1.5e-3),
    "ks_freq": ("<= 0.08", lambda v: v <= 0.08),
    "ks_amp": ("<= 0.08", lambda v: v <= 0.08),
}
# The sweep's figures shown beside the samples' scores.
SWEEP_KEYS = ("rho_freq", "rho_amp", "freq_span", "amp_span", "label_flips", "bases_passing")


def target(key: str) -> tuple[str, Callable[[float], bool]] | None:
    """The issue's (target, test) for a report key, or None."""
    if key in TARGETS:
        return TARGETS[key]
    prefix, slash, _ = key.partition("/")
    return PER_CLASS_TARGETS.get(prefix) if slash else None


def evaluate(cfg: Any) -> dict[str, Any]:
    """``src/evaluate.py`` for sequence data (see conf/eval.yaml, section ``sequence``).

    Scores ``n`` samples of a checkpoint (class-balanced for conditional models), or the ``sequences``
    (+ ``labels``) of an npz with ``data=``, against the held-out test split of the data config (the
    checkpoint's own), beside the real-vs-real floor: the same metrics for ``n`` real *training* sequences
    against the same test split. For a checkpoint also the latent-sweep smoothness per class, with the sweep
    figures beside metrics.json. Prints the table with the issue's targets, writes metrics.json.

    Unlabelled samples (unconditional models, an npz without ``labels``) are labelled by a classifier trained
    on the real test split, and TSTR / TRTS are left out: they would grade that classifier's own labels.
    """
    if (cfg.ckpt_path is None) == (cfg.samples is None):
        raise ValueError("give one of ckpt_path=<checkpoint> or samples=<file.npz> data=waves")
    if cfg.n < 2:
        raise ValueError(f"n must be >= 2, got {cfg.n}")
    options, source = cfg.sequence, Path(cfg.ckpt_path or cfg.samples)
    data_config, model, trained = _reference(cfg)
    datamodule = _data_module(data_config, options.test_per_class)
    real, real_y = datamodule.held_out().tensors
    shapes = datamodule.shapes
    fake, fake_y = generate_balanced(model, cfg.n, cfg.seed, cfg.batch_size) if model else read_samples(source, cfg.n)
    fake, fake_y = _checked(source, fake, fake_y, real, shapes)
    classifier = train_classifier(real, real_y, len(shapes), options.steps, cfg.seed)
    labelled = fake_y is not None
    if not labelled:
        fake_y = predict(classifier, fake)
    settings = dict(seed=cfg.seed, shapes=shapes, steps=options.steps, runs=options.runs)
    samples = _scores(real, real_y, fake, fake_y, settings)
    if not labelled:
        del samples["tstr"], samples["trts"]
    report: dict[str, Any] = {"source": str(source), "data": data_config} | trained
    report |= {"classes": list(shapes), "n_reference": len(real), "n": len(fake), "samples": samples}
    report["reference"] = "test split"
    if options.test_per_class is not None:
        report["reference"] += f", redrawn with {options.test_per_class} per class"
    report["labels"] = (
        ("conditioned on, class-balanced" if model else "from the file")
        if labelled
        else "predicted by a classifier trained on the real test split"
    )
    if options.floor:
        floor_x, floor_y = floor_set(datamodule, len(fake), cfg.seed)
        report |= {"n_floor": len(floor_x), "floor": _scores(real, real_y, floor_x, floor_y, settings)}
    out = Path(cfg.out) if cfg.out else source.parent / "metrics.json"
    report["sweep"] = sweep_report(model, classifier, shapes, options, cfg.seed, figures=out)
    samples |= {f"sweep/{k}": v for k, v in report["sweep"].items() if k in SWEEP_KEYS}
    report["targets"] = {
        key: {"target": rule[0], "pass": bool(rule[1](value))}
        for key, value in samples.items()
        if (rule := target(key)) is not None and isinstance(value, float)
    }
    from rich.console import Console

    Console().print(metrics_table(report))
    write_json(out, report)
    log.info("wrote %s", out)
    return report


def _data_module(data_config: dict[str, Any], test_per_class: int | None) -> Any:
    """The data module of ``data_config``; ``test_per_class`` redraws its test split at that size. The test
    split has its own child seed, so a redrawn one is still independent of the training split."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    datamodule = instantiate(OmegaConf.create(data_config))
    if test_per_class is not None:
        if test_per_class < 2:
            raise ValueError(f"sequence.test_per_class must be >= 2 or null, got {test_per_class}")
        datamodule.sizes["test"] = test_per_class
    return datamodule


def _reference(cfg: Any) -> tuple[dict[str, Any], Any, dict[str, Any]]:
    """(the data config, the model or None, facts about its training) of a checkpoint, else of ``data=``."""
    from omegaconf import OmegaConf

    if cfg.ckpt_path is None:
        if cfg.get("data") is None:
            raise ValueError("which data were the samples made for? add data=waves (and its settings, if changed)")
        data_config, model, trained = OmegaConf.to_container(cfg.data, resolve=True), None, {}
    else:
        if cfg.get("data") is not None:
            raise ValueError("data= goes with samples=; a checkpoint is scored against its own data config")
        from ganzoo.pipeline import load_checkpoint, load_model

        stored = load_checkpoint(cfg.ckpt_path)["ganzoo"]
        model = load_model(cfg.ckpt_path, map_location=cfg.device).to(cfg.device)
        data_config, trained = stored["config"]["data"], {"model": type(model).__name__, "gen_step": stored["gen_step"]}
    for key in ("data_dir", "cache_dir"):  # data read from files: where this machine keeps them
        if key in data_config:
            data_config[key] = cfg.paths[key]
    return data_config, model, trained


def _conditional(model: nn.Module) -> bool:
    return model.sample_conditions(1, generator=torch.Generator()) is not None


def generate_balanced(model: Any, n: int, seed: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``n`` seeded samples of a model, in equal blocks of each class when it is conditional (uniformly drawn
    labels would add their own sampling noise to the per-class metrics)."""
    torch.manual_seed(seed)
    labels = torch.arange(n) * model.num_classes // n if _conditional(model) else None
    cond = None if labels is None else labels.to(model.device)
    return model.sample(latent=model.sample_latent(n), cond=cond, batch_size=batch_size), labels


def read_samples(path: Path, n: int) -> tuple[np.ndarray, np.ndarray | None]:
    """The first ``n`` ``sequences`` (and ``labels``, if any) of an npz."""
    if not path.is_file():
        raise ValueError(f"samples file {path} does not exist")
    archive = np.load(path)
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"{path} is not an npz archive; write one with np.savez(path, sequences=..., labels=...)")
    with archive:
        if "sequences" not in archive:
            raise ValueError(
                f"{path} holds no `sequences` array (found {sorted(archive)}); the sequence report reads float "
                "`sequences` (N, T) or (N, T, C) and optional int `labels` (N,), as src/sample.py writes them"
            )
        return archive["sequences"][:n], archive["labels"][:n] if "labels" in archive else None


def _checked(
    source: Path, x: Array, labels: Array | None, real: torch.Tensor, shapes: Sequence[str]
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Samples as float (N, T, C) and labels as int64 (N,), or a ValueError saying what does not fit the data."""
    x = torch.as_tensor(x)
    if not x.is_floating_point():
        raise ValueError(f"{source}: sequences must be floats, got {x.dtype}")
    x = x.float().unsqueeze(-1) if x.dim() == 2 else x.float()
    if x.shape[1:] != real.shape[1:]:
        seq_len, channels = real.shape[1:]
        raise ValueError(
            f"{source}: the data has sequences of (seq_len={seq_len}, channels={channels}), the samples are "
            f"{tuple(x.shape)}; give the data settings the samples were made for (e.g. data.seq_len=...)"
        )
    if not torch.isfinite(x).all():
        raise ValueError(f"{source}: the sequences hold NaN or infinite values")
    if labels is None:
        return x, None
    labels = torch.as_tensor(labels)
    if labels.is_floating_point() or labels.shape != (len(x),) or labels.min() < 0 or labels.max() >= len(shapes):
        raise ValueError(
            f"{source}: labels must be {len(x)} ints in [0, {len(shapes)}) (the data's classes {list(shapes)}), "
            f"got {labels.dtype} {tuple(labels.shape)} in [{labels.min()}, {labels.max()}]"
        )
    return x, labels.long()


def floor_set(datamodule: Any, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random ``n`` (at most the whole split) of the training split: what a perfect generator gives."""
    x, y = datamodule.dataset("train").tensors
    rows = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n]
    return x[rows], y[rows]


def _scores(
    real: torch.Tensor, real_y: torch.Tensor, fake: torch.Tensor, fake_y: torch.Tensor, settings: dict[str, Any]
) -> dict[str, Any]:
    """:func:`sequence_report` plus the next-step MAE ratio (synthetic- over real-trained; the target is on it)
    and the fraction of each class among the sequences scored."""
    report = sequence_report(real, real_y, fake, fake_y, **settings)
    report["pred_mae/ratio"] = report["pred_mae/tstr"] / report["pred_mae/trtr"]
    fractions = torch.bincount(fake_y, minlength=len(settings["shapes"])) / len(fake_y)
    return report | {"class_fractions": [round(float(f), 4) for f in fractions]}


SWEEP_PLANES = ("attributes", "random")


@torch.no_grad()
def attribute_directions(
    model: Any, label: int | None, classifier: nn.Module, shapes: Sequence[str], n: int = 2000, seed: int = 0
) -> torch.Tensor:
    """The latent directions (2, latent features per step) along which frequency and amplitude change most, at
    class ``label``: the least-squares slopes of each sequence's recovered frequency and amplitude on its
    latent, over ``n`` seeded samples (a per-step latent enters by its time mean, the coordinates of the
    time-constant directions a sweep moves along; Shen et al. 2020, InterFaceGAN, find attribute directions
    the same way). Unconditional samples are labelled by ``classifier`` for the amplitude's shape ratio."""
    z = model.sample_latent(n, generator=torch.Generator().manual_seed(seed))
    cond = None if label is None else torch.full((n,), label, dtype=torch.int64)
    x = model.sample(latent=z.to(model.device), cond=cond)
    freq, amp = estimate_freq_amp(x, predict(classifier, x) if cond is None else cond, shapes)
    coords = (z.mean(1) if z.dim() == 3 else z.flatten(1)).double().cpu()
    design = torch.cat([coords, torch.ones(n, 1, dtype=torch.float64)], dim=1)
    targets = torch.from_numpy(np.stack([freq, amp], axis=1))
    return torch.linalg.lstsq(design, targets).solution[:-1].T.float()  # (2, width): d freq / dz, d amp / dz


def sweep_report(
    model: Any, classifier: nn.Module, shapes: Sequence[str], options: Any, seed: int, figures: Path | None = None
) -> dict[str, Any]:
    """Latent-sweep smoothness (:func:`grid_smoothness`) of one ``latent_sweep`` grid per class (one for an
    unconditional model), each drawn beside ``figures`` (if given) as ``<stem>_sweep_<class>.png``. Overall: the worst
    class's rho and span and the label flips of all classes. With ``options.sweep_bases`` > 1 also
    ``bases_passing``: the share of that many sweeps (base seeds ``seed``, ``seed + 1``, ...; the first is the one
    above) whose rho and flips meet the issue's targets, and ``per_base``: each one's rho and flips. When there is
    nothing to sweep, ``{"note": why}``."""
    if not options.sweep:
        return {"note": "not measured (sequence.sweep=false)"}
    if model is None:
        return {"note": "no model: samples read from a file have no latent to sweep"}
    shape = tuple(model.sample_latent(1, generator=torch.Generator()).shape[1:])
    width = shape[-1]
    if width < 2:
        return {"note": f"{type(model).__name__}'s latent has {width} feature per step: no 2-D plane to sweep"}
    from ganzoo.callbacks.plots import latent_sweep, sweep_figure
    from ganzoo.callbacks.samples import save_png

    plane = options.get("sweep_plane", "attributes")
    if plane not in SWEEP_PLANES:
        raise ValueError(f"sequence.sweep_plane must be one of {SWEEP_PLANES}, got {plane!r}")
    conditional = _conditional(model)
    bases = options.get("sweep_bases", 1)
    if bases < 1:
        raise ValueError(f"sequence.sweep_bases must be >= 1, got {bases}")

    def sweep_grids(base_seed: int, draw: bool) -> dict[str, dict[str, Any]]:
        grids = {}
        for label, name in enumerate(shapes) if conditional else [(None, "unconditional")]:
            directions = (
                None if plane == "random" else attribute_directions(model, label, classifier, shapes, seed=base_seed)
            )
            steps, span = options.sweep_steps, options.sweep_span
            sequences, positions = latent_sweep(model, label, steps, span, base_seed, directions)
            grids[name] = grid_smoothness(sequences, positions, classifier, shapes, label)
            if draw:
                title = f"{type(model).__name__} latent sweep, {name}"
                path = figures.with_name(f"{figures.stem}_sweep_{name}.png")
                save_png(sweep_figure(sequences, positions, title), path)
        return grids

    def summary(grids: dict[str, dict[str, Any]]) -> dict[str, float]:
        """The worst class's rho per quantity and (conditional) the label flips of all classes."""
        scores = {f"rho_{q}": min((g[f"rho_{q}"] for g in grids.values()), key=abs) for q in ("freq", "amp")}
        if conditional:
            scores["label_flips"] = sum(g["label_flips"] for g in grids.values())
        return scores

    grids = sweep_grids(seed, figures is not None)
    scores = summary(grids)
    report: dict[str, Any] = {
        "latent": _latent_words(model, shape, width),
        "grid": f"{options.sweep_steps} x {options.sweep_steps}: z = z_rest + a e1 + b e2 (e1, e2 orthonormal, "
        f"time-constant for per-step noise), a and b in [-{options.sweep_span}, {options.sweep_span}] "
        "(standard-normal coordinates); "
        + (
            "e1: the latent direction that predicts frequency best (least squares over 2000 samples of the "
            "class), e2: amplitude's, made orthogonal to e1"
            if plane == "attributes"
            else "e1, e2: a seeded random plane"
        ),
        **scores,
        "freq_span": min(grid["freq_span"] for grid in grids.values()),
        "amp_span": min(grid["amp_span"] for grid in grids.values()),
    }
    if not conditional:
        report["note"] = "unconditional: no fixed label, so class changes along the sweep are not scored"
    if bases > 1:  # the same sweep through other base points z_rest: how much of the above is this draw's luck
        per_base = [scores] + [summary(sweep_grids(seed + k, False)) for k in range(1, bases)]
        met = [all(TARGETS[f"sweep/{key}"][1](value) for key, value in base.items()) for base in per_base]
        report |= {"bases": bases, "bases_passing": float(np.mean(met)), "per_base": per_base}
    return report | {"grids": grids}


_ROWS = (
    ("tstr", "TSTR accuracy", "{:.3f}"),
    ("trts", "TRTS accuracy", "{:.3f}"),
    ("disc_score", "discriminative score", "{:.3f}"),
    ("pred_mae/tstr", "next-step MAE, synthetic", "{:.4f}"),
    ("pred_mae/trtr", "next-step MAE, real (TRTR)", "{:.4f}"),
    ("pred_mae/ratio", "next-step MAE / TRTR", "{:.3f}"),
    ("sweep/rho_freq", "sweep rho, frequency", "{:+.3f}"),
    ("sweep/rho_amp", "sweep rho, amplitude", "{:+.3f}"),
    ("sweep/freq_span", "sweep frequency span", "{:.2f}"),
    ("sweep/amp_span", "sweep amplitude span", "{:.2f}"),
    ("sweep/label_flips", "sweep label flips", "{:.0f}"),
    ("sweep/bases_passing", "sweep targets met, share of base points", "{:.3f}"),
)


_GROUP_ROWS = (
    ("mmd2", "MMD^2", "{:.2e}"),
    ("ks_freq", "frequency KS", "{:.3f}"),
    ("ks_amp", "amplitude KS", "{:.3f}"),
    ("kuiper_phase", "phase Kuiper", "{:.3f}"),
)


def report_rows(report: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(metric, samples, real floor, target, pass mark) of every metric in a report of :func:`evaluate`, as
    printed; bench/waves.py puts the same rows in bench/results.md."""
    samples, floor = report["samples"], report.get("floor", {})
    per_group = [
        (f"{metric}/{group}", f"{label} ({'overall' if group == 'all' else group})", style)
        for group in ("all", *report["classes"])
        for metric, label, style in _GROUP_ROWS
    ]
    rows = []
    for key, label, style in (*per_group, *_ROWS):
        if key in samples:
            rule, result = target(key), report["targets"].get(key)
            mark = ("pass" if result["pass"] else "FAIL") if result else ""
            floor_cell = style.format(floor[key]) if key in floor else "-"
            rows.append((label, style.format(samples[key]), floor_cell, rule[0] if rule else "", mark))
    if "note" in report["sweep"]:
        rows.append(("latent sweep", report["sweep"]["note"], "-", "", ""))
    return rows


def metrics_table(report: dict[str, Any]) -> Any:
    """A rich Table of :func:`report_rows`: metric, samples, real floor, the issue's target, pass mark."""
    from rich.table import Table

    title = f"{report['n']} samples ({report['labels']}) vs {report['n_reference']} real ({report['reference']})"
    if "floor" in report:
        title += f"; floor: {report['n_floor']} real training sequences"
    passed = [t["pass"] for t in report["targets"].values()]
    table = Table(title=title, caption=f"{sum(passed)} of {len(passed)} targets met")
    for name in ("metric", "samples", "real floor", "target", "pass"):
        table.add_column(name, justify="left" if name == "metric" else "right")
    for row in report_rows(report):
        table.add_row(*row)
    return table


def _latent_words(model: Any, shape: tuple[int, ...], width: int) -> str:
    """How the swept latent is laid out, in words for the report."""
    if len(shape) != 2:
        return f"{shape} per sample"
    if getattr(model, "latent", "per_step") == "per_sequence":
        return f"one {width}-d vector per sequence, repeated over {shape[0]} steps"
    return f"per-step noise, {shape[0]} steps x {width}"

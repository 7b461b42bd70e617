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
Inputs are (N, T, C) float tensors or arrays and int labels (N,).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from scipy.stats import ks_2samp, spearmanr
from torch import nn

from ganzoo.data.waves import DEFAULT_SHAPES, WAVE_SHAPES

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
    if min(len(a), len(b)) < 2:
        raise ValueError(f"MMD^2 needs at least 2 sequences per set, got {len(a)} and {len(b)}")
    pooled = torch.cat([a, b])
    dist = torch.cdist(pooled, pooled)
    median = dist[torch.triu_indices(len(pooled), len(pooled), offset=1).unbind()].median().item()
    bandwidths = [max(median, 1e-12) * s for s in scales]
    kernel = sum(torch.exp(-(dist**2) / (2 * s**2)) for s in bandwidths) / len(bandwidths)
    n = len(a)
    k_aa, k_bb, k_ab = kernel[:n, :n], kernel[n:, n:], kernel[:n, n:]
    off_diag_mean = lambda k: (k.sum() - k.diagonal().sum()) / (len(k) * (len(k) - 1))
    return float(off_diag_mean(k_aa) + off_diag_mean(k_bb) - 2 * k_ab.mean()), bandwidths


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
) -> tuple[np.ndarray, np.ndarray]:
    """Fundamental frequency (cycles per window) and amplitude of each sequence (first channel).

    Coarse peak of the zero-padded FFT (mean removed), refined by a least-squares sinusoid fit on a grid of
    +-``window`` cycles (the FFT peak alone is biased by the negative-frequency image at 1-2 cycles). The
    amplitude is the fitted fundamental's; given labels, it is divided by the shape's fundamental ratio, which
    turns it into the peak value that ``make_waves`` calls ``amp``. Sawtooth estimates carry some bias from
    their harmonics (about 0.06 cycles and 3 % amplitude on average at seq_len=30); real and fake share it.
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
    return grid[best], amp


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


def predictive_mae(train_x: Array, test_x: Array, steps: int = 300, seed: int = 0) -> float:
    """MAE of a GRU predicting step t+1 from steps <= t, trained on ``train_x``, tested on ``test_x``
    (Yoon et al. 2019's predictive score: train on fake, test on real; train on real for the reference)."""
    train, test = _float_tensor(train_x), _float_tensor(test_x)
    model = _seeded(seed, lambda: GRUNet(train.shape[2], train.shape[2], per_step=True))
    _fit(model, train[:, :-1], train[:, 1:], nn.functional.l1_loss, steps, seed)
    with torch.no_grad():
        return float((model(test[:, :-1]) - test[:, 1:]).abs().mean())


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


def _per_class_distances(
    real: torch.Tensor, real_y: torch.Tensor, fake: torch.Tensor, fake_y: torch.Tensor, shapes: Sequence[str], seed: int
) -> dict[str, float | list[float]]:
    real_fa, fake_fa = estimate_freq_amp(real, real_y, shapes), estimate_freq_amp(fake, fake_y, shapes)
    groups = {"all": (torch.ones_like(real_y, dtype=torch.bool), torch.ones_like(fake_y, dtype=torch.bool))}
    groups |= {name: (real_y == k, fake_y == k) for k, name in enumerate(shapes)}
    out: dict[str, float | list[float]] = {}
    for name, (r, f) in groups.items():
        if r.sum() < 2 or f.sum() < 2:
            continue  # a class the generator never produced has no distance; TSTR/TRTS show it
        out[f"mmd2/{name}"], out[f"mmd2_bandwidths/{name}"] = mmd2_rbf(real[r], fake[f], seed=seed)
        out[f"ks_freq/{name}"] = float(ks_2samp(real_fa[0][r.numpy()], fake_fa[0][f.numpy()]).statistic)
        out[f"ks_amp/{name}"] = float(ks_2samp(real_fa[1][r.numpy()], fake_fa[1][f.numpy()]).statistic)
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
    (both tested on one half of the real set; TRTR trains on the other half), and ``sweep/*``.
    """
    real, fake, ry, fy = _float_tensor(real_x), _float_tensor(fake_x), _labels(real_y), _labels(fake_y)
    if len(real) != len(ry) or len(fake) != len(fy):
        raise ValueError(f"sequences and labels differ in length: {len(real)}/{len(ry)}, {len(fake)}/{len(fy)}")
    report = _per_class_distances(real, ry, fake, fy, shapes, seed)
    report["tstr"], report["trts"], real_classifier = tstr_trts(real, ry, fake, fy, steps, seed)
    report["disc_score"], report["disc_score_std"] = discriminative_score(real, fake, runs, steps, seed=seed)
    real_train, real_test = _split(len(real), 0.5, torch.Generator().manual_seed(seed))
    report["pred_mae/tstr"] = predictive_mae(fake, real[real_test], steps, seed)
    report["pred_mae/trtr"] = predictive_mae(real[real_train], real[real_test], steps, seed)
    if sweep_x is not None:
        report |= sweep_smoothness(sweep_x, real_classifier, shapes)
    return report


def real_floor(real_x: Array, real_y: Array, seed: int = 0, **kwargs) -> dict[str, float | list[float]]:
    """``sequence_report`` of one random half of the real set against the other: the value of each metric
    that a perfect generator would get at this n."""
    real, ry = _float_tensor(real_x), _labels(real_y)
    first, second = _split(len(real), 0.5, torch.Generator().manual_seed(seed))
    return sequence_report(real[first], ry[first], real[second], ry[second], seed=seed, **kwargs)

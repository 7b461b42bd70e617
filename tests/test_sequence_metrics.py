"""Sequence metrics on the waves set: each one separates what it should and is ~0 (or ~1) on real vs real."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import ks_2samp

from ganzoo.data.waves import DEFAULT_SHAPES, make_waves, sawtooth
from ganzoo.metrics.sequence import (
    attribute_directions,
    discriminative_score,
    distribution_distances,
    estimate_freq_amp,
    fundamental_ratio,
    grid_smoothness,
    kuiper,
    mmd2_rbf,
    predictive_mae,
    real_floor,
    sweep_smoothness,
    train_classifier,
    tstr_trts,
)


@pytest.fixture(scope="module")
def real():
    return make_waves(200, seed=0)


@pytest.fixture(scope="module")
def same():
    return make_waves(200, seed=1)


def test_fundamental_ratio_of_known_shapes():
    assert fundamental_ratio(np.sin) == pytest.approx(1.0, abs=1e-6)
    assert fundamental_ratio(sawtooth) == pytest.approx(2 / math.pi, abs=1e-3)


def test_estimator_recovers_frequency_and_amplitude(real):
    x, labels, params = real
    freq, amp = estimate_freq_amp(x, labels)
    sine, saw = (labels == 0).numpy(), (labels == 1).numpy()
    assert np.abs(freq - params["freq"])[sine].max() < 0.01
    assert np.abs(amp / params["amp"] - 1)[sine].max() < 0.01
    # The sawtooth's harmonics bias a single-sinusoid fit a little; the median error stays small.
    assert np.median(np.abs(freq - params["freq"])[saw]) < 0.1
    assert np.median(np.abs(amp / params["amp"] - 1)[saw]) < 0.05
    # The phase at the first step: the sine's own; the sawtooth's fundamental's is + pi (its harmonics and the
    # frequency's bias move that estimate more than the frequency's, as the fit pivots at the window's centre).
    phase = estimate_freq_amp(x, labels, with_phase=True)[2]
    wrapped = np.abs(np.angle(np.exp(1j * (phase - params["phase"] - np.pi * labels.numpy()))))
    assert wrapped[sine].max() < 0.02 and np.median(wrapped[saw]) < 0.25


def test_phase_bunching_shows_in_kuiper_and_mmd_but_not_in_the_ks_rows(real, same):
    """Sawtooths of the real frequency and amplitude laws, phases from a quarter of the cycle only: the
    phase's Kuiper distance and MMD^2 see it, the frequency and amplitude KS do not."""
    x, y, _ = real
    other_x, other_y, params = same
    rng = np.random.default_rng(0)
    phase = rng.uniform(np.pi / 2, np.pi, 200)
    steps = np.arange(30) / 30
    bunched = params["amp"][200:, None] * sawtooth(2 * np.pi * params["freq"][200:, None] * steps + phase[:, None])
    fake = torch.cat([other_x[:200], torch.from_numpy(bunched).float().unsqueeze(-1)])
    fair, bad = (distribution_distances(x, y, f, other_y, seed=0) for f in (other_x, fake))
    assert bad["kuiper_phase/sawtooth"] > 0.5 > 0.2 > max(fair["kuiper_phase/sawtooth"], bad["kuiper_phase/sine"])
    assert bad["mmd2/sawtooth"] > 0.005 > 0.001 > abs(fair["mmd2/sawtooth"])
    assert max(bad[f"ks_{q}/sawtooth"] for q in ("freq", "amp")) < 0.2


def test_kuiper_is_the_same_wherever_the_circle_is_cut():
    rng = np.random.default_rng(0)
    uniform, bunched = rng.uniform(0, 2 * np.pi, 300), rng.normal(0.0, 0.3, 300) % (2 * np.pi)
    shifted = [kuiper((uniform + c) % (2 * np.pi), (bunched + c) % (2 * np.pi)) for c in (0.0, 1.0, np.pi)]
    assert max(shifted) - min(shifted) < 0.02 and min(shifted) > 0.6
    assert kuiper(uniform, rng.uniform(0, 2 * np.pi, 300)) < 0.15


def test_mmd_same_distribution_near_zero_and_far_from_other_shape(real, same):
    x, labels, _ = real
    y, y_labels, _ = same
    same_mmd, bandwidths = mmd2_rbf(x, y)
    sine_vs_saw, _ = mmd2_rbf(x[labels == 0], y[y_labels == 1])
    assert len(bandwidths) == 5 and bandwidths == sorted(bandwidths)
    assert abs(same_mmd) < 0.005 and sine_vs_saw > 20 * max(abs(same_mmd), 1e-4)


def test_narrowed_amplitude_range_is_detected(real, same):
    narrow = make_waves(200, amp_range=(0.4, 0.6), seed=2)
    real_amp = estimate_freq_amp(*real[:2])[1]
    for other, far in ((same, False), (narrow, True)):
        mmd, _ = mmd2_rbf(real[0], other[0])
        ks_amp = ks_2samp(real_amp, estimate_freq_amp(*other[:2])[1]).statistic
        assert (mmd > 0.002 and ks_amp > 0.25) if far else (abs(mmd) < 0.0005 and ks_amp < 0.15)


def test_tstr_on_real_as_synthetic_is_perfect(real, same):
    tstr, trts, _ = tstr_trts(*real[:2], *same[:2], steps=100)
    assert tstr > 0.97 and trts > 0.97


def test_discriminative_score_separates_shapes(real, same):
    x, labels, _ = real
    y, y_labels, _ = same
    same_score, _ = discriminative_score(x, y, runs=1, steps=150)
    other_score, _ = discriminative_score(x[labels == 0], y[y_labels == 1], runs=1, steps=150)
    assert same_score < 0.1 and other_score > 0.4


def test_predictive_mae_averages_seeded_predictors_and_sees_wrong_dynamics(real, same):
    x, labels, _ = real
    y, _, _ = same
    mean, std = predictive_mae(x, y, runs=2, steps=150, seed=5)
    singles = [predictive_mae(x, y, runs=1, steps=150, seed=s) for s in (5, 6)]
    assert all(single_std == 0 for _, single_std in singles)
    assert mean == pytest.approx(np.mean([m for m, _ in singles])) and std == pytest.approx(
        np.std([m for m, _ in singles])
    )
    # Trained on waves drawn backwards in time, the predictor learns the wrong next step for real ones.
    reversed_mean, _ = predictive_mae(x.flip(1), y, runs=2, steps=150, seed=5)
    assert reversed_mean > 1.5 * mean


def test_sweep_smoothness_on_an_ordered_sweep(real):
    classifier = train_classifier(*real[:2], steps=100)
    # A hand-made "latent sweep": sines of rising frequency.
    t = torch.arange(30) / 30
    freqs = torch.linspace(1.5, 4.5, 20)
    sweep = 0.5 * torch.sin(2 * math.pi * freqs[:, None] * t)
    result = sweep_smoothness(sweep, classifier)
    assert result["sweep/rho_freq"] > 0.95 and result["sweep/label_flips"] == 0


def test_real_floor_reports_every_metric_deterministically(real):
    x, labels, _ = real
    first = real_floor(x[::2], labels[::2], seed=3, steps=20, runs=1)
    second = real_floor(x[::2], labels[::2], seed=3, steps=20, runs=1)
    assert first == second
    expected = {"tstr", "trts", "disc_score", "disc_score_std"}
    expected |= {"pred_mae/tstr", "pred_mae/tstr_std", "pred_mae/trtr", "pred_mae/trtr_std"}
    expected |= {
        f"{m}/{g}"
        for m in ("mmd2", "mmd2_bandwidths", "ks_freq", "ks_amp", "kuiper_phase")
        for g in ("all", "sine", "sawtooth")
    }
    assert set(first) == expected


def test_distribution_distances_per_class_and_unlabelled(real, same):
    x, y, _ = real
    other_x, other_y, _ = same
    labelled = distribution_distances(x, y, other_x, other_y, seed=0)
    groups = {key.split("/")[1] for key in labelled}
    assert groups == {"all", "sine", "sawtooth"}
    assert max(labelled[f"ks_{q}/{g}"] for q in ("freq", "amp") for g in groups) < 0.2  # the same distribution
    # A generator that draws every sawtooth at 1-2 cycles: its class's frequency KS shows it, the sine's does not.
    slow, _, _ = make_waves(200, freq_range=(1.0, 2.0), seed=11)
    fake = torch.cat([other_x[other_y == 0], slow[200:]])
    collapsed = distribution_distances(x, y, fake, torch.arange(400) // 200, seed=0)
    assert collapsed["ks_freq/sawtooth"] > 0.5 > 0.2 > collapsed["ks_freq/sine"]
    unlabelled = distribution_distances(x, y, other_x, None, seed=0)
    assert set(unlabelled) == {"mmd2/all", "mmd2_bandwidths/all", "ks_freq/all", "ks_amp/all", "kuiper_phase/all"}
    assert unlabelled["ks_freq/all"] < 0.2


class KnownWaves(torch.nn.Module):
    """A stand-in generator whose factors are known: a per-sequence latent z (5-d) sets the sine's frequency
    by z . u and its amplitude by z . v (u, v fixed unit vectors, neither along a coordinate axis)."""

    num_classes, latent = 2, "per_sequence"

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(5)
        self.u, self.v = torch.linalg.qr(torch.randn(5, 2, generator=gen))[0].T
        self.device = torch.device("cpu")

    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(n, 1, 5, generator=generator).expand(n, 30, 5)

    def sample(self, latent: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        z = latent[:, 0]
        freq, amp = 3.0 + 0.5 * z @ self.u, 0.5 + 0.15 * (z @ self.v).tanh()
        t = torch.arange(30) / 30
        return (amp[:, None] * torch.sin(2 * math.pi * freq[:, None] * t)).unsqueeze(-1)


def test_attribute_plane_finds_the_frequency_and_amplitude_directions(real):
    from ganzoo.callbacks.plots import latent_sweep

    model, classifier = KnownWaves(), train_classifier(*real[:2], steps=100)
    directions = attribute_directions(model, 0, classifier, DEFAULT_SHAPES, n=500)
    cosines = torch.nn.functional.cosine_similarity(directions, torch.stack([model.u, model.v]), dim=1)
    assert cosines.min() > 0.95, cosines
    along = grid_smoothness(*latent_sweep(model, 0, 5, 2.0, 0, directions), classifier)
    assert along["rho_freq"] > 0.95 and along["rho_amp"] > 0.95
    # frequency 3 + 0.5 a over a in [-2, 2]: the per-sequence vector itself moves by a (not a / sqrt(T))
    assert along["freq_span"] == pytest.approx(2.0, abs=0.1)


def test_grid_names_the_points_its_classifier_puts_in_another_class(real):
    # A sine grid with a sawtooth at its centre: two flips along its row and two along its column, and with the
    # grid's label the report says which point, which class, and the wave's frequency and amplitude.
    from ganzoo.callbacks.plots import latent_sweep
    from ganzoo.data.waves import sawtooth

    model, classifier = KnownWaves(), train_classifier(*real[:2], steps=100)
    sequences, positions = latent_sweep(model, 0, 5, 2.0, 0, attribute_directions(model, 0, classifier, DEFAULT_SHAPES))
    centre = (positions == 0).all(dim=1)
    sequences[centre] = torch.from_numpy(0.5 * sawtooth(2 * math.pi * 3.0 * np.arange(30) / 30)).float().view(1, 30, 1)
    grid = grid_smoothness(sequences, positions, classifier, DEFAULT_SHAPES, label=0)
    assert grid["label_flips"] == 4
    (point,) = grid["off_label"]
    assert (point["a"], point["b"], point["class"]) == (0.0, 0.0, "sawtooth")
    freq, amp = estimate_freq_amp(sequences[centre], torch.tensor([1]))  # read as a sawtooth, as the sweep reads it
    assert (point["freq"], point["amp"]) == (float(freq[0]), float(amp[0]))
    assert point["freq"] == pytest.approx(3.0, abs=0.3) and point["amp"] == pytest.approx(0.5, abs=0.1)
    assert "off_label" not in grid_smoothness(sequences, positions, classifier)  # no label, nothing is off it
    sequences[centre] = model.sample(torch.zeros(1, 30, 5))
    assert grid_smoothness(sequences, positions, classifier, label=0)["off_label"] == []

"""Sequence metrics on the waves set: each one separates what it should and is ~0 (or ~1) on real vs real."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import ks_2samp

from ganzoo.data.waves import make_waves, sawtooth
from ganzoo.metrics.sequence import (
    discriminative_score,
    estimate_freq_amp,
    fundamental_ratio,
    mmd2_rbf,
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
    expected = {"tstr", "trts", "disc_score", "disc_score_std", "pred_mae/tstr", "pred_mae/trtr"}
    expected |= {
        f"{m}/{g}" for m in ("mmd2", "mmd2_bandwidths", "ks_freq", "ks_amp") for g in ("all", "sine", "sawtooth")
    }
    assert set(first) == expected

"""Toy data (ring, grid, curves), their mode and curve metrics, the ToyMetrics callback and the ring study report."""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import ROOT, compose_config
from hydra.utils import instantiate
from omegaconf import OmegaConf
from scipy.stats import wasserstein_distance

from ganzoo.callbacks.toy import ToyMetrics
from ganzoo.data.toy import (
    CurvesDataModule,
    GridDataModule,
    RingDataModule,
    curve_grid,
    grid_modes,
    make_curves,
    make_mixture,
    ring_modes,
)
from ganzoo.metrics.toy import curve_bounds, curve_metrics, mode_metrics, w1_to_uniform
from ganzoo.pipeline import train

# Small, fast settings for training on a toy set (conftest's FAST is for MNIST: it sets data.limit).
TOY_FAST = [
    "model=toy_gan",
    "logger=csv",
    "data.n_train=2048",
    "data.n_test=500",
    "data.batch_size=64",
    "trainer.max_steps=20",
    "trainer.log_every_n_steps=1",
    "trainer.enable_model_summary=false",
    "~callbacks.progress",
    "callbacks.toy_metrics.every_n_gen_steps=5",
    "callbacks.toy_metrics.n_samples=200",
]


# --- data ----------------------------------------------------------------------------------------------------


def test_ring_and_grid_modes_geometry():
    ring = ring_modes(8, 2.0)
    assert ring.shape == (8, 2) and np.allclose(np.linalg.norm(ring, axis=1), 2.0)
    assert np.allclose(ring[0], [2, 0]) and len(np.unique(ring.round(6), axis=0)) == 8
    grid = grid_modes(5, 2.0)
    assert grid.shape == (25, 2) and sorted(set(grid[:, 0])) == [-4, -2, 0, 2, 4] == sorted(set(grid[:, 1]))


@pytest.mark.parametrize("module", [RingDataModule, GridDataModule])
def test_mixture_datamodule_deterministic_with_modes(module):
    dm = module(n_train=4000, n_test=1000, batch_size=50, seed=3)
    x, labels = dm.dataset("train").tensors
    assert x.shape == (4000, 2) and x.dtype == torch.float32 and dm.held_out().tensors[0].shape == (1000, 2)
    assert set(labels.tolist()) == set(range(len(dm.modes)))  # every mode is drawn
    # Every point lies near its own mode (5 sigma per coordinate is 1 in 3.5 million).
    assert np.abs(x.numpy() - dm.modes[labels.numpy()]).max() < 5 * dm.std
    again, other = module(n_train=4000, n_test=1000, batch_size=50, seed=3), module(n_train=4000, seed=4)
    assert torch.equal(again.dataset("train").tensors[0], x)
    assert not torch.equal(other.dataset("train").tensors[0][:100], x[:100])
    assert not torch.equal(dm.held_out().tensors[0][:100], x[:100])  # test split: its own stream
    batch, _ = next(iter(dm.train_dataloader()))
    assert batch.shape == (50, 2)


def test_curves_lie_between_the_bounds_and_are_deterministic():
    x, a = make_curves(500, n_points=15, a_range=(1, 2), seed=1)
    assert x.shape == (500, 15) and a.min() >= 1 and a.max() <= 2
    lower, upper = curve_bounds(curve_grid(15), (1, 2))
    assert np.allclose(lower, curve_grid(15) ** 2) and np.allclose(upper, 2 * curve_grid(15) ** 2 + 1)
    assert ((x.numpy() >= lower - 1e-6) & (x.numpy() <= upper + 1e-6)).all()
    assert np.allclose(x[:, 7].numpy(), a - 1, atol=1e-6)  # the middle point is x = 0: y = a - 1
    assert torch.equal(make_curves(500, seed=1)[0], x) and not torch.equal(make_curves(500, seed=2)[0], x)
    dm = CurvesDataModule(n_train=300, n_test=100, batch_size=30, seed=0)
    assert dm.dataset("train").tensors[0].shape == (300, 15) and dm.dim == 15


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: RingDataModule(std=0), "std must be > 0"),
        (lambda: RingDataModule(n_modes=0), "n_modes >= 1"),
        (lambda: GridDataModule(side=0), "side >= 1"),
        (lambda: RingDataModule(dim=3), "data.dim must be 2"),
        (lambda: RingDataModule(n_train=100, batch_size=200), "batch_size=200"),
        (lambda: CurvesDataModule(a_range=(2, 1)), "a_range"),
        (lambda: CurvesDataModule(n_points=15, dim=2), "data.dim must equal"),
        (lambda: make_mixture(ring_modes(), 0.02, 0), "at least one sample"),
    ],
)
def test_bad_values_are_one_line_errors(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_configs_compose_into_data_and_vector_nets(tmp_path):
    for data, dim in (("ring", 2), ("grid", 2), ("curves", 15)):
        cfg = compose_config([f"data={data}", "model=toy_gan", "seed=5"], tmp_path)
        dm, model = instantiate(cfg.data), instantiate(cfg.model, loss=instantiate(cfg.loss))
        assert dm.seed == 5 and dm.dim == dim == cfg.data.dim
        assert model.generator(torch.randn(4, cfg.model.latent_dim)).shape == (4, dim)
        assert model.discriminator(torch.randn(4, dim)).shape == (4,)
        assert cfg.callbacks.toy_metrics._target_ == "ganzoo.callbacks.toy.ToyMetrics"  # toy data brings its metrics
    assert "toy_metrics" not in compose_config(["data=waves"], tmp_path).callbacks  # other data does not


# --- metrics -------------------------------------------------------------------------------------------------


def test_mode_metrics_on_real_partial_and_noise():
    modes = ring_modes()
    real, labels = make_mixture(modes, 0.02, 8000, seed=1)
    scores = mode_metrics(real, modes, 0.02)
    # 2-D Gaussian: P(distance <= 3 sigma) = 1 - exp(-4.5) = 0.989.
    assert scores["modes"] == 8 and abs(scores["high_quality"] - 0.989) < 0.01 and scores["kl_uniform"] < 0.01
    three = mode_metrics(real[labels < 3], modes, 0.02)
    assert three["modes"] == 3 and abs(three["kl_uniform"] - np.log(8 / 3)) < 0.02
    noise = mode_metrics(torch.rand(8000, 2) * 6 - 3, modes, 0.02)
    assert noise["high_quality"] < 0.02 and noise["modes"] == 0
    # Samples spread 10 sigma around every mode: all modes "visited", few high quality, none covered at 1 %.
    blurred = mode_metrics(make_mixture(modes, 0.2, 8000, seed=2)[0], modes, 0.02)
    assert blurred["high_quality"] < 0.05 and blurred["modes"] < 8
    grid = grid_modes()
    assert mode_metrics(make_mixture(grid, 0.05, 10000, seed=3)[0], grid, 0.05)["modes"] == 25


def test_curve_metrics_on_real_noise_and_collapse():
    xs = curve_grid(15)
    real, _ = make_curves(2000, seed=3)
    scores = curve_metrics(real, xs, (1, 2))
    assert scores["in_bounds"] == 1 and scores["a_range_error"] == 0
    assert scores["a_w1"] < 0.03 and scores["fit_rmse"] < 1e-5
    noise = curve_metrics(torch.randn(2000, 15) + 1, xs, (1, 2))
    assert noise["in_bounds"] < 0.05 and noise["fit_rmse"] > 0.5
    collapsed = curve_metrics(real[:1].repeat(2000, 1), xs, (1, 2))  # one good curve only
    assert collapsed["in_bounds"] == 1 and collapsed["a_w1"] > 0.2
    shifted = curve_metrics(make_curves(2000, a_range=(2.5, 3.5), seed=4)[0], xs, (1, 2))
    assert abs(shifted["a_range_error"] - 1.0) < 0.05 and shifted["in_bounds"] < 0.1


def test_w1_to_uniform_is_exact():
    rng = np.random.default_rng(0)
    dense_uniform = np.linspace(1, 2, 400_001)
    for values in (rng.uniform(1, 2, 50), rng.normal(1.5, 0.4, 30), np.array([1.5]), rng.uniform(-1, 4, 9)):
        assert abs(w1_to_uniform(values, 1, 2) - wasserstein_distance(values, dense_uniform)) < 1e-5
    assert w1_to_uniform([1.5], 1, 2) == pytest.approx(0.25)


# --- training with the callback ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "keys"),
    [("ring", ("modes", "high_quality", "kl_uniform")), ("curves", ("in_bounds", "a_w1", "fit_rmse"))],
)
def test_training_logs_toy_metrics_and_writes_plots(train_config, data, keys):
    cfg = train_config(f"data={data}", *TOY_FAST, fast=False)
    metrics = train(cfg)
    for key in (*keys, "d_real", "d_fake"):
        assert np.isfinite(metrics[f"val/{key}"]), key
    out = Path(cfg.paths.output_dir)
    for name in ("toy_0000005.png", "toy_0000010.png", "latest.png", "final_samples.npy"):
        assert (out / "toy" / name).stat().st_size > 0, name
    final = json.loads((out / "toy" / "final.json").read_text())
    assert final["gen_step"] == 10 and final["train_seconds"] > 0
    assert final["metrics"]["d_real"] == pytest.approx(metrics["val/d_real"], rel=1e-5)
    assert np.load(out / "toy" / "final_samples.npy").shape == (200, cfg.data.dim)
    with open(out / "csv" / "metrics.csv") as f:
        logged = [row for row in csv.DictReader(f) if row.get(f"val/{keys[0]}")]
    assert len(logged) == 2  # at generator iterations 5 and 10, each once


def test_callback_rejects_other_data():
    with pytest.raises(ValueError, match="ToyMetrics needs data=ring, grid or curves"):
        ToyMetrics("unused").on_fit_start(SimpleNamespace(datamodule=object()), None)


# --- the ring study ------------------------------------------------------------------------------------------


def _study_module():
    spec = importlib.util.spec_from_file_location("study_ring", ROOT / "bench" / "study_ring.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks itself up there
    spec.loader.exec_module(module)
    return module


def test_study_command_composes(tmp_path):
    study = _study_module()
    command = study.multirun_command("none", "wgan_gp", [1, 2], 300, tmp_path, ["data.std=0.05"])
    overrides = [a for a in command[3:] if not a.startswith(("hydra.", "seed="))]
    cfg = compose_config([*overrides, "seed=2"], tmp_path)
    assert cfg.trainer.max_steps == 300 and cfg.data.std == 0.05 and cfg.model.n_critic == 5
    assert cfg.callbacks.samples is None and "toy_metrics" in cfg.callbacks
    assert f"hydra.sweep.dir={tmp_path / 'none' / 'wgan_gp'}" in command and "seed=1,2" in command


def test_study_report_on_two_tiny_runs(tmp_path):
    study = _study_module()
    runs = tmp_path / "study" / "runs"
    for seed in (1, 2):
        run_dir = runs / "none" / "nonsaturating" / f"seed_{seed}"
        cfg = compose_config(["data=ring", *TOY_FAST, "loss=nonsaturating", f"seed={seed}"], run_dir)
        train(cfg)
        (run_dir / ".hydra").mkdir()
        OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")  # what Hydra saves beside every run
    (runs / "none" / "nonsaturating" / "seed_3").mkdir()  # a run that started but never finished (e.g. diverged)
    rows = study.main(["--report-only", "--out", str(tmp_path / "study"), "--docs", str(tmp_path / "docs")])
    assert len(rows) == 1 and rows[0]["loss"] == "nonsaturating" and rows[0]["trick"] == "none"
    assert rows[0]["seeds"] == [1, 2] and rows[0]["gen_steps"] == [10] and all(0 <= m <= 8 for m in rows[0]["modes"])
    finals = [
        json.loads((runs / "none" / "nonsaturating" / f"seed_{s}" / "toy" / "final.json").read_text()) for s in (1, 2)
    ]
    assert rows[0]["high_quality"] == pytest.approx(np.mean([f["metrics"]["high_quality"] for f in finals]))
    table = (tmp_path / "study" / "table.md").read_text()
    modes = " / ".join(str(int(f["metrics"]["modes"])) for f in finals)
    assert f"| nonsaturating | none | {modes} (seeds 1, 2); seed 3 did not finish |" in table
    assert (tmp_path / "docs" / "study_ring.md").read_text() == table
    for png in (tmp_path / "study" / "samples.png", tmp_path / "docs" / "figures" / "study_ring.png"):
        assert png.stat().st_size > 0

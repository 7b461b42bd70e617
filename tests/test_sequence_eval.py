"""src/evaluate.py on sequence data: a tiny RCGAN checkpoint through the CLI, npz samples in-process, the latent
sweep of models without a fixed label or without a 2-D latent, and the one-line errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import compose_config, run_cli
from omegaconf import OmegaConf

from ganzoo.data.waves import make_waves
from ganzoo.evaluation import evaluate
from ganzoo.metrics.sequence import sweep_report, train_classifier
from ganzoo.pipeline import build_model, report_user_errors, train

# Small nets, a few steps; 400 waves per class so the training split can serve the floor.
TINY = [
    "data=waves",
    "data.n_per_class=400",
    "data.batch_size=16",
    "model=rcgan",
    "model.generator.hidden=16",
    "model.discriminator.hidden=16",
    "logger=none",
    "~callbacks.progress",
    "~callbacks.samples",
    "trainer.enable_model_summary=false",
    "trainer.max_steps=4",
]
# Cheap scoring: few classifier steps, one discriminative run, a 3 x 3 sweep, a 400-sequence reference.
QUICK = [
    "n=200",
    "sequence.steps=20",
    "sequence.runs=1",
    "sequence.sweep_steps=3",
    "sequence.sweep_bases=2",
    "sequence.test_per_class=200",
]


@pytest.fixture(scope="module")
def rcgan_ckpt(tmp_path_factory, data_dir):
    run = tmp_path_factory.mktemp("rcgan") / "run"
    train(compose_config([*TINY, f"paths.data_dir={data_dir}"], run))
    return run / "checkpoints" / "last.ckpt"


def eval_config(tmp_path, *overrides: str):
    return compose_config([*QUICK, *overrides], tmp_path / "eval", "eval")


def test_checkpoint_end_to_end(rcgan_ckpt):
    result = run_cli("evaluate.py", f"ckpt_path={rcgan_ckpt}", *QUICK)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "real floor" in result.stdout and "MMD^2 (sawtooth)" in result.stdout and "sweep rho" in result.stdout
    report = json.loads((rcgan_ckpt.parent / "metrics.json").read_text())
    assert report["model"] == "RCGAN" and report["n"] == 200 and report["n_reference"] == 400
    samples, floor = report["samples"], report["floor"]
    assert samples["class_fractions"] == [0.5, 0.5]  # class-balanced labels
    for key in ("mmd2/all", "mmd2/sine", "ks_freq/sawtooth", "tstr", "trts", "disc_score", "pred_mae/ratio"):
        assert math.isfinite(samples[key]) and math.isfinite(floor[key]), key
    # Two generator steps from scratch are far from waves; real training waves are not.
    assert abs(floor["mmd2/all"]) < 2e-3 and samples["mmd2/all"] > 0.01
    assert floor["ks_freq/all"] < 0.2 < samples["ks_freq/all"]
    sweep = report["sweep"]
    assert set(sweep["grids"]) == {"sine", "sawtooth"} and abs(sweep["rho_freq"]) <= 1
    for name, grid in sweep["grids"].items():  # the 3 x 3 grid's points off its class, and the flips they make
        assert all(point["class"] != name for point in grid["off_label"])
        assert (len(grid["off_label"]) in (0, 9)) == (grid["label_flips"] == 0), name
    assert sweep["label_flips"] >= 0 and {"sweep/rho_amp", "sweep/label_flips"} <= report["targets"].keys()
    assert sweep["bases"] == 2 and samples["sweep/bases_passing"] in (0.0, 0.5, 1.0)
    assert "sweep/bases_passing" not in report["targets"]  # a measure of the draw's luck, not one of the issue's
    assert all((rcgan_ckpt.parent / f"metrics_sweep_{name}.png").is_file() for name in ("sine", "sawtooth"))


def test_npz_samples_real_waves_score_like_the_floor(tmp_path):
    x, y, _ = make_waves(150, seed=7)
    np.savez_compressed(tmp_path / "s.npz", sequences=x.numpy(), labels=y.numpy())
    report = evaluate(eval_config(tmp_path, f"samples={tmp_path / 's.npz'}", "data=waves", "sequence.floor=false"))
    assert report["n"] == 200 and "floor" not in report  # n=200 of the file's 300
    assert abs(report["samples"]["mmd2/all"]) < 2e-3 and report["targets"]["mmd2/all"]["pass"]
    assert "no model" in report["sweep"]["note"] and "sweep/rho_freq" not in report["samples"]
    assert json.loads((tmp_path / "metrics.json").read_text()) == report


def test_sweep_without_a_fixed_label_or_a_2d_latent(train_config):
    x, y, _ = make_waves(50, seed=0)
    classifier = train_classifier(x, y, steps=5)
    options = OmegaConf.create({"sweep": True, "sweep_steps": 3, "sweep_span": 2.0})
    rgan = build_model(train_config("data=waves", "model=rgan", fast=False))
    report = sweep_report(rgan, classifier, ("sine", "sawtooth"), options, seed=0, figures=None)
    assert (
        "unconditional" in report["note"] and "label_flips" not in report and set(report["grids"]) == {"unconditional"}
    )
    narrow = build_model(train_config("data=waves", "model=rcgan", "model.latent_dim=1", fast=False))
    assert "no 2-D plane" in sweep_report(narrow, classifier, ("sine", "sawtooth"), options, 0, None)["note"]


def test_sweep_share_of_base_points_is_that_of_one_base_sweeps(train_config):
    # Each base point is the one-base sweep of its own seed, and the share counts those meeting the sweep targets.
    x, y, _ = make_waves(50, seed=0)
    classifier = train_classifier(x, y, steps=5)
    options = OmegaConf.create({"sweep": True, "sweep_steps": 3, "sweep_span": 2.0})
    rcgan = build_model(train_config("data=waves", "model=rcgan", fast=False))
    shares = OmegaConf.merge(options, {"sweep_bases": 4})
    singles = [sweep_report(rcgan, classifier, ("sine", "sawtooth"), options, seed=s, figures=None) for s in range(4)]
    met = [abs(r["rho_freq"]) >= 0.95 and abs(r["rho_amp"]) >= 0.95 and r["label_flips"] == 0 for r in singles]
    four = sweep_report(rcgan, classifier, ("sine", "sawtooth"), shares, seed=0, figures=None)
    assert four["bases"] == 4 and four["bases_passing"] == np.mean(met)
    assert [base["rho_freq"] for base in four["per_base"]] == [r["rho_freq"] for r in singles]
    assert [base["label_flips"] for base in four["per_base"]] == [r["label_flips"] for r in singles]


@pytest.mark.parametrize(
    ("arrays", "overrides", "message"),
    [
        ({"images": np.zeros((4, 28, 28), np.uint8)}, ["data=waves"], "holds no `sequences` array"),
        ({"sequences": np.zeros((4, 20, 1), np.float32)}, ["data=waves"], "(seq_len=30, channels=1)"),
        ({"sequences": np.zeros((4, 30), np.float32), "labels": np.array([0, 1, 2, 0])}, ["data=waves"], "[0, 2)"),
    ],
)
def test_unfit_npz_is_refused_in_one_line(tmp_path, capsys, arrays, overrides, message):
    np.savez_compressed(tmp_path / "bad.npz", **arrays)
    with pytest.raises(SystemExit):
        report_user_errors(evaluate, eval_config(tmp_path, f"samples={tmp_path / 'bad.npz'}", *overrides))
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and message in error and "\n" not in error, error

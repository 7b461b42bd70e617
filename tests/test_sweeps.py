"""Sweeps: launcher and sweeper configs compose, multiruns finish with a summary, train.py returns the objective."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from conftest import CONF, FAST, run_cli
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf
from test_metrics import reduced_evaluator_cache

from ganzoo.sweeps import objective


@pytest.fixture(scope="session")
def evaluator_cache(tmp_path_factory, data_dir):
    return reduced_evaluator_cache(tmp_path_factory, data_dir)


def hydra_config(*overrides: str):
    """The composed config with its hydra section (launcher, sweeper, callbacks) kept."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


def test_launcher_and_sweeper_configs_compose():
    joblib = hydra_config("hydra/launcher=local_parallel").hydra.launcher
    assert joblib._target_.endswith("JoblibLauncher") and joblib.n_jobs == 2
    slurm = hydra_config("hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2")
    launcher = OmegaConf.to_container(slurm.hydra.launcher, resolve=False)
    assert launcher["_target_"].endswith("SlurmLauncher")
    assert slurm.hydra.launcher.gpus_per_node == slurm.hydra.launcher.tasks_per_node == 4  # one task per GPU
    assert slurm.hydra.launcher.nodes == 2
    optuna = hydra_config("hparams_search=optuna_fid")
    assert optuna.hydra.sweeper._target_.endswith("OptunaSweeper") and optuna.hydra.sweeper.direction == "minimize"
    assert optuna.optimized_metric == "val/fid" and optuna.loss._target_.endswith("WassersteinGPLoss")
    assert set(optuna.hydra.sweeper.params) >= {"model.optimizer_g.lr", "model.n_critic", "loss.gp_weight"}
    assert hydra_config().hydra.callbacks.sweep_summary._target_ == "ganzoo.sweeps.SweepSummary"


def test_objective_is_the_optimized_metric():
    metrics = {"val/fid": 12.5, "g/loss": 1.0}
    assert objective(OmegaConf.create({"optimized_metric": None}), metrics) == metrics
    assert objective(OmegaConf.create({"optimized_metric": "val/fid"}), metrics) == 12.5
    assert objective(OmegaConf.create({"optimized_metric": "val/fid"}), {"val/fid": math.nan}) == math.inf
    with pytest.raises(ValueError, match="optimized_metric=val/kid was not logged"):
        objective(OmegaConf.create({"optimized_metric": "val/kid"}), metrics)


def test_basic_multirun_writes_a_summary(tmp_path, data_dir):
    sweep = tmp_path / "sweep"
    result = run_cli(
        "train.py",
        "-m",
        *FAST,
        f"paths.data_dir={data_dir}",
        f"hydra.sweep.dir={sweep}",
        "model=gan",
        "trainer.max_steps=4",
        "seed=1,2",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    table = pd.read_csv(sweep / "sweep_summary.csv")
    assert list(table["job"]) == [0, 1] and table["overrides"].str.contains("seed=1").tolist() == [True, False]
    assert (table["gen_step"] == 2).all() and (table["seconds"] > 0).all() and "g/loss" in table
    assert (sweep / "sweep_summary.md").read_text().startswith("| job | overrides |")


def test_optuna_sweep_minimises_the_final_fid(tmp_path, data_dir, evaluator_cache):
    sweep = tmp_path / "optuna"
    result = run_cli(
        "train.py",
        "-m",
        "hparams_search=optuna_fid",
        "hydra.sweeper.n_trials=2",
        *FAST,
        "metrics=image",  # FAST turns metrics off; the sweep needs val/fid
        f"paths.data_dir={data_dir}",
        f"paths.cache_dir={evaluator_cache}",
        f"hydra.sweep.dir={sweep}",
        "model=gan",
        "trainer.max_steps=6",
        "callbacks.image_metrics.n_samples=100",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    table = pd.read_csv(sweep / "sweep_summary.csv")
    best = OmegaConf.load(sweep / "optimization_results.yaml")
    assert len(table) == 2 and best.best_value == pytest.approx(table["val/fid"].min())
    assert table["overrides"].str.contains("loss.gp_weight=").all()  # the sampled parameters reached the jobs

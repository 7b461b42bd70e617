"""Shared fixtures: the real data directory, and composing/running the real Hydra configs in-process.

Data: ``GANZOO_DATA_DIR`` (CI points it at ../shared/data); without it, ``<repo>/data`` is used and the
data sets are downloaded there on first use.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

# Small, fast settings shared by the training tests: a real MNIST subset, tiny logging intervals.
FAST = [
    "data.limit=256",
    "data.batch_size=32",
    "logger=csv",
    "trainer.max_steps=20",
    "trainer.log_every_n_steps=1",
    "trainer.enable_model_summary=false",
    "~callbacks.progress",
    "metrics=none",  # no evaluator training in fast runs; test_metrics turns them on with a reduced one
]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return Path(os.environ.get("GANZOO_DATA_DIR", ROOT / "data"))


def compose_config(overrides: list[str], output_dir: Path, config_name: str = "train") -> DictConfig:
    """Compose ``conf/<config_name>.yaml`` as ``python src/<config_name>.py`` would, output into ``output_dir``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            config_name=config_name,
            overrides=[*overrides, f"hydra.run.dir={output_dir}"],
            return_hydra_config=True,
        )
    cfg.hydra.runtime.output_dir = str(output_dir)
    cfg.hydra.runtime.cwd = str(ROOT)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


@pytest.fixture(scope="module")
def one_thread():
    """Nets this small run fastest on one thread; two threads spin against each other on shared cores.
    A module opts in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def train_config(tmp_path, data_dir):
    """``train_config(*overrides)``: a composed training config writing into tmp_path/run."""

    def make(*overrides: str, fast: bool = True) -> DictConfig:
        base = [*FAST] if fast else []
        return compose_config([*base, f"paths.data_dir={data_dir}", *overrides], tmp_path / "run")

    return make


def run_cli(script: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run ``python src/<script> args...`` from the repo root, as a user would."""
    return subprocess.run(
        [sys.executable, str(ROOT / "src" / script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )

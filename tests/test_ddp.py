"""DDP does what one process does on the whole batch: 2 CPU processes x batch B == 1 process x batch 2B.

For the MLP GAN without BatchNorm and plain SGD (no momentum), the parameters after the first critic step and
the first generator step are the same, up to float rounding, when

- the two ranks' batches are the halves of the single process's batch: the DistributedSampler draws one
  permutation from the data seed whatever the world size and gives rank r every 2nd index from r, so the
  union of the ranks' first batches is the single process's first batch (each loss is a mean over samples,
  so the order does not matter);
- the ranks' latent noise is likewise split from the single process's noise (:class:`SplitNoiseGAN` below;
  the library itself draws each rank's noise from its own seed);
- and the ranks' gradients are averaged. If they were not (each rank steps on its own half) or were summed,
  the updates would differ from the single process's by about the update's own size, far above the tolerance.

The slow tests run the same comparison with Lightning's ``ddp_find_unused_parameters_true`` (it matches too)
and with a strategy that never averages (the comparison must fail: the test can see broken averaging).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from conftest import ROOT, compose_config

from ganzoo.distributed import AlternatingDDPStrategy
from ganzoo.models import GAN
from ganzoo.pipeline import train

B = 8  # per-rank batch


class SplitNoiseGAN(GAN):
    """A GAN whose training noise is one shared draw of world_size * n rows per call, of which rank r takes
    rows r, r + world_size, ...: the ranks' noise together is the noise a single process draws (test only)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.draws = 0

    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        if generator is not None or self._trainer is None:  # fixed noise, sampling: as the library does
            return super().sample_latent(n, generator)
        world, rank = self.trainer.world_size, self.trainer.global_rank
        shared = torch.Generator().manual_seed(1000 + self.draws)
        self.draws += 1
        return torch.randn(world * n, self.latent_dim, generator=shared)[rank::world].to(self.device)


class InitialWeights(pl.Callback):
    """The module's parameters at the start of training (after DDP's broadcast, before any step)."""

    def on_train_start(self, trainer, pl_module) -> None:
        self.state = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}


def overrides(data_dir: Path, run_dir: Path, batch_size: int) -> list[str]:
    """One batch (a critic and a generator step) of a small MLP GAN, no BatchNorm, SGD without momentum."""
    return [
        f"paths.data_dir={data_dir}",
        f"hydra.run.dir={run_dir}",
        "model=gan",
        f"model._target_={SplitNoiseGAN.__module__}.SplitNoiseGAN",
        "model.latent_dim=16",
        "model.generator.hidden=[32]",
        "model.generator.norm=none",
        "model.discriminator.hidden=[32]",
        "optimizer@model.optimizer_g=sgd",
        "optimizer@model.optimizer_d=sgd",
        "model.optimizer_g.lr=0.5",
        "model.optimizer_d.lr=0.5",
        "loss=nonsaturating",
        "data.limit=64",
        f"data.batch_size={batch_size}",
        "trainer.max_steps=2",
        "trainer.enable_model_summary=false",
        "logger=none",
        "metrics=none",
        "~callbacks.progress",
        "~callbacks.samples",
        "~callbacks.divergence_guard",
    ]


def run_ddp(data_dir: Path, run_dir: Path, *extra: str) -> dict[str, torch.Tensor]:
    """Train in 2 CPU processes through the real entry point; the state rank 0 checkpointed."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])}
    args = [*overrides(data_dir, run_dir, B), "trainer=ddp_cpu", "trainer.devices=2", *extra]
    result = subprocess.run(
        [sys.executable, str(ROOT / "src" / "train.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


def run_single(run_dir: Path, data_dir: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(initial, trained) state of one process on batch 2B, in this process."""
    cfg = compose_config(overrides(data_dir, run_dir, 2 * B), run_dir)
    initial = InitialWeights()
    train(cfg, extra_callbacks=[initial])
    trained = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    return initial.state, trained


def assert_same_updates(initial, expected, actual) -> None:
    """Each parameter of G and D moved by the same update (after - initial) in both runs, up to rounding."""
    params = [k for k in expected if k.startswith(("generator.", "discriminator."))]
    assert any(k.startswith("generator.") for k in params) and any(k.startswith("discriminator.") for k in params)
    for key in params:
        want, got = expected[key] - initial[key], actual[key] - initial[key]
        assert want.abs().max() > 1e-4, f"{key} hardly moved: the comparison would say nothing"
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6, msg=lambda m, k=key: f"{k}: {m}")


class UnsyncedStrategy(AlternatingDDPStrategy):
    """Negative control: each rank steps on its own half's gradients."""

    def post_backward(self, closure_loss: torch.Tensor) -> None:
        pass


@pytest.fixture(scope="module")
def single_process(tmp_path_factory, data_dir):
    return run_single(tmp_path_factory.mktemp("single"), data_dir)


def test_two_processes_match_one_process_on_the_whole_batch(tmp_path, data_dir, single_process):
    initial, single = single_process
    assert_same_updates(initial, single, run_ddp(data_dir, tmp_path))  # trainer=ddp_cpu: AlternatingDDPStrategy


@pytest.mark.slow
def test_lightning_find_unused_parameters_strategy_matches_too(tmp_path, data_dir, single_process):
    initial, single = single_process
    assert_same_updates(
        initial, single, run_ddp(data_dir, tmp_path, "trainer.strategy=ddp_find_unused_parameters_true")
    )


@pytest.mark.slow
def test_the_comparison_fails_without_gradient_averaging(tmp_path, data_dir, single_process):
    initial, single = single_process
    unsynced = run_ddp(data_dir, tmp_path, f"trainer.strategy._target_={__name__}.UnsyncedStrategy")
    with pytest.raises(AssertionError, match="not close"):
        assert_same_updates(initial, single, unsynced)

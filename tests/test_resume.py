"""Resuming from a checkpoint continues the run exactly: N steps + resume to 2N == 2N uninterrupted, whether
the checkpoint closed an epoch or was written in the middle of one."""

from __future__ import annotations

import pytest
import torch

from ganzoo.pipeline import train

# 64 images / batch 16 = 4 batches = 8 optimizer steps per epoch (n_critic=1): stop at an epoch boundary.
TINY = [
    "model=dcgan",
    "model.generator.width=8",
    "model.discriminator.width=8",
    "data.limit=64",
    "data.batch_size=16",
    "trainer.max_epochs=-1",
    "callbacks.samples.every_n_gen_steps=3",
]


def final_state(run_dir) -> dict:
    return torch.load(run_dir / "checkpoints/last.ckpt", weights_only=True)


@pytest.mark.parametrize("stop", [8, 6], ids=["epoch-boundary", "mid-epoch"])
def test_resume_gives_identical_weights(train_config, tmp_path, stop):
    """Also from the middle of an epoch (3 of 4 batches): the data loader's position is in the checkpoint
    (``ganzoo.data.loading.ResumableLoader``), so the resumed run trains on the batches the full run did."""
    full = train_config(*TINY, "trainer.max_steps=16")
    train(full)
    uninterrupted = final_state(tmp_path / "run")
    (tmp_path / "run").rename(tmp_path / "full")

    train(train_config(*TINY, f"trainer.max_steps={stop}"))
    first_half = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert final_state(tmp_path / "run")["ganzoo"]["gen_step"] == stop // 2
    first_half = first_half.rename(tmp_path / "half.ckpt")

    train(train_config(*TINY, "trainer.max_steps=16", f"ckpt_path={first_half}"))
    resumed = final_state(tmp_path / "run")

    assert resumed["ganzoo"]["gen_step"] == uninterrupted["ganzoo"]["gen_step"] == 8
    assert resumed["global_step"] == uninterrupted["global_step"] == 16
    for name, tensor in uninterrupted["state_dict"].items():
        assert torch.equal(tensor, resumed["state_dict"][name]), name
    # Optimizer moments too (Adam exp_avg of every parameter of both players).
    for opt_full, opt_resumed in zip(uninterrupted["optimizer_states"], resumed["optimizer_states"], strict=True):
        for key, state in opt_full["state"].items():
            assert torch.equal(state["exp_avg"], opt_resumed["state"][key]["exp_avg"])


def test_resume_actually_depends_on_the_checkpoint(train_config, tmp_path):
    """Guard for the test above: a run that skips the first half ends with different weights."""
    train(train_config(*TINY, "trainer.max_steps=16"))
    full = final_state(tmp_path / "run")
    (tmp_path / "run").rename(tmp_path / "full")
    train(train_config(*TINY, "trainer.max_steps=8", "seed=7"))
    other = final_state(tmp_path / "run")
    g = "generator.project.0.weight"
    assert not torch.equal(full["state_dict"][g], other["state_dict"][g])


def test_ckpt_path_last_resumes_the_run_in_place(train_config, tmp_path):
    train(train_config(*TINY, "trainer.max_steps=8"))
    train(train_config(*TINY, "trainer.max_steps=12", "ckpt_path=last"))  # same run dir: tmp_path/run
    assert final_state(tmp_path / "run")["ganzoo"]["gen_step"] == 6


def test_ckpt_path_last_without_a_checkpoint_names_the_file(train_config, tmp_path):
    from ganzoo.pipeline import CheckpointError

    with pytest.raises(CheckpointError, match=r"run/checkpoints/last.ckpt does not exist"):
        train(train_config(*TINY, "trainer.max_steps=8", "ckpt_path=last"))

"""Every model x loss pair composes from the real config tree and trains on real MNIST."""

from __future__ import annotations

import math

import pytest
import torch

from ganzoo.pipeline import train

MODELS = ["gan", "dcgan"]
LOSSES = ["minimax", "nonsaturating", "wgan", "wgan_gp", "lsgan", "hinge"]


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("model", MODELS)
def test_model_loss_pair_trains(train_config, tmp_path, model, loss):
    cfg = train_config(f"model={model}", f"loss={loss}", "trainer.max_steps=12", "model.n_critic=2")
    metrics = train(cfg)
    # 12 optimizer steps with n_critic=2: 8 critic + 4 generator iterations, all losses finite.
    assert {"d/loss", "g/loss"} <= metrics.keys()
    assert all(math.isfinite(v) for v in metrics.values()), metrics
    ckpt = torch.load(tmp_path / "run/checkpoints/last.ckpt", weights_only=True)
    assert (ckpt["ganzoo"]["gen_step"], ckpt["ganzoo"]["disc_step"]) == (4, 8)
    assert ckpt["global_step"] == 12
    assert (tmp_path / "run/samples/latest.png").is_file()
    if loss == "wgan":  # weight clipping ran after every critic step, on every critic parameter
        critic = [t for k, t in ckpt["state_dict"].items() if k.startswith("discriminator.") and "running_" not in k]
        critic = [t for t in critic if t.is_floating_point()]  # parameters, not BatchNorm statistics
        assert max(t.abs().max().item() for t in critic) <= 0.01 + 1e-7

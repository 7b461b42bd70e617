"""Every model x loss pair composes from the real config tree and trains on real MNIST."""

from __future__ import annotations

import math

import pytest
import torch
from hydra.errors import InstantiationException

from ganzoo.models.base import lr_factor
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


def test_terms_are_logged_at_logging_steps_and_on_the_last_batch(train_config, tmp_path):
    import pandas as pd

    # 7 batches with log_every_n_steps=3: the loggers get batches 3 and 6; the last batch (7) is logged too,
    # so the run's final metrics (what train() returns to a sweeper) are the last batch's, not batch 6's.
    metrics = train(train_config("model=gan", "trainer.max_steps=14", "trainer.log_every_n_steps=3"))
    logged = pd.read_csv(next((tmp_path / "run").rglob("metrics.csv")))
    assert len(logged["d/loss"].dropna()) == len(logged["g/loss"].dropna()) == 2
    assert metrics["d/loss"] != pytest.approx(logged["d/loss"].dropna().iloc[-1])


def test_lr_decay_lowers_both_rates_linearly_by_generator_iteration(train_config, tmp_path):
    import pandas as pd

    # One epoch of 8 batches = 8 generator iterations; rates held until iteration 2, linear to 0.25x at 6, then held.
    cfg = train_config("model=gan", "model.lr_decay={start: 2, end: 6, final: 0.25}")
    train(cfg)
    ckpt = torch.load(tmp_path / "run/checkpoints/last.ckpt", weights_only=False)
    for state, rate in zip(ckpt["optimizer_states"], (cfg.model.optimizer_g.lr, cfg.model.optimizer_d.lr), strict=True):
        for group in state["param_groups"]:
            assert group["lr"] == pytest.approx(0.25 * rate) and group["initial_lr"] == pytest.approx(rate)
    logged = pd.read_csv(next((tmp_path / "run").rglob("metrics.csv")))["lr_factor"].dropna().tolist()
    assert logged == pytest.approx([1.0, 1.0, 1.0, 0.8125, 0.625, 0.4375, 0.25, 0.25])
    assert lr_factor(4, start=2, end=6, final=0.25) == pytest.approx(0.625)


@pytest.mark.parametrize(
    ("decay", "message"),
    [
        ("{start: 5, end: 2}", "0 <= start < end"),
        ("{start: 1, stop: 2}", "model.lr_decay takes start, end"),
    ],
)
def test_bad_lr_decay_is_refused_by_key(train_config, decay, message):
    with pytest.raises(InstantiationException, match=message):  # hydra wraps the model's ValueError
        train(train_config("model=gan", f"model.lr_decay={decay}"))


def test_a_time_limited_runs_last_batch_is_the_final_one_for_every_callback(train_config, tmp_path):
    """``trainer.max_time``: the batch that runs out of time is the one every callback sees as final (so grids,
    metrics and best checkpoints score it), and no batch before it. Fails if Lightning's own Timer, which runs
    after the callbacks, stops the run."""
    import pytorch_lightning as pl

    from ganzoo.models.base import is_final_batch

    class Watch(pl.Callback):
        def __init__(self) -> None:
            self.final: list[bool] = []

        def on_train_batch_end(self, trainer, *args) -> None:
            self.final.append(is_final_batch(trainer))

    watch = Watch()
    overrides = ("model=gan", "trainer.max_steps=-1", "trainer.max_epochs=-1", "+trainer.max_time=00:00:00:02")
    train(train_config(*overrides), [watch])
    assert len(watch.final) > 2 and watch.final[-1] and not any(watch.final[:-1]), watch.final
    ckpt = torch.load(tmp_path / "run/checkpoints/last.ckpt", weights_only=True)
    assert ckpt["ganzoo"]["gen_step"] == len(watch.final)  # the last checkpoint holds the last batch

"""A short MLP GAN run on real MNIST moves generated pixel statistics towards the data's.

At initialisation G paints mid-grey noise; MNIST is mostly black background with thin strokes. After
~150 batches the mean image and the per-pixel spread of the samples must be much closer to those of
the real test set. A broken loss sign, a generator that never steps, or frozen parameters fail this.
"""

from __future__ import annotations

import torch

from ganzoo.data.mnist import load_split, to_unit_range
from ganzoo.pipeline import build_model, load_model, train


def pixel_stat_distances(samples: torch.Tensor, real: torch.Tensor) -> tuple[float, float]:
    """RMS distance of the per-pixel mean and of the per-pixel std between two image sets."""
    mean_gap = (samples.mean(0) - real.mean(0)).pow(2).mean().sqrt().item()
    std_gap = (samples.std(0) - real.std(0)).pow(2).mean().sqrt().item()
    return mean_gap, std_gap


def test_mlp_gan_moves_pixel_statistics_towards_mnist(train_config, tmp_path, data_dir):
    cfg = train_config(
        "model=gan", "data.limit=6400", "data.batch_size=64", "trainer.max_steps=300", "trainer.max_epochs=-1"
    )
    real = to_unit_range(load_split("MNIST", "test", data_dir)[0][:2000])
    before = pixel_stat_distances(build_model(cfg).sample(2000), real)
    train(cfg)
    after = pixel_stat_distances(load_model(tmp_path / "run/checkpoints/last.ckpt").sample(2000), real)
    assert after[0] < 0.5 * before[0], (before, after)
    assert after[1] < 0.8 * before[1], (before, after)

"""A 1-D convolutional generator for sequences (upsampling and convolutions along time), for RGAN / RCGAN.

An LSTM generator has to learn a counter to place a waveform's repeats (a sawtooth's resets) from a latent
that does not change over time; a convolutional one builds the sequence from a short, coarse one by
upsampling, and each output step is a local function of its neighbourhood, so sharp edges and repeats cost it
nothing special. It reads **one latent vector per sequence** (``model.latent=per_sequence``; the RGAN module
checks), with the same constructor keys as :class:`~ganzoo.nets.recurrent.LSTMGenerator`, so that
``model.generator._target_=ganzoo.nets.conv1d.ConvSequenceGenerator`` swaps it in from the config:
``hidden`` is the channels of every block and ``num_layers`` the number of upsampling blocks.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ganzoo.nets.recurrent import SequenceGenerator


class ConvSequenceGenerator(SequenceGenerator):
    """z (B, seq_len, latent_dim), one vector repeated per sequence [+ label embedding] -> Linear ->
    (hidden, L0) -> ``num_layers`` x [Upsample x2 -> Conv1d(k=5) -> LeakyReLU(0.2)] -> Conv1d(k=5) -> tanh,
    cropped to (B, seq_len, channels); L0 = ceil(seq_len / 2^num_layers).

    No normalisation layer. On the waves (README, issue 7) this generator needs a packed critic: at the preset's
    rate (1e-3, with BatchNorm or without) the LSTM critic's loss stayed at chance (1.386) and the generator drew
    one wave per class; with ``model.discriminator.pac=4`` and G's rate at 2e-4 it learns, but its waves are
    rougher than the LSTM generator's (validation MMD² 0.010-0.016; seed 42's LSTM probes 0.003-0.006 at their best).
    """

    one_latent_per_sequence = True

    def __init__(
        self,
        latent_dim: int,
        hidden: int = 64,
        num_layers: int = 2,
        seq_len: int = 30,
        num_classes: int = 0,
        embed_dim: int = 8,
        channels: int = 1,
        tanh: bool = True,
        init_state: bool = False,
        burn_in: int = 0,
        uniform_latent: bool = False,
        clock: bool = False,
    ) -> None:
        super().__init__(latent_dim, hidden, num_layers, seq_len, num_classes, embed_dim, channels, uniform_latent)
        if init_state or burn_in or clock:
            raise ValueError(
                "model.generator.init_state, burn_in and clock are the LSTM generator's: set them to false, 0 and "
                "false for this one"
            )
        self.hidden, self.base_len = hidden, math.ceil(seq_len / 2**num_layers)
        self.project = nn.Sequential(nn.Linear(self.in_features, hidden * self.base_len), nn.ReLU())
        blocks: list[nn.Module] = []
        for _ in range(num_layers):
            blocks += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv1d(hidden, hidden, kernel_size=5, padding=2),
                nn.LeakyReLU(0.2),
            ]
        self.blocks = nn.Sequential(*blocks)
        last = nn.Tanh() if tanh else nn.Identity()
        self.head = nn.Sequential(nn.Conv1d(hidden, channels, kernel_size=5, padding=2), last)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        self.check_latent(z)
        inputs = self.inputs(z[:, :1], labels)[:, 0]  # the first step: the sequence's one latent
        coarse = self.project(inputs).view(-1, self.hidden, self.base_len)
        out = self.head(self.blocks(coarse))[:, :, : self.latent_shape[0]]
        return out.transpose(1, 2)

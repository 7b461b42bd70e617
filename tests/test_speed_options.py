"""The speed options every model takes: ``model.compile`` (torch.compile of the nets) and ``model.channels_last``."""

from __future__ import annotations

import math
import shutil

import pytest
import pytorch_lightning as pl
import torch

from ganzoo.pipeline import train


def compile_unavailable() -> str | None:
    """Why torch.compile cannot run here (None when it can): Dynamo's platform support, and the C++ compiler
    the inductor backend builds CPU kernels with."""
    if not torch._dynamo.is_dynamo_supported():
        return "TorchDynamo does not support this platform or Python version"
    if not any(shutil.which(cxx) for cxx in ("g++", "c++", "clang++")):
        return "no C++ compiler on PATH for torch.compile's inductor CPU backend"
    return None


class NetProbe(pl.Callback):
    """What the nets look like once training has started."""

    def on_train_start(self, trainer, pl_module) -> None:
        self.compiled = [net._compiled_call_impl is not None for net in (pl_module.generator, pl_module.discriminator)]
        self.conv_formats = [
            p.is_contiguous(memory_format=torch.channels_last) for p in pl_module.parameters() if p.dim() == 4
        ]


@pytest.mark.slow  # a cold inductor cache (every CI run) compiles for 2-3 minutes on 2 cores
@pytest.mark.skipif(compile_unavailable() is not None, reason=str(compile_unavailable()))
def test_compiled_nets_train_and_checkpoint_under_their_plain_names(train_config, tmp_path):
    torch._dynamo.reset()
    probe = NetProbe()
    # One batch (a critic and a generator step); no sample grid, whose eval pass would be one more graph to compile.
    cfg = train_config("model=gan", "model.compile=true", "trainer.max_steps=2", "~callbacks.samples")
    metrics = train(cfg, extra_callbacks=[probe])
    assert probe.compiled == [True, True]
    assert metrics and all(math.isfinite(v) for v in metrics.values()), metrics
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert not any("_orig_mod" in key for key in state)  # compiled in place: checkpoints load into plain nets


def test_channels_last_conv_nets_train(train_config):
    probe = NetProbe()
    overrides = ("model=dcgan", "model.channels_last=true", "model.generator.width=16", "model.discriminator.width=16")
    metrics = train(train_config(*overrides, "trainer.max_steps=4"), extra_callbacks=[probe])
    assert probe.conv_formats and all(probe.conv_formats)
    assert probe.compiled == [False, False]
    assert all(math.isfinite(v) for v in metrics.values()), metrics

"""The speed options every model takes (``model.compile``, ``model.channels_last``, ``model.flush_denormal``), and no
host syncs in the loop."""

from __future__ import annotations

import math
import shutil
import traceback
from collections import Counter

import pytest
import pytorch_lightning as pl
import torch
from torch.overrides import TorchFunctionMode

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


def subnormals_kept() -> bool:
    """Whether a subnormal float survives arithmetic."""
    return (torch.tensor([1e-39]) * 1.0).item() != 0.0


class DenormalProbe(pl.Callback):
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    def on_train_start(self, trainer, pl_module) -> None:
        self.kept = subnormals_kept()
        if self.fail:
            raise RuntimeError("a fit that fails after it started")


@pytest.mark.parametrize("flush", [True, False])
def test_flush_denormal_sets_the_cpu_flag_for_training_only(train_config, flush):
    if not torch.set_flush_denormal(False):  # False: this CPU cannot flush
        pytest.skip("this CPU has no flush-to-zero support")
    probe = DenormalProbe()
    try:
        cfg = train_config("model=gan", f"model.flush_denormal={flush}", "trainer.max_steps=2")
        train(cfg, extra_callbacks=[probe])
        assert probe.kept is not flush
        assert subnormals_kept()  # cleared when the fit ended: other code in the process keeps IEEE floats
        failing = DenormalProbe(fail=True)
        with pytest.raises(RuntimeError, match="fails after it started"):  # a failed fit clears it too
            train(cfg, extra_callbacks=[failing])
        assert failing.kept is not flush and subnormals_kept()
    finally:
        torch.set_flush_denormal(False)


class HostSyncs(TorchFunctionMode):
    """Counts the tensor calls that wait for the device (``.item()``, ``.tolist()``, ``.cpu()``, ``float(t)``,
    ...) made between the starts of batches ``first`` and ``last``, by the code that made them."""

    SYNCS = frozenset({"item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__"})

    def __init__(self, first: int, last: int) -> None:
        super().__init__()
        self.first, self.last, self.counting, self.calls = first, last, False, Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if self.counting and getattr(func, "__name__", "") in self.SYNCS:
            ours = [f for f in traceback.extract_stack()[:-1] if "/torch/" not in f.filename]
            self.calls[f"{func.__name__} at {ours[-1].filename}:{ours[-1].lineno}"] += 1
        return func(*args, **(kwargs or {}))

    def window(self) -> pl.Callback:
        mode = self

        class Window(pl.Callback):
            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
                mode.counting = mode.first <= batch_idx < mode.last

        return Window()


@pytest.mark.parametrize(
    "overrides",
    [
        ["model=gan"],
        ["model=gan", "loss=wgan_gp"],
        ["model=infogan", "model.generator.width=8", "model.discriminator.width=8", "model.generator.hidden=32"],
    ],
    ids=["gan", "wgan_gp", "infogan"],
)
def test_no_host_sync_between_logging_steps(train_config, overrides):
    # The default callbacks (progress bar, divergence guard, checkpoints) on; batches 2-19 hold no logging step
    # (every 50 optimizer steps = 25 batches), no checkpoint and no sample grid: nothing there may wait for the
    # device, or a GPU would stall on every step.
    syncs = HostSyncs(first=2, last=20)
    cfg = train_config(
        *overrides,
        "data.limit=1280",
        "data.batch_size=32",
        "trainer.max_steps=60",
        "trainer.log_every_n_steps=50",
        "metrics=none",
        "logger=csv",
        fast=False,
    )
    with syncs:
        train(cfg, extra_callbacks=[syncs.window()])
    assert not syncs.calls, dict(syncs.calls)

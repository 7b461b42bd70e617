"""Faults injected into real (tiny) MNIST runs, and what must survive them.

- NaN weights mid-run: the divergence guard stops the run with a one-line error naming the step and the term,
  or rolls back; without the guard, the checkpoint callback still refuses to write the NaN weights.
- D wins (hinge loss, D learning much faster than G): stopped after ``patience`` batches.
- Disk: ``keep_last`` bounds the periodic files; too little free space stops before a write.
- A crash in the middle of writing a checkpoint: the previous ``last.ckpt`` still loads.
- Truncated and malicious checkpoints given to resume or to ``load_model``: refused, named, payload never run.
"""

from __future__ import annotations

import math
import os
import shutil
from collections import namedtuple
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from ganzoo.callbacks import Checkpoint, CheckpointError, DiskSpaceError, DivergenceError, DivergenceGuard
from ganzoo.pipeline import load_checkpoint, load_model, report_user_errors, train

# 64 images / batch 16 = 4 batches per epoch; n_critic=1, so one generator step per batch and
# trainer.max_steps = 2 x batches. A checkpoint every 2 generator steps.
TINY = [
    "model=dcgan",
    "model.generator.width=8",
    "model.discriminator.width=8",
    "data.limit=64",
    "data.batch_size=16",
    "trainer.max_epochs=-1",
    "callbacks.samples.every_n_gen_steps=100",
    "callbacks.checkpoint.every_n_gen_steps=2",
]
NO_GUARD = "~callbacks.divergence_guard"


class PoisonWeights(pl.Callback):
    """Fault injection: after the batches of the given generator steps, write NaN into a weight of ``net``.
    Registered before the configured callbacks, so it runs before the guard and the checkpoint callback."""

    def __init__(self, *gen_steps: int, net: str = "discriminator") -> None:
        self.gen_steps, self.net, self.done = set(gen_steps), net, set()

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        step = pl_module.gen_step
        if step in self.gen_steps and step not in self.done:
            self.done.add(step)
            with torch.no_grad():
                next(getattr(pl_module, self.net).parameters()).fill_(math.nan)


def last_checkpoint(run_dir: Path) -> dict:
    """``last.ckpt`` through the safe loader, with every weight checked finite."""
    checkpoint = load_checkpoint(run_dir / "checkpoints/last.ckpt")
    for name, tensor in checkpoint["state_dict"].items():
        assert not tensor.is_floating_point() or torch.isfinite(tensor).all(), name
    return checkpoint


def step_files(run_dir: Path) -> list[str]:
    return sorted(p.name for p in (run_dir / "checkpoints").glob("step_*.ckpt"))


# ---- divergence ------------------------------------------------------------------------------------------
def test_nan_loss_stops_the_run_in_one_line_and_keeps_the_last_good_checkpoint(
    train_config, tmp_path, capsys, monkeypatch
):
    monkeypatch.delenv("GANZOO_TRACEBACK", raising=False)
    # Losses only (no weight scan): the NaN written after step 3 shows as a NaN d/loss in step 4's batch,
    # the batch a periodic checkpoint is due; the guard must stop the run before that checkpoint is written.
    cfg = train_config(*TINY, "trainer.max_steps=16", "callbacks.divergence_guard.check_every_n_batches=null")
    with pytest.raises(SystemExit):
        report_user_errors(lambda c: train(c, [PoisonWeights(3)]), cfg)
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1, error
    assert error[0].startswith("error: training diverged at generator step 4 (critic step 4): d/loss is nan;")
    assert "last.ckpt" in error[0] and "rollback_retries" in error[0]
    assert last_checkpoint(tmp_path / "run")["ganzoo"]["gen_step"] == 2
    assert step_files(tmp_path / "run") == ["step_0000004.ckpt"]


def test_guard_reads_the_losses_every_n_batches_and_misses_none(train_config):
    # No checkpoint is due before step 100: the losses of batches 1-5 are read together at batch 5. The NaN
    # written after step 2 shows from batch 3 on; the guard names it at step 5 and says since when.
    cfg = train_config(
        *TINY,
        "trainer.max_steps=40",
        "callbacks.checkpoint.every_n_gen_steps=100",
        "callbacks.divergence_guard.check_every_n_batches=5",
    )
    with pytest.raises(
        DivergenceError, match=r"generator step 5 .*: d/loss is nan \(non-finite since 2 batches earlier"
    ):
        train(cfg, [PoisonWeights(2)])


def test_weight_scan_names_the_non_finite_parameter(train_config):
    cfg = train_config(*TINY, "trainer.max_steps=16", "callbacks.divergence_guard.check_every_n_batches=1")
    with pytest.raises(DivergenceError, match=r"generator step 3 .*: weight generator\.\S+ is not finite"):
        train(cfg, [PoisonWeights(3, net="generator")])


def test_checkpoint_refuses_non_finite_weights_without_the_guard(train_config, tmp_path):
    with pytest.raises(DivergenceError, match=r"refusing to write .*step_0000008\.ckpt at generator step 4"):
        train(train_config(*TINY, NO_GUARD, "trainer.max_steps=16"), [PoisonWeights(3)])
    assert last_checkpoint(tmp_path / "run")["ganzoo"]["gen_step"] == 2


def test_d_wins_is_detected(train_config, tmp_path):
    # Hinge loss reaches exactly 0 once D separates real from fake; a fast D against a frozen-ish G gets there
    # within a few batches on real MNIST.
    fast_d = ["loss=hinge", "model.optimizer_d.lr=0.01", "model.optimizer_g.lr=1e-8"]
    cfg = train_config(*TINY, *fast_d, "trainer.max_steps=60", "callbacks.divergence_guard.patience=3")
    with pytest.raises(DivergenceError, match=r"d/loss below 0.0001 for 3 batches in a row \(D wins"):
        train(cfg)


def test_d_wins_check_ignores_critic_losses_that_go_negative(train_config):
    # A WGAN critic loss is negative as a matter of course: no "D wins" even with patience 1.
    metrics = train(train_config(*TINY, "loss=wgan", "trainer.max_steps=8", "callbacks.divergence_guard.patience=1"))
    assert metrics["d/loss"] < 1e-4


def test_rollback_reloads_the_last_checkpoint_with_lower_learning_rates(train_config, tmp_path):
    guard = ["callbacks.divergence_guard.rollback_retries=1", "callbacks.divergence_guard.lr_factor=0.5"]
    train(train_config(*TINY, *guard, "trainer.max_steps=16"), [PoisonWeights(5)])
    final = last_checkpoint(tmp_path / "run")
    assert final["ganzoo"]["gen_step"] == 8  # the run went on to max_steps
    for optimizer in final["optimizer_states"]:
        assert optimizer["param_groups"][0]["lr"] == pytest.approx(0.5 * 2e-4)
    assert final["callbacks"]["DivergenceGuard"]["retries_used"] == 1


def test_rollback_gives_up_after_its_retries(train_config):
    guard = "callbacks.divergence_guard.rollback_retries=1"
    # Rolled back once at step 4 (to step 2); the second fault, seen at step 6, stops the run.
    with pytest.raises(DivergenceError, match=r"generator step 6 .*d/loss is nan; the last good checkpoint is .*last"):
        train(train_config(*TINY, guard, "trainer.max_steps=16"), [PoisonWeights(3, 5)])


# ---- disk ------------------------------------------------------------------------------------------------
def test_keep_last_bounds_the_periodic_checkpoints(train_config, tmp_path):
    cfg = train_config(
        *TINY, "trainer.max_steps=16", "callbacks.checkpoint.every_n_gen_steps=1", "callbacks.checkpoint.keep_last=2"
    )
    train(cfg)
    assert step_files(tmp_path / "run") == ["step_0000014.ckpt", "step_0000016.ckpt"]
    assert last_checkpoint(tmp_path / "run")["ganzoo"]["gen_step"] == 8


def test_keep_last_with_a_monitor_is_a_config_error():
    with pytest.raises(ValueError, match="callbacks.checkpoint.keep_last .* needs save_top_k=-1"):
        Checkpoint(keep_last=2, monitor="val/fid", save_top_k=1)


def test_too_little_free_space_stops_before_writing(train_config, tmp_path, monkeypatch):
    """The first checkpoint is written; then the disk is 'full': the run stops with the directory and the bytes
    needed, and the earlier files are intact (no half file, no temporary left)."""
    real_usage = shutil.disk_usage
    calls = []

    def usage(path):
        calls.append(path)
        total, used, free = real_usage(path)
        return namedtuple("usage", "total used free")(total, used, free if len(calls) <= 2 else 1000)

    monkeypatch.setattr(shutil, "disk_usage", usage)
    with pytest.raises(
        DiskSpaceError, match=r"write step_0000008\.ckpt in .*/checkpoints: 1000 bytes free, \d+ needed"
    ):
        train(train_config(*TINY, "trainer.max_steps=16"))
    assert last_checkpoint(tmp_path / "run")["ganzoo"]["gen_step"] == 2
    assert sorted(p.name for p in (tmp_path / "run/checkpoints").iterdir()) == ["last.ckpt", "step_0000004.ckpt"]


# ---- atomic writes ----------------------------------------------------------------------------------------
def test_a_crash_mid_write_leaves_the_previous_last_checkpoint(train_config, tmp_path, monkeypatch):
    """Lightning stages a checkpoint in the system temp folder and moves it into place with ``shutil.move``,
    which copies into the target when the two are on different file systems. Simulated here: after step 3 the
    move of any last.ckpt writes half the bytes into its destination and dies."""
    real_move = shutil.move
    crash = []

    def half_move(src, dst, *args, **kwargs):
        if crash and "last" in os.path.basename(dst):
            data = Path(src).read_bytes()
            Path(dst).write_bytes(data[: len(data) // 2])
            raise OSError("simulated crash in the middle of writing a checkpoint")
        return real_move(src, dst, *args, **kwargs)

    class CrashFromStep3(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, *args):
            if pl_module.gen_step == 3:
                crash.append(True)

    monkeypatch.setattr(shutil, "move", half_move)
    with pytest.raises(OSError, match="simulated crash"):
        train(train_config(*TINY, "trainer.max_steps=16"), [CrashFromStep3()])
    assert last_checkpoint(tmp_path / "run")["ganzoo"]["gen_step"] == 2
    assert not list((tmp_path / "run/checkpoints").glob(".*tmp"))  # the half temporary file is cleaned up


# ---- damaged and malicious checkpoints -----------------------------------------------------------------
class Payload:
    """Unpickling this runs a shell command: what a malicious checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def good_run(train_config, tmp_path) -> Path:
    """A finished tiny run: checkpoints at generator steps 2 and 4 (step_0000004.ckpt, step_0000008.ckpt, last)."""
    train(train_config(*TINY, "trainer.max_steps=8"))
    return (tmp_path / "run").rename(tmp_path / "good")


def test_truncated_checkpoint_is_refused_by_name_and_a_loadable_one_is_named(train_config, good_run):
    last = good_run / "checkpoints/last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=rf"checkpoint {last} cannot be loaded .*pass ckpt_path=.*step_0000008"):
        train(train_config(*TINY, "trainer.max_steps=16", f"ckpt_path={last}"))
    with pytest.raises(CheckpointError, match=rf"checkpoint {last} cannot be loaded"):
        load_model(last)
    # The one it names resumes (through Lightning's loader, weights_only=True) and the run goes on.
    train(train_config(*TINY, "trainer.max_steps=12", f"ckpt_path={good_run}/checkpoints/step_0000008.ckpt"))
    assert last_checkpoint(good_run.parent / "run")["ganzoo"]["gen_step"] == 6


def test_malicious_pickle_is_refused_and_never_runs(train_config, tmp_path):
    marker, evil = tmp_path / "pwned", tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "ganzoo": Payload(marker)}, evil)
    refused = rf"checkpoint {evil} cannot be loaded \(UnpicklingError"
    try:
        with pytest.raises(CheckpointError, match=refused):
            train(train_config(*TINY, "trainer.max_steps=8", f"ckpt_path={evil}"))
        with pytest.raises(CheckpointError, match=refused):
            load_model(evil)
    finally:  # checked even when loading got further than it should
        assert not marker.exists(), "the checkpoint's pickled payload ran"


def test_guard_knobs_are_checked():
    with pytest.raises(ValueError, match="callbacks.divergence_guard.lr_factor must be in"):
        DivergenceGuard(lr_factor=2.0)

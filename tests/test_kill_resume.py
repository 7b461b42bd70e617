"""A real ``python src/train.py`` killed with SIGKILL (mid-training, and mid-way through writing a checkpoint)
resumes from its ``last.ckpt`` to exactly the weights of a run that was never interrupted.

Every periodic checkpoint here falls on the last batch of an epoch (2 batches = 2 generator steps per epoch,
a checkpoint every 2 generator steps): Lightning restarts the epoch's data loader on resume, so a checkpoint
from the middle of an epoch would resume on other batches (it warns "resuming from a checkpoint that ended
before the epoch ended"). Where the kill lands between two checkpoints does not matter: the steps after the
newest complete ``last.ckpt`` are lost and done again, from the same state, so the end is the same.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import FAST, ROOT, compose_config

from ganzoo.callbacks.checkpoint import read_checkpoint
from ganzoo.pipeline import train

MAX_STEPS = 64  # optimizer steps: 32 generator steps, 16 epochs, a checkpoint at the end of each
TINY = [
    *FAST,
    "model=dcgan",
    "model.generator.width=8",
    "model.discriminator.width=8",
    "data.limit=32",
    "data.batch_size=16",
    "trainer.max_epochs=-1",
    f"trainer.max_steps={MAX_STEPS}",
    "callbacks.samples.every_n_gen_steps=1000",
    "callbacks.checkpoint.every_n_gen_steps=2",
]

# Injected into the killed process only (a sitecustomize on its PYTHONPATH): the first write of last.ckpt
# after generator step 2 puts half of its bytes on disk and then hangs, as a process killed mid-write would.
HANG_MID_WRITE = """
import os, time
import pytorch_lightning as pl

_save = pl.Trainer.save_checkpoint

def save_checkpoint(self, filepath, *args, **kwargs):
    _save(self, filepath, *args, **kwargs)
    if "last.ckpt" in os.path.basename(str(filepath)) and self.lightning_module.gen_step > 2:
        os.truncate(filepath, os.path.getsize(filepath) // 2)
        open(os.environ["GANZOO_TEST_MARKER"], "w").close()
        time.sleep(600)

pl.Trainer.save_checkpoint = save_checkpoint
"""


def overrides(data_dir: Path, *extra: str) -> list[str]:
    return [*TINY, f"paths.data_dir={data_dir}", *extra]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data_dir) -> dict:
    """The final checkpoint of the same run, never interrupted (in-process)."""
    run = tmp_path_factory.mktemp("uninterrupted")
    train(compose_config(overrides(data_dir), run))
    return torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)


def start_training(run_dir: Path, data_dir: Path, *extra: str, env: dict | None = None) -> subprocess.Popen:
    run_dir.mkdir(parents=True)
    log = (run_dir.parent / f"{run_dir.name}.log").open("w")
    args = [sys.executable, str(ROOT / "src" / "train.py"), *overrides(data_dir, *extra), f"hydra.run.dir={run_dir}"]
    return subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})


def kill_when(process: subprocess.Popen, ready, log: Path, timeout: float = 120) -> None:
    """SIGKILL the process as soon as ``ready()`` holds; fail if it ends (or times out) first."""
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"training ended (rc {process.poll()}) before it could be killed:\n{log.read_text()[-3000:]}")
        time.sleep(0.002)
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL, "the run finished before the kill landed"


def assert_same_final_state(resumed: dict, uninterrupted: dict) -> None:
    assert resumed["ganzoo"]["gen_step"] == uninterrupted["ganzoo"]["gen_step"] == MAX_STEPS // 2
    assert resumed["global_step"] == uninterrupted["global_step"] == MAX_STEPS
    for name, tensor in uninterrupted["state_dict"].items():
        assert torch.equal(tensor, resumed["state_dict"][name]), f"{name} differs from the uninterrupted run"
    for full, again in zip(uninterrupted["optimizer_states"], resumed["optimizer_states"], strict=True):
        for key, state in full["state"].items():
            for moment in ("exp_avg", "exp_avg_sq"):
                assert torch.equal(state[moment], again["state"][key][moment]), f"Adam {moment} of param {key}"


def resume_in_process(last: Path, run_dir: Path, data_dir: Path) -> dict:
    train(compose_config(overrides(data_dir, f"ckpt_path={last}"), run_dir))
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)


def test_sigkill_mid_training_then_resume_ends_with_the_uninterrupted_weights(tmp_path, data_dir, uninterrupted):
    run = tmp_path / "killed"
    process = start_training(run, data_dir)
    last = run / "checkpoints" / "last.ckpt"
    kill_when(process, last.exists, tmp_path / "killed.log")

    left = read_checkpoint(last)  # loadable, whatever the kill interrupted
    stopped_at = left["ganzoo"]["gen_step"]
    assert 2 <= stopped_at < MAX_STEPS // 2 and stopped_at % 2 == 0, stopped_at

    assert_same_final_state(resume_in_process(last, tmp_path / "resumed", data_dir), uninterrupted)


def test_sigkill_mid_checkpoint_write_keeps_the_previous_last_checkpoint(tmp_path, data_dir, uninterrupted):
    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(HANG_MID_WRITE)
    marker = tmp_path / "mid-write"
    env = {"PYTHONPATH": os.pathsep.join([str(inject), os.environ.get("PYTHONPATH", "")])}
    run = tmp_path / "killed"
    process = start_training(run, data_dir, env={**env, "GANZOO_TEST_MARKER": str(marker)})
    kill_when(process, marker.exists, tmp_path / "killed.log")

    checkpoints = run / "checkpoints"
    whole = (checkpoints / "step_0000004.ckpt").stat().st_size
    half_written = [p for p in checkpoints.iterdir() if p.stat().st_size < whole]
    assert half_written, "the injected fault did not leave a half-written file"
    left = read_checkpoint(checkpoints / "last.ckpt")  # the kill hit another file: last.ckpt is whole
    assert left["ganzoo"]["gen_step"] == 2, "last.ckpt should still be the one before the interrupted write"

    assert_same_final_state(resume_in_process(checkpoints / "last.ckpt", tmp_path / "resumed", data_dir), uninterrupted)


@pytest.mark.slow
def test_cli_kill_and_cli_resume_continue_the_weights_and_the_wandb_run(tmp_path, data_dir, uninterrupted):
    """End to end through the command line twice, with the default (offline W&B) logger."""
    env = {"WANDB_SILENT": "true", "WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path / "wandb")}
    run = tmp_path / "killed"
    process = start_training(run, data_dir, "logger=wandb", env=env)
    last = run / "checkpoints" / "last.ckpt"
    kill_when(process, last.exists, tmp_path / "killed.log")
    run_id = read_checkpoint(last)["wandb"]["id"]

    resumed = tmp_path / "resumed"
    process = start_training(resumed, data_dir, "logger=wandb", f"ckpt_path={last}", env=env)
    assert process.wait(timeout=300) == 0, (tmp_path / "resumed.log").read_text()[-3000:]

    assert_same_final_state(torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=True), uninterrupted)
    assert [p.name.rsplit("-", 1)[-1] for p in (resumed / "wandb").glob("offline-run-*")] == [run_id]


def test_resumed_run_continues_the_same_offline_wandb_run(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    short = ["logger=wandb", "trainer.max_steps=8"]
    train(compose_config(overrides(data_dir, *short), tmp_path / "first"))
    (first,) = (tmp_path / "first" / "wandb").glob("offline-run-*")
    run_id = first.name.rsplit("-", 1)[-1]
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    assert read_checkpoint(last)["wandb"] == {"id": run_id}

    again = overrides(data_dir, "logger=wandb", "trainer.max_steps=16", f"ckpt_path={last}")
    train(compose_config(again, tmp_path / "again"))
    # Offline, W&B writes the continuation to a new folder named with the same id; `wandb sync` joins them.
    assert [p.name.rsplit("-", 1)[-1] for p in (tmp_path / "again" / "wandb").glob("offline-run-*")] == [run_id]
    assert read_checkpoint(tmp_path / "again" / "checkpoints" / "last.ckpt")["wandb"] == {"id": run_id}

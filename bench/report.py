"""bench/results.md is shared by several benchmark scripts: each one rewrites only its own section."""

from __future__ import annotations

import json
import os
import platform
import shlex
from datetime import UTC, datetime
from pathlib import Path

import torch
import yaml

RESULTS = Path(__file__).resolve().parent / "results.md"


def machine() -> str:
    """When and where a figure was measured, for the line under each section's heading."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"{stamp}; {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )


def write_section(name: str, lines: list[str], path: Path = RESULTS) -> None:
    """Replace (or append) the section between ``<!-- name -->`` markers, keeping every other section."""
    begin, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    text = path.read_text() if path.is_file() else "# Benchmarks\n"
    block = "\n".join([begin, *lines, end])
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)
    print(f"wrote section '{name}' of {path}")


def run_record(run_dir: Path) -> dict:
    """A finished train.py run's generator iterations, training minutes (its run_summary.json) and the
    command that made it (its Hydra overrides, shell-quoted so the line can be pasted)."""
    summary = json.loads((run_dir / "run_summary.json").read_text())
    overrides = yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text())
    kept = [o for o in overrides if not o.startswith("hydra.")]
    return {
        "gen_step": summary["gen_step"],
        "minutes": summary["seconds"] / 60,
        "command": shlex.join(["python", "src/train.py", *kept]),
    }

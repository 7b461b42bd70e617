"""Writing result files so that a crash or a kill never leaves half of one: write a temporary file in the same
directory, then rename it over the target (``os.replace`` is atomic within one file system). Checkpoints have
their own writer (``ganzoo.callbacks.checkpoint``), which also fsyncs."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` to write a temporary file beside ``path``, then rename it to ``path``. The temporary
    name carries the process id, so concurrent writers (DDP ranks, sweep jobs) never share one; it is removed
    if ``write`` fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_json(path: str | Path, data: Any, **dumps: Any) -> Path:
    """``data`` as indented JSON at ``path``, atomically."""
    text = json.dumps(data, indent=2, **dumps) + "\n"
    return atomic_write(path, lambda tmp: tmp.write_text(text))

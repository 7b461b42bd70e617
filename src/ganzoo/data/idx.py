"""Reading the IDX files of MNIST-style data sets (LeCun's format), gzipped or not.

The files are parsed straight from disk (``.gz`` included), so a read-only data directory is never
written to, and a damaged file fails with an error that names it instead of yielding garbage.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

# IDX magic: two zero bytes, a type code (0x08 = unsigned byte), then the number of dimensions.
_UBYTE = 0x08


class DataError(RuntimeError):
    """A data file is missing, unreadable or malformed; the message names the file and the fix."""


def read_idx(path: Path) -> np.ndarray:
    """Return the uint8 array stored in an IDX file (``.gz`` is decompressed on the fly)."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise DataError(f"cannot read {path}: {err}; delete it so it is downloaded again") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != _UBYTE:
        raise DataError(f"{path} is not an unsigned-byte IDX file (bad magic number); delete it and re-download")
    n_dims = raw[3]
    header = 4 + 4 * n_dims
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(n_dims))
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise DataError(
            f"{path} is truncated or corrupt: header says shape {shape} ({expected} bytes) "
            f"but the file holds {len(raw)} bytes; delete it and re-download"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)

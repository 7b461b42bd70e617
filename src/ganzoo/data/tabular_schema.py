"""Reading a mixed-type table and deciding the kind of each column (categorical, continuous, datetime).

Inference follows the usual rule of tabular GANs (CTGAN: Xu et al. 2019, "Modeling Tabular Data using
Conditional GAN"): text, boolean and low-cardinality integer columns are discrete, the rest continuous.
Every choice can be overridden from the config; a name there that is not a column is an error that
lists the close matches, so a typo never silently changes the model.
"""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ganzoo.data.idx import DataError

CATEGORICAL, CONTINUOUS, DATETIME = "categorical", "continuous", "datetime"


def read_table(path: str | Path, read_options: dict | None = None, missing_hint: str | None = None) -> pd.DataFrame:
    """Read a CSV (``.csv``, ``.csv.gz``, any other text suffix) or Parquet (``.parquet``, ``.pq``) file.

    ``read_options`` go to ``pandas.read_csv`` / ``read_parquet``; ``missing_hint`` says where to get the file.
    """
    path = require_file(path, missing_hint)
    options = dict(read_options or {})
    if path.suffix in (".parquet", ".pq"):
        return _read_parquet(path, options)
    try:
        return pd.read_csv(path, **options)
    except (OSError, EOFError, ValueError, pd.errors.ParserError) as err:
        raise DataError(f"cannot read {path} as CSV: {err}; check the file and data.read_options") from err


def require_file(path: str | Path, missing_hint: str | None = None) -> Path:
    """The path, if it is a file; else a DataError saying where to put it (``missing_hint``, or a default)."""
    path = Path(path).expanduser()
    if not path.is_file():
        hint = missing_hint or "set data.path to the file (or GANZOO_DATA_DIR to the folder holding it)"
        raise DataError(f"table file {path} not found; {hint}")
    return path


def _read_parquet(path: Path, options: dict) -> pd.DataFrame:
    try:
        return pd.read_parquet(path, **options)
    except ImportError as err:
        raise DataError(
            f"reading {path} needs pyarrow or fastparquet, neither is installed; or convert it to CSV"
        ) from err


@dataclass
class Schema:
    """The modelled columns in table order, each with its kind; ``target`` and ``log1p`` are passed through."""

    kinds: dict[str, str]
    target: str | None = None
    log1p: list[str] = field(default_factory=list)

    @property
    def columns(self) -> list[str]:
        return list(self.kinds)

    def of_kind(self, kind: str) -> list[str]:
        return [name for name, k in self.kinds.items() if k == kind]


def infer_schema(
    df: pd.DataFrame,
    categorical: list[str] | None = None,
    continuous: list[str] | None = None,
    datetime: list[str] | None = None,
    drop: list[str] | None = None,
    target: str | None = None,
    log1p: list[str] | None = None,
    max_int_categories: int = 10,
) -> Schema:
    """Kind of every column of ``df`` not in ``drop``: the explicit lists first, then the dtype rule.

    List entries may be glob patterns (``ID_*``). Integer columns (or floats holding only whole numbers)
    with at most ``max_int_categories`` distinct values count as categorical.
    """
    columns = [str(c) for c in df.columns]
    given = {
        "drop": resolve_columns(drop, columns, "drop"),
        DATETIME: resolve_columns(datetime, columns, DATETIME),
        CATEGORICAL: resolve_columns(categorical, columns, CATEGORICAL),
        CONTINUOUS: resolve_columns(continuous, columns, CONTINUOUS),
    }
    _check_disjoint(given)
    kinds = {}
    for name in columns:
        if name in given["drop"]:
            continue
        explicit = [kind for kind in (DATETIME, CATEGORICAL, CONTINUOUS) if name in given[kind]]
        kinds[name] = explicit[0] if explicit else infer_kind(df[name], max_int_categories)
    modelled = list(kinds)
    target = resolve_columns([target], modelled, "target")[0] if target is not None else None
    log1p = resolve_columns(log1p, modelled, "log1p")
    if bad := [name for name in log1p if kinds[name] != CONTINUOUS]:
        raise DataError(f"data.log1p names {bad}, which are not continuous columns")
    return Schema(kinds, target, log1p)


def infer_kind(series: pd.Series, max_int_categories: int = 10) -> str:
    """'datetime' for datetime dtypes, 'categorical' for text/bool/category/few-valued integers, else 'continuous'."""
    dtype = series.dtype
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return DATETIME
    if pd.api.types.is_bool_dtype(dtype) or not pd.api.types.is_numeric_dtype(dtype):
        return CATEGORICAL
    observed = series.dropna().to_numpy(dtype=float)
    whole = pd.api.types.is_integer_dtype(dtype) or bool(np.all(observed == np.round(observed)))
    if whole and len(np.unique(observed)) <= max_int_categories:
        return CATEGORICAL
    return CONTINUOUS


def resolve_columns(names: list[str] | None, columns: list[str], key: str) -> list[str]:
    """Expand the names (or glob patterns) of config list ``data.<key>`` against the columns, in table order."""
    chosen: set[str] = set()
    for name in names or []:
        name = str(name)
        is_pattern = any(ch in name for ch in "*?[")
        matches = fnmatch.filter(columns, name) if is_pattern else [c for c in columns if c == name]
        if not matches:
            raise DataError(unknown_column_message(name, columns, key))
        chosen.update(matches)
    return [c for c in columns if c in chosen]


def unknown_column_message(name: str, columns: list[str], key: str) -> str:
    """One line naming the unknown column of ``data.<key>`` and the closest real column names."""
    close = difflib.get_close_matches(name, columns, n=3, cutoff=0.5)
    advice = f"close matches: {', '.join(close)}" if close else f"the columns are: {', '.join(columns)}"
    return f"data.{key} names unknown column {name!r}; {advice}"


def _check_disjoint(given: dict[str, list[str]]) -> None:
    keys = list(given)
    for i, first in enumerate(keys):
        for second in keys[i + 1 :]:
            if both := sorted(set(given[first]) & set(given[second])):
                raise DataError(f"columns {both} are in both data.{first} and data.{second}; keep each in one list")

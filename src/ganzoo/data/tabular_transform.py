"""Reversible encoding of a mixed-type table into one float matrix for a GAN, fit on the training split only.

Categorical columns become one-hot spans (one softmax head each). Continuous columns are scaled by one of:

- ``minmax``: the training range mapped onto [-1, 1] (a tanh head);
- ``standard``: zero mean, unit variance (a linear head);
- ``mode_specific``: CTGAN's mode-specific normalisation (Xu et al. 2019, "Modeling Tabular Data using
  Conditional GAN", section 4.2). A variational Gaussian mixture (``BayesianGaussianMixture``, at most 10
  modes, modes of weight below 0.005 dropped) is fit per column; a value x is encoded as a mode k sampled
  from its posterior, as a one-hot, plus the scalar (x - mu_k) / (4 sigma_k) clipped to [-1, 1].

Two deviations from the paper keep the encoding of the training data lossless: the mixture is fit on a
subsample (``gmm_max_rows``) for speed, then training values farther than 4 sigma from every mode get modes
of their own; and the mode is sampled only among modes within 4 sigma of the value, so no value is clipped.

Decoded numbers are clipped to the column's training range, as SDV does by default: a mode's tails (4 sigma
each way) reach past it, and a strictly positive column such as a price must not come back negative.

Functional dependencies: a column that is a function of one categorical column on the training split (Adult's
education-num of education) is not encoded; decoding looks its value up from the decoded category
(``derive_functions``, :func:`functional_dependencies`).

Missing values: a numeric column gets a 2-way (observed, missing) softmax span and the training mean in
its scalar slot, and is NaN again after decoding; a categorical column gets an explicit missing category.
Decoding a softmax span *samples* from its probabilities by default: an argmax would never emit a
category that is rarely the most probable one, and rare categories would vanish from generated tables.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import BayesianGaussianMixture

from ganzoo.data.idx import DataError
from ganzoo.data.tabular_schema import CATEGORICAL, DATETIME, Schema

SOFTMAX, TANH, LINEAR = "softmax", "tanh", "linear"
DECODES = ("sample", "argmax")
_EPOCH = pd.Timestamp("1970-01-01")
_DATETIME_UNITS = ("D", "s", "ms", "us")


@dataclass(frozen=True)
class Span:
    """A slice of the encoded row that one generator head produces: ``kind`` says its activation."""

    column: str
    kind: str
    start: int
    width: int

    @property
    def slice(self) -> slice:
        return slice(self.start, self.start + self.width)


def pick(probs: np.ndarray, decode: str, rng: np.random.Generator) -> np.ndarray:
    """Row-wise index into ``probs`` (n, k): sampled in proportion to the (clipped, renormalised) values, or argmax."""
    if decode == "argmax":
        return probs.argmax(axis=1)
    weights = np.clip(probs, 0.0, None)
    totals = weights.sum(axis=1, keepdims=True)
    weights = np.where(totals > 0, weights / np.where(totals > 0, totals, 1.0), 1.0 / probs.shape[1])
    u = 1.0 - rng.random((len(weights), 1))  # in (0, 1], so a zero-probability first entry is never drawn
    return np.minimum((weights.cumsum(axis=1) < u).sum(axis=1), probs.shape[1] - 1)


def one_hot(index: np.ndarray, width: int) -> np.ndarray:
    return np.eye(width)[index]


def parse_numeric(series: pd.Series, column: str) -> np.ndarray:
    """float64 values of a column; a cell that is neither empty nor a number is a DataError naming it."""
    if pd.api.types.is_bool_dtype(series.dtype):
        series = series.astype(float)
    numbers = pd.to_numeric(series, errors="coerce")
    bad = numbers.isna() & series.notna()
    if bad.any():
        row = bad.idxmax()
        raise DataError(
            f"column {column!r}: cannot parse {series[row]!r} (row {row}) as a number; "
            f"fix the cell, or list the column in data.categorical"
        )
    return numbers.to_numpy(dtype=float, na_value=np.nan)


def parse_datetime(series: pd.Series, column: str) -> pd.Series:
    """Datetime values of a column; a cell that is neither empty nor a date is a DataError naming it."""
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        return series
    parsed = pd.to_datetime(series, errors="coerce")
    bad = parsed.isna() & series.notna()
    if bad.any():
        row = bad.idxmax()
        raise DataError(f"column {column!r}: cannot parse {series[row]!r} (row {row}) as a date; fix the cell")
    return parsed


class MinMaxScaler:
    """The training range mapped onto [-1, 1]; decoding clips to that range."""

    def fit(self, x: np.ndarray, rng: np.random.Generator) -> None:
        self.low = float(x.min())
        self.half_range = float(x.max() - x.min()) / 2 or 1.0

    def spans(self) -> list[tuple[str, int]]:
        return [(TANH, 1)]

    def encode(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return ((x - self.low) / self.half_range - 1.0)[:, None]

    def decode(self, block: np.ndarray, decode: str, rng: np.random.Generator) -> np.ndarray:
        return (np.clip(block[:, 0], -1.0, 1.0) + 1.0) * self.half_range + self.low


class StandardScaler:
    """Zero mean and unit variance over the training values."""

    def fit(self, x: np.ndarray, rng: np.random.Generator) -> None:
        self.mean = float(x.mean())
        self.std = float(x.std()) or 1.0

    def spans(self) -> list[tuple[str, int]]:
        return [(LINEAR, 1)]

    def encode(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return ((x - self.mean) / self.std)[:, None]

    def decode(self, block: np.ndarray, decode: str, rng: np.random.Generator) -> np.ndarray:
        return block[:, 0] * self.std + self.mean


class ModeSpecificScaler:
    """CTGAN's mode-specific normalisation (Xu et al. 2019, section 4.2); see the module docstring.

    Atoms: a value that at least ``atom_share`` of the training rows have exactly (Adult's capital-gain is 0 in 92 %
    of rows, hours-per-week 40 in 47 %) gets a mode of its own with sigma 0, which decodes to that value exactly;
    the mixture models the other values. A Gaussian mode on such a spike decodes to values around it: 45 % of a
    generated capital-gain was 0 and the rest spread over 1-10 and beyond, which a detector told from real rows
    by that column alone. ``atom_share=None`` turns atoms off. At 0.05, hours-per-week kept Gaussian modes over 60,
    35, 20, 30 and 25 hours (2-5 % of rows each), which came back as 58, 59, 36, 21, 22 hours, and a detector of that
    column alone scored AUC 0.69; at 0.02 those are atoms too, and it scores 0.58.
    """

    def __init__(
        self,
        max_modes: int = 10,
        weight_threshold: float = 0.005,
        max_rows: int = 5000,
        atom_share: float | None = 0.02,
    ) -> None:
        if atom_share is not None and not 0 < atom_share <= 1:
            raise ValueError(f"data.mode_atom_share must be in (0, 1] or null, got {atom_share}")
        self.max_modes, self.weight_threshold, self.max_rows = max_modes, weight_threshold, max_rows
        self.atom_share = atom_share

    def fit(self, x: np.ndarray, rng: np.random.Generator) -> None:
        values, counts = np.unique(x, return_counts=True)
        atoms = values[counts >= self.atom_share * len(x)] if self.atom_share else values[:0]
        rest = x[~np.isin(x, atoms)]
        if len(rest):
            self._fit_mixture(rest, rng)
        else:
            self.means, self.stds, self.log_weights = np.zeros(0), np.zeros(0), np.zeros(0)
        if len(atoms):  # the mixture's weights cover the rest's share of rows, the atoms their own
            weights = np.concatenate([np.exp(self.log_weights) * len(rest), counts[np.isin(values, atoms)]]) / len(x)
            self.means, self.stds = (
                np.concatenate([self.means, atoms]),
                np.concatenate([self.stds, np.zeros(len(atoms))]),
            )
            self.log_weights = np.log(weights)

    def _fit_mixture(self, x: np.ndarray, rng: np.random.Generator) -> None:
        sample = rng.choice(x, self.max_rows, replace=False) if len(x) > self.max_rows else x
        if len(sample) < 2:  # one observed value: one mode there (the mixture refuses to fit a single sample)
            sample = np.repeat(sample, 2)
        mixture = BayesianGaussianMixture(
            n_components=min(self.max_modes, len(np.unique(sample))),
            covariance_type="spherical",  # in one dimension all types are the same model; this one is cheapest
            weight_concentration_prior_type="dirichlet_process",
            weight_concentration_prior=0.001,
            max_iter=100,
            random_state=int(rng.integers(2**31)),
        )
        with warnings.catch_warnings():
            # A few EM rounds find the modes; full convergence on heavy-tailed columns is not needed.
            warnings.simplefilter("ignore", ConvergenceWarning)
            mixture.fit(sample[:, None])
        keep = mixture.weights_ > self.weight_threshold
        self.means = mixture.means_[keep, 0]
        self.stds = np.sqrt(mixture.covariances_[keep].reshape(-1))
        self.log_weights = np.log(mixture.weights_[keep] / mixture.weights_[keep].sum())
        self._cover(x)

    def _cover(self, x: np.ndarray) -> None:
        """Training values farther than 4 sigma from every mode (outliers the subsample missed) get modes of their
        own: runs of such values with gaps under 8 sigma (the narrowest mode's) share one, whose 4 sigma reach both
        ends of the run; at most ``max_modes`` such modes, split at the widest gaps. Widening the nearest mode
        instead would cost it its resolution: one 58.9 mm diamond (the rest are under 11) took a mode of ``y``
        from sigma 0.9 to 13, and its generated values anywhere from -44 to 59."""
        z = np.abs(x[:, None] - self.means) / self.stds
        outside = np.unique(x[(z > 4.0).all(axis=1)])
        if not len(outside):
            return
        narrowest = float(self.stds.min())
        gaps = np.diff(outside)
        wide = np.nonzero(gaps > 8.0 * narrowest)[0]
        cuts = np.sort(wide[np.argsort(gaps[wide])[::-1][: self.max_modes - 1]])
        groups = np.split(outside, cuts + 1)
        means = np.array([(g[0] + g[-1]) / 2.0 for g in groups])
        stds = np.array([max((g[-1] - g[0]) / 8.0, narrowest) for g in groups])
        counts = np.array([np.count_nonzero((x >= g[0]) & (x <= g[-1])) for g in groups])
        weights = np.concatenate([np.exp(self.log_weights), counts / len(x)])
        self.means, self.stds = np.concatenate([self.means, means]), np.concatenate([self.stds, stds])
        self.log_weights = np.log(weights / weights.sum())

    def spans(self) -> list[tuple[str, int]]:
        return [(TANH, 1), (SOFTMAX, len(self.means))]

    def encode(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        mode = pick(self._posterior(x), "sample", rng)
        stds = np.where(self.stds > 0, self.stds, 1.0)  # an atom's value is its mean: alpha 0
        alpha = np.clip((x - self.means[mode]) / (4.0 * stds[mode]), -1.0, 1.0)
        return np.hstack([alpha[:, None], one_hot(mode, len(self.means))])

    def _posterior(self, x: np.ndarray) -> np.ndarray:
        """p(mode | x): the atom that x equals, else over the Gaussian modes within 4 sigma of x (the nearest mode
        alone when none is)."""
        atom = self.stds == 0
        z = np.where(atom, np.inf, (x[:, None] - self.means) / np.where(atom, 1.0, self.stds))
        z[x[:, None] == np.where(atom, self.means, np.nan)] = 0.0
        log_p = self.log_weights - np.log(np.where(atom, 1.0, self.stds)) - 0.5 * z**2
        reachable = np.abs(z) <= 4.0
        on_atom = (reachable & atom).any(axis=1)
        reachable[on_atom] &= atom  # an exact atom value belongs to its atom only
        none = ~reachable.any(axis=1)
        nearest = np.abs(x[none, None] - self.means).argmin(axis=1)
        reachable[none, nearest] = True
        log_p = np.where(reachable, log_p, -np.inf)
        log_p[none, nearest] = 0.0
        p = np.exp(log_p - log_p.max(axis=1, keepdims=True))
        return p / p.sum(axis=1, keepdims=True)

    def decode(self, block: np.ndarray, decode: str, rng: np.random.Generator) -> np.ndarray:
        mode = pick(block[:, 1:], decode, rng)
        return np.clip(block[:, 0], -1.0, 1.0) * 4.0 * self.stds[mode] + self.means[mode]


SCALERS = {"minmax": MinMaxScaler, "standard": StandardScaler, "mode_specific": ModeSpecificScaler}


MAX_DECIMALS = 6  # columns with finer values than this keep their generated values as they are


def decimal_places(values: np.ndarray, most: int = MAX_DECIMALS) -> int | None:
    """The fewest decimal places (0 to ``most``) that every value of ``values`` has exactly (up to float
    representation: 0.1 counts as 1 place), or None when they have more: the precision a decoded column is
    rounded to, so that generated values look like recorded ones (a detector tells 0.2317 carat from 0.23)."""
    scale = np.maximum(np.abs(values), 1.0)
    for places in range(most + 1):
        if np.all(np.abs(values - np.round(values, places)) <= 1e-9 * scale):
            return places
    return None


class ContinuousColumn:
    """A numeric column: a scaler, an optional log1p, and a missing indicator when training had NaNs."""

    def __init__(self, name: str, scaler: MinMaxScaler | StandardScaler | ModeSpecificScaler, log1p: bool = False):
        self.name, self.scaler, self.log1p = name, scaler, log1p

    def _values(self, series: pd.Series) -> np.ndarray:
        x = parse_numeric(series, self.name)
        if not self.log1p:
            return x
        if (x <= -1).any():
            raise DataError(f"column {self.name!r} has values <= -1, so data.log1p cannot apply to it")
        return np.log1p(x)

    def fit(self, series: pd.Series, rng: np.random.Generator) -> None:
        self.dtype = series.dtype
        x = self._values(series)
        missing = np.isnan(x)
        if missing.all():
            raise DataError(f"column {self.name!r} has no values in the training split; add it to data.drop")
        observed = x[~missing]
        raw = np.expm1(observed) if self.log1p else observed
        self.decimals = 0 if pd.api.types.is_integer_dtype(self.dtype) else decimal_places(raw)
        self.has_missing = bool(missing.any())
        self.fill = float(observed.mean())
        self.low, self.high = float(raw.min()), float(raw.max())
        self.scaler.fit(observed, rng)

    def spans(self) -> list[tuple[str, int]]:
        return self.scaler.spans() + [(SOFTMAX, 2)] * self.has_missing

    def encode(self, series: pd.Series, rng: np.random.Generator) -> np.ndarray:
        x = self._values(series)
        missing = np.isnan(x)
        if missing.any() and not self.has_missing:
            raise DataError(
                f"column {self.name!r} is empty at row {series.index[missing.argmax()]}, but it had no missing "
                f"values in the training split; fill the cell or refit on data that has missing values"
            )
        blocks = [self.scaler.encode(np.where(missing, self.fill, x), rng)]
        if self.has_missing:
            blocks.append(one_hot(missing.astype(int), 2))
        return np.hstack(blocks)

    def decode(self, block: np.ndarray, decode: str, rng: np.random.Generator) -> pd.Series:
        width = sum(w for _, w in self.scaler.spans())
        x = self.scaler.decode(block[:, :width], decode, rng)
        if self.log1p:
            x = np.expm1(x)
        if hasattr(self, "low"):  # the training range (states written before 2026-12-05 lack it)
            x = np.clip(x, self.low, self.high)
        decimals = getattr(self, "decimals", 0 if getattr(self, "whole", False) else None)  # older states: whole
        if decimals is not None:  # the training values' precision (whole numbers: 0), which real rows all have
            x = np.round(x, decimals)
        if self.has_missing:
            x[pick(block[:, width:], decode, rng) == 1] = np.nan
        dtype = self.dtype if pd.api.types.is_numeric_dtype(self.dtype) else np.float64
        return pd.Series(x, name=self.name).astype(dtype)


class DatetimeColumn:
    """A date/time column modelled as a continuous number of days since 1970-01-01."""

    def __init__(self, name: str, days: ContinuousColumn) -> None:
        self.name, self.days = name, days

    def _days(self, series: pd.Series) -> pd.Series:
        times = parse_datetime(series, self.name)
        epoch = _EPOCH.tz_localize(times.dt.tz) if times.dt.tz is not None else _EPOCH
        return (times - epoch) / pd.Timedelta(days=1)

    def fit(self, series: pd.Series, rng: np.random.Generator) -> None:
        times = parse_datetime(series, self.name)
        self.dtype, self.tz = times.dtype, times.dt.tz
        observed = times.dropna()
        self.unit = next((u for u in _DATETIME_UNITS if (observed.dt.round(u) == observed).all()), None)
        self.days.fit(self._days(times), rng)

    def spans(self) -> list[tuple[str, int]]:
        return self.days.spans()

    def encode(self, series: pd.Series, rng: np.random.Generator) -> np.ndarray:
        return self.days.encode(self._days(series), rng)

    def decode(self, block: np.ndarray, decode: str, rng: np.random.Generator) -> pd.Series:
        epoch = _EPOCH.tz_localize(self.tz) if self.tz is not None else _EPOCH
        times = epoch + pd.to_timedelta(self.days.decode(block, decode, rng), unit="D")
        if self.unit is not None:
            times = times.dt.round(self.unit)
        return times.astype(self.dtype).rename(self.name)


class CategoricalColumn:
    """A discrete column: one-hot over the training categories, plus a missing category when training had NaNs."""

    def __init__(self, name: str) -> None:
        self.name = name

    def fit(self, series: pd.Series, rng: np.random.Generator) -> None:
        self.dtype = series.dtype
        values = pd.unique(series.dropna().to_numpy(dtype=object))
        try:
            self.categories = sorted(values)
        except TypeError:  # mixed types that do not order: keep the order of first appearance
            self.categories = list(values)
        self.has_missing = bool(series.isna().any())

    @property
    def width(self) -> int:
        return len(self.categories) + self.has_missing

    def spans(self) -> list[tuple[str, int]]:
        return [(SOFTMAX, self.width)]

    def indices(self, series: pd.Series) -> np.ndarray:
        """Category index of every row (the missing category last); unseen values are a DataError."""
        index = pd.Index(self.categories, dtype=object).get_indexer(series.to_numpy(dtype=object))
        missing = series.isna().to_numpy()
        unknown = (index < 0) & ~missing
        if unknown.any():
            value = series.iloc[unknown.argmax()]
            shown = ", ".join(map(repr, self.categories[:10])) + (", ..." if len(self.categories) > 10 else "")
            raise DataError(
                f"column {self.name!r}: unknown category {value!r} (row {series.index[unknown.argmax()]}), "
                f"not in the training split; known: {shown}"
            )
        if missing.any() and not self.has_missing:
            raise DataError(
                f"column {self.name!r} is empty at row {series.index[missing.argmax()]}, but it had no missing "
                f"values in the training split, so it has no missing category"
            )
        index[missing] = len(self.categories)
        return index

    def encode(self, series: pd.Series, rng: np.random.Generator) -> np.ndarray:
        return one_hot(self.indices(series), self.width)

    def decode(self, block: np.ndarray, decode: str, rng: np.random.Generator) -> pd.Series:
        labels = np.array([*self.categories, np.nan], dtype=object)[pick(block, decode, rng)]
        return pd.Series(labels, name=self.name, dtype=object).astype(self.dtype)


Column = ContinuousColumn | DatetimeColumn | CategoricalColumn

MIN_ROWS_PER_SOURCE_CATEGORY = 10  # a dependency counts when the source's categories average this many rows


def functional_dependencies(df: pd.DataFrame, schema: Schema, never: Sequence[str] = ()) -> dict[str, str]:
    """``{column: source}`` for every column that is a function of one categorical column on ``df``: each category
    of the source (missing included) occurs with one value of the column (NaN included) in every row.

    Sources are tried from the fewest categories up; a column derived from one source is not a source itself, and
    a column that is a source keeps its own model. A source whose categories average fewer than
    ``MIN_ROWS_PER_SOURCE_CATEGORY`` rows is not tried: with one row per category everything is a function of it.
    Date columns and the columns in ``never`` are always modelled.
    """
    codes = {name: pd.factorize(df[name], use_na_sentinel=False)[0] for name in schema.columns}
    width = {name: int(c.max()) + 1 if len(c) else 0 for name, c in codes.items()}
    sources = sorted(schema.of_kind(CATEGORICAL), key=lambda name: width[name])
    derived: dict[str, str] = {}
    for source in sources:
        if source in derived or width[source] * MIN_ROWS_PER_SOURCE_CATEGORY > len(df):
            continue
        for name, kind in schema.kinds.items():
            if name == source or name in derived or name in never or kind == DATETIME or name in derived.values():
                continue
            pairs = np.unique(codes[source].astype(np.int64) * width[name] + codes[name])
            if len(pairs) == width[source]:
                derived[name] = source
    return derived


class DerivedColumn:
    """A column that is a function of a categorical column on the training split (Adult's education-num of
    education; Sberbank's district figures of sub_area): not modelled, its decoded value is looked up from the
    category decoded for the source. Generated rows then keep the dependency exactly, which a model of both columns
    only approximates (on Adult, the education/education-num pair was the largest signal a detector used)."""

    def __init__(self, name: str, source: str) -> None:
        self.name, self.source = name, source

    def fit(self, series: pd.Series, source_index: np.ndarray, width: int) -> None:
        self.dtype = series.dtype
        _, first = np.unique(source_index, return_index=True)
        self.values = series.to_numpy(dtype=object)[first].tolist()  # one per source index: every one occurs
        if len(self.values) != width:
            raise ValueError(f"{self.name!r}: the source {self.source!r} has categories that no row has")

    def decode(self, source_index: np.ndarray) -> pd.Series:
        values = np.asarray(self.values, dtype=object)[source_index]
        return pd.Series(values, name=self.name, dtype=object).astype(self.dtype)


class TableTransformer:
    """Fit on a training DataFrame; ``transform`` to a float matrix, ``inverse_transform`` back to a DataFrame.

    ``output_info`` lists the spans of the encoded row in order, for the generator's output heads:
    a softmax per categorical column, mode indicator and missing indicator; tanh or linear scalars.
    Transforms are deterministic given ``seed`` (the mode sampling of ``mode_specific`` is random).
    """

    def __init__(
        self,
        schema: Schema,
        continuous_encoding: str = "mode_specific",
        max_modes: int = 10,
        mode_weight_threshold: float = 0.005,
        gmm_max_rows: int = 5000,
        seed: int = 0,
        mode_atom_share: float | None = 0.02,
        derive_functions: bool = True,
        never_derive: Sequence[str] = (),
    ) -> None:
        if continuous_encoding not in SCALERS:
            raise ValueError(f"data.continuous_encoding must be one of {list(SCALERS)}, got {continuous_encoding!r}")
        self.schema, self.continuous_encoding, self.seed = schema, continuous_encoding, seed
        self.mode_options = {
            "max_modes": max_modes,
            "weight_threshold": mode_weight_threshold,
            "max_rows": gmm_max_rows,
            "atom_share": mode_atom_share,
        }
        self.derive_functions, self.never_derive = derive_functions, list(never_derive)
        self.columns: dict[str, Column] = {}  # the modelled columns, in table order
        self.derived: dict[str, DerivedColumn] = {}
        self.output_info: list[Span] = []
        self._ranges: dict[str, slice] = {}

    def _column(self, name: str, kind: str) -> Column:
        if kind == CATEGORICAL:
            return CategoricalColumn(name)
        options = self.mode_options if self.continuous_encoding == "mode_specific" else {}
        continuous = ContinuousColumn(name, SCALERS[self.continuous_encoding](**options), name in self.schema.log1p)
        return DatetimeColumn(name, continuous) if kind == DATETIME else continuous

    def fit(self, df: pd.DataFrame) -> TableTransformer:
        """Fit every column of the schema on ``df`` (the training split)."""
        self._check_columns(df)
        rng = np.random.default_rng(self.seed)
        sources = functional_dependencies(df, self.schema, self.never_derive) if self.derive_functions else {}
        modelled = {name: kind for name, kind in self.schema.kinds.items() if name not in sources}
        self.columns = {name: self._column(name, kind) for name, kind in modelled.items()}
        self.output_info, self._ranges, start = [], {}, 0
        for name, column in self.columns.items():
            column.fit(df[name], rng)
            first = start
            for kind, width in column.spans():
                self.output_info.append(Span(name, kind, start, width))
                start += width
            self._ranges[name] = slice(first, start)
        self.derived = {name: DerivedColumn(name, source) for name, source in sources.items()}
        for name, column in self.derived.items():
            source = self.columns[column.source]
            column.fit(df[name], source.indices(df[column.source]), source.width)
        return self

    @property
    def output_dim(self) -> int:
        return sum(span.width for span in self.output_info)

    def transform(self, df: pd.DataFrame, seed: int | None = None) -> np.ndarray:
        """Encode ``df`` as float64 (rows, output_dim); ``seed`` defaults to the transformer's."""
        self._check_columns(df)
        rng = np.random.default_rng(self.seed if seed is None else seed)
        return np.hstack([column.encode(df[name], rng) for name, column in self.columns.items()])

    def inverse_transform(self, data: np.ndarray, decode: str = "sample", seed: int | None = None) -> pd.DataFrame:
        """Decode rows of the encoded space (real or generated) into a DataFrame like the training table.

        Softmax spans hold probabilities; ``decode="sample"`` draws from them, ``"argmax"`` takes the largest.
        """
        if decode not in DECODES:
            raise ValueError(f"decode must be one of {DECODES}, got {decode!r}")
        if hasattr(data, "detach"):  # a torch tensor straight from a generator
            data = data.detach().cpu().numpy()
        data = np.asarray(data, dtype=np.float64)
        if data.ndim != 2 or data.shape[1] != self.output_dim:
            raise ValueError(f"expected an array of shape (rows, {self.output_dim}), got {data.shape}")
        rng = np.random.default_rng(self.seed if seed is None else seed)
        table = {name: column.decode(data[:, self._ranges[name]], decode, rng) for name, column in self.columns.items()}
        for name, column in self.derived.items():
            table[name] = column.decode(self.columns[column.source].indices(table[column.source]))
        return pd.DataFrame({name: table[name] for name in self.schema.columns})

    def indices(self, column: str, df: pd.DataFrame) -> np.ndarray:
        """Category index of every row of a categorical column (e.g. the labels of a conditional GAN)."""
        encoder = self.columns.get(column)
        if column in self.derived:
            raise DataError(
                f"{column!r} is a function of {self.derived[column].source!r} on the training split, so it is "
                f"derived, not modelled; use {self.derived[column].source!r}, or set data.derive_functions=false"
            )
        if not isinstance(encoder, CategoricalColumn):
            raise DataError(f"{column!r} is not a categorical column; categorical: {self.schema.of_kind(CATEGORICAL)}")
        return encoder.indices(df[column])

    def categories(self, column: str) -> list:
        """The labels of a categorical column in index order (NaN last when it has a missing category)."""
        encoder = self.columns[column]
        return [*encoder.categories, *[np.nan] * encoder.has_missing]

    def _check_columns(self, df: pd.DataFrame) -> None:
        if absent := [name for name in self.schema.columns if name not in df.columns]:
            raise DataError(f"the table lacks the columns {absent} that the transformer was built for")

    def state_dict(self) -> dict[str, Any]:
        """The fitted transformer as plain data (str, numbers, bools, None, lists, dicts), so it travels inside a
        checkpoint that ``torch.load(weights_only=True)`` reads: no sklearn objects, no numpy object arrays."""
        return {
            "schema": asdict(self.schema),
            "continuous_encoding": self.continuous_encoding,
            "seed": self.seed,
            "mode_options": dict(self.mode_options),
            "derive_functions": self.derive_functions,
            "never_derive": list(self.never_derive),
            "columns": {name: _to_plain(column) for name, column in self.columns.items()},
            "derived": {name: _to_plain(column) for name, column in self.derived.items()},
            "output_info": [asdict(span) for span in self.output_info],
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> TableTransformer:
        """The fitted transformer that :meth:`state_dict` described; it encodes and decodes exactly as the original."""
        transformer = cls(Schema(**state["schema"]), state["continuous_encoding"], seed=state["seed"])
        transformer.mode_options = dict(state["mode_options"])
        transformer.columns = {name: _from_plain(column) for name, column in state["columns"].items()}
        transformer.derived = {name: _from_plain(column) for name, column in state.get("derived", {}).items()}
        transformer.derive_functions = state.get("derive_functions", False)  # older states derived nothing
        transformer.never_derive = list(state.get("never_derive", []))
        transformer.output_info = [Span(**span) for span in state["output_info"]]
        for span in transformer.output_info:
            first = transformer._ranges.get(span.column, span.slice).start
            transformer._ranges[span.column] = slice(first, span.start + span.width)
        return transformer


# ---- plain-data (de)serialisation of the fitted columns, for TableTransformer.state_dict -------------------------
_STATEFUL = {
    cls.__name__: cls
    for cls in (
        MinMaxScaler,
        StandardScaler,
        ModeSpecificScaler,
        ContinuousColumn,
        DatetimeColumn,
        CategoricalColumn,
        DerivedColumn,
    )
}


def _to_plain(value: Any) -> Any:
    """A fitted column (or one of its attributes) as plain data: objects, arrays, dtypes, zones as tagged dicts."""
    if isinstance(value, tuple(_STATEFUL.values())):
        return {"__object__": type(value).__name__, "attributes": {k: _to_plain(v) for k, v in vars(value).items()}}
    if isinstance(value, np.ndarray):
        return {"__array__": value.tolist(), "dtype": str(value.dtype)}
    if isinstance(value, pd.CategoricalDtype):
        return {"__categorical__": _to_plain(value.categories.tolist()), "ordered": bool(value.ordered)}
    if isinstance(value, np.dtype | pd.api.extensions.ExtensionDtype):
        return {"__dtype__": str(value)}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list):
        return [_to_plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if hasattr(value, "utcoffset"):  # a datetime column's time zone
        return {"__tz__": str(value)}
    raise TypeError(f"cannot store a {type(value).__name__} in a transformer state: {value!r}")


def _from_plain(value: Any) -> Any:
    """The inverse of :func:`_to_plain`."""
    if isinstance(value, list):
        return [_from_plain(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "__object__" in value:
        obj = object.__new__(_STATEFUL[value["__object__"]])
        obj.__dict__.update({k: _from_plain(v) for k, v in value["attributes"].items()})
        return obj
    if "__array__" in value:
        return np.asarray(value["__array__"], dtype=value["dtype"])
    if "__categorical__" in value:
        return pd.CategoricalDtype(_from_plain(value["__categorical__"]), ordered=value["ordered"])
    if "__dtype__" in value:
        return pd.api.types.pandas_dtype(value["__dtype__"])
    return pd.Timestamp(0, tz=value["__tz__"]).tz

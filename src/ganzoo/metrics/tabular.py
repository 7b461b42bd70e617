"""Quality of a generated table against real held-out rows, every figure beside the real-vs-real floor.

The figures and the targets of issue 8:

- **column shapes**: per column, 1 - the Kolmogorov-Smirnov statistic (continuous, dates) or 1 - the total
  variation distance of the category frequencies (categorical): sdmetrics' ``KSComplement`` and
  ``TVComplement``, the scores SDV users know. Mean >= 0.90.
- **column-pair trends**: per pair, sdmetrics' ``CorrelationSimilarity`` (1 - |r_real - r_fake| / 2, Pearson)
  when both columns are continuous, else ``ContingencySimilarity`` (1 - the total variation distance of the
  joint frequencies, continuous columns cut into 10 bins of the real range), as in sdmetrics' QualityReport.
  A seeded subset of ``max_pairs`` pairs when a table has more (Sberbank's 292 columns make 42 000). Mean >= 0.90.
- **category coverage** and **missing mass**: the share of the real categories that the table contains,
  counting categories with at least ``min_category_rows`` reference rows (1.0 in every column), and the real
  probability of the categories it never contains (<= 1 % in every column): what argmax decoding or a
  collapsed softmax loses, and what the shapes barely show when the lost categories are rare.
- **detection AUC**: cross-validated gradient-boosted trees telling real rows from generated ones; 0.5 when
  they cannot. Trees see broken joint structure (a column-shuffled copy keeps every marginal) that a logistic
  detector misses. <= 0.75.
- **ML efficacy**: a boosted model of the target column trained on the generated rows (TSTR) against one
  trained on the real training rows (TRTR), both tested on the reference rows: F1 of the rarer class for a
  binary target (Adult income), macro F1 for more classes, R^2 of log1p(target) for a price-like continuous
  one (diamonds). TSTR / TRTR >= 0.85.
- **copies (DCR)**: the distance from each row to its closest training record (per column: the range-scaled
  absolute difference, or 0/1 for categories, capped at 1 and averaged over the columns). The share of rows at
  distance 0, verbatim training records, must not exceed the held-out real rows' share by more than 1 point.
- **missing values**: sdmetrics' ``MissingValueSimilarity`` (1 - |difference of the missing rates|), mean over
  the columns where either table has missing values.
- **conditional agreement** (checkpoints trained with ``data.condition_on=<column>`` only): does a row requested
  for a label look like that label? A boosted classifier of the condition column, trained on the real training
  rows, labels ``agreement_rows`` rows requested for each category; the balanced agreement (mean over the labels
  of the share classified as requested) over the classifier's balanced accuracy on the reference rows >= 0.90.
  See :class:`ConditionAgreement`.

Splits: the generator learned the data module's training split; its held-out split is cut into two disjoint
halves. Every table is scored against the first half (the reference); the second half, real rows the
generator never saw, is scored the same way: the real-vs-real floor, what a perfect generator would get.
"""

from __future__ import annotations

import itertools
import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from sdmetrics.column_pairs import ContingencySimilarity, CorrelationSimilarity
from sdmetrics.errors import ConstantInputError, IncomputableMetricError
from sdmetrics.single_column import KSComplement, MissingValueSimilarity, TVComplement
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.metrics import f1_score, r2_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from ganzoo.data.idx import DataError
from ganzoo.data.tabular import split_rows
from ganzoo.data.tabular_schema import CATEGORICAL, DATETIME, Schema
from ganzoo.data.tabular_transform import parse_datetime, parse_numeric
from ganzoo.files import write_json

log = logging.getLogger("ganzoo")

MAX_CATEGORICAL_BINS = 254  # HistGradientBoosting's native categories must be codes below max_bins (255)
_FAR = -5.0  # the DCR coordinate of a missing number: farther than 1 from every present one (those are in [-1, 2])


# ---- preparing tables -------------------------------------------------------------------------------------
def comparable(table: pd.DataFrame, kinds: dict[str, str]) -> pd.DataFrame:
    """The columns of ``kinds`` in a form every metric compares alike: numbers as float64 (dates as days since
    1970), categories as Python objects with NaN for missing (a pandas string column and an object column of
    the same labels then count the same)."""
    columns = {}
    for name, kind in kinds.items():
        series = table[name]
        if kind == CATEGORICAL:
            columns[name] = series.astype(object).where(series.notna(), np.nan).to_numpy()
        elif kind == DATETIME:
            times = series.dt.tz_convert(None) if series.dt.tz is not None else series
            columns[name] = ((times - pd.Timestamp(0)) / pd.Timedelta(days=1)).to_numpy(dtype=np.float64)
        else:
            columns[name] = series.to_numpy(dtype=np.float64, na_value=np.nan)
    return pd.DataFrame(columns)


def align(table: pd.DataFrame, like: pd.DataFrame, kinds: dict[str, str], source: str = "the table") -> pd.DataFrame:
    """``table`` (e.g. read from a CSV) with the columns of ``kinds`` parsed like those of the real ``like``:
    numbers, dates, and numerically coded categories parsed, other categories kept as text. A missing or extra
    column, or a cell that does not parse, is a ValueError naming it."""
    if absent := [name for name in kinds if name not in table.columns]:
        raise ValueError(f"{source} lacks the columns {absent} of the real table")
    if extra := [str(name) for name in table.columns if name not in kinds]:
        raise ValueError(f"{source} has columns the real table has not: {extra}; the real ones: {list(kinds)}")
    parsed = {}
    for name, kind in kinds.items():
        series = table[name].reset_index(drop=True)
        try:
            if kind == DATETIME:
                parsed[name] = parse_datetime(series, name)
            elif kind != CATEGORICAL or pd.api.types.is_numeric_dtype(like[name].dtype):
                parsed[name] = parse_numeric(series, name)
            else:
                parsed[name] = series.astype(str).where(series.notna(), np.nan)
        except DataError as err:
            raise ValueError(f"{source}: {err}") from None
    return pd.DataFrame(parsed)


def choose_pairs(columns: list[str], max_pairs: int, seed: int) -> list[tuple[str, str]]:
    """Every pair of columns, or a seeded random subset of ``max_pairs`` of them (in table order)."""
    pairs = list(itertools.combinations(columns, 2))
    if len(pairs) <= max_pairs:
        return pairs
    keep = np.sort(np.random.default_rng(seed).choice(len(pairs), max_pairs, replace=False))
    return [pairs[i] for i in keep]


# ---- the figures, one function each ---------------------------------------------------------------------------
def column_shapes(real: pd.DataFrame, fake: pd.DataFrame, kinds: dict[str, str]) -> dict[str, float]:
    """Per column: TVComplement (categorical) or KSComplement (numbers); 0 when the table has no value there."""
    scores = {}
    for name, kind in kinds.items():
        metric = TVComplement if kind == CATEGORICAL else KSComplement
        scores[name] = _score(metric.compute, real[name], fake[name], empty=0.0)
    return scores


def pair_trends(
    real: pd.DataFrame, fake: pd.DataFrame, kinds: dict[str, str], pairs: list[tuple[str, str]]
) -> dict[str, float]:
    """Per pair ``"a | b"``: CorrelationSimilarity (two numeric columns) or ContingencySimilarity (numbers binned).
    NaN where a correlation is undefined (a constant column)."""
    scores = {}
    for a, b in pairs:
        numeric = [name for name in (a, b) if kinds[name] != CATEGORICAL]
        if len(numeric) == 2:
            score = _score(CorrelationSimilarity.compute, real[[a, b]], fake[[a, b]], coefficient="Pearson")
        else:
            score = _score(
                ContingencySimilarity.compute, real[[a, b]], fake[[a, b]], continuous_column_names=numeric or None
            )
        scores[f"{a} | {b}"] = score
    return scores


def _score(metric: Callable[..., float], *args: Any, empty: float = np.nan, **kwargs: Any) -> float:
    """A sdmetrics score as a float; ``empty`` when the metric refuses the data (no values, a constant column)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # scipy's "constant input" on degenerate columns
            value = float(metric(*args, **kwargs))
    except (ConstantInputError, IncomputableMetricError, ValueError) as err:
        log.debug("%s refused the data: %s", getattr(metric, "__qualname__", metric), err)
        return empty
    return empty if np.isnan(value) else value


def category_coverage(
    real: pd.DataFrame, fake: pd.DataFrame, columns: list[str], min_rows: int = 20
) -> dict[str, dict[str, float]]:
    """Per categorical column: ``coverage`` (share of the categories with >= ``min_rows`` real rows that occur in
    ``fake``), ``coverage_all`` (the same over every real category) and ``missing_mass`` (the real probability,
    among non-missing rows, of the categories ``fake`` never contains)."""
    result = {}
    for name in columns:
        counts = real[name].value_counts(dropna=True)
        if counts.empty:
            continue
        present = counts.index.isin(fake[name].dropna().unique())
        frequent = (counts >= min_rows).to_numpy()
        result[name] = {
            "coverage": float(present[frequent].mean()) if frequent.any() else 1.0,
            "coverage_all": float(present.mean()),
            "missing_mass": float(counts[~present].sum() / counts.sum()),
        }
    return result


def missing_value_similarity(real: pd.DataFrame, fake: pd.DataFrame) -> float:
    """Mean MissingValueSimilarity over the columns where either table has missing values (1.0 when none has)."""
    columns = [name for name in real.columns if real[name].isna().any() or fake[name].isna().any()]
    if not columns:
        return 1.0
    return float(np.mean([MissingValueSimilarity.compute(real[name], fake[name]) for name in columns]))


def distances_to_closest(queries: np.ndarray, records: np.ndarray, chunk: int = 16) -> np.ndarray:
    """For each query row, the distance to its closest record: the mean over columns of min(|q - r|, 1).

    Rows are coordinates from :meth:`TableScorer.dcr_coordinates`: numbers scaled by the training range (so a
    difference of the whole range counts 1), categories as integer codes (any two differ by at least 1).
    float32, in place, a few query rows at a time: the work stays in the CPU cache (2000 x 26 000 Adult rows
    take about 2 s on one core).
    """
    by_column = np.ascontiguousarray(records.T, dtype=np.float32)
    queries = queries.astype(np.float32)
    closest = np.empty(len(queries))
    for start in range(0, len(queries), chunk):
        part = queries[start : start + chunk]
        total = np.zeros((len(part), len(records)), dtype=np.float32)
        difference = np.empty_like(total)
        for j, column in enumerate(by_column):
            np.subtract(part[:, j, None], column[None, :], out=difference)
            np.abs(difference, out=difference)
            total += np.minimum(difference, 1.0, out=difference)
        closest[start : start + chunk] = total.min(axis=1) / records.shape[1]
    return closest


# ---- all figures of a table against one reference ---------------------------------------------------------
class TableScorer:
    """Scores tables against fixed real rows: ``reference`` (held out, what tables are compared to) and
    ``train`` (the generator's training rows: TRTR's training set and the records of the copy check).

    Everything that depends on the real rows alone (column pairs, category codes, TRTR, the DCR records) is
    computed once, so the generated table and the floor are scored alike and cheaply.
    """

    def __init__(
        self,
        reference: pd.DataFrame,
        train: pd.DataFrame,
        kinds: dict[str, str],
        *,
        target: str | None = None,
        log_target: bool = True,
        max_pairs: int = 500,
        min_category_rows: int = 20,
        folds: int = 3,
        dcr_rows: int = 2000,
        seed: int = 0,
    ) -> None:
        if folds < 2:
            raise ValueError(f"table.folds must be >= 2, got {folds}")
        if target is not None and target not in kinds:
            raise ValueError(f"table.target names unknown column {target!r}; the columns are: {', '.join(kinds)}")
        if len(reference) < 2 * folds:
            raise ValueError(f"{len(reference)} reference rows are too few to score a table; use more held-out rows")
        self.kinds, self.target, self.seed = kinds, target, seed
        self.min_category_rows, self.folds, self.dcr_rows = min_category_rows, folds, dcr_rows
        self.reference, self.train = comparable(reference, kinds), comparable(train, kinds)
        self.categorical = [name for name, kind in kinds.items() if kind == CATEGORICAL]
        self.pairs = choose_pairs(list(kinds), max_pairs, seed)
        both = pd.concat([self.train, self.reference])
        self.codes = {name: pd.Index(both[name].dropna().unique()) for name in self.categorical}
        numbers = self.train[[name for name in kinds if name not in self.categorical]]
        self.low, self.span = numbers.min(), (numbers.max() - numbers.min()).replace(0.0, 1.0)
        self.records = self.dcr_coordinates(self.train)
        self.task = self._task(log_target)
        self.trtr = self.efficacy(self.train) if self.task else None

    # -- encodings
    def features(self, table: pd.DataFrame, columns: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(float matrix, categorical mask) for the boosted trees: numbers as they are, categories as codes of the
        real categories (an unseen one gets one extra code; missing stays NaN, which the trees route natively).
        Columns with more categories than the trees' bins are passed as ordinal codes."""
        blocks, mask = [], []
        for name in columns:
            if name in self.codes:
                known = self.codes[name]
                codes = known.get_indexer(table[name]).astype(np.float64)
                codes[(codes < 0) & table[name].notna().to_numpy()] = len(known)
                codes[table[name].isna().to_numpy()] = np.nan
                blocks.append(codes)
                mask.append(len(known) + 1 <= MAX_CATEGORICAL_BINS)
            else:
                blocks.append(table[name].to_numpy(dtype=np.float64))
                mask.append(False)
        return np.column_stack(blocks), np.array(mask)

    def dcr_coordinates(self, table: pd.DataFrame) -> np.ndarray:
        """Rows as DCR coordinates: numbers scaled to [0, 1] over the training range (clipped to [-1, 2], missing
        far below), categories as codes (missing -1). See :func:`distances_to_closest`."""
        columns = []
        for name in self.kinds:
            if name in self.codes:
                codes = self.codes[name].get_indexer(table[name]).astype(np.float64)
                unseen = (codes < 0) & table[name].notna().to_numpy()
                codes[unseen] = len(self.codes[name])
                columns.append(codes)  # a missing category: -1 from get_indexer, 1 from every category
            else:
                scaled = ((table[name] - self.low[name]) / self.span[name]).clip(-1.0, 2.0)
                columns.append(scaled.fillna(_FAR).to_numpy(dtype=np.float64))
        return np.column_stack(columns)

    # -- ML efficacy
    def _task(self, log_target: bool) -> str | None:
        """'binary', 'multiclass', 'regression', 'log-regression' or None (no target)."""
        if self.target is None:
            return None
        if self.target in self.codes:
            return "binary" if len(self.codes[self.target]) == 2 else "multiclass"
        non_negative = bool((self.train[self.target].dropna() >= 0).all())
        return "log-regression" if log_target and non_negative else "regression"

    @property
    def task_label(self) -> str:
        """What the efficacy figure is, in words (for the printed table)."""
        if self.task == "binary":
            return f"F1 of {self.target}={self._positive_class()!s}"
        if self.task == "multiclass":
            return f"macro F1 of {self.target}"
        return f"R^2 of {'log1p ' if self.task == 'log-regression' else ''}{self.target}"

    def _positive_class(self) -> Any:
        """A binary target's rarer class in the training rows (Adult: >50K): the one whose F1 is reported."""
        return self.train[self.target].value_counts().idxmin()

    def _xy(self, table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows = table[table[self.target].notna()]
        x, mask = self.features(rows, [name for name in self.kinds if name != self.target])
        y = rows[self.target].to_numpy()
        if self.task in ("binary", "multiclass"):
            y = self.codes[self.target].get_indexer(y)  # an unseen generated label: -1, a class of its own
        elif self.task == "log-regression":
            y = np.log1p(np.clip(y.astype(np.float64), 0.0, None))
        return x, y, mask

    def efficacy(self, train_table: pd.DataFrame) -> float:
        """Score on the reference rows of a boosted model of the target trained on ``train_table``."""
        x, y, mask = self._xy(train_table)
        x_test, y_test, _ = self._xy(self.reference)
        if len(y) == 0:  # no row with a target value: no model at all
            return 0.0
        if self.task in ("binary", "multiclass"):
            if len(np.unique(y)) < 2:  # one class generated: the model can only predict it
                predicted = np.full(len(y_test), y[0])
            else:
                model = HistGradientBoostingClassifier(categorical_features=mask, random_state=self.seed)
                predicted = model.fit(x, y).predict(x_test)
            if self.task == "binary":
                positive = self.codes[self.target].get_loc(self._positive_class())
                return float(f1_score(y_test == positive, predicted == positive, zero_division=0.0))
            return float(f1_score(y_test, predicted, average="macro", labels=np.unique(y_test), zero_division=0.0))
        model = HistGradientBoostingRegressor(categorical_features=mask, random_state=self.seed)
        return float(r2_score(y_test, model.fit(x, y.astype(np.float64)).predict(x_test)))

    # -- detection
    def detection_auc(self, table: pd.DataFrame) -> float:
        """ROC AUC of cross-validated boosted trees telling reference rows (0) from ``table``'s rows (1), on equal
        numbers of each."""
        rng = np.random.default_rng(self.seed)
        m = min(len(table), len(self.reference))
        real = self.reference.iloc[rng.permutation(len(self.reference))[:m]]
        fake = table.iloc[rng.permutation(len(table))[:m]]
        x, mask = self.features(pd.concat([real, fake], ignore_index=True), list(self.kinds))
        y = np.r_[np.zeros(m), np.ones(m)]
        model = HistGradientBoostingClassifier(categorical_features=mask, random_state=self.seed)
        folds = StratifiedKFold(self.folds, shuffle=True, random_state=self.seed)
        fake_probability = cross_val_predict(model, x, y, cv=folds, method="predict_proba")[:, 1]
        return float(roc_auc_score(y, fake_probability))

    # -- everything
    def score(self, table: pd.DataFrame) -> dict[str, Any]:
        """Every figure of ``table`` (columns as in ``kinds``) against the reference rows."""
        if len(table) < self.folds:
            raise ValueError(f"need at least {self.folds} rows to score a table, got {len(table)}")
        table = comparable(table, self.kinds)
        shapes, trends = self._shapes_and_trends(table)
        coverage = category_coverage(self.reference, table, self.categorical, self.min_category_rows)
        rows = np.random.default_rng(self.seed).permutation(len(table))[: self.dcr_rows]
        dcr = distances_to_closest(self.dcr_coordinates(table.iloc[rows]), self.records)
        scores: dict[str, Any] = {
            "n": len(table),
            "quality": _overall(shapes, trends),
            "column_shapes": float(np.mean(list(shapes.values()))),
            "pair_trends": _mean_trend(trends),
            "pairs_scored": int(np.sum(~np.isnan(list(trends.values())))),
            "category_coverage": min((c["coverage"] for c in coverage.values()), default=1.0),
            "missing_mass": max((c["missing_mass"] for c in coverage.values()), default=0.0),
            "detection_auc": self.detection_auc(table),
            "dcr_median": float(np.median(dcr)),
            "copies": float(np.mean(dcr == 0.0)),
            "missing_values": missing_value_similarity(self.reference, table),
        }
        if self.task:
            tstr = self.efficacy(table)
            scores |= {"tstr": tstr, "trtr": self.trtr, "efficacy_ratio": tstr / self.trtr if self.trtr > 0 else 0.0}
        scores["columns"] = {name: {"shape": shapes[name], **coverage.get(name, {})} for name in self.kinds}
        scores["pairs"] = trends
        return scores

    def quality(self, table: pd.DataFrame) -> float:
        """SDMetrics' overall quality score of ``table``: the mean of the column-shape and pair-trend means. Cheap
        (no classifier): for following a training run."""
        return _overall(*self._shapes_and_trends(comparable(table, self.kinds)))

    def _shapes_and_trends(self, table: pd.DataFrame) -> tuple[dict[str, float], dict[str, float]]:
        shapes = column_shapes(self.reference, table, self.kinds)
        return shapes, pair_trends(self.reference, table, self.kinds, self.pairs)


def _mean_trend(trends: dict[str, float]) -> float:
    """Mean over the pairs whose score is defined (1.0 for a one-column table)."""
    return float(np.nanmean(list(trends.values()))) if trends else 1.0


def _overall(shapes: dict[str, float], trends: dict[str, float]) -> float:
    return (float(np.mean(list(shapes.values()))) + _mean_trend(trends)) / 2


# ---- conditional generation: do rows requested for a label look like it? ----------------------------------------
class ConditionAgreement:
    """How well rows carry the label they were requested for, judged by a real-trained classifier.

    A boosted classifier (the features of :meth:`TableScorer.features`, as for TSTR) learns the condition column
    from every other modelled column of the scorer's real training rows. :meth:`score` labels a table whose
    condition column holds the *requested* labels (what ``TabularGAN.decode`` writes there; for real rows, their
    own labels) and reports, per label, the share classified as requested, and two means of those shares:

    - ``agreement``: weighted by the labels' training frequencies, i.e. the plain agreement of rows requested in
      the real mix (for real rows: the classifier's accuracy, up to the sampling noise of the mix);
    - ``balanced_agreement``: the plain mean over the labels with at least ``min_rows`` reference rows (for real
      rows: the classifier's balanced accuracy).

    The target compares the *balanced* figures: ``agreement_ratio`` = balanced agreement / the classifier's
    balanced accuracy on the reference rows, >= 0.90. The mix-weighted figure rewards rows that all look like
    the majority label: on Adult (76 % <=50K; classifier on 5000 real rows), real low earners requested in the
    real label mix agree 71 % of the time against a real accuracy of 86 % (0.83), but their balanced agreement is
    0.49 against a balanced accuracy of 0.79 (ratio 0.63, as low as for shuffled labels: 0.64); real rows with
    their own labels get 0.99. When the real rows themselves barely predict the label (balanced accuracy near
    ``chance``, one over the number of labels), every table gets a ratio near 1 and the figure says nothing; the
    report shows ``chance`` beside it.
    """

    def __init__(self, scorer: TableScorer, column: str, min_rows: int = 20) -> None:
        if column not in scorer.codes:
            raise ValueError(f"the condition column {column!r} is not a categorical column of the table")
        self.scorer, self.column = scorer, column
        self.inputs = [name for name in scorer.kinds if name != column]
        self.labels = scorer.codes[column]
        train = scorer.train[scorer.train[column].notna()]
        x, mask = scorer.features(train, self.inputs)
        y = self.labels.get_indexer(train[column])
        self.classifier = None  # one training label: predict it everywhere
        self.only_label = int(y[0]) if len(y) else -1
        if len(np.unique(y)) > 1:
            model = HistGradientBoostingClassifier(categorical_features=mask, random_state=scorer.seed)
            self.classifier = model.fit(x, y)
        self.weights = np.bincount(y, minlength=len(self.labels)) / max(len(y), 1)  # training label frequencies
        counts = scorer.reference[column].value_counts()
        self.scored = [label for label, count in counts.items() if count >= min_rows] or list(counts.index)
        self.scored_codes = set(self.labels.get_indexer(self.scored))
        self.real = self._agreement(scorer.reference)

    @property
    def real_accuracy(self) -> float:
        return self.real["agreement"]

    @property
    def real_balanced_accuracy(self) -> float:
        return self.real["balanced_agreement"]

    def score(self, table: pd.DataFrame) -> dict[str, Any]:
        """``n`` (rows with a label), ``agreement``, ``balanced_agreement``, ``agreement_ratio`` and ``per_label``
        of ``table`` (columns as in ``kinds``, the condition column holding the requested labels), beside the
        classifier's ``real_accuracy``, ``real_balanced_accuracy`` and ``chance``."""
        scores = self._agreement(comparable(table, self.scorer.kinds))
        real = self.real_balanced_accuracy
        return {
            "real_accuracy": self.real_accuracy,
            "real_balanced_accuracy": real,
            "chance": 1.0 / len(self.scored),
            **scores,
            "agreement_ratio": scores["balanced_agreement"] / real if real > 0 else 0.0,
        }

    def _agreement(self, table: pd.DataFrame) -> dict[str, Any]:
        """The agreement figures of a table already in :func:`comparable` form."""
        rows = table[table[self.column].notna()]
        requested = self.labels.get_indexer(rows[self.column])  # a label the real rows lack: -1, never predicted
        if self.classifier is None:
            predicted = np.full(len(rows), self.only_label)
        else:
            predicted = self.classifier.predict(self.scorer.features(rows, self.inputs)[0])
        hits = predicted == requested
        present = [code for code in range(len(self.labels)) if (requested == code).any()]
        shares = np.array([hits[requested == code].mean() for code in present])
        weights = self.weights[present]
        balanced = [share for code, share in zip(present, shares, strict=True) if code in self.scored_codes]
        return {
            "n": len(rows),
            "agreement": float(weights @ shares / weights.sum()) if weights.sum() > 0 else float(hits.mean()),
            "balanced_agreement": float(np.mean(balanced)) if balanced else 0.0,
            "per_label": {str(self.labels[code]): float(share) for code, share in zip(present, shares, strict=True)},
        }


def requested_rows(model: Any, n: int, seed: int = 0, decode: str = "sample") -> pd.DataFrame:
    """``n`` decoded rows requested for each category of a conditional table GAN's ``condition_on`` column (but
    a missing one), one block per label; seeded on a private random stream, like :func:`sample_table`."""
    labels = [label for label in model.transformer.categories(model.condition_on) if not pd.isna(label)]
    blocks = []
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(seed)
        for i, label in enumerate(labels):
            blocks.append(model.sample_table(n, label=label, decode=decode, seed=seed + i))
    return pd.concat(blocks, ignore_index=True)


def conditional_report(
    agreement: ConditionAgreement, requested: pd.DataFrame, floor: pd.DataFrame, rows_per_label: int
) -> dict[str, Any]:
    """The report's ``conditional`` section: the agreement figures of the ``requested`` rows and of the real
    ``floor`` rows with their own labels (ratio near 1: what a perfect conditional generator gets)."""
    return {
        "condition_on": agreement.column,
        "rows_per_label": rows_per_label,
        "labels_scored": [str(label) for label in agreement.scored],
        "samples": agreement.score(requested),
        "floor": agreement.score(floor),
    }


# ---- targets and the printed table -----------------------------------------------------------------------------
# (key, label, format, target in words, check(value, floor value) or None)
CHECKS: tuple[tuple[str, str, str, str, Callable[[float, float], bool] | None], ...] = (
    ("quality", "quality score (SDMetrics)", "{:.3f}", "", None),
    ("column_shapes", "column shapes (mean)", "{:.3f}", ">= 0.90", lambda v, f: v >= 0.90),
    ("pair_trends", "pair trends (mean)", "{:.3f}", ">= 0.90", lambda v, f: v >= 0.90),
    ("category_coverage", "category coverage (worst)", "{:.3f}", "1.0", lambda v, f: v >= 1.0),
    ("missing_mass", "missing mass (worst)", "{:.4f}", "<= 0.01", lambda v, f: v <= 0.01),
    ("detection_auc", "detection AUC (GBM)", "{:.3f}", "<= 0.75", lambda v, f: v <= 0.75),
    ("tstr", "TSTR", "{:.3f}", "", None),
    ("trtr", "TRTR", "{:.3f}", "", None),
    ("efficacy_ratio", "TSTR / TRTR", "{:.3f}", ">= 0.85", lambda v, f: v >= 0.85),
    ("copies", "training-row copies", "{:.4f}", "<= floor+0.01", lambda v, f: v <= f + 0.01),
    ("dcr_median", "median DCR to training", "{:.4f}", "", None),
    ("missing_values", "missing-value similarity", "{:.3f}", "", None),
)
# the rows of a conditional checkpoint's ``conditional`` section, alike
CONDITIONAL_CHECKS: tuple[tuple[str, str, str, str, Callable[[float, float], bool] | None], ...] = (
    ("real_accuracy", "label clf. accuracy (real)", "{:.3f}", "", None),
    ("real_balanced_accuracy", "label clf. bal. acc. (real)", "{:.3f}", "", None),
    ("agreement", "label agreement", "{:.3f}", "", None),
    ("balanced_agreement", "label agreement (balanced)", "{:.3f}", "", None),
    ("agreement_ratio", "bal. agreement / bal. acc.", "{:.3f}", ">= 0.90", lambda v, f: v >= 0.90),
)


def verdicts(samples: dict[str, Any], floor: dict[str, Any], checks: tuple = CHECKS) -> dict[str, bool]:
    """``{figure: passed}`` for every figure of ``samples`` that has a target in ``checks``."""
    return {
        key: bool(check(samples[key], floor.get(key, np.nan)))
        for key, _, _, _, check in checks
        if check is not None and key in samples
    }


def report_table(report: dict[str, Any]) -> Any:
    """A rich Table: one row per figure, with the samples, the real-vs-real floor, the target and pass/FAIL."""
    from rich.table import Table

    samples, floor = report["samples"], report["floor"]
    table = Table(
        title=f"{Path(report['data']).name}: {samples['n']} generated rows vs {report['n_reference']} held-out rows",
        caption=caption(report),
    )
    for name in ("metric", "samples", "real vs real", "target", "pass"):
        table.add_column(name, justify="left" if name == "metric" else "right")
    _add_rows(table, CHECKS, samples, floor, report["pass"])
    if conditional := report.get("conditional"):
        table.add_section()
        _add_rows(table, CONDITIONAL_CHECKS, conditional["samples"], conditional["floor"], report["pass"])
    return table


def _add_rows(table: Any, checks: tuple, samples: dict[str, Any], floor: dict[str, Any], passed: dict) -> None:
    for key, label, style, target, _ in checks:
        if key in samples:
            mark = "" if key not in passed else ("pass" if passed[key] else "[bold red]FAIL[/]")
            table.add_row(label, style.format(samples[key]), style.format(floor[key]), target, mark)


def caption(report: dict[str, Any]) -> str:
    """What the figures are: the floor's rows, the pairs scored, the efficacy task, the conditional requests."""
    text = (
        f"real vs real: {report['floor']['n']} other held-out rows; {report['samples']['pairs_scored']} column "
        f"pairs; copies against {report['n_train']} training rows"
    )
    text += f"; efficacy: {report['efficacy']}" if report["efficacy"] else ""
    if conditional := report.get("conditional"):
        text += (
            f"; label agreement: {conditional['rows_per_label']} rows requested per {conditional['condition_on']} "
            f"label, classified by boosted trees trained on real rows (chance {conditional['samples']['chance']:.2f})"
        )
    return text


# ---- what src/evaluate.py does for tables ----------------------------------------------------------------------
def real_parts(datamodule: Any) -> tuple[dict[str, pd.DataFrame], Schema]:
    """``({"train", "reference", "floor"}: real rows, schema)`` of a TabularDataModule's table: its training split,
    and its held-out split cut into two disjoint halves (the reference every table is scored against, and the
    real rows scored as the floor). Reads the table only (no encoder is fit)."""
    table, schema = datamodule.load_table()
    train_rows, test_rows = split_rows(len(table), datamodule.test_fraction, datamodule.seed)
    if len(test_rows) < 4:
        raise ValueError(f"the report needs held-out rows; data.test_fraction={datamodule.test_fraction} leaves none")
    # Halves of a seeded shuffle: test_rows is in file order, and a file sorted by a column (diamonds runs in
    # price-sorted blocks) cut in the middle gives two halves from different ranges of it, and a wrong floor.
    shuffled = np.random.default_rng([datamodule.seed, 1]).permutation(test_rows)
    half = len(shuffled) // 2
    parts = {"train": train_rows, "reference": np.sort(shuffled[:half]), "floor": np.sort(shuffled[half:])}
    return {name: table.iloc[rows].reset_index(drop=True) for name, rows in parts.items()}, schema


def make_scorer(parts: dict[str, pd.DataFrame], schema: Schema, options: Any, seed: int = 0) -> TableScorer:
    """The scorer of ``real_parts``, configured by eval.yaml's ``table`` section."""
    return TableScorer(
        parts["reference"],
        parts["train"],
        schema.kinds,
        target=options.target if options.target is not None else schema.target,
        log_target=options.log_target,
        max_pairs=options.max_pairs,
        min_category_rows=options.min_category_rows,
        folds=options.folds,
        dcr_rows=options.dcr_rows,
        seed=seed,
    )


def quality_report(
    scorer: TableScorer,
    generated: pd.DataFrame,
    floor: pd.DataFrame,
    conditional: dict[str, Any] | None = None,
    **facts: Any,
) -> dict[str, Any]:
    """The report (what metrics.json holds): ``facts``, the figures of ``generated`` and of the ``floor`` rows,
    the targets and which of them ``generated`` meets; with ``conditional`` (:func:`conditional_report`, for a
    conditional checkpoint), that section and its target too."""
    report: dict[str, Any] = {
        **facts,
        "n_reference": len(scorer.reference),
        "n_train": len(scorer.train),
        "target": scorer.target,
        "efficacy": scorer.task_label if scorer.task else None,
        "samples": scorer.score(generated),
        "floor": scorer.score(floor),
    }
    report["pass"] = verdicts(report["samples"], report["floor"])
    report["targets"] = {key: target for key, _, _, target, check in CHECKS if check is not None}
    if conditional is not None:
        report["conditional"] = conditional
        report["pass"] |= verdicts(conditional["samples"], conditional["floor"], CONDITIONAL_CHECKS)
        report["targets"] |= {key: target for key, _, _, target, check in CONDITIONAL_CHECKS if check is not None}
    return report


def evaluate(cfg: Any) -> dict[str, Any]:
    """``src/evaluate.py`` for tables: score ``n`` rows sampled from ``ckpt_path`` (or read from ``samples=<csv>``
    with ``data=``) against the held-out rows of the data split, print the table, write metrics.json. A
    conditional checkpoint also gets the ``conditional`` section (``table.agreement_rows`` rows per label)."""
    if (cfg.ckpt_path is None) == (cfg.samples is None):
        raise ValueError("give ckpt_path=<checkpoint> or samples=<table.csv> (with data=...), exactly one")
    datamodule = instantiate(OmegaConf.create(_data_config(cfg)))
    parts, schema = real_parts(datamodule)
    model = _table_model(cfg) if cfg.ckpt_path is not None else None
    generated, source = _generated_table(cfg, model, parts["train"], schema.kinds)
    scorer = make_scorer(parts, schema, cfg.table, cfg.seed)
    conditional = None
    if model is not None and model.condition_on is not None:
        n = cfg.table.agreement_rows
        if n < 1:
            raise ValueError(f"table.agreement_rows must be >= 1, got {n}")
        requested = requested_rows(model, n, cfg.seed, cfg.table.decode)
        requested = align(requested, parts["train"], schema.kinds, "the requested rows")
        agreement = ConditionAgreement(scorer, model.condition_on, cfg.table.min_category_rows)
        conditional = conditional_report(agreement, requested, parts["floor"], n)
    report = quality_report(
        scorer, generated.iloc[: cfg.n], parts["floor"], conditional, source=str(source), data=str(datamodule.path)
    )
    from rich.console import Console

    Console().print(report_table(report))
    out = Path(cfg.out) if cfg.out else Path(source).parent / "metrics.json"
    write_json(out, report)
    log.info("wrote %s", out)
    return report


def _data_config(cfg: Any) -> dict[str, Any]:
    """The data config whose split the report uses: the checkpoint's (as trained), or ``data=`` for a sample file,
    with ``table.split_seed`` as its seed so the held-out rows are the ones training never saw."""
    if cfg.ckpt_path is not None:
        from ganzoo.pipeline import load_checkpoint

        if cfg.get("data") is not None:
            raise ValueError("a checkpoint carries its data config; give data= only with samples=<table.csv>")
        return load_checkpoint(cfg.ckpt_path)["ganzoo"]["config"]["data"]
    if cfg.get("data") is None:
        raise ValueError("which real table? add data=adult, data=diamonds, ... to score samples=<table.csv>")
    data = OmegaConf.to_container(cfg.data, resolve=True)
    data["seed"] = cfg.table.split_seed
    return data


def _table_model(cfg: Any) -> Any:
    """The table GAN of ``ckpt_path``, on ``device``."""
    from ganzoo.pipeline import load_model

    model = load_model(cfg.ckpt_path, map_location=cfg.device).to(cfg.device)
    if not hasattr(model, "decode"):
        raise ValueError(f"{type(model).__name__} does not generate tables; use a model=tabular_gan checkpoint")
    return model


def _generated_table(cfg: Any, model: Any, real: pd.DataFrame, kinds: dict[str, str]) -> tuple[pd.DataFrame, Path]:
    """(generated rows parsed like ``real``, the file they came from): ``n`` rows sampled from ``model`` (the
    checkpoint's) and decoded as ``src/sample.py`` does, or a CSV / Parquet file of rows."""
    if cfg.samples is not None:
        path = Path(cfg.samples)
        return align(_read_samples(path, real, kinds), real, kinds, f"samples file {path}"), path
    if cfg.n < 2:
        raise ValueError(f"n must be >= 2, got {cfg.n}")
    generated = sample_table(model, cfg.n, cfg.seed, cfg.table.decode, cfg.batch_size)
    return align(generated, real, kinds, "the generated table"), Path(cfg.ckpt_path)


def sample_table(model: Any, n: int, seed: int = 0, decode: str = "sample", batch_size: int = 1000) -> pd.DataFrame:
    """``n`` decoded rows of a table GAN (conditions drawn from their training frequencies), as src/sample.py draws
    them; seeded on a private random stream, so sampling in the middle of training leaves its stream alone."""
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(seed)
        labels = model.sample_conditions(n)
        rows = model.sample(latent=model.sample_latent(n), cond=labels, batch_size=batch_size)
    return model.decode(rows, labels, decode=decode, seed=seed)


def _read_samples(path: Path, real: pd.DataFrame, kinds: dict[str, str]) -> pd.DataFrame:
    """A sample file; text categories are read as text (a label "1" stays "1"). Empty files are a ValueError."""
    if not path.is_file():
        raise ValueError(f"samples file {path} does not exist")
    if path.suffix in (".parquet", ".pq"):
        try:
            table = pd.read_parquet(path)
        except ImportError:
            raise ValueError(f"reading {path} needs pyarrow or fastparquet (not installed); use a CSV") from None
    else:
        text = [n for n, k in kinds.items() if k == CATEGORICAL and not pd.api.types.is_numeric_dtype(real[n].dtype)]
        try:
            table = pd.read_csv(path, dtype=dict.fromkeys(text, str))
        except pd.errors.EmptyDataError:
            raise ValueError(f"samples file {path} is empty; write one with src/sample.py out=<file.csv>") from None
    if table.empty:
        raise ValueError(f"samples file {path} has no rows")
    return table

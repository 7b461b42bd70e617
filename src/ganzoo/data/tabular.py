"""Mixed-type tables (Adult, diamonds, Sberbank housing, any CSV/Parquet) as an in-memory LightningDataModule.

The table is read once, split train/test by ``seed``, and encoded by a ``TableTransformer`` fit on the
training split only (one-hot categoricals, CTGAN's mode-specific normalisation by default: Xu et al. 2019).
The encoded training set is one float tensor; batches are ``(x, cond)`` with ``cond`` the category index of
``condition_on`` (zeros when unconditional). ``held_out()`` gives the raw test rows for evaluation, and
``transformer.inverse_transform`` turns generated rows back into a table like them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from ganzoo.data.idx import DataError
from ganzoo.data.loading import seeded_loader
from ganzoo.data.tabular_schema import (
    CATEGORICAL,
    DATETIME,
    Schema,
    infer_schema,
    read_table,
    require_file,
    unknown_column_message,
)
from ganzoo.data.tabular_transform import Span, TableTransformer, parse_datetime


def split_rows(n_rows: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted train and test row positions: a seeded random permutation, the first ``test_fraction`` held out."""
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"data.test_fraction must be in [0, 1), got {test_fraction}")
    order = np.random.default_rng(seed).permutation(n_rows)
    n_test = round(test_fraction * n_rows)
    return np.sort(order[n_test:]), np.sort(order[:n_test])


class TabularDataModule(pl.LightningDataModule):
    """One table file; the column kinds inferred from dtypes unless the config lists them."""

    def __init__(
        self,
        path: str,
        read_options: dict | None = None,
        categorical: list[str] | None = None,
        continuous: list[str] | None = None,
        datetime: list[str] | None = None,
        drop: list[str] | None = None,
        target: str | None = None,
        log1p: list[str] | None = None,
        max_int_categories: int = 10,
        continuous_encoding: str = "mode_specific",
        max_modes: int = 10,
        mode_weight_threshold: float = 0.005,
        gmm_max_rows: int = 5000,
        mode_atom_share: float | None = 0.02,
        derive_functions: bool = True,
        condition_on: str | None = None,
        batch_size: int = 500,
        seed: int = 0,
        test_fraction: float = 0.2,
        limit: int | None = None,
        missing_hint: str | None = None,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"data.batch_size must be >= 1, got {batch_size}")
        self.path, self.read_options, self.missing_hint = path, read_options, missing_hint
        self.schema_options = dict(
            categorical=categorical,
            continuous=continuous,
            datetime=datetime,
            drop=drop,
            target=target,
            log1p=log1p,
            max_int_categories=max_int_categories,
        )
        self.transform_options = dict(
            continuous_encoding=continuous_encoding,
            max_modes=max_modes,
            mode_weight_threshold=mode_weight_threshold,
            gmm_max_rows=gmm_max_rows,
            mode_atom_share=mode_atom_share,
            derive_functions=derive_functions,
            never_derive=[condition_on] if condition_on else [],
            seed=seed,
        )
        self.condition_on, self.batch_size, self.seed = condition_on, batch_size, seed
        self.test_fraction, self.limit = test_fraction, limit
        self.schema: Schema | None = None
        self.transformer: TableTransformer | None = None
        self.train_set: TensorDataset | None = None
        self.train_table: pd.DataFrame | None = None
        self.test_table: pd.DataFrame | None = None

    def load_table(self) -> tuple[pd.DataFrame, Schema]:
        """The whole table (first ``limit`` rows) restricted to the modelled columns, dates parsed, and its schema."""
        table = read_table(self.path, self.read_options, self.missing_hint)
        if table.empty:
            raise DataError(f"table file {self.path} has no rows (a header only?); point data.path at a filled table")
        if self.limit is not None:
            if self.limit < 1:
                raise ValueError(f"data.limit must be >= 1 (rows) or null, got {self.limit}")
            table = table.iloc[: self.limit]
        table.columns = [str(c) for c in table.columns]
        schema = infer_schema(table, **self.schema_options)
        table = table[schema.columns].reset_index(drop=True)
        for name in schema.of_kind(DATETIME):
            table[name] = parse_datetime(table[name], name)
        return table, schema

    def prepare_data(self) -> None:
        # Fail fast, on one process, when the file is missing: the message says where to put it.
        require_file(self.path, self.missing_hint)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        table, self.schema = self.load_table()
        self._check_condition()
        train_rows, test_rows = split_rows(len(table), self.test_fraction, self.seed)
        if len(train_rows) < self.batch_size:
            raise ValueError(f"{len(train_rows)} training rows are fewer than data.batch_size={self.batch_size}")
        self.train_table = table.iloc[train_rows].reset_index(drop=True)
        self.test_table = table.iloc[test_rows].reset_index(drop=True)
        self.transformer = TableTransformer(self.schema, **self.transform_options).fit(self.train_table)
        encoded = torch.from_numpy(self.transformer.transform(self.train_table)).float()
        self.train_set = TensorDataset(encoded, torch.from_numpy(self.conditions(self.train_table)))

    def _check_condition(self) -> None:
        if self.condition_on is None:
            return
        if self.condition_on not in self.schema.kinds:
            raise DataError(unknown_column_message(self.condition_on, self.schema.columns, "condition_on"))
        if self.schema.kinds[self.condition_on] != CATEGORICAL:
            raise DataError(
                f"data.condition_on={self.condition_on!r} is not a categorical column; "
                f"categorical columns: {self.schema.of_kind(CATEGORICAL)}"
            )

    def conditions(self, table: pd.DataFrame) -> np.ndarray:
        """int64 label of every row: the category index of ``condition_on``, or zeros when unconditional."""
        if self.condition_on is None:
            return np.zeros(len(table), dtype=np.int64)
        return self.transformer.indices(self.condition_on, table).astype(np.int64)

    @property
    def output_info(self) -> list[Span]:
        """The spans of an encoded row (available after ``setup``), for the generator's output heads."""
        self.setup()
        return self.transformer.output_info

    @property
    def num_classes(self) -> int:
        """Number of values ``cond`` takes: the categories of ``condition_on`` (missing included), else 1."""
        self.setup()
        if self.condition_on is None:
            return 1
        return len(self.transformer.categories(self.condition_on))

    def train_dataloader(self) -> DataLoader:
        return seeded_loader(self.train_set, self.batch_size, self.seed, self.trainer)

    def held_out(self) -> pd.DataFrame:
        """The raw test rows (modelled columns, dates parsed), for evaluation; never trained on."""
        self.setup()
        return self.test_table

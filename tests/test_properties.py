"""Property-based tests (hypothesis): the tabular transforms over generated tables, and config validation over
generated values. Each property holds for every example drawn, not only for the real tables of the other tests."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from conftest import compose_config
from hydra.errors import InstantiationException
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from omegaconf import DictConfig, OmegaConf

from ganzoo.data.idx import DataError
from ganzoo.data.tabular_schema import infer_schema
from ganzoo.data.tabular_transform import SOFTMAX, TANH, TableTransformer
from ganzoo.pipeline import build_model, check_learning_rates

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    database=None,  # no .hypothesis folder in the checkout
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
ENCODINGS = ["minmax", "standard", "mode_specific"]
# Found by hypothesis: a continuous column with a single observed value broke mode_specific (a mixture of 1 sample).
ONE_VALUE = (pd.DataFrame({"cat0": pd.Series(["a", "a"], dtype=object), "num0": [0.0, math.nan]}), ["cat0"], ["num0"])
# Found by hypothesis: with 10 rows of one category, cat1 and num0 are functions of cat0, looked up, not modelled.
CONSTANT = (
    pd.DataFrame({"cat0": pd.Series(["a"] * 10, dtype=object), "cat1": pd.Series(["a"] * 10, dtype=object)}).assign(
        num0=0.0
    ),
    ["cat0", "cat1"],
    ["num0"],
)

# ---- generated tables -----------------------------------------------------------------------------------------
labels = st.sampled_from(["a", "b", "c", "Zürich", "", " x ", "None", "nan", "0"])
finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


@st.composite
def tables(draw) -> tuple[pd.DataFrame, list[str], list[str]]:
    """A table of 2 to 30 rows: 1 to 3 text columns (maybe with missing cells), 1 to 2 float columns (maybe with
    missing cells, maybe whole numbers), and the categorical and continuous column names."""
    n = draw(st.integers(2, 30))
    columns: dict[str, list] = {}
    categorical = [f"cat{i}" for i in range(draw(st.integers(1, 3)))]
    for name in categorical:
        cells = draw(st.lists(labels, min_size=n, max_size=n))
        missing = draw(st.lists(st.booleans(), min_size=n, max_size=n)) if draw(st.booleans()) else [False] * n
        columns[name] = [None if m else c for c, m in zip(cells, missing, strict=True)]
    continuous = [f"num{i}" for i in range(draw(st.integers(1, 2)))]
    for name in continuous:
        values = draw(st.lists(finite, min_size=n, max_size=n))
        if draw(st.booleans()):
            values = [float(round(v)) for v in values]
        missing = draw(st.lists(st.booleans(), min_size=n, max_size=n)) if draw(st.booleans()) else [False] * n
        if all(missing):
            missing[0] = False  # a column with no value at all is refused (tested in test_tabular_data)
        columns[name] = [math.nan if m else v for v, m in zip(values, missing, strict=True)]
    table = pd.DataFrame(columns)
    for name in categorical:
        table[name] = table[name].astype(object)
    return table, categorical, continuous


def fit(table: pd.DataFrame, categorical: list[str], continuous: list[str], encoding: str) -> TableTransformer:
    schema = infer_schema(table, categorical=categorical, continuous=continuous)
    return TableTransformer(schema, encoding, gmm_max_rows=200, seed=0).fit(table)


@SETTINGS
@given(data=tables(), encoding=st.sampled_from(ENCODINGS))
@example(data=ONE_VALUE, encoding="mode_specific")
@example(data=CONSTANT, encoding="minmax")
def test_spans_tile_the_encoded_row_and_match_the_columns(data, encoding):
    table, categorical, _ = data
    transformer = fit(*data, encoding)
    # A column that is a function of a categorical one has no span: it is looked up from its modelled source.
    assert all(column.source in transformer.columns for column in transformer.derived.values())
    assert set(transformer.columns) | set(transformer.derived) == set(table.columns)
    categorical = [name for name in categorical if name not in transformer.derived]
    encoded = transformer.transform(table)
    assert encoded.shape == (len(table), transformer.output_dim)
    starts = [span.start for span in transformer.output_info]
    ends = [span.start + span.width for span in transformer.output_info]
    assert starts[0] == 0 and ends[-1] == transformer.output_dim and starts[1:] == ends[:-1]  # no gap, no overlap
    assert all(span.width >= 1 for span in transformer.output_info)
    for name in categorical:
        (span,) = [s for s in transformer.output_info if s.column == name]
        assert span.kind == SOFTMAX and span.width == table[name].nunique() + table[name].isna().any()
    for span in transformer.output_info:
        block = encoded[:, span.slice]
        if span.kind == SOFTMAX:  # a one-hot row per span: exactly one 1, the rest 0
            assert set(np.unique(block)) <= {0.0, 1.0} and (block.sum(axis=1) == 1).all()
        if span.kind == TANH:
            assert np.abs(block).max() <= 1.0


@SETTINGS
@given(data=tables(), encoding=st.sampled_from(ENCODINGS), decode=st.sampled_from(["sample", "argmax"]))
@example(data=CONSTANT, encoding="minmax", decode="argmax")
@example(data=ONE_VALUE, encoding="mode_specific", decode="sample")
def test_round_trip_is_exact_for_categories_and_close_for_numbers(data, encoding, decode):
    table, categorical, continuous = data
    transformer = fit(*data, encoding)
    back = transformer.inverse_transform(transformer.transform(table), decode=decode)
    assert list(back.columns) == list(table.columns)
    for name in categorical:
        missing = table[name].isna()
        assert back[name].isna().equals(missing), f"{name}: missing cells moved"
        assert back[name][~missing].tolist() == table[name][~missing].tolist(), name
    for name in continuous:
        original, decoded = table[name].to_numpy(float), back[name].to_numpy(float)
        assert np.array_equal(np.isnan(original), np.isnan(decoded)), f"{name}: missing cells moved"
        observed = ~np.isnan(original)
        scale = np.abs(original[observed]).max() + 1.0
        np.testing.assert_allclose(decoded[observed], original[observed], rtol=0, atol=1e-9 * scale, err_msg=name)


@SETTINGS
@given(data=tables(), unseen=st.text(min_size=1, max_size=8), row=st.integers(0, 29))
def test_an_unseen_category_is_refused_naming_column_and_value(data, unseen, row):
    table, categorical, continuous = data
    if unseen in set(table[categorical[0]].dropna()):
        return  # not unseen
    transformer = fit(table, categorical, continuous, "minmax")
    row = row % len(table)
    changed = table.copy()
    changed.loc[row, categorical[0]] = unseen
    with pytest.raises(DataError) as error:
        transformer.transform(changed)
    assert f"column {categorical[0]!r}: unknown category {unseen!r} (row {row})" in str(error.value)


# ---- config validation ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gan_config(tmp_path_factory) -> DictConfig:
    """A small MLP GAN config, composed once (hypothesis draws only the value under test)."""
    cfg = compose_config(
        ["model=gan", "model.generator.hidden=[8]", "model.discriminator.hidden=[8]"], tmp_path_factory.mktemp("cfg")
    )
    return cfg


def with_value(cfg: DictConfig, key: str, value) -> DictConfig:
    changed = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    OmegaConf.update(changed, key, value)
    return changed


def build_error(cfg: DictConfig) -> str:
    """The message a user sees when ``build_model`` refuses the config (an instantiation error shows its cause)."""
    with pytest.raises((ValueError, InstantiationException)) as error:
        build_model(cfg)
    return f"{error.value} {error.value.__cause__ or ''}"


@SETTINGS
@given(key=st.sampled_from(["model.n_critic", "model.n_gen", "model.latent_dim"]), value=st.integers(-(10**6), 0))
def test_counts_below_one_are_refused_naming_the_key(gan_config, key, value):
    message = build_error(with_value(gan_config, key, value))
    name = key.split(".")[-1]
    assert f"{name} must be >= 1, got {value}" in message, message


@SETTINGS
@given(n_critic=st.integers(1, 10), latent_dim=st.integers(1, 16))
def test_counts_of_one_or_more_are_accepted(gan_config, n_critic, latent_dim):
    cfg = with_value(with_value(gan_config, "model.n_critic", n_critic), "model.latent_dim", latent_dim)
    model = build_model(cfg)
    assert (model.n_critic, model.latent_dim) == (n_critic, latent_dim)


@SETTINGS
@given(
    key=st.sampled_from(["model.optimizer_g.lr", "model.optimizer_d.lr"]),
    lr=st.one_of(st.floats(max_value=0.0, allow_nan=False), st.integers(max_value=0)),
)
def test_learning_rates_of_zero_or_less_are_refused_naming_the_key(gan_config, key, lr):
    with pytest.raises(ValueError, match=rf"^{key} must be a finite number > 0, got "):
        check_learning_rates(with_value(gan_config, key, lr))


@SETTINGS
@given(lr=st.floats(min_value=1e-12, max_value=10.0), broken=st.sampled_from([None, math.nan, math.inf, "fast"]))
def test_positive_learning_rates_pass_and_nan_inf_or_text_do_not(gan_config, lr, broken):
    cfg = with_value(gan_config, "model.optimizer_d.lr", lr if broken is None else broken)
    if broken is None:
        check_learning_rates(cfg)
    else:
        with pytest.raises(ValueError, match=r"^model\.optimizer_d\.lr must be a finite number > 0, got "):
            check_learning_rates(cfg)

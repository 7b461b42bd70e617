"""Mixed-type tables: schema, reversible encoding and the DataModule, on real Adult and diamonds rows.

The real files are reached through GANZOO_DATA_DIR (the ``data_dir`` fixture); a small Sberbank-like table
is written by the test, since the Kaggle file cannot be shipped.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import compose_config
from hydra.utils import instantiate

from ganzoo.data.idx import DataError
from ganzoo.data.tabular import TabularDataModule
from ganzoo.data.tabular_schema import infer_schema
from ganzoo.data.tabular_transform import SOFTMAX, TANH, ModeSpecificScaler, TableTransformer, pick

ROWS = 2000  # a real subset: the round trips stay within a few seconds on two shared cores
FAST = [f"data.limit={ROWS}", "data.gmm_max_rows=500"]
ENCODINGS = ["minmax", "standard", "mode_specific"]


@pytest.fixture(scope="module")
def tables(data_dir, tmp_path_factory) -> dict[str, pd.DataFrame]:
    """The first rows of Adult and diamonds as their presets read them (Adult has NaN categoricals)."""
    out = {}
    for name in ("adult", "diamonds"):
        cfg = compose_config([f"data={name}", f"paths.data_dir={data_dir}", *FAST], tmp_path_factory.mktemp(name))
        out[name] = instantiate(cfg.data).load_table()[0]
    return out


def fit(table: pd.DataFrame, encoding: str = "minmax", **schema) -> TableTransformer:
    return TableTransformer(infer_schema(table, **schema), encoding, gmm_max_rows=500).fit(table)


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("name", ["adult", "diamonds"])
def test_round_trip_gives_back_the_table(tables, name, encoding):
    table = tables[name]
    transformer = fit(table, encoding)
    encoded = transformer.transform(table)
    assert encoded.shape == (len(table), transformer.output_dim)
    for span in transformer.output_info:
        block = encoded[:, span.slice]
        if span.kind == SOFTMAX:
            assert np.allclose(block.sum(axis=1), 1.0) and set(np.unique(block)) <= {0.0, 1.0}
        if span.kind == TANH:
            assert np.abs(block).max() <= 1.0
    for decode in ("sample", "argmax"):
        back = transformer.inverse_transform(encoded, decode=decode)
        # Exact for categoricals (NaN included), ints and dtypes; floats to round-off.
        pd.testing.assert_frame_equal(back, table, rtol=1e-9)


def test_adult_keeps_its_missing_categories_and_ints(tables):
    table = tables["adult"]
    transformer = fit(table, "mode_specific")
    back = transformer.inverse_transform(transformer.transform(table))
    assert table["occupation"].isna().sum() > 0
    assert back["occupation"].isna().sum() == table["occupation"].isna().sum()
    assert back["age"].dtype == np.int64 and back["income"].dtype == table["income"].dtype


def test_sampling_keeps_rare_categories_that_argmax_deletes(tables):
    table = tables["adult"]
    transformer = fit(table)
    race = next(span for span in transformer.output_info if span.column == "race")
    frequencies = table["race"].value_counts(normalize=True, dropna=False)
    rare = frequencies.index[-1]
    assert frequencies[rare] < 0.02
    # Every row says "race follows the data's frequencies", as a well-trained generator would.
    encoded = transformer.transform(pd.concat([table] * 5, ignore_index=True))
    encoded[:, race.slice] = [frequencies.get(label, 0.0) for label in transformer.categories("race")]
    sampled = transformer.inverse_transform(encoded, decode="sample")["race"].value_counts(normalize=True)
    argmaxed = transformer.inverse_transform(encoded, decode="argmax")["race"].value_counts(normalize=True)
    assert sampled[rare] == pytest.approx(frequencies[rare], abs=0.01)
    assert set(argmaxed.index) == {frequencies.index[0]}


def test_pick_samples_where_argmax_collapses():
    probs = np.tile([0.9, 0.07, 0.03], (20_000, 1))
    counts = np.bincount(pick(probs, "sample", np.random.default_rng(0)), minlength=3) / len(probs)
    assert counts == pytest.approx([0.9, 0.07, 0.03], abs=0.01)
    assert (pick(probs, "argmax", np.random.default_rng(0)) == 0).all()


def test_unknown_category_names_column_and_value(tables):
    table = tables["adult"]
    transformer = fit(table)
    bad = table.head(5).copy()
    bad.loc[2, "workclass"] = "Astronaut"
    with pytest.raises(DataError, match=r"'workclass': unknown category 'Astronaut' \(row 2\)"):
        transformer.transform(bad)


def test_unparsable_cell_names_column_and_value(tables, tmp_path):
    table = tables["diamonds"]
    transformer = fit(table)
    bad = table.head(5).astype({"depth": object})
    bad.loc[3, "depth"] = "deep"
    with pytest.raises(DataError, match=r"'depth': cannot parse 'deep' \(row 3\)"):
        transformer.transform(bad)
    path = tmp_path / "junk.csv"
    table.head(50).astype({"carat": object}).replace({"carat": {0.23: "n/a?"}}).to_csv(path, index=False)
    module = TabularDataModule(str(path), continuous=["carat"], batch_size=8, gmm_max_rows=50)
    with pytest.raises(DataError, match=r"'carat': cannot parse 'n/a\?'"):
        module.setup()


def test_missing_file_says_where_to_put_it(tmp_path, data_dir):
    with pytest.raises(DataError, match=r"nothing\.csv not found; set data\.path"):
        TabularDataModule(str(tmp_path / "nothing.csv")).prepare_data()
    cfg = compose_config(["data=sberbank", f"paths.data_dir={tmp_path}"], tmp_path / "run")
    with pytest.raises(DataError, match=r"tabular/sberbank/train\.csv not found.*Sberbank Russian Housing Market"):
        instantiate(cfg.data).setup()


@pytest.mark.parametrize(
    "override", ["categorical=[natve-country]", "drop=[fnlwgtt]", "target=incme", "condition_on=Income"]
)
def test_unknown_column_in_config_lists_close_matches(tmp_path, data_dir, override):
    key, value = override.split("=")
    cfg = compose_config(["data=adult", f"paths.data_dir={data_dir}", f"data.{override}", *FAST], tmp_path)
    wrong = value.strip("[]")
    with pytest.raises(DataError, match=rf"data\.{key} names unknown column '{wrong}'; close matches: \S*"):
        instantiate(cfg.data).setup()


def test_conflicting_lists_are_an_error(tables):
    with pytest.raises(DataError, match=r"\['age'\] are in both data\.categorical and data\.continuous"):
        infer_schema(tables["adult"], categorical=["age"], continuous=["age"])


FLAGS = [
    "culture_objects_top_25",
    "thermal_power_plant_raion",
    "incineration_raion",
    "oil_chemistry_raion",
    "radiation_raion",
    "railroad_terminal_raion",
    "big_market_raion",
    "nuclear_reactor_raion",
    "detention_facility_raion",
    "water_1line",
    "big_road1_1line",
    "railroad_1line",
]


def sberbank_like(rows: int, seed: int = 0) -> pd.DataFrame:
    """A small table with the named columns and types of Kaggle's Sberbank train.csv, NaN blocks included."""
    rng = np.random.default_rng(seed)
    full_sq = rng.lognormal(4.0, 0.4, rows).round(1)
    table = pd.DataFrame(
        {
            "id": np.arange(1, rows + 1),
            "timestamp": pd.Timestamp("2011-08-20") + pd.to_timedelta(rng.integers(0, 1400, rows), unit="D"),
            "full_sq": full_sq,
            "life_sq": (full_sq * rng.uniform(0.4, 0.8, rows)).round(1),
            "floor": rng.integers(1, 25, rows).astype(float),
            "material": rng.integers(1, 7, rows).astype(float),
            "build_year": rng.integers(1930, 2016, rows).astype(float),
            "num_room": rng.integers(1, 5, rows).astype(float),
            "state": rng.integers(1, 5, rows).astype(float),
            "product_type": rng.choice(["Investment", "OwnerOccupier"], rows, p=[0.64, 0.36]),
            "sub_area": rng.choice([f"District {i}" for i in range(20)], rows),
            "raion_popul": 0,  # below: a district's population, as the real file's district columns are
            "ID_metro": rng.integers(1, 40, rows),
            "ID_railroad_station_walk": rng.integers(1, 30, rows).astype(float),
            **{flag: rng.choice(["no", "yes"], rows, p=[0.9, 0.1]) for flag in FLAGS},
            "ecology": rng.choice(["excellent", "good", "poor", "satisfactory", "no data"], rows),
            "kremlin_km": rng.gamma(2.0, 7.0, rows),
            "price_doc": (rng.lognormal(15.6, 0.6, rows)).round(-3).astype(np.int64),
        }
    )
    table["raion_popul"] = table["sub_area"].str.split().str[1].astype(int) * 7919 + 2546
    # Blocks of NaN as in the real file (early rows lack the building details).
    for column in ("life_sq", "material", "build_year", "num_room", "state"):
        table.loc[: rows // 4, column] = np.nan
    table.loc[rng.choice(rows, rows // 20, replace=False), "ID_railroad_station_walk"] = np.nan
    return table


def test_sberbank_preset_loads_a_table_of_its_shape(tmp_path):
    path = tmp_path / "train.csv"
    sberbank_like(400).to_csv(path, index=False, date_format="%Y-%m-%d")
    overrides = [f"data.path={path}", "data.batch_size=64", "data.gmm_max_rows=200", "data.condition_on=product_type"]
    module = instantiate(compose_config(["data=sberbank", *overrides], tmp_path / "run").data)
    module.setup()
    kinds = module.schema.kinds
    assert "id" not in kinds and kinds["timestamp"] == "datetime" and kinds["price_doc"] == "continuous"
    categorical = ["product_type", "sub_area", "ecology", *FLAGS, "material", "state", "num_room", "ID_metro"]
    assert all(kinds[c] == "categorical" for c in [*categorical, "ID_railroad_station_walk"])
    assert module.schema.log1p == ["price_doc"] and module.schema.target == "price_doc"
    assert {name: column.source for name, column in module.transformer.derived.items()} == {"raion_popul": "sub_area"}
    x, cond = next(iter(module.train_dataloader()))
    assert x.shape == (64, module.transformer.output_dim) and x.dtype == torch.float32 and torch.isfinite(x).all()
    assert cond.dtype == torch.int64 and set(cond.tolist()) <= {0, 1} and module.num_classes == 2
    train = module.train_table
    back = module.transformer.inverse_transform(module.transformer.transform(train))
    pd.testing.assert_frame_equal(back, train, rtol=1e-9)
    assert back["timestamp"].dtype.kind == "M" and back["build_year"].isna().sum() == train["build_year"].isna().sum()
    assert len(module.held_out()) == 80 and list(module.held_out().columns) == list(train.columns)


def test_an_outlier_gets_a_mode_of_its_own_instead_of_widening_the_bulk():
    # diamonds' y: one 58.9 mm stone beside a bulk under 11 mm. The mixture, fit on a subsample without it, must
    # not stretch the bulk's mode to reach it (that mode's generated values would then span -44 to 59).
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(5.7, 1.0, 20000), [58.9]])
    scaler = ModeSpecificScaler(max_rows=500)
    scaler.fit(x, rng)
    assert scaler.stds.max() < 3.0
    encoded = scaler.encode(x, rng)
    assert np.allclose(scaler.decode(encoded, "argmax", rng), x)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_decoded_numbers_stay_in_the_training_range(tables, encoding):
    # The generator's scalar at its extremes (-1 / +1 for tanh heads, far out for linear ones) on every row.
    table = tables["diamonds"]
    transformer = fit(table, encoding)
    encoded = transformer.transform(table)
    for extreme in (-1.0, 1.0):
        pushed = encoded.copy()
        for span in transformer.output_info:
            if span.kind != SOFTMAX:
                pushed[:, span.slice] = extreme * (1.0 if span.kind == TANH else 10.0)
        back = transformer.inverse_transform(pushed)
        for column in ("carat", "price", "y"):
            assert back[column].min() >= table[column].min() and back[column].max() <= table[column].max(), column


def test_decoded_numbers_keep_the_training_precision(tables):
    # diamonds records carat and x to 2 places, depth to 1, price in whole dollars: a generated 0.2317 carat is
    # a giveaway to a detector. Numbers recorded finer than 6 places (here: noise) are left as generated.
    table = tables["diamonds"].assign(noise=np.random.default_rng(0).normal(size=ROWS))
    # No exact modes for frequent values: those decode to recorded values anyway (the next test).
    transformer = TableTransformer(infer_schema(table), gmm_max_rows=500, mode_atom_share=None).fit(table)
    encoded = transformer.transform(table)
    for span in transformer.output_info:
        if span.kind == TANH:  # move every value off the recorded grid
            encoded[:, span.slice] = np.clip(encoded[:, span.slice] + 0.0123, -1, 1)
    back = transformer.inverse_transform(encoded)
    for column, places in {"carat": 2, "x": 2, "depth": 1, "price": 0}.items():
        assert np.allclose(back[column], back[column].round(places), rtol=0, atol=1e-9), column
        assert not np.allclose(back[column], table[column]), column  # the shift did change the values
    assert not np.allclose(back["noise"], back["noise"].round(6), rtol=0, atol=1e-9)


def test_a_spike_gets_an_exact_mode_that_decodes_to_its_value(tables):
    # Adult's capital-gain is 0 in ~92 % of rows: a Gaussian mode there decodes to 0 +- a few dollars (generated
    # tables had 45 % zeros and many 1-10s). The spike gets a sigma-0 mode: every row decoded from it is exactly 0,
    # whatever G's scalar is; the other values keep their Gaussian modes and round-trip.
    x = tables["adult"]["capital-gain"].to_numpy(dtype=float)
    rng = np.random.default_rng(0)
    scaler = ModeSpecificScaler(max_rows=500)
    scaler.fit(x, rng)
    assert scaler.means[scaler.stds == 0].tolist() == [0.0] and (scaler.stds > 0).any()
    assert np.isclose(np.exp(scaler.log_weights).sum(), 1.0)
    encoded = scaler.encode(x, rng)
    assert np.allclose(scaler.decode(encoded, "argmax", rng), x)
    zero_mode = int(np.flatnonzero(scaler.stds == 0)[0])
    assert (encoded[x == 0, 1 + zero_mode] == 1).all() and (encoded[x != 0, 1 + zero_mode] == 0).all()
    encoded[:, 0] = rng.uniform(-1, 1, len(x))  # any scalar G may emit
    decoded = scaler.decode(encoded, "argmax", rng)
    assert np.mean(decoded == 0) == np.mean(x == 0)
    # Off: the spike is one more Gaussian mode, and a scalar off its centre moves the value off 0.
    plain = ModeSpecificScaler(max_rows=500, atom_share=None)
    plain.fit(x, rng)
    assert (plain.stds > 0).all()
    assert np.mean(plain.decode(encoded, "argmax", rng) == 0) < 0.5 * np.mean(x == 0)


def test_a_column_that_is_a_function_of_a_category_is_looked_up_not_modelled(tables):
    # Adult's education-num is a code of education. Modelled apart, generated rows paired them wrongly (a
    # detector's strongest signal); derived, every decoded row pairs them as the training rows do.
    table = tables["adult"]
    truth = table.groupby("education")["education-num"].first()
    schema = infer_schema(table, continuous=["education-num"])
    rng = np.random.default_rng(0)

    def decode_random_rows(transformer: TableTransformer) -> pd.DataFrame:
        encoded = rng.uniform(-1, 1, (500, transformer.output_dim))  # any output G may give
        for span in transformer.output_info:
            if span.kind == SOFTMAX:
                encoded[:, span.slice] = rng.dirichlet(np.ones(span.width), 500)
        return transformer.inverse_transform(encoded)

    derived = TableTransformer(schema, gmm_max_rows=500).fit(table)
    assert {name: column.source for name, column in derived.derived.items()} == {"education-num": "education"}
    assert "education-num" not in {span.column for span in derived.output_info}
    back = decode_random_rows(derived)
    assert (back["education-num"] == back["education"].map(truth)).all()
    assert back["education-num"].dtype == table["education-num"].dtype and list(back.columns) == list(table.columns)
    state = TableTransformer.from_state_dict(derived.state_dict())
    pd.testing.assert_frame_equal(state.inverse_transform(derived.transform(table)), table)
    # Modelled (switched off, or the column is one the model must see): the pairing is G's to get right.
    for modelled in (
        TableTransformer(schema, gmm_max_rows=500, derive_functions=False).fit(table),
        TableTransformer(schema, gmm_max_rows=500, never_derive=["education-num"]).fit(table),
    ):
        assert not modelled.derived and "education-num" in {span.column for span in modelled.output_info}
        back = decode_random_rows(modelled)
        assert (back["education-num"] != back["education"].map(truth)).mean() > 0.5


def test_a_column_with_a_category_per_row_is_no_source(tables):
    # Every column is a function of a row id; deriving from one would copy training rows.
    table = tables["adult"].assign(row_id=[f"r{i}" for i in range(ROWS)])
    transformer = TableTransformer(infer_schema(table, categorical=["row_id"]), gmm_max_rows=500).fit(table)
    assert list(transformer.derived) == ["education-num"]

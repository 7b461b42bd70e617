"""The table quality report on real Adult rows: real vs real is near the ceiling, a column-shuffled copy and a
dropped category are caught, verbatim training rows are flagged, and src/evaluate.py scores a checkpoint."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from conftest import compose_config, run_cli
from hydra.utils import instantiate
from test_tabular_gan import TABLE

from ganzoo.data.tabular import split_rows
from ganzoo.metrics.tabular import TableScorer, category_coverage, evaluate, real_parts, verdicts
from ganzoo.pipeline import train

SUMMARY = ["column_shapes", "pair_trends", "category_coverage", "missing_mass", "detection_auc", "tstr", "trtr"]
SUMMARY += ["efficacy_ratio", "dcr_median", "copies", "missing_values"]


@pytest.fixture(scope="module")
def adult(tmp_path_factory, data_dir):
    """(table, kinds) of the whole real Adult table."""
    cfg = compose_config(["data=adult", f"paths.data_dir={data_dir}"], tmp_path_factory.mktemp("adult"))
    table, schema = instantiate(cfg.data).load_table()
    return table, schema.kinds


@pytest.fixture(scope="module")
def parts(adult):
    """Disjoint real parts of Adult: reference (2000 rows), other (2000), train (5000)."""
    table, _ = adult
    rows = np.random.default_rng(0).permutation(len(table))
    return {name: table.iloc[rows[a:b]].reset_index(drop=True) for name, a, b in
            [("reference", 0, 2000), ("other", 2000, 4000), ("train", 4000, 9000)]}  # fmt: skip


@pytest.fixture(scope="module")
def scorer(adult, parts):
    return TableScorer(parts["reference"], parts["train"], adult[1], target="income", dcr_rows=1000)


@pytest.fixture(scope="module")
def real_scores(scorer, parts):
    return scorer.score(parts["other"])


def shuffle_columns(table: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Every column permuted independently: the same marginals, no joint structure."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({name: table[name].to_numpy()[rng.permutation(len(table))] for name in table.columns})


def test_real_vs_real_is_near_the_ceiling(real_scores):
    assert real_scores["column_shapes"] > 0.95 and real_scores["pair_trends"] > 0.93, real_scores
    assert abs(real_scores["detection_auc"] - 0.5) < 0.06
    assert real_scores["efficacy_ratio"] > 0.9 and real_scores["copies"] < 0.01
    assert real_scores["missing_values"] > 0.98 and real_scores["pairs_scored"] == 105
    assert all(math.isfinite(real_scores[key]) for key in SUMMARY)


def test_column_shuffle_keeps_shapes_but_breaks_trends_and_detection(scorer, parts, real_scores):
    shuffled = scorer.score(shuffle_columns(parts["other"]))
    assert shuffled["column_shapes"] == pytest.approx(real_scores["column_shapes"], abs=1e-9)  # same marginals
    assert shuffled["pair_trends"] < real_scores["pair_trends"] - 0.03, (shuffled, real_scores)
    assert shuffled["detection_auc"] > 0.9
    assert shuffled["efficacy_ratio"] < 0.5  # income no longer follows from the other columns
    assert not verdicts(shuffled, real_scores)["detection_auc"]


def test_a_category_never_generated_shows_as_missing_mass(parts):
    reference = parts["reference"]
    fake = reference[reference["workclass"] != "Self-emp-inc"]
    coverage = category_coverage(reference, fake, ["workclass", "sex"], min_rows=20)
    counts = reference["workclass"].value_counts()
    assert coverage["workclass"]["coverage"] == pytest.approx(1 - 1 / int((counts >= 20).sum()))
    assert coverage["workclass"]["missing_mass"] == pytest.approx(counts["Self-emp-inc"] / counts.sum())
    assert coverage["sex"] == {"coverage": 1.0, "coverage_all": 1.0, "missing_mass": 0.0}
    # A category rarer than min_rows counts in the mass but not in the coverage target.
    countries = reference["native-country"].value_counts()
    fake = reference[reference["native-country"] != countries.index[countries < 20][0]]
    coverage = category_coverage(reference, fake, ["native-country"], min_rows=20)["native-country"]
    assert coverage["coverage"] == 1.0 and coverage["coverage_all"] < 1.0 and 0 < coverage["missing_mass"] < 0.01


def eval_config(tmp_path, data_dir, *overrides: str):
    return compose_config([f"paths.data_dir={data_dir}", *overrides], tmp_path / "eval", "eval")


def test_csv_of_training_rows_is_flagged_as_copies(tmp_path, data_dir, adult):
    """samples=<csv> data=adult: the split is the training run's (seed 42); its training rows are copies."""
    table, _ = adult
    train_rows, _ = split_rows(2000, 0.2, seed=42)
    samples = tmp_path / "copies.csv"
    table.iloc[train_rows[:400]].to_csv(samples, index=False)
    cfg = eval_config(tmp_path, data_dir, "data=adult", "data.limit=2000", f"samples={samples}", "table.max_pairs=30")
    report = evaluate(cfg)
    assert report["samples"]["copies"] == 1.0 and report["floor"]["copies"] < 0.05
    assert report["pass"]["copies"] is False and report["samples"]["column_shapes"] > 0.9
    assert json.loads((tmp_path / "metrics.json").read_text())["samples"]["n"] == 400


@pytest.mark.parametrize(
    ("content", "override", "message"),
    [
        ("", None, "is empty"),
        ("age,sex", None, "lacks the columns"),
        ("age,sex\n", None, "has no rows"),
        (None, "table.target=incme", "table.target names unknown column 'incme'"),
        ("extra", None, "has columns the real table has not: \\['extra'\\]"),
        ("bad age", None, "cannot parse 'old'"),
    ],
)
def test_bad_samples_are_clear_errors(tmp_path, data_dir, adult, content, override, message):
    table, _ = adult
    rows = table.iloc[:50].copy()
    path = tmp_path / "s.csv"
    if content == "extra":
        rows.assign(extra=1).to_csv(path, index=False)
    elif content == "age,sex":
        rows[["age", "sex"]].to_csv(path, index=False)
    elif content == "bad age":
        rows.astype({"age": object}).assign(age=["old"] * 50).to_csv(path, index=False)
    elif content is None:
        rows.to_csv(path, index=False)
    else:
        path.write_text(content)
    overrides = ["data=adult", "data.limit=2000", f"samples={path}", *([override] if override else [])]
    cfg = eval_config(tmp_path, data_dir, *overrides)
    with pytest.raises(ValueError, match=message):
        evaluate(cfg)


def test_evaluate_cli_scores_a_checkpoint(train_config, tmp_path):
    cfg = train_config(*TABLE, "loss=wgan_gp", "trainer.max_steps=4", fast=False)
    train(cfg)
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    result = run_cli("evaluate.py", f"ckpt_path={ckpt}", "n=300", "table.dcr_rows=300", "table.max_pairs=30")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "detection AUC" in result.stdout and "real vs real" in result.stdout
    report = json.loads((ckpt.parent / "metrics.json").read_text())
    assert report["samples"]["n"] == 300 and report["target"] == "income"
    for side in ("samples", "floor"):
        assert all(math.isfinite(report[side][key]) for key in SUMMARY), report[side]
    assert report["floor"]["detection_auc"] < report["samples"]["detection_auc"]  # two steps are far from real


def test_held_out_halves_are_alike_when_the_file_is_sorted(tmp_path, data_dir):
    # diamonds.csv.gz runs in price-sorted blocks: halves of the held-out rows in file order would hold mostly
    # the cheap and mostly the dear stones, and real vs real would score as badly as a broken generator.
    from scipy.stats import ks_2samp

    cfg = compose_config(["data=diamonds", f"paths.data_dir={data_dir}"], tmp_path)
    table, _ = instantiate(cfg.data).load_table()
    in_file_order = table["price"].to_numpy()
    assert ks_2samp(in_file_order[: len(table) // 2], in_file_order[len(table) // 2 :]).statistic > 0.5
    parts, _ = real_parts(instantiate(cfg.data))
    assert len(parts["reference"]) + len(parts["floor"]) + len(parts["train"]) == len(table)
    assert ks_2samp(parts["reference"]["price"], parts["floor"]["price"]).statistic < 0.05

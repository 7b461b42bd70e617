"""The conditional-agreement figure of the table report on real Adult rows: real rows with their own labels agree
as well as the classifier is accurate, shuffled labels and majority-looking rows do not, and src/evaluate.py adds
the section for a conditional checkpoint only."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from conftest import compose_config
from hydra.utils import instantiate
from rich.console import Console
from test_tabular_gan import TABLE

from ganzoo.metrics.tabular import ConditionAgreement, TableScorer, caption, evaluate, report_table
from ganzoo.pipeline import train

FIGURES = ["real_accuracy", "real_balanced_accuracy", "agreement", "balanced_agreement"]


@pytest.fixture(scope="module")
def parts(tmp_path_factory, data_dir):
    """Disjoint real parts of Adult: reference (2000 rows), other (2000), train (5000); and the column kinds."""
    cfg = compose_config(["data=adult", f"paths.data_dir={data_dir}"], tmp_path_factory.mktemp("adult"))
    table, schema = instantiate(cfg.data).load_table()
    rows = np.random.default_rng(0).permutation(len(table))
    cuts = {"reference": (0, 2000), "other": (2000, 4000), "train": (4000, 9000)}
    return {name: table.iloc[rows[a:b]].reset_index(drop=True) for name, (a, b) in cuts.items()}, schema.kinds


@pytest.fixture(scope="module")
def agreement(parts):
    tables, kinds = parts
    scorer = TableScorer(tables["reference"], tables["train"], kinds, max_pairs=10, dcr_rows=10)
    return ConditionAgreement(scorer, "income")


def test_real_rows_with_their_labels_agree_like_the_classifier_is_accurate(agreement, parts):
    real = agreement.score(parts[0]["other"])
    assert 0.8 < real["real_accuracy"] < 0.95 and 0.7 < real["real_balanced_accuracy"] < real["real_accuracy"]
    assert real["agreement"] == pytest.approx(real["real_accuracy"], abs=0.03)
    assert real["agreement_ratio"] == pytest.approx(1.0, abs=0.08), real
    assert set(real["per_label"]) == {"<=50K", ">50K"} and real["n"] == 2000 and real["chance"] == 0.5


def test_shuffled_labels_agree_at_chance(agreement, parts):
    other = parts[0]["other"].copy()
    other["income"] = other["income"].to_numpy()[np.random.default_rng(1).permutation(len(other))]
    shuffled = agreement.score(other)
    assert shuffled["balanced_agreement"] == pytest.approx(0.5, abs=0.05)  # predictions ignore the request
    assert shuffled["agreement_ratio"] < 0.75, shuffled


def test_rows_that_all_look_like_the_majority_fail_only_the_balanced_figure(agreement, parts):
    """Low earners requested in the real label mix: most requests (<=50K) agree, so the mix-weighted agreement
    nearly reaches the real accuracy; the balanced agreement shows that no >50K request is met."""
    other = parts[0]["other"]
    low = other[other["income"] == "<=50K"].reset_index(drop=True)
    requested = other["income"].sample(len(low), replace=True, random_state=0).to_numpy()
    majority = agreement.score(low.assign(income=requested))
    assert majority["per_label"][">50K"] < 0.2 < 0.8 < majority["per_label"]["<=50K"]
    assert majority["agreement"] / majority["real_accuracy"] > 0.8
    assert majority["agreement_ratio"] < 0.75, majority


def test_a_numeric_column_cannot_be_the_condition(agreement):
    with pytest.raises(ValueError, match="'age' is not a categorical column"):
        ConditionAgreement(agreement.scorer, "age")


@pytest.mark.parametrize("condition_on", ["income", None])
def test_evaluate_adds_the_section_for_conditional_checkpoints_only(train_config, tmp_path, data_dir, condition_on):
    condition = [f"data.condition_on={condition_on}"] if condition_on else []
    train(train_config(*TABLE, "loss=wgan_gp", "trainer.max_steps=4", *condition, fast=False))
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    overrides = [f"ckpt_path={ckpt}", "n=300", "table.dcr_rows=300", "table.max_pairs=30", "table.agreement_rows=150"]
    report = evaluate(compose_config([f"paths.data_dir={data_dir}", *overrides], tmp_path / "eval", "eval"))
    assert json.loads((ckpt.parent / "metrics.json").read_text()).get("conditional") == report.get("conditional")
    if condition_on is None:
        assert "conditional" not in report and "agreement_ratio" not in report["pass"]
        return
    section = report["conditional"]
    assert section["condition_on"] == "income" and section["samples"]["n"] == 300  # 150 requested per label
    assert set(section["samples"]["per_label"]) == {"<=50K", ">50K"}
    for side in ("samples", "floor"):
        assert all(0.0 <= section[side][key] <= 1.0 for key in FIGURES), section[side]
        assert all(0.0 <= share <= 1.0 for share in section[side]["per_label"].values())
    assert section["floor"]["agreement_ratio"] == pytest.approx(1.0, abs=0.25)  # 200 real rows with their labels
    assert report["pass"]["agreement_ratio"] == (section["samples"]["agreement_ratio"] >= 0.9)
    assert report["targets"]["agreement_ratio"] == ">= 0.90"
    printed = io.StringIO()
    Console(file=printed, width=200).print(report_table(report))
    assert "bal. agreement / bal. acc." in printed.getvalue()
    assert "150 rows requested per income label" in caption(report)


def test_a_sample_file_gets_no_section(tmp_path, data_dir, parts):
    samples = tmp_path / "rows.csv"
    parts[0]["other"].iloc[:300].to_csv(samples, index=False)
    overrides = ["data=adult", "data.limit=2000", "data.condition_on=income", f"samples={samples}"]
    cfg = compose_config([f"paths.data_dir={data_dir}", *overrides, "table.max_pairs=30"], tmp_path / "eval", "eval")
    assert "conditional" not in evaluate(cfg)

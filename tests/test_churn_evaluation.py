"""Churn evaluation pieces on small synthetic data: calibration error, the baseline rule, grades, drivers."""

import contextlib
from datetime import date
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from mlflow.models import infer_signature
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline

from crm.score_tables import CHURN_SCORES_TABLE, ensure_score_tables
from crm.settings import Settings
from crm.warehouse import open_warehouse
from ml import churn, explain, scoring, training
from ml.blocks import in_blocks
from ml.metrics import expected_calibration_error


def test_calibration_error_is_zero_for_matching_rates_and_large_for_overconfidence():
    rng = np.random.default_rng(0)
    probability = rng.random(200_000)
    outcome = (rng.random(200_000) < probability).astype(int)
    assert expected_calibration_error(outcome, probability) < 0.01
    assert expected_calibration_error(outcome, np.clip(probability * 2, 0, 1)) > 0.15


def test_best_recency_rule_finds_the_threshold_that_separates_churners():
    rng = np.random.default_rng(1)
    churned = rng.random(4_000) < 0.3
    recency = np.where(churned, rng.integers(100, 400, 4_000), rng.integers(0, 80, 4_000)).astype(float)
    recency[:50] = np.nan  # never ordered: the rule calls them churned
    train = pd.DataFrame({"recency_days": recency, churn.LABEL: churned.astype(int)})
    rule = churn.best_recency_rule(train)
    assert rule.days == 90
    assert rule.predict(train)[:50].tolist() == [1.0] * 50


def test_grades_follow_the_uplift_over_the_rule():
    assert churn.grade(0.86, 0.78) == "A"
    assert churn.grade(0.80, 0.78) == "B"
    assert churn.grade(0.785, 0.78) == "C"


def test_drivers_name_the_features_that_raise_the_risk():
    rng = np.random.default_rng(2)
    features = pd.DataFrame(
        {
            "recency_days": rng.integers(0, 300, 3_000).astype(float),
            "open_tickets": rng.integers(0, 4, 3_000).astype(float),
            "noise": rng.random(3_000),
        }
    )
    risk = 0.02 * features["recency_days"] + 1.5 * features["open_tickets"] - 5
    label = (rng.random(3_000) < 1 / (1 + np.exp(-risk))).astype(int)
    model = Pipeline(
        [
            ("features", ColumnTransformer([("all", SimpleImputer(), list(features.columns))])),
            ("model", LogisticRegression()),
        ]
    ).fit(features, label)
    importance = explain.global_importance(model, features, pd.Series(label, index=features.index), seed=0)
    assert importance["feature"].tolist()[:2] == ["recency_days", "open_tickets"]
    customers = pd.DataFrame({"recency_days": [280.0, 10.0], "open_tickets": [0.0, 3.0], "noise": [0.5, 0.5]})
    drivers = explain.churn_drivers(
        model,
        customers,
        model.predict_proba(customers)[:, 1],
        ["recency_days", "open_tickets", "noise"],
        from_probability=0.0,
    )
    assert drivers.loc[0, "driver_1"] == "recency_days" and drivers.loc[1, "driver_1"] == "open_tickets"
    assert list(drivers.columns) == ["driver_1", "driver_2", "driver_3"]
    # The other feature lowers each customer's risk and noise is typical: no further drivers.
    assert drivers[["driver_2", "driver_3"]].isna().all().all()


def test_drivers_equal_predicting_each_neutralised_feature_for_customers_at_risk():
    """The transformed-space shortcut gives the drivers of neutralising the raw input, with the churn
    model's own preprocessing (median imputation with indicators, log of money) and trees; in blocks
    of rows, the neutral value is still the whole population's median."""
    rng = np.random.default_rng(3)
    rows = 4_000
    features = pd.DataFrame({column: rng.gamma(2.0, 20.0, rows).round() for column in churn.FEATURE_COLUMNS})
    features.loc[rng.random(rows) < 0.2, "recency_days"] = np.nan
    risk = 0.02 * features["recency_days"].fillna(400) - 0.05 * features[churn.FEATURE_COLUMNS[-1]] - 1
    label = (rng.random(rows) < 1 / (1 + np.exp(-risk))).astype(int)
    model = churn.candidates(seed=0)["gradient_boosting"].fit(features, label)
    candidates = ["recency_days", *churn.FEATURE_COLUMNS[-3:]]
    base = model.predict_proba(features)[:, 1]
    probability = in_blocks(features, lambda block: model.predict_proba(block)[:, 1], block_rows=700)
    drivers = explain.churn_drivers(model, features, probability, candidates, block_rows=300)

    contributions = np.column_stack(
        [
            base - model.predict_proba(features.assign(**{column: features[column].median()}))[:, 1]
            for column in candidates
        ]
    )
    ranked = np.argsort(-contributions, axis=1, kind="stable")[:, : explain.TOP_DRIVERS]
    expected = np.asarray(candidates, dtype=object)[ranked]
    expected[np.take_along_axis(contributions, ranked, axis=1) <= 0] = None
    # Only customers at or above the medium risk band are explained; the probability is everyone's.
    expected[base < explain.DRIVERS_FROM_PROBABILITY] = None
    assert 0 < (base >= explain.DRIVERS_FROM_PROBABILITY).sum() < rows
    np.testing.assert_array_equal(probability, base)
    pd.testing.assert_frame_equal(drivers, pd.DataFrame(expected, columns=drivers.columns, index=features.index))
    assert drivers["driver_1"].notna().any()


def test_a_model_without_driver_candidates_has_no_drivers():
    features = pd.DataFrame({"recency_days": [1.0, 200.0, 30.0, 400.0]})
    model = Pipeline(
        [("features", ColumnTransformer([("all", SimpleImputer(), ["recency_days"])])), ("model", LogisticRegression())]
    ).fit(features, [0, 1, 0, 1])
    drivers = explain.churn_drivers(model, features, model.predict_proba(features)[:, 1], [], from_probability=0.0)
    assert drivers[["driver_1", "driver_2", "driver_3"]].isna().all().all()


def test_training_sample_is_capped_reproducible_and_keeps_the_order():
    examples = pd.DataFrame({"customer_key": range(1_000), "is_churned": [0, 1] * 500})
    sample = training.training_sample(examples, 300, seed=7)
    assert len(sample) == 300 and sample.index.is_monotonic_increasing
    pd.testing.assert_frame_equal(sample, training.training_sample(examples, 300, seed=7))
    assert training.training_sample(examples, 1_000, seed=7) is examples


def test_the_schema_sample_gives_mlflow_the_schema_of_every_row():
    rng = np.random.default_rng(4)
    rows = 20_000
    frame = pd.DataFrame(
        {
            "recency_days": rng.random(rows),
            "monetary": rng.random(rows),
            "feedback_text": ["late delivery"] * rows,
            "is_churned": rng.integers(0, 2, rows),
        }
    )
    frame.loc[15_000, "monetary"] = np.nan
    frame.loc[rows - 1, "feedback_text"] = None
    sample = training.schema_sample(frame)
    assert len(sample) <= training.SCHEMA_SAMPLE_ROWS + 2
    assert infer_signature(sample).inputs == infer_signature(frame).inputs
    logged = training.dataset(frame, "customer_features@2025-01-01", "is_churned")
    assert logged.schema == infer_signature(frame).inputs
    assert logged.profile["num_rows"] == rows
    # The digest covers every row, not only the first 10,000.
    changed = frame.copy()
    changed.loc[rows - 2, "recency_days"] += 1
    assert training.dataset(changed, "customer_features@2025-01-01", "is_churned").digest != logged.digest


def test_drivers_are_carried_only_within_the_band_and_the_shift_and_then_not_explained_again():
    now = np.array([0.45, 0.45, 0.72, 0.69, 0.50, 0.30, 0.55])
    then = np.array([0.42, np.nan, 0.69, 0.66, 0.58, 0.31, 0.55])
    carried = explain.carried_drivers(now, then, max_shift=0.05)
    # Same band and a small move; nothing computed before; crossed into high; a small move within
    # medium; moved by 0.08; low risk has no drivers; unchanged.
    assert carried.tolist() == [True, False, False, True, False, False, True]

    features = pd.DataFrame({"recency_days": [300.0, 310.0, 20.0, 25.0, 30.0]})
    model = Pipeline(
        [("features", ColumnTransformer([("all", SimpleImputer(), ["recency_days"])])), ("model", LogisticRegression())]
    ).fit(pd.DataFrame({"recency_days": [1.0, 200.0, 30.0, 400.0]}), [0, 1, 0, 1])
    probability = model.predict_proba(features)[:, 1]
    keep = np.array([False, True, False, False, False])
    drivers = explain.churn_drivers(model, features, probability, ["recency_days"], from_probability=0.0, carried=keep)
    # The first customer is explained, the second keeps its earlier drivers (filled in by the scoring).
    assert drivers["driver_1"].fillna("").tolist() == ["recency_days", "", "", "", ""]


@pytest.mark.parametrize("engine", ["duckdb", "postgres"])
def test_the_drivers_to_carry_come_from_the_latest_earlier_date_of_the_same_model_version(
    engine, tmp_path, postgres_database
):
    """On each warehouse engine: the previous scoring date's drivers, the probability when they were
    computed; none from another version or older than the maximum age."""
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(postgres_database("carried_drivers")) if engine == "postgres" else ""
        _check_drivers_to_carry(Settings.from_env(home=tmp_path, warehouse_url=url, churn_drivers_max_age_days=10))


def _check_drivers_to_carry(settings: Settings) -> None:
    rows = [  # customer, as_of_date, probability, version, driver_1, drivers_as_of
        (1, "2026-11-01", 0.50, "3", "recency_days", "2026-11-01"),
        (1, "2026-11-02", 0.52, "3", "recency_days", "2026-11-01"),  # carried from the 1st
        (2, "2026-11-02", 0.80, "2", "open_tickets", "2026-11-02"),  # another version
        (3, "2026-10-20", 0.60, "3", "tenure_days", "2026-10-20"),
        (3, "2026-11-02", 0.61, "3", "tenure_days", "2026-10-20"),  # too old on the 3rd
        (4, "2026-11-02", 0.10, "3", None, None),  # low risk: nothing computed
        (5, "2026-11-03", 0.90, "3", "open_tickets", "2026-11-03"),  # the scoring date itself
    ]
    with open_warehouse(settings) as warehouse:
        ensure_score_tables(warehouse)
        for key, day, probability, version, driver, as_of in rows:
            warehouse.execute(
                f"insert into {CHURN_SCORES_TABLE} (customer_key, as_of_date, churn_probability, model_name, "
                "model_version, driver_1, drivers_as_of) "
                "values (?, cast(? as date), ?, 'crm_churn', ?, ?, cast(? as date))",
                [key, day, probability, version, driver, as_of],
            )
    inputs = scoring.ScoringInputs(date(2026, 11, 3), pd.DataFrame({"customer_key": [5, 4, 3, 2, 1, 6]}), 6)
    previous = scoring._previous_drivers(settings, SimpleNamespace(name="crm_churn", version=3), inputs)
    carried = previous.dropna(subset=["drivers_probability"])
    assert carried.index.tolist() == [4]  # customer 1, in the features' row order
    assert carried.loc[4, "driver_1"] == "recency_days" and carried.loc[4, "drivers_probability"] == 0.5
    assert pd.Timestamp(carried.loc[4, "drivers_as_of"]) == pd.Timestamp("2026-11-01")


def test_a_feature_null_for_every_customer_is_never_a_driver():
    """A source not delivered leaves its features null for everyone at the scoring date: even the
    model's strongest feature at training then names no customer's risk."""
    rng = np.random.default_rng(5)
    rows = 3_000
    features = pd.DataFrame({column: rng.gamma(2.0, 20.0, rows).round() for column in churn.FEATURE_COLUMNS})
    risk = 0.05 * features["tickets_last_90d"] + 0.02 * features["recency_days"] - 3
    label = (rng.random(rows) < 1 / (1 + np.exp(-risk))).astype(int)
    model = churn.candidates(seed=0)["logistic_regression"].fit(features, label)
    scoring = features.assign(tickets_last_90d=np.nan)  # the service desk delivered nothing
    probability = model.predict_proba(scoring)[:, 1]
    drivers = explain.churn_drivers(
        model, scoring, probability, ["tickets_last_90d", "recency_days"], from_probability=0.0
    )
    assert "tickets_last_90d" not in set(drivers.stack())
    assert (drivers["driver_1"] == "recency_days").any()


def test_continuous_recency_is_the_stronger_baseline_and_never_ordered_ranks_first():
    """A yes/no rule ranks every customer on one side of its threshold alike: continuous recency, which
    the grade also compares with, ranks them, so it is the baseline a model must beat."""
    rng = np.random.default_rng(6)
    recency = rng.integers(0, 400, 5_000).astype(float)
    churned = (rng.random(5_000) < recency / 400).astype(int)
    recency[:40], churned[:40] = np.nan, 1
    validation = pd.DataFrame({"recency_days": recency, churn.LABEL: churned})
    score = churn.recency_score(validation)
    assert (score[:40] > np.nanmax(recency)).all()
    rule = churn.best_recency_rule(validation)
    assert roc_auc_score(churned, score) > roc_auc_score(churned, rule.predict(validation)) + 0.05

"""Churn evaluation pieces on small synthetic data: calibration error, the baseline rule, grades, drivers."""

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from ml import churn, explain
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


def test_top_drivers_name_the_features_that_raise_the_risk():
    rng = np.random.default_rng(2)
    features = pd.DataFrame({"recency_days": rng.integers(0, 300, 3_000).astype(float),
                             "open_tickets": rng.integers(0, 4, 3_000).astype(float),
                             "noise": rng.random(3_000)})
    risk = 0.02 * features["recency_days"] + 1.5 * features["open_tickets"] - 5
    label = (rng.random(3_000) < 1 / (1 + np.exp(-risk))).astype(int)
    model = Pipeline([("features", ColumnTransformer([("all", SimpleImputer(), list(features.columns))])),
                      ("model", LogisticRegression())]).fit(features, label)
    importance = explain.global_importance(model, features, pd.Series(label, index=features.index), seed=0)
    assert importance["feature"].tolist()[:2] == ["recency_days", "open_tickets"]
    customers = pd.DataFrame({"recency_days": [280.0, 10.0], "open_tickets": [0.0, 3.0], "noise": [0.5, 0.5]})
    drivers = explain.top_drivers(model, customers, ["recency_days", "open_tickets", "noise"])
    assert drivers.loc[0, "driver_1"] == "recency_days" and drivers.loc[1, "driver_1"] == "open_tickets"
    assert list(drivers.columns) == ["driver_1", "driver_2", "driver_3"]
    # The other feature lowers each customer's risk and noise is typical: no further drivers.
    assert drivers[["driver_2", "driver_3"]].isna().all().all()

"""Probabilities that survive drift (ml.calibration) and the promotion of a refit, on small synthetic data."""

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline

from ml import churn, explain, registry
from ml.calibration import base_pipeline, recalibrate, refitted_method
from ml.features import FEATURE_COLUMNS
from ml.metrics import calibration_error_by_chance, expected_calibration_error


def _candidate(name: str) -> Pipeline:
    """A churn candidate; the trees kept few, so the test stays fast."""
    pipeline = churn.candidates(seed=0)[name]
    return pipeline.set_params(model__max_iter=15) if name == "gradient_boosting" else pipeline


def _customers(rows: int, seed: int, shift: float = 0.0) -> tuple[pd.DataFrame, np.ndarray]:
    """Features whose recency drives churn; ``shift`` raises everyone's log-odds (the base rate moves)."""
    rng = np.random.default_rng(seed)
    features = pd.DataFrame({column: rng.gamma(2.0, 20.0, rows).round() for column in FEATURE_COLUMNS})
    risk = 0.03 * features["recency_days"] - 0.2 * features["frequency"] - 0.5 + shift
    return features, (rng.random(rows) < 1 / (1 + np.exp(-risk))).astype(int)


def test_the_calibration_error_chance_allows_shrinks_with_the_outcomes():
    rng = np.random.default_rng(0)
    few, many = rng.beta(2, 5, 400), rng.beta(2, 5, 40_000)
    assert calibration_error_by_chance(few, seed=0) > 0.05 > 0.015 > calibration_error_by_chance(many, seed=0)
    # A calibrated model stays within it about 95% of the time.
    within = [
        expected_calibration_error((rng.random(len(few)) < few).astype(int), few)
        <= calibration_error_by_chance(few, seed=0)
        for _ in range(200)
    ]
    assert 0.88 < np.mean(within) < 1


@pytest.mark.parametrize("candidate", ["logistic_regression", "gradient_boosting"])
def test_recalibration_on_shifted_outcomes_brings_the_error_back_out_of_sample(candidate):
    """Trained before the base rate rose, the model ranks as well but its probabilities are low; the
    calibrator fitted on the later outcomes brings the error measured on customers it did not see under
    0.03, keeps the ranking and the Pipeline's shape (scoring and drivers read it as before)."""
    features, outcome = _customers(6_000, seed=1)
    model = _candidate(candidate).fit(features, outcome)
    later, shifted = _customers(6_000, seed=2, shift=1.0)
    result = recalibrate(model, later, shifted, seed=0)
    assert result.ece_before > 0.04 and result.ece_after < 0.03 and result.improves
    assert result.customers == 6_000 and result.method == "isotonic"
    assert recalibrate(model, later.head(600), shifted[:600], seed=0).method == "sigmoid"  # few outcomes
    calibrated = result.pipeline.predict_proba(later)[:, 1]
    assert (
        abs(calibrated.mean() - shifted.mean()) < 0.01 < abs(model.predict_proba(later)[:, 1].mean() - shifted.mean())
    )
    # The ranking stays (isotonic regression merges close scores into ties: within a hundredth).
    assert roc_auc_score(shifted, calibrated) == pytest.approx(
        roc_auc_score(shifted, model.predict_proba(later)[:, 1]), abs=0.01
    )
    assert isinstance(result.pipeline, Pipeline) and base_pipeline(result.pipeline)[-1] is model[-1]
    drivers = explain.churn_drivers(result.pipeline, later.head(50), calibrated[:50], ["recency_days"], 0.0)
    assert set(drivers["driver_1"].dropna()) <= {"recency_days"}
    # Recalibrating a recalibrated version starts from what was trained, not from the last calibrator.
    again = recalibrate(result.pipeline, later, shifted, seed=0)
    assert base_pipeline(again.pipeline)[-1] is model[-1]


def test_a_champions_method_refits_without_its_calibrator():
    features, outcome = _customers(3_000, seed=5)
    model = _candidate("gradient_boosting").fit(features, outcome)
    calibrated = recalibrate(model, *_customers(3_000, seed=6, shift=1.0), seed=0).pipeline
    refitted = refitted_method(calibrated, features, outcome)
    assert [name for name, _ in refitted.steps] == ["features", "model"]
    assert type(refitted[-1]) is type(model[-1]) and refitted[-1] is not model[-1]
    np.testing.assert_allclose(refitted.predict_proba(features), model.predict_proba(features))


def test_a_tie_with_the_champions_refitted_method_promotes_the_fresher_fit(tmp_path):
    """The same method refitted on the same training data scores the same: the challenger serves when
    it learned from fresher labels. Otherwise a tie keeps the champion."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri, uri)
    client.create_registered_model("m")
    run = client.create_run(client.create_experiment("m", artifact_location=tmp_path.as_uri()))
    for _ in range(3):
        client.create_model_version("m", tmp_path.as_uri(), run.info.run_id)
    client.set_registered_model_alias("m", registry.CHAMPION, "1")
    kept = registry.promote(client, "m", "2", run.info.run_id, "roc_auc", 0.8, 0.8, "1")
    assert not kept.promoted and "does not beat" in kept.describe()
    same = registry.promote(client, "m", "2", run.info.run_id, "roc_auc", 0.8, 0.8, "1", compared="refitted")
    assert not same.promoted and same.describe().endswith("refitted")
    refit = registry.promote(
        client, "m", "3", run.info.run_id, "roc_auc", 0.8, 0.8, "1", compared="refitted", fresher=True
    )
    assert refit.promoted and str(client.get_model_version_by_alias("m", registry.CHAMPION).version) == "3"
    assert "ties with champion v1" in refit.describe() and "fresher labels" in refit.describe()

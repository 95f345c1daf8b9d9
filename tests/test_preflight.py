"""Training preflight: not enough labels, history or feature coverage skips training with reasons."""

from datetime import date

import numpy as np
import pandas as pd
import pytest

from crm import pipeline
from crm.generate import GeneratorConfig, generate
from crm.settings import Settings
from ml import steps
from ml.features import FEATURE_COLUMNS
from ml.preflight import MIN_LABELS_PER_CLASS, TrainingSkipped, check_training_data
from ml.training import training_fingerprint

LABEL = "is_churned"


def _frame(positives: int, negatives: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = positives + negatives
    frame = pd.DataFrame({column: rng.random(rows) for column in FEATURE_COLUMNS})
    frame[LABEL] = [1] * positives + [0] * negatives
    return frame


def test_enough_data_passes():
    result = check_training_data(_frame(150, 150), _frame(120, 130), LABEL, date(2024, 1, 1), date(2025, 1, 1), 90)
    assert result.passed and result.reasons == []


def test_too_few_positive_labels_fail_with_counts():
    result = check_training_data(_frame(40, 500), _frame(120, 130), LABEL, date(2024, 1, 1), date(2025, 1, 1), 90)
    assert result.reasons == [
        f"training set has 40 positive and 500 negative labels; at least {MIN_LABELS_PER_CLASS} of each are needed"
    ]


def test_too_little_history_fails():
    result = check_training_data(_frame(150, 150), _frame(150, 150), LABEL, date(2024, 12, 1), date(2025, 1, 1), 90)
    assert any("history starts 2024-12-01" in reason for reason in result.reasons)


def test_broken_feature_fails_but_an_absent_source_is_only_noted():
    train = _frame(150, 150)
    train.loc[1:, "frequency"] = np.nan  # one value left: broken
    train["last_nps"] = np.nan  # surveys not delivered
    result = check_training_data(train, _frame(150, 150), LABEL, date(2024, 1, 1), date(2025, 1, 1), 90)
    assert [r for r in result.reasons if "frequency" in r] == [
        "feature frequency is missing for 99.7% of training rows (threshold 99%)"
    ]
    assert not any("last_nps" in r for r in result.reasons)
    assert any("last_nps" in note for note in result.notes)


def test_small_warehouse_skips_training_with_the_reasons(tmp_path):
    """A warehouse of its own (a load, the daily and the training-data builds): about a minute, since
    a warehouse too small to train on is no shared fixture."""
    # The raw gate on the newest day only: the gate itself is tested in test_quality_gates.py.
    settings = Settings.from_env(home=tmp_path, gate_recent_days=1)
    generate(GeneratorConfig(customers=250, days=400), settings.landing_dir, settings.truth_dir)
    pipeline.load(settings)
    pipeline.build_warehouse(settings)
    pipeline.build_training_data(settings)
    with pytest.raises(TrainingSkipped, match="training skipped by the preflight.*labels") as skipped:
        steps.train(settings)
    assert "current champion keeps serving" in str(skipped.value)
    assert not (settings.mlflow_artifacts_dir / "crm_churn").exists()
    # The preflight step (crm_training's first task) judges every model that learns from outcomes.
    results = steps.preflight(settings)
    assert set(results) == {"churn", "satisfaction", "clv", "recommendations"}
    assert not results["churn"]["passed"] and results["churn"]["reasons"]


def test_the_training_fingerprint_changes_with_the_examples_the_params_and_the_seed(tmp_path):
    """What decides whether a training is skipped as unchanged (ml.training.training_fingerprint): the
    same examples and params give the same fingerprint; one changed value, column, param or seed
    another one."""
    settings = Settings.from_env(home=tmp_path)
    examples = pd.DataFrame({"customer_key": [1, 2, 3], "recency_days": [4.0, None, 9.0]})
    params = {"train_as_of_date": "2026-08-01"}
    fingerprint = training_fingerprint(settings, [examples], params)
    assert training_fingerprint(settings, [examples.copy()], dict(params)) == fingerprint
    changed_value = examples.assign(recency_days=[4.0, None, 10.0])
    renamed = examples.rename(columns={"recency_days": "frequency"})
    assert (
        len(
            {
                fingerprint,
                training_fingerprint(settings, [changed_value], params),
                training_fingerprint(settings, [renamed], params),
                training_fingerprint(settings, [examples], {"train_as_of_date": "2026-08-02"}),
                training_fingerprint(Settings.from_env(home=tmp_path, random_seed=8), [examples], params),
            }
        )
        == 5
    )

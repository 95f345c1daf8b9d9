"""Models that are watched (ml.monitoring): the drift measure, the alerts, and a monitoring run on a copy
of the end-to-end home, whose pipeline already checked its scoring date for drift."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date
from pathlib import Path

import duckdb
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from sklearn.metrics import roc_auc_score

from crm import pipeline
from crm.dbt import run_dbt
from crm.score_tables import ALERTS_TABLE, BACKTESTS_TABLE, CALIBRATION_TABLE, DRIFT_TABLE, SCORE_FEATURE
from crm.settings import Settings
from ml import registry, steps
from ml.features import FEATURE_COLUMNS
from ml.monitoring import (
    MONITORED,
    REFERENCE_PROFILE,
    Reference,
    alerts_for,
    calibration_by_decile,
    distribution,
    drift_table,
    psi_against,
)

CHURN = MONITORED[0]

# The drift measure ------------------------------------------------------------------------------------


def psi(reference: np.ndarray, current: np.ndarray) -> float:
    """The index of ``current`` against the distribution of the values ``reference``."""
    return psi_against(distribution(np.asarray(reference, dtype=float)), current)


def test_psi_is_zero_for_the_same_distribution_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=20_000)
    assert psi(reference, reference) == pytest.approx(0.0, abs=1e-12)
    assert psi(reference, rng.normal(size=20_000)) < 0.01  # another sample of the same distribution
    assert 0.1 < psi(reference, rng.normal(0.5, size=20_000)) < psi(reference, rng.normal(1.0, size=20_000))


def test_psi_counts_missing_values_and_values_the_reference_never_had():
    rng = np.random.default_rng(1)
    reference = rng.integers(0, 3, size=5_000).astype(float)  # three values: a bin each
    stopped = reference.copy()
    stopped[: len(stopped) // 2] = np.nan  # a source stops delivering for half the customers
    assert psi(reference, stopped) > 1
    assert psi(reference, np.full(5_000, 7.0)) > 1  # a value above every reference bin
    assert psi(np.full(100, np.nan), np.full(100, np.nan)) == pytest.approx(0.0)


def test_calibration_by_decile_splits_the_customers_by_score():
    score = np.linspace(0, 1, 1_001)
    deciles = calibration_by_decile((score > 0.5).astype(int), score)
    assert deciles["decile"].tolist() == list(range(1, 11)) and deciles["customers"].sum() == 1_001
    assert deciles["mean_score"].is_monotonic_increasing
    assert deciles["realised_rate"].iloc[0] == 0 and deciles["realised_rate"].iloc[-1] == 1


def test_alerts_name_what_crossed_its_limit(tmp_path):
    settings = Settings.from_env(home=tmp_path, monitoring_psi_limit=0.2, monitoring_auc_margin=0.05)
    drift = pd.DataFrame({"feature": ["recency_days", "orders_last_90d", SCORE_FEATURE], "psi": [0.35, 0.05, 0.21]})
    reference = Reference(profile=None, validation_score=0.85)

    def raised(auc: float, ece: float = 0.02, ece_by_chance: float = 0.01) -> list[str]:
        metrics = pd.DataFrame({"metric": ["roc_auc", "ece", "ece_by_chance"], "value": [auc, ece, ece_by_chance]})
        return alerts_for(settings, CHURN, date(2026, 6, 1), drift, metrics, reference)["kind"].tolist()

    assert raised(0.81) == ["input_drift", "score_drift"]  # 0.81 is within the margin of 0.85
    assert raised(0.79) == ["input_drift", "score_drift", "backtest_degraded"]
    # Calibration: beyond CRM_MONITORING_ECE_LIMIT (0.03), unless chance alone gives that much.
    assert raised(0.81, ece=0.05) == ["input_drift", "score_drift", "calibration_drift"]
    assert raised(0.81, ece=0.05, ece_by_chance=0.06) == ["input_drift", "score_drift"]
    # A calendar feature (an age, a lifetime total) grows in any world: shown, never an alert.
    aged = pd.DataFrame({"feature": ["tenure_days", "frequency"], "psi": [1.6, 0.9]})
    assert alerts_for(settings, CHURN, date(2026, 6, 1), aged, pd.DataFrame(), reference).empty
    nothing = alerts_for(settings, CHURN, date(2026, 6, 1), pd.DataFrame(), pd.DataFrame(), reference)
    assert nothing.empty


def test_a_reference_profile_gives_the_psi_of_the_values_it_describes():
    rng = np.random.default_rng(2)
    training = pd.DataFrame({"recency_days": rng.gamma(2, 30, 4_000), "frequency": rng.integers(0, 5, 4_000)})
    training.loc[:99, "recency_days"] = np.nan
    now = pd.DataFrame({"recency_days": rng.gamma(2, 45, 3_000), "frequency": rng.integers(0, 5, 3_000)})
    distributions = {column: distribution(training[column].to_numpy(dtype=float)) for column in training}
    profile = json.loads(json.dumps({"reference_date": "2026-05-01", "distributions": distributions}))
    drift = drift_table(profile, now).set_index("feature")
    for column in training:
        assert drift.loc[column, "psi"] == pytest.approx(psi(training[column], now[column]))
    assert drift.loc["recency_days", "reference_missing_share"] == pytest.approx(100 / 4_000)
    assert drift.loc["recency_days", "psi"] > 0.1 > drift.loc["frequency", "psi"]


# A monitoring run on a copy of the end-to-end home ---------------------------------------------------


@pytest.fixture(scope="module")
def monitored(home_copy) -> dict[str, object]:
    """The end-to-end home (its pipeline monitored the scoring date) after the churn and satisfaction
    champions scored the validation date too, whose outcome window has closed, and two monitoring runs
    (about 20 s)."""
    settings = home_copy("monitoring")
    validation = pipeline.plan(settings).validation
    steps.score(replace(settings, as_of_date=validation), ("churn", "satisfaction", "clv"))
    # As after a daily build, the warehouse's as-of dates are the scoring date's alone: the backtest must
    # not depend on which dates the last build computed.
    run_dbt(settings, ["run", "--select", "int_as_of_dates"], pipeline.dbt_vars(settings))
    first = steps.monitor(settings)
    again = steps.monitor(settings)
    return {"settings": settings, "validation": validation, "first": first, "again": again}


def _frame(settings: Settings, query: str, params: list[object] = ()) -> pd.DataFrame:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return con.execute(query, params).df()


def test_the_pipeline_checks_the_scoring_date_for_drift_and_publishes_it(pipeline_run):
    settings, _ = pipeline_run
    scoring = pipeline.plan(settings).scoring
    drift = _frame(settings, f"select * from {DRIFT_TABLE} where model_name = 'crm_churn'")
    assert set(pd.to_datetime(drift["scoring_date"]).dt.date) == {scoring}
    assert set(drift["feature"]) == {*FEATURE_COLUMNS, SCORE_FEATURE}
    # The champion's reference is its training date: the validation date, where it was refitted.
    assert set(pd.to_datetime(drift["reference_date"]).dt.date) == {pipeline.plan(settings).validation}
    assert drift["psi"].between(0, 50).all()
    # Against the profile the champion's training logged beside the model.
    client = registry.configure(settings)
    champion = client.get_model_version_by_alias("crm_churn", "champion")
    profile = mlflow.artifacts.load_dict(f"runs:/{champion.run_id}/{REFERENCE_PROFILE}")
    assert profile["reference_date"] == pipeline.plan(settings).validation.isoformat()
    assert set(profile["distributions"]) == {*FEATURE_COLUMNS, SCORE_FEATURE}
    with duckdb.connect(str(settings.bi_warehouse_path), read_only=True) as bi:
        published = f"select count(*) from {DRIFT_TABLE} where model_name = 'crm_churn'"
        assert bi.execute(published).fetchone()[0] == len(drift)


@pytest.mark.parametrize(
    ("model", "scores", "score", "labels", "label"),
    [
        ("crm_churn", "scores.churn", "churn_probability", "marts.customer_churn_labels", "is_churned"),
        (
            "crm_satisfaction",
            "scores.satisfaction",
            "satisfied_probability",
            "marts.customer_satisfaction_labels",
            "is_satisfied",
        ),
    ],
)
def test_a_closed_scoring_date_is_backtested_against_the_warehouse_labels(
    monitored, model, scores, score, labels, label
):
    settings, validation = monitored["settings"], monitored["validation"]
    assert monitored["first"]["backtested"] == {
        "churn": [validation.isoformat()],
        "satisfaction": [validation.isoformat()],
        "clv": [validation.isoformat()],
    }
    assert validation.isoformat() in monitored["first"]["drift_checked"]["satisfaction"]
    joined = _frame(
        settings,
        f"select s.{score}, l.{label} from {scores} s join {labels} l "
        "using (customer_key, as_of_date) where as_of_date = ? and l.is_label_observed",
        [validation],
    )
    backtest = _frame(
        settings,
        f"select metric, value, customers from {BACKTESTS_TABLE} where model_name = ? and scoring_date = ?",
        [model, validation],
    )
    metrics = dict(zip(backtest["metric"], backtest["value"], strict=True))
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(joined[label], joined[score]), abs=1e-12)
    assert set(backtest["customers"]) == {len(joined)}
    # The champion was refitted on these very customers and outcomes (the freshest labels at its
    # training) and the training date's: its run is the refit of the candidate selected on them, and
    # repeats that run's metrics.
    client = MlflowClient(settings.mlflow_tracking_uri)
    champion = client.get_model_version_by_alias(model, "champion")
    run = client.get_run(champion.run_id).data
    assert run.params["train_as_of_date"] == validation.isoformat() == run.params["validation_as_of_date"]
    train_date = pipeline.plan(settings).train.isoformat()
    assert run.params["refit_as_of_dates"] == f"{train_date},{validation.isoformat()}"
    selected = client.get_run(run.params["selected_on_run"]).data
    assert selected.tags["selected"] == "true" and selected.params["train_as_of_date"] == train_date
    assert run.metrics["roc_auc"] == selected.metrics["roc_auc"]
    deciles = _frame(
        settings, f"select * from {CALIBRATION_TABLE} where model_name = ? and scoring_date = ?", [model, validation]
    )
    assert len(deciles) == 10 and deciles["customers"].sum() == len(joined)
    # The labels the backtest built at the validation date kept the training date's.
    labelled = _frame(settings, f"select distinct as_of_date from {labels}")
    assert pipeline.plan(settings).train in set(pd.to_datetime(labelled["as_of_date"]).dt.date)


def test_lifetime_value_is_backtested_against_the_revenue_realised_in_its_horizon(monitored):
    """The lifetime-value champion was trained at the training date and validated at the validation
    date: scored there, its backtest is its validation (the same buyers, the same realised revenue)."""
    settings, validation = monitored["settings"], monitored["validation"]
    backtest = _frame(
        settings,
        f"select metric, value, customers from {BACKTESTS_TABLE} where model_name = 'crm_clv' and scoring_date = ?",
        [validation],
    )
    metrics = dict(zip(backtest["metric"], backtest["value"], strict=True))
    assert set(metrics) == {"spearman", "gini", "mae", "total_ratio", "decile_calibration_error"}
    client = MlflowClient(settings.mlflow_tracking_uri)
    run = client.get_run(client.get_model_version_by_alias("crm_clv", "champion").run_id).data
    assert run.params["validation_as_of_date"] == validation.isoformat()
    for name in ("gini", "mae", "total_ratio"):
        assert metrics[name] == pytest.approx(run.metrics[name], rel=1e-9)
    assert set(backtest["customers"]) == {int(run.params["validation_rows"])}
    deciles = _frame(
        settings, f"select * from {CALIBRATION_TABLE} where model_name = 'crm_clv' and scoring_date = ?", [validation]
    )
    assert deciles["customers"].sum() == int(run.params["validation_rows"])
    assert deciles["mean_score"].is_monotonic_increasing  # predicted revenue by decile, beside the realised


def test_monitoring_again_computes_nothing_new(monitored):
    assert monitored["again"] == {
        "backtested": {"churn": [], "satisfaction": [], "clv": []},
        "drift_checked": {"churn": [], "satisfaction": [], "clv": []},
        "alerts": [],
        "degraded": [],
        "reports": {},
        "recalibrated": {},
    }


def test_the_backtests_and_drift_reach_mlflow_by_scoring_date_and_the_run_summary(monitored):
    settings, validation = monitored["settings"], monitored["validation"]
    client = MlflowClient(settings.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name("crm_churn")
    (run,) = client.search_runs([experiment.experiment_id], filter_string="tags.`crm.monitoring` = 'true'")
    history = client.get_metric_history(run.info.run_id, "backtest_roc_auc")
    assert [metric.step for metric in history] == [(validation - date(1970, 1, 1)).days]
    drifted = client.get_metric_history(run.info.run_id, "drift_score_psi")
    assert len(drifted) == 2  # the pipeline's scoring date, then the validation date
    # The monitoring page: one self-contained file (plots inline), its copy and plots on the run, and
    # the run summary links it.
    page = Path(monitored["first"]["reports"]["churn"])
    assert page.parent == settings.monitoring_reports_dir
    assert page.read_text().count('<img src="data:image/png;base64,') == 3  # backtests, calibration, drift
    logged = {item.path for item in client.list_artifacts(run.info.run_id, "report")}
    assert {"report/monitoring.html", "report/backtests_over_dates.png", "report/drift_by_feature.png"} <= logged
    summary = pipeline.summarize(settings)
    assert summary["monitoring"]["backtests"]["crm_churn"]["scoring_date"] == validation.isoformat()
    assert f"report: {page}" in pipeline.format_summary(summary)


def test_alerts_are_stored_and_logged_when_a_limit_is_crossed(home_copy, caplog):
    """A limit no input stays under: the scoring date, checked again, raises an alert for every drifted
    input and for the scores, in the log, the alerts table and the run summary."""
    settings = home_copy("monitoring_alerts", monitoring_psi_limit=1e-9)
    with duckdb.connect(str(settings.warehouse_path)) as con:
        con.execute(f"delete from {DRIFT_TABLE}")  # as if never checked
    with caplog.at_level("WARNING", logger="ml.monitoring"):
        report = steps.monitor(settings)
    alerts = _frame(settings, f"select kind, message from {ALERTS_TABLE}")
    assert {"score_drift", "input_drift"} <= set(alerts["kind"])
    assert sorted(report["alerts"]) == sorted(alerts["message"])
    # Scores drifted: crm_daily announces crm_model_degraded.
    assert report["degraded"] == ["churn", "satisfaction", "clv"]
    assert all(message in caplog.text for message in report["alerts"])
    assert sorted(pipeline.summarize(settings)["monitoring"]["alerts"]) == sorted(alerts["message"])

"""Models that are watched, proved on a simulated shift: one generated world with and without a fall in
purchase rates (a price rise: every customer buys a fifth as often) from SHIFT_DATE on.

In each world a churn champion is trained as of SHIFT_DATE (it has seen nothing of the shift), scores
SCORING_DATE, whose outcome window has closed by the end of the data, and the monitoring step runs.
The world without the shift is the end-to-end home (the same generator, seed and days; its features
at SCORING_DATE, its validation date, are stored), with an MLflow store of its own; the shifted one
is generated, loaded and built here. About 90 s on one worker.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import duckdb
import pandas as pd
import pytest
from airflow.sdk.exceptions import AirflowSkipException
from mlflow import MlflowClient

from crm import pipeline
from crm.generate import GeneratorConfig, generate
from crm.score_tables import ALERTS_TABLE, BACKTESTS_TABLE, CHURN_SCORES_TABLE, DRIFT_TABLE
from crm.settings import Settings
from ml import registry, steps, tasks
from ml.features import CALENDAR_FEATURES, FEATURE_COLUMNS

SHIFT_DATE = date(2026, 5, 1)
SCORING_DATE = date(2026, 8, 25)
PURCHASE_FACTOR = 0.2
# What a fall in purchases moves: the orders, the money and the visits of the last months (customers
# who buy less browse less). Tickets, emails and survey answers are drawn independently of it.
PURCHASE_INPUTS = {
    "recency_days",
    "orders_last_90d",
    "orders_prev_90d",
    "monetary_last_90d",
    "avg_order_value",
    "sessions_last_30d",
    "sessions_last_90d",
    "pages_per_session_last_90d",
}


def _world(settings: Settings) -> dict[str, object]:
    """Train the churn champion as of SHIFT_DATE, score SCORING_DATE, monitor; what each step left (the
    champion's drift, backtest and alerts as this first monitoring stored them)."""
    trained_as_of = replace(settings, as_of_date=SHIFT_DATE)
    pipeline.build_training_data(trained_as_of)
    training = steps.train(trained_as_of, "churn")
    scoring = replace(settings, as_of_date=SCORING_DATE)
    steps.score(scoring, ("churn",))
    report = steps.monitor(scoring)
    stored = {
        table: _frame(scoring, f"select * from {table} where model_name = 'crm_churn'")
        for table in (DRIFT_TABLE, BACKTESTS_TABLE, ALERTS_TABLE)
    }
    return {"settings": scoring, "training": training, "report": report, **stored}


@pytest.fixture(scope="module")
def worlds(home_copy, tmp_path_factory) -> dict[str, dict[str, object]]:
    mlflow_dir = tmp_path_factory.mktemp("unshifted_mlflow")
    unshifted = home_copy(
        "unshifted",
        mlflow_tracking_uri=f"sqlite:///{mlflow_dir / 'mlflow.db'}",
        mlflow_artifacts_dir=mlflow_dir / "artifacts",
    )
    shifted = Settings.from_env(home=tmp_path_factory.mktemp("shifted") / "home")
    config = GeneratorConfig(shift_date=SHIFT_DATE, shift_purchase_factor=PURCHASE_FACTOR)
    generate(config, shifted.landing_dir, shifted.truth_dir)
    pipeline.load(shifted)
    pipeline.build_warehouse(replace(shifted, as_of_date=SCORING_DATE))
    worlds = {"unshifted": _world(unshifted), "shifted": _world(shifted)}
    # The recalibrated champion scores the same date again (its drivers too), and is monitored.
    settings = worlds["shifted"]["settings"]
    steps.score(settings, ("churn",))
    worlds["shifted"]["after_recalibration"] = steps.monitor(settings)
    return worlds


def _frame(settings: Settings, query: str) -> pd.DataFrame:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return con.execute(query).df()


def _metrics(backtest: pd.DataFrame) -> dict[str, float]:
    return dict(zip(backtest["metric"], backtest["value"], strict=True))


def test_both_worlds_are_the_same_until_the_shift_and_their_champions_learned_before_it(worlds):
    for world in worlds.values():
        client = registry.configure(world["settings"])
        run = client.get_run(client.get_model_version("crm_churn", world["training"]["version"]).run_id)
        assert run.data.params["train_as_of_date"] < SHIFT_DATE.isoformat()
        assert run.data.params["data_window_end"] <= SHIFT_DATE.isoformat()
    counts = [
        _frame(
            world["settings"],
            f"select count(*) as orders from staging.stg_shop__orders where ordered_at < '{SHIFT_DATE}'",
        )["orders"].iloc[0]
        for world in worlds.values()
    ]
    assert counts[0] == counts[1] > 10_000


def test_the_shift_drifts_the_purchase_inputs_and_no_other(worlds):
    drift = worlds["shifted"][DRIFT_TABLE]
    judged = drift[drift["psi_limit"].notna()]
    drifted = set(judged.loc[judged["psi"] > judged["psi_limit"], "feature"])
    assert {"recency_days", "orders_last_90d", "monetary_last_90d", "sessions_last_90d"} <= drifted
    assert drifted <= PURCHASE_INPUTS | {"score"}
    # The calendar features are shown, not judged.
    assert set(drift.loc[drift["psi_limit"].isna(), "feature"]) == set(CALENDAR_FEATURES)
    assert set(drift["feature"]) == {*FEATURE_COLUMNS, "score"}


def test_the_shift_degrades_the_backtest_fires_alerts_and_triggers_training(worlds):
    shifted, unshifted = worlds["shifted"], worlds["unshifted"]
    before, after = _metrics(unshifted[BACKTESTS_TABLE]), _metrics(shifted[BACKTESTS_TABLE])
    # Customers who buy less churn more, and the champion's probabilities did not see it coming.
    assert after["positive_rate"] > before["positive_rate"] + 0.15
    assert after["ece"] > 0.1 > 0.05 > before["ece"]
    assert {"input_drift", "score_drift", "calibration_drift"} <= set(shifted[ALERTS_TABLE]["kind"])
    assert shifted["report"]["degraded"] == ["churn"]
    # crm_daily's announce_degraded_models emits crm_model_degraded, which schedules crm_training.
    assert tasks.announce_degraded_models.function(shifted["report"]) == ["churn"]


def test_without_the_shift_nothing_fires_over_the_same_days(worlds):
    world = worlds["unshifted"]
    assert not set(world[ALERTS_TABLE]["kind"]) & {"input_drift", "score_drift", "backtest_degraded"}
    assert world["report"]["degraded"] == []
    with pytest.raises(AirflowSkipException):
        tasks.announce_degraded_models.function(world["report"])


def test_recalibration_on_the_closed_window_brings_the_calibration_error_under_003(worlds):
    world = worlds["shifted"]
    settings = world["settings"]
    assert "promoted champion" in world["report"]["recalibrated"]["churn"]
    client = MlflowClient(settings.mlflow_tracking_uri, settings.mlflow_tracking_uri)
    champion = client.get_model_version_by_alias("crm_churn", registry.CHAMPION)
    assert champion.tags["calibration_of"] == world["training"]["version"]
    assert champion.tags["calibrated_on"] == SCORING_DATE.isoformat()
    assert champion.tags["driver_features"]  # what scoring reads, carried over
    # The registry says so: the model names its new champion, the version why it was promoted.
    model = client.get_registered_model("crm_churn")
    assert model.tags[registry.CHAMPION] == f"v{champion.version}", model.tags
    assert model.description.endswith(f"Champion: v{champion.version}; challenger: v{champion.version}.")
    assert "recalibrated on the outcomes of" in champion.description, champion.description
    metrics = client.get_run(champion.run_id).data.metrics
    # Measured out of sample: each customer's calibrated probability from a calibrator that did not see it.
    assert metrics["recalibration_ece_before"] > 0.1 > 0.03 > metrics["recalibration_ece_held_out"]
    # The recalibrated champion scored the date again: its scores and drivers, its backtest (in sample now).
    scored = _frame(
        settings,
        f"select model_version, count(driver_1) as explained from {CHURN_SCORES_TABLE} "
        f"where as_of_date = '{SCORING_DATE}' group by model_version",
    )
    assert scored["model_version"].tolist() == [str(champion.version)] and scored["explained"].iloc[0] > 0
    assert world["after_recalibration"]["backtested"]["churn"] == [SCORING_DATE.isoformat()]
    after = _frame(settings, f"select metric, value from {BACKTESTS_TABLE} where model_name = 'crm_churn'")
    assert _metrics(after)["ece"] < 0.03
    assert "churn" not in world["after_recalibration"]["recalibrated"]

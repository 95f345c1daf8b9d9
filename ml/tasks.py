"""The model package's Airflow tasks (TaskFlow): the training preflight, training and scoring, used
by the DAGs beside the platform's tasks in crm.orchestration. Like those, a task imports what it
needs when it runs, so parsing a DAG stays cheap.
"""

from __future__ import annotations

from airflow.sdk import TriggerRule, task

from crm.orchestration import MODEL_DEGRADED, data_errors_fail_at_once, settings_for_run
from crm.pipeline import MODELS
from crm.settings import Settings


@task
def training_preflight() -> dict[str, dict[str, object]]:
    """Whether the data suffices to train churn, satisfaction, lifetime value and recommendations; a
    failing model skips its training."""
    from ml import steps

    return steps.preflight(settings_for_run())


@task(trigger_rule=TriggerRule.NONE_FAILED)
def train_model(model: str) -> dict[str, object]:
    """Train, register (alias challenger) and promote to champion only if it beats the champion."""
    from airflow.sdk.exceptions import AirflowSkipException

    from ml import steps
    from ml.preflight import TrainingSkipped

    try:
        return steps.train(settings_for_run(), model)
    except TrainingSkipped as skipped:
        raise AirflowSkipException(str(skipped)) from None


@task(trigger_rule=TriggerRule.NONE_FAILED)
def score_models(daily: bool = False) -> dict[str, dict[str, object]]:
    """Score every customer with each model's champion (a model without one is skipped; the task skips
    when none has one); each score suite gates before that model's rows of the date are replaced.
    ``daily``: crm_daily's scoring, which refreshes the recommendations on their weekday only."""
    return _score(MODELS, daily)


@task(trigger_rule=TriggerRule.NONE_FAILED)
def score_model(model: str, daily: bool = False) -> dict[str, dict[str, object]]:
    """Score every customer with ``model``'s champion, its suite gating the rows; skipped without a
    champion (and, ``daily``, for recommendations off their weekday)."""
    return _score((model,), daily)


@task(trigger_rule=TriggerRule.NONE_FAILED)
def monitor_models() -> dict[str, object]:
    """Backtest the scoring dates whose outcome window has closed and check this date's inputs and
    scores for drift (ml.monitoring); an alert is a warning in this task's log and the run summary."""
    from ml import steps

    return steps.monitor(settings_for_run())


@task(outlets=[MODEL_DEGRADED])
def announce_degraded_models(report: dict[str, object]) -> list[str]:
    """Emit the crm_model_degraded asset (crm_training runs) when a model's scores drifted or its
    backtest fell below its validation; skipped, so no event, when none did."""
    from airflow.sdk.exceptions import AirflowSkipException

    degraded = list(report.get("degraded") or [])
    if not degraded:
        raise AirflowSkipException("no model degraded: no score drift, no backtest below its validation")
    return degraded


def _score(models: tuple[str, ...], daily: bool) -> dict[str, dict[str, object]]:
    from airflow.sdk.exceptions import AirflowSkipException

    from ml import steps
    from ml.scoring import NoChampion

    try:
        with data_errors_fail_at_once():
            return steps.score(settings_for_run(), models, daily=daily)
    except NoChampion as missing:
        raise AirflowSkipException(str(missing)) from None


def train(model: str):
    return train_model.override(task_id=f"train_{model}")(model)


def scoring(settings: Settings, daily: bool = False):
    """The scoring of every model: a task per model side by side where the warehouse takes several tasks
    at once (a server), else one task that reads the features once and scores them all (DuckDB)."""
    if settings.parallel_warehouse_tasks:
        return [score_model.override(task_id=f"score_{model}")(model, daily) for model in MODELS]
    return score_models(daily)

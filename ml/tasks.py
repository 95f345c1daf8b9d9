"""The model package's Airflow tasks (TaskFlow): the training preflight, training and scoring, used
by the DAGs beside the platform's tasks in crm.orchestration. Like those, a task imports what it
needs when it runs, so parsing a DAG stays cheap.
"""

from __future__ import annotations

from airflow.sdk import TriggerRule, task

from crm.orchestration import data_errors_fail_at_once, settings_for_run


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
    from airflow.sdk.exceptions import AirflowSkipException

    from ml import steps
    from ml.scoring import NoChampion

    try:
        with data_errors_fail_at_once():
            return steps.score(settings_for_run(), daily=daily)
    except NoChampion as missing:
        raise AirflowSkipException(str(missing)) from None


def train(model: str):
    return train_model.override(task_id=f"train_{model}")(model)

"""
### CRM pipeline (end to end)

Landing files → raw schema (each source's new batch passes its Great Expectations raw suites
before the load commits) → dbt build (staging, marts, point-in-time features) → the mart suites
→ churn, segmentation and satisfaction models trained, registered and promoted in MLflow →
scores written to `scores.churn`, `scores.segments` and `scores.satisfaction` (gated before they
replace that date's rows) → the marts that read the scores (`customer_360`) are rebuilt and the
BI copy is replaced → run summary.

A blocking quality failure fails its task, nothing downstream runs, and the BI copy keeps the
previous run's tables. A failed training preflight (too few labels, too little history, a broken
feature) skips training with the reasons; scoring then runs with the current champion, and a
model that has no champion yet skips its scoring.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import TriggerRule, chain, dag, task


def _settings():
    from crm.settings import Settings

    return Settings.from_env()


@dag(
    dag_id="crm_pipeline",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["crm"],
    doc_md=__doc__,
)
def crm_pipeline():
    @task
    def load_landing() -> dict[str, object]:
        from crm import pipeline

        return pipeline.load(_settings())

    @task
    def dbt_build() -> None:
        from crm import pipeline

        pipeline.build_warehouse(_settings())

    @task
    def quality_gate_marts() -> dict[str, object]:
        from crm import pipeline

        return pipeline.gate_marts(_settings())

    # Each model trains, then scores. A skipped training (failed preflight) still scores with the
    # current champion; a model without any champion yet skips its scoring.
    def train(model: str):
        @task(task_id=f"train_{model}", trigger_rule=TriggerRule.NONE_FAILED)
        def train_model() -> dict[str, object]:
            from airflow.sdk.exceptions import AirflowSkipException

            from crm import pipeline
            from ml.preflight import TrainingSkipped

            try:
                return pipeline.train(_settings(), model)
            except TrainingSkipped as skipped:
                raise AirflowSkipException(str(skipped)) from None

        return train_model()

    def score(model: str):
        @task(task_id=f"score_{model}", trigger_rule=TriggerRule.NONE_FAILED)
        def score_model() -> dict[str, object]:
            from airflow.sdk.exceptions import AirflowSkipException

            from crm import pipeline
            from ml.scoring import NoChampion

            try:
                return pipeline.score(_settings(), model)
            except NoChampion as missing:
                raise AirflowSkipException(str(missing)) from None

        return score_model()

    @task(trigger_rule=TriggerRule.NONE_FAILED)
    def publish_marts() -> dict[str, int]:
        from crm import pipeline

        return pipeline.publish(_settings())

    @task
    def run_summary() -> dict[str, object]:
        from crm import pipeline

        summary = pipeline.summarize(_settings())
        print(pipeline.format_summary(summary))
        return summary

    # One task at a time: scoring writes to the DuckDB file, which allows a single writer.
    models = ("churn", "segments", "satisfaction")
    chain(load_landing(), dbt_build(), quality_gate_marts(), *(train(model) for model in models),
          *(score(model) for model in models), publish_marts(), run_summary())


crm_pipeline()

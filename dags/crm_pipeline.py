"""
### CRM pipeline (everything, once)

What `make run` runs: landing files → raw schema (each source's new batch passes its Great
Expectations raw suites before the load commits) → dbt build (staging, marts, point-in-time
features at the scoring date) → the mart suites → the training data (features at the training and
validation dates, labels) → churn, segmentation, satisfaction, lifetime-value and recommendation
models trained, registered and promoted in MLflow → every champion scores, into `scores.churn`,
`scores.segments`, `scores.satisfaction`, `scores.clv` and `scores.recommendations` (gated before
they replace that date's rows) → the marts that read the scores (`customer_360`,
`customer_recommendations`) are rebuilt and the BI copy is replaced → run summary.

A blocking quality failure fails its task, nothing downstream runs, and the BI copy keeps the
previous run's tables. A failed training preflight (too few labels, too little history, a broken
feature) skips training with the reasons; scoring then runs with the current champion, and a
model that has no champion yet skips its scoring. On a warehouse server (`CRM_WAREHOUSE_URL`) each
model trains and then scores in tasks of its own, up to `CRM_WAREHOUSE_SLOTS` side by side; on
DuckDB, one after another. In production, `crm_daily` and `crm_training` split this into the daily
and the weekly part.
"""

from __future__ import annotations

from airflow.sdk import chain, dag

from crm import orchestration as steps
from crm.pipeline import MODELS
from crm.settings import Settings
from ml import tasks as model_steps


@dag(
    dag_id="crm_pipeline",
    schedule=None,
    doc_md=__doc__,
    **steps.DAG_ARGS,
)
def crm_pipeline():
    settings = Settings.from_env()  # the engine only: parsing never opens the warehouse
    trained = [model_steps.train(model) for model in MODELS]
    # On a warehouse server each model trains, then scores, beside the others (chain pairs train_m
    # with score_m); on DuckDB they train one after another, then one task scores them all.
    if settings.parallel_warehouse_tasks:
        modelling = [trained, model_steps.scoring(settings)]
    else:
        modelling = [*trained, model_steps.scoring(settings)]
    chain(
        steps.load_landing(),
        steps.dbt_build(),
        steps.quality_gate_marts(),
        steps.build_training_data(),
        *modelling,
        model_steps.monitor_models(),
        steps.publish_marts(),
        steps.run_summary(),
    )


crm_pipeline()

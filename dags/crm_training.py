"""
### CRM training

Weekly (Monday 04:00 UTC), whenever `crm_daily` announces new gated features (the
`crm_customer_features` asset), and when its monitoring finds a model degraded (`crm_model_degraded`:
the scores drifted, or a backtest fell below the version's validation ROC-AUC): dbt builds the
training data (the point-in-time features at the training and validation dates, and the labels at
those dates) → the training preflight checks the
labels and history of the supervised models → churn, segmentation, satisfaction, lifetime value
(its own preflight: enough repeat buyers, an observed horizon) and recommendations (enough buyers in
the window after the validation date) train with a time-based split, each run logged to its MLflow
experiment → the new version is registered with
alias `challenger` → it becomes `champion` only if it beats the current champion on the same
validation data (the decision and both scores are logged). The models train one after another on
DuckDB, side by side on a warehouse server (up to `CRM_WAREHOUSE_SLOTS` at once). A model that fails
its preflight skips training with the reasons, and its champion keeps serving.
"""

from __future__ import annotations

from airflow.sdk import chain, dag
from airflow.timetables.assets import AssetOrTimeSchedule
from airflow.timetables.trigger import CronTriggerTimetable

from crm import orchestration as steps
from crm.pipeline import MODELS
from crm.settings import Settings
from ml import tasks as model_steps


@dag(
    dag_id="crm_training",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("0 4 * * 1", timezone="UTC"),
        assets=(steps.CUSTOMER_FEATURES | steps.MODEL_DEGRADED),
    ),
    doc_md=__doc__,
    **steps.DAG_ARGS,
)
def crm_training():
    preflight = steps.build_training_data() >> model_steps.training_preflight()
    trained = [model_steps.train(model) for model in MODELS]
    if Settings.from_env().parallel_warehouse_tasks:
        preflight >> trained  # side by side: a warehouse server takes several sessions
    else:
        chain(preflight, *trained)  # one after another: each opens the DuckDB file


crm_training()

"""
### CRM daily run

For one day's deliveries: the landing partitions up to that day load into the raw schema (each
source's batch passes its raw Great Expectations suites inside the load transaction) → dbt
builds the warehouse in the group `dbt`: one `dbt build` (`dbt_producer_watcher`) watched by a task
per seed, snapshot and model and one per model's tests; clear a node's task to rebuild that node
alone (`CRM_DAILY_DBT_TASKS=model`: each node's task runs dbt itself; `build`: one `dbt_build`
task) → the mart suites gate it (and announce the `crm_customer_features` asset, which triggers
`crm_training`) → every model's champion scores every customer, each score table gated before it
replaces the day's rows (recommendations only on `CRM_RECOMMENDATIONS_WEEKDAY`, Mondays by default:
ten rows a customer; the latest stay published) → the BI copy is replaced → summary.

**Params:** `as_of_date` (empty: a scheduled run processes the day before its logical date, a
manual run the last delivered day), `churn_window_days`, `full_refresh`.

**Backfill and reruns:** a run for day D loads only partitions up to D and replaces D's scores, so
days can be (re)run in any order: `airflow backfill create --dag-id crm_daily --from-date ...
--to-date ...`. Every task takes a slot of the `crm_warehouse` pool: one on DuckDB, whose file allows
one writer at a time; on a warehouse server `CRM_WAREHOUSE_SLOTS` (default 4), and each model then
scores in a task of its own, side by side. The dbt node tasks only watch the build that holds it and
take `crm_dbt_nodes`.
"""

from __future__ import annotations

from airflow.sdk import chain, dag

from crm import orchestration as steps
from crm.settings import Settings
from ml import tasks as model_steps

# From the environment only (CRM_DAILY_SCHEDULE, CRM_DAILY_DBT_TASKS): parsing never opens the warehouse.
SETTINGS = Settings.from_env()
SCHEDULE = SETTINGS.daily_schedule


@dag(
    dag_id="crm_daily",
    schedule=None if SCHEDULE.lower() == "none" else SCHEDULE,
    doc_md=__doc__,
    render_template_as_native_obj=True,
    **steps.DAG_ARGS,
)
def crm_daily():
    build = (
        [steps.dbt_build()]
        if SETTINGS.daily_dbt_tasks == "build"
        else [steps.plan_dbt_build(), steps.dbt_models(), steps.record_tested_loads()]
    )
    monitored = model_steps.monitor_models()
    chain(
        steps.load_landing(),
        *build,
        steps.quality_gate_marts(),
        model_steps.scoring(SETTINGS, daily=True),
        monitored,
        steps.publish_marts(),
        steps.run_summary(),
    )
    model_steps.announce_degraded_models(monitored)


crm_daily()

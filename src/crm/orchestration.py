"""Airflow building blocks the DAG files share: the tasks (each a thin call into crm.pipeline),
run parameters, the warehouse pool, retries and failure summaries.

Only DAG files import this module. Nothing here opens the warehouse at import time: every task
imports and reads what it needs when it runs.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from datetime import date, timedelta

import pendulum
from airflow.sdk import Asset, Param, TriggerRule, get_current_context, task

from crm.settings import Settings

log = logging.getLogger(__name__)

# DuckDB allows one writer or many readers per file, never both at once: every task that opens
# the warehouse (readers too) takes a slot of this pool, which has one slot on DuckDB and
# CRM_WAREHOUSE_SLOTS on a server (crm.settings.Settings.warehouse_pool_slots).
WAREHOUSE_POOL = "crm_warehouse"
# crm_daily's per-node dbt tasks when they watch one dbt build (CRM_DAILY_DBT_TASKS=watch): they read
# the build's progress, not the warehouse, so they run beside the build, which holds WAREHOUSE_POOL. A
# retried or cleared one builds its node alone once the build has ended: as many slots as the
# warehouse pool keeps two of those from opening a DuckDB file at once.
DBT_NODE_POOL = "crm_dbt_nodes"


def pools(settings: Settings) -> dict[str, tuple[int, str]]:
    """The pools the DAGs' tasks take: slots and description, sized from the warehouse's engine."""
    slots = settings.warehouse_pool_slots
    if settings.warehouse_engine == "duckdb":
        why = "DuckDB allows one writer at a time: one warehouse task at once"
    else:
        why = f"{settings.warehouse_engine}: up to {slots} warehouse tasks at once (CRM_WAREHOUSE_SLOTS)"
    return {
        WAREHOUSE_POOL: (slots, why),
        DBT_NODE_POOL: (slots, "crm_daily's dbt node tasks: they watch the build; a retried one builds its node alone"),
    }


# Emitted when the mart gate has passed: new point-in-time features are ready to train on.
CUSTOMER_FEATURES = Asset(name="crm_customer_features", uri="crm://warehouse/marts/customer_features")
# Emitted when monitoring finds a model degraded (its scores drifted, or a backtest fell below its
# validation): crm_training runs, so that a challenger trained on the newest labels can replace it.
MODEL_DEGRADED = Asset(name="crm_model_degraded", uri="crm://warehouse/monitoring/alerts")

PARAMS = {
    "as_of_date": Param(
        None,
        type=["null", "string"],
        format="date",
        description="Day to process (YYYY-MM-DD). Empty: a scheduled run processes the day "
        "before its logical date, a manual run the last delivered day.",
    ),
    "churn_window_days": Param(
        None,
        type=["null", "integer"],
        minimum=7,
        maximum=365,
        description="Churn window in days (labels, time-based split, features). "
        "Empty: the configured one (CRM_CHURN_WINDOW_DAYS, default 90).",
    ),
    "full_refresh": Param(
        None,
        type=["null", "boolean"],
        description="Rebuild incremental dbt models from scratch. Empty: the configured "
        "CRM_FULL_REFRESH (default false).",
    ),
}


def log_failure_summary(context) -> None:
    """One line a person can act on: which task of which run failed, on which try, and why."""
    ti, run = context["ti"], context.get("dag_run")
    error = context.get("exception")
    reason = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}" if error else "unknown"
    log.error(
        "CRM task failed: %s.%s run %s (as-of %s), try %s of %s: %s",
        ti.dag_id,
        ti.task_id,
        getattr(run, "run_id", "?"),
        (context.get("params") or {}).get("as_of_date") or "latest",
        ti.try_number,
        (ti.max_tries or 0) + 1,
        reason,
    )


DEFAULT_ARGS = {
    "pool": WAREHOUSE_POOL,
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
    "on_failure_callback": log_failure_summary,
}


# What every CRM DAG shares: one run at a time (one DuckDB writer), no catch-up unless asked,
# the task defaults above and the run params.
DAG_ARGS = {
    "start_date": pendulum.datetime(2026, 1, 1, tz="UTC"),
    "catchup": False,
    "max_active_runs": 1,
    "default_args": DEFAULT_ARGS,
    "params": PARAMS,
    "tags": ["crm"],
}


def run_as_of_date(params: dict, run_type: str | None, logical_date) -> date | None:
    """The run's day: the as_of_date param; else the day before a scheduled or backfill run's logical
    date (its data is complete by then); else None, meaning the last delivered day."""
    if params.get("as_of_date"):
        return date.fromisoformat(params["as_of_date"])
    if run_type in ("scheduled", "backfill") and logical_date is not None:
        return logical_date.date() - timedelta(days=1)
    return None


def settings_for_run() -> Settings:
    """The settings from the environment, overridden by the running DAG run's params where they are set."""
    context = get_current_context()
    params, run = context["params"], context.get("dag_run")
    run_type = getattr(run, "run_type", None)
    overrides = {
        "as_of_date": run_as_of_date(params, getattr(run_type, "value", run_type), context.get("logical_date")),
        "churn_window_days": params.get("churn_window_days"),
        "full_refresh": params.get("full_refresh"),
    }
    # An empty param leaves the configured value (environment, then default) in place.
    return Settings.from_env(**{name: value for name, value in overrides.items() if value is not None})


@contextmanager
def data_errors_fail_at_once():
    """A refused delivery or a blocking quality gate fails the task without retries: the data, not the
    machine, is wrong, and a retry would only repeat the verdict. Other errors (a lock, a crash) retry."""
    from airflow.sdk.exceptions import AirflowFailException

    from crm.landing import LandingError
    from crm.quality import QualityGateFailed

    try:
        yield
    except (LandingError, QualityGateFailed) as error:
        raise AirflowFailException(str(error)) from error


@task
def load_landing() -> dict[str, object]:
    """New landing partitions into the raw schema; each source's batch passes its raw suites first."""
    from crm import pipeline

    with data_errors_fail_at_once():
        return pipeline.load(settings_for_run())


@task
def dbt_build() -> None:
    from crm import pipeline

    pipeline.build_warehouse(settings_for_run())


@task
def build_training_data() -> None:
    """The features at the training and validation dates and the labels, for the supervised models."""
    from crm import pipeline

    pipeline.build_training_data(settings_for_run())


@task
def plan_dbt_build() -> dict[str, object]:
    """The run's dbt vars, its environment (crm.dbt.RUN_ENV) and full-refresh flag, for the per-model
    dbt task group to template in."""
    from crm import pipeline
    from crm.dbt import vars_and_env

    settings = settings_for_run()
    settings = pipeline.refreshed_after_corrections(settings)
    dbt_vars, run_env = vars_and_env(pipeline.dbt_vars(settings))
    return {"vars": dbt_vars, "env": run_env, "full_refresh": settings.full_refresh}


@task
def record_tested_loads() -> None:
    """After every per-model dbt task passed: the loads so far count as tested, so the next build
    tests the large staging tables from the partitions loaded after them."""
    from crm import pipeline

    pipeline.record_tested_loads(settings_for_run())


# What a node's task needs is its node built and tested. dbt's JSON artifacts (the manifest written
# twice, run results) cost about 0.6 s a task and nothing reads them: the dbt log keeps each node's
# result. The unit tests check the SQL on fixed inputs, not the day's data: they run with
# crm_pipeline's build and in the test suite, not again every day (6 s of a daily run's 43 s of dbt
# work at demo size); `dbt build` takes that flag, a watching task building its node alone runs
# `dbt run` or `dbt test`, which do not.
NODE_TASK_DBT_FLAGS = ["--no-write-json"]
BUILD_ONLY_DBT_FLAGS = ["--exclude-resource-type", "unit_test"]


def _no_task(**_node) -> None:
    return None


def dbt_models(group_id: str = "dbt"):
    """The dbt build as a task group with one task per seed, snapshot and model (astronomer-cosmos).

    ``CRM_DAILY_DBT_TASKS=watch`` (the default): one task runs ``dbt build`` for the whole group and
    holds the warehouse pool; every node gets a task that watches that build and succeeds or fails
    with its node, and a model's tests get a task beside it (``<model>.test``). dbt starts, parses and
    connects once a day instead of once a node. A node task that is retried or cleared after the
    build ended builds (or tests) its node alone, in the one-slot pool of node tasks; while the build
    still runs, a retried one goes on watching it.

    ``CRM_DAILY_DBT_TASKS=model``: each task runs ``dbt build`` on its own node (the node and its
    tests) in its own process, in the warehouse pool; a test that reads several models gets a task of
    its own after them.

    Either way dbt runs inside the task's process (cosmos's dbt runner): under the scheduler every
    task is a process of its own, so the warehouse lock dbt-duckdb keeps ends with the task.
    """
    from cosmos import (
        DbtTaskGroup,
        ExecutionConfig,
        ProfileConfig,
        ProjectConfig,
        RenderConfig,
    )
    from cosmos.constants import (
        DbtResourceType,
        ExecutionMode,
        InvocationMode,
        LoadMode,
        TestBehavior,
    )

    from crm.dbt import RUN_ENV, dbt_executable
    from crm.pipeline import SCORE_READERS, TRAINING_ONLY

    settings = Settings.from_env()
    watch = settings.daily_dbt_tasks == "watch"
    plan = f"ti.xcom_pull(task_ids='{plan_dbt_build.__name__}')"
    if watch:
        execution = ExecutionConfig(
            execution_mode=ExecutionMode.WATCHER,
            invocation_mode=InvocationMode.DBT_RUNNER,
            setup_operator_args={
                "pool": WAREHOUSE_POOL,
                "dbt_cmd_flags": [*NODE_TASK_DBT_FLAGS, *BUILD_ONLY_DBT_FLAGS],
            },
        )
        # Polling the build's progress (XCom) every second in the task's own process: deferring to the
        # triggerer would start a second process per node when it resumes.
        node_task_args = {"pool": DBT_NODE_POOL, "deferrable": False, "poke_interval": 1}
    else:
        execution = ExecutionConfig(execution_mode=ExecutionMode.LOCAL, invocation_mode=InvocationMode.DBT_RUNNER)
        node_task_args = {}
    return DbtTaskGroup(
        group_id=group_id,
        # Secrets stay out: cosmos stores env_vars with the DAG and shows them as rendered fields.
        # The run's own values (crm.dbt.RUN_ENV) are rendered from plan_dbt_build's result.
        project_config=ProjectConfig(
            settings.dbt_project_dir,
            env_vars={
                **{
                    name: value
                    for name, value in settings.dbt_env().items()
                    if not name.startswith("DBT_ENV_SECRET_") and name != "PGOPTIONS"
                },
                **{name: f"{{{{ {plan}['env']['{name}'] }}}}" for name in RUN_ENV.values()},
            },
        ),
        profile_config=ProfileConfig(
            profile_name="crm",
            target_name=settings.dbt_target,
            profiles_yml_filepath=settings.dbt_project_dir / "profiles.yml",
        ),
        execution_config=execution,
        # Parsing lists the project with `dbt ls` in a subprocess (cached by cosmos); unit tests are
        # left to crm_pipeline's build (below) and exposures are documentation: neither gets a task.
        # The models only training reads are left to crm_training's build_training_data, and the marts
        # that read the scores to publish_marts, as in crm.pipeline.build_warehouse.
        render_config=RenderConfig(
            load_method=LoadMode.DBT_LS,
            # Watching, a model's tests are a task of their own (cosmos has no watcher of a node and
            # its tests together), and a test that reads several models counts with each of them: a
            # task watching it alone would wait for ever, the build reports tests per model.
            test_behavior=TestBehavior.AFTER_EACH if watch else TestBehavior.BUILD,
            should_detach_multiple_parents_tests=not watch,
            exclude=[TRAINING_ONLY, SCORE_READERS],
            invocation_mode=InvocationMode.SUBPROCESS,
            dbt_executable_path=dbt_executable(),
            node_converters={DbtResourceType("unit_test"): _no_task, DbtResourceType.EXPOSURE: _no_task},
        ),
        # The run's vars and full-refresh flag, rendered from plan_dbt_build's result (the DAG renders
        # templates as native objects); the secrets enter the task's own process when it starts.
        operator_args={
            "vars": f"{{{{ {plan}['vars'] }}}}",
            "full_refresh": f"{{{{ {plan}['full_refresh'] }}}}",
            "on_execute_callback": dbt_secrets_into_environment,
            # cosmos's lineage assets cost about 0.5 s a task and nothing reads them.
            "dbt_cmd_flags": NODE_TASK_DBT_FLAGS if watch else [*NODE_TASK_DBT_FLAGS, *BUILD_ONLY_DBT_FLAGS],
            "emit_datasets": False,
            **node_task_args,
        },
    )


def dbt_secrets_into_environment(context) -> None:
    """Give the running dbt task the secrets its profile reads (the PostgreSQL password, the PII hash
    key's pads as libpq session options), computed from the settings in the task's own process: kept
    out of the task group's env_vars, which Airflow stores with the DAG and shows as rendered fields."""
    import os

    os.environ.update(
        {
            name: value
            for name, value in Settings.from_env().dbt_env().items()
            if name.startswith("DBT_ENV_SECRET_") or name == "PGOPTIONS"
        }
    )


@task(outlets=[CUSTOMER_FEATURES])
def quality_gate_marts() -> dict[str, object]:
    from crm import pipeline

    with data_errors_fail_at_once():
        return pipeline.gate_marts(settings_for_run())


@task(trigger_rule=TriggerRule.NONE_FAILED)
def publish_marts() -> dict[str, int]:
    """Rebuild the marts that read the scores, then replace the BI copy atomically."""
    from crm import pipeline

    return pipeline.publish(settings_for_run())


@task
def run_summary() -> dict[str, object]:
    from crm import pipeline

    summary = pipeline.summarize(settings_for_run())
    print(pipeline.format_summary(summary))
    return summary

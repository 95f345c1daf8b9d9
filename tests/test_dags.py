import functools
import logging
import re
from datetime import date
from types import SimpleNamespace

import pendulum
from airflow.dag_processing.dagbag import DagBag

from crm.landing import LandingError
from crm.orchestration import (
    CUSTOMER_FEATURES,
    DBT_NODE_POOL,
    MODEL_DEGRADED,
    WAREHOUSE_POOL,
    log_failure_summary,
    run_as_of_date,
)
from crm.settings import Settings

DAGS = ("crm_pipeline", "crm_daily", "crm_training", "crm_erasure")


@functools.cache
def _bag() -> DagBag:
    return DagBag(dag_folder=str(Settings.from_env().dags_dir))


def test_every_dag_file_imports_without_errors():
    bag = _bag()
    assert bag.import_errors == {}
    assert set(DAGS) <= set(bag.dag_ids)


def test_pipeline_dag_runs_the_gate_before_training_and_scoring():
    dag = _bag().dags["crm_pipeline"]
    gate = dag.get_task("quality_gate_marts")
    assert {"build_training_data", "train_churn", "score_models"} <= gate.get_flat_relative_ids(upstream=False)
    assert "build_training_data" in dag.get_task("train_churn").get_flat_relative_ids(upstream=True)


def test_every_task_takes_the_warehouse_pool_retries_and_reports_failures():
    bag = _bag()
    for dag_id in DAGS:
        dag = bag.dags[dag_id]
        assert dag.max_active_runs == 1 and dag.doc_md
        assert {"as_of_date", "churn_window_days", "full_refresh"} <= set(dag.params)
        for task in dag.tasks:  # the per-model dbt tasks of crm_daily included
            # crm_daily's node tasks watch the build, which holds the warehouse pool (next test).
            watches = task.task_id.startswith("dbt.") and "producer_watcher" not in task.task_id
            assert task.pool == (DBT_NODE_POOL if watches else WAREHOUSE_POOL), (dag_id, task.task_id)
            assert task.retries == 2 and task.retry_exponential_backoff, (dag_id, task.task_id)
            assert task.on_failure_callback, (dag_id, task.task_id)


def test_daily_dag_gates_scores_and_publishes_and_announces_new_features():
    dag = _bag().dags["crm_daily"]
    assert not any(task.task_id.startswith("train_") for task in dag.tasks)
    gate = dag.get_task("quality_gate_marts")
    assert CUSTOMER_FEATURES in gate.outlets
    downstream = gate.get_flat_relative_ids(upstream=False)
    assert {"score_models", "publish_marts"} <= downstream
    # The day's scores are monitored (drift, and the backtests of dates whose window has closed) before
    # the publication, which copies the monitoring tables to BI.
    assert dag.get_task("score_models").downstream_task_ids == {"monitor_models"}
    monitor = dag.get_task("monitor_models")
    assert monitor.downstream_task_ids == {"publish_marts", "announce_degraded_models"}
    # A degraded model announces itself (the task skips, so no event, when none is), and crm_training runs.
    assert MODEL_DEGRADED in dag.get_task("announce_degraded_models").outlets
    # Training data (features at the training dates, labels) is crm_training's: no task of the daily build.
    assert "build_training_data" not in downstream
    assert not any(task.task_id.endswith(("_labels_model_build", "_labels_test")) for task in dag.tasks)
    upstream = gate.get_flat_relative_ids(upstream=True)
    assert {"load_landing", "dbt.customer_features.run", "dbt.customer_features.test"} <= upstream


def _dbt_models_in_the_daily_build() -> set[str]:
    """Every model but the training-only ones (the labels), which crm_training builds, and the marts that
    read the scores, which publish_marts builds after scoring."""
    project = Settings.from_env().dbt_project_dir
    return {
        path.stem
        for path in (project / "models").rglob("*.sql")
        if not re.search(r"tags=\[[^\]]*'training'", path.read_text()) and path.stem not in SCORE_READERS
    }


# The marts that read the score tables (dbt selection source:scores+): publish_marts builds them.
SCORE_READERS = ("customer_360", "campaign_audiences", "customer_recommendations")


def test_daily_dag_shows_every_dbt_node_as_a_task_watching_one_build():
    dag = _bag().dags["crm_daily"]
    project = Settings.from_env().dbt_project_dir
    dbt_tasks = {task.task_id: task for task in dag.tasks if task.task_id.startswith("dbt.")}
    # One task runs the build in the warehouse pool; each model, seed and snapshot has a task that
    # watches it, and each tested model a task for its tests after it.
    producer = dbt_tasks["dbt.dbt_producer_watcher"]
    assert producer.pool == WAREHOUSE_POOL and "plan_dbt_build" in producer.upstream_task_ids
    # A tested model's tasks form a group (`<model>.run`, `<model>.test`); an untested one is `<model>_run`.
    for model in _dbt_models_in_the_daily_build():
        assert f"dbt.{model}.run" in dbt_tasks or f"dbt.{model}_run" in dbt_tasks, model
    assert {f"dbt.{path.stem}.seed" for path in (project / "seeds").glob("*.csv")} <= set(dbt_tasks)
    assert "dbt.customers_snapshot_snapshot" in dbt_tasks
    assert not {f"dbt.{model}.run" for model in SCORE_READERS} & set(dbt_tasks)
    assert {"dbt.customer_features.test", "dbt.base_shop__orders.test"} <= set(dbt_tasks)
    for task_id, task in dbt_tasks.items():
        if task_id not in ("dbt.dbt_producer_watcher", "dbt.dbt_producer_watcher_done"):
            assert task.pool == DBT_NODE_POOL and not task.deferrable, task_id
    # Each model waits for the models it reads (and their tests); the run's vars come from plan_dbt_build.
    features = dbt_tasks["dbt.customer_features.run"]
    assert "dbt.int_customer_engagement_at_dates.test" in features.upstream_task_ids
    assert "plan_dbt_build" in features.get_flat_relative_ids(upstream=True)
    assert dag.render_template_as_native_obj and "plan_dbt_build" in str(producer.vars)
    # The loads count as tested only once every dbt task has passed, the build's included.
    before_recording = dag.get_task("record_tested_loads").get_flat_relative_ids(upstream=True)
    assert {"dbt.dbt_producer_watcher_done", "dbt.base_crm__customers.test"} <= before_recording
    assert "record_tested_loads" in dag.get_task("quality_gate_marts").upstream_task_ids


def test_daily_dag_can_run_dbt_in_every_node_task(monkeypatch):
    monkeypatch.setenv("CRM_DAILY_DBT_TASKS", "model")
    dag = DagBag(dag_folder=str(Settings.from_env().dags_dir / "crm_daily.py")).dags["crm_daily"]
    dbt_tasks = {task.task_id for task in dag.tasks if task.task_id.startswith("dbt.")}
    expected = {f"dbt.{model}_model_build" for model in _dbt_models_in_the_daily_build()}
    assert expected <= dbt_tasks
    assert all(dag.get_task(task_id).pool == WAREHOUSE_POOL for task_id in dbt_tasks)
    # Tests that read two models run once both are built, in a task of their own.
    cross_model_tests = (
        dbt_tasks - expected - {"dbt.currency_rates_seed_build", "dbt.customers_snapshot_snapshot_build"}
    )
    assert "dbt.assert_raw_rows_reconcile_test" in cross_model_tests
    assert all(task_id.endswith("_test") for task_id in cross_model_tests), cross_model_tests
    reconcile = dag.get_task("dbt.assert_raw_rows_reconcile_test")
    assert {"dbt.base_shop__orders_model_build", "dbt.base_crm__customers_model_build"} <= reconcile.upstream_task_ids
    assert "dbt.assert_raw_rows_reconcile_test" in dag.get_task("record_tested_loads").get_flat_relative_ids(
        upstream=True
    )


def test_daily_dag_can_build_in_one_task(monkeypatch):
    monkeypatch.setenv("CRM_DAILY_DBT_TASKS", "build")
    dag = DagBag(dag_folder=str(Settings.from_env().dags_dir / "crm_daily.py")).dags["crm_daily"]
    assert not any(task.task_id.startswith("dbt.") for task in dag.tasks)
    assert "dbt_build" in dag.get_task("quality_gate_marts").upstream_task_ids


def test_training_dag_runs_weekly_and_when_new_features_land():
    dag = _bag().dags["crm_training"]
    assert "crm_customer_features" in str(dag.timetable.asset_condition)
    assert "crm_model_degraded" in str(dag.timetable.asset_condition)
    assert dag.timetable.timetable.summary == "0 4 * * 1"
    preflight = dag.get_task("training_preflight")
    assert "build_training_data" in preflight.upstream_task_ids
    assert {"train_churn", "train_segments", "train_satisfaction"} <= preflight.get_flat_relative_ids(upstream=False)


def test_a_run_processes_its_param_date_else_the_day_before_a_scheduled_run():
    midnight = pendulum.datetime(2026, 11, 24, tz="UTC")
    assert run_as_of_date({"as_of_date": "2026-10-01"}, "scheduled", midnight) == date(2026, 10, 1)
    assert run_as_of_date({"as_of_date": None}, "scheduled", midnight) == date(2026, 11, 23)
    assert run_as_of_date({"as_of_date": None}, "backfill", midnight) == date(2026, 11, 23)
    assert run_as_of_date({"as_of_date": None}, "manual", midnight) is None  # the last delivered day


def test_a_failure_is_logged_as_one_line_naming_the_task_run_try_and_reason(caplog):
    ti = SimpleNamespace(dag_id="crm_daily", task_id="load_landing", try_number=3, max_tries=2)
    context = {
        "ti": ti,
        "dag_run": SimpleNamespace(run_id="scheduled__2026-11-24"),
        "params": {"as_of_date": "2026-11-23"},
        "exception": LandingError("orders/2026-11-23/orders.csv: column 'amount' is missing\nmore detail"),
    }
    with caplog.at_level(logging.ERROR, logger="crm.orchestration"):
        log_failure_summary(context)
    expected = (
        "CRM task failed: crm_daily.load_landing run scheduled__2026-11-24 (as-of 2026-11-23), "
        "try 3 of 3: LandingError: orders/2026-11-23/orders.csv: column 'amount' is missing"
    )
    assert caplog.messages == [expected]


def test_on_a_warehouse_server_the_models_train_and_score_side_by_side(monkeypatch):
    """On PostgreSQL the pool has several slots: each model trains, then scores, in tasks of its own
    beside the others (on DuckDB, above, one after another and one scoring task)."""
    from crm.pipeline import MODELS

    monkeypatch.setenv("CRM_WAREHOUSE_URL", "postgresql+psycopg://crm@db.internal/warehouse")
    dags_dir = Settings.from_env().dags_dir
    pipeline = DagBag(dag_folder=str(dags_dir / "crm_pipeline.py")).dags["crm_pipeline"]
    training = DagBag(dag_folder=str(dags_dir / "crm_training.py")).dags["crm_training"]
    assert "score_models" not in pipeline.task_ids
    for model in MODELS:
        trained = pipeline.get_task(f"train_{model}")
        assert trained.upstream_task_ids == {"build_training_data"}, trained.upstream_task_ids
        assert trained.downstream_task_ids == {f"score_{model}"}
        assert pipeline.get_task(f"score_{model}").downstream_task_ids == {"monitor_models"}
        assert training.get_task(f"train_{model}").upstream_task_ids == {"training_preflight"}

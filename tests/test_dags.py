from datetime import date

import pendulum
from airflow.dag_processing.dagbag import DagBag

from crm.orchestration import CUSTOMER_FEATURES, WAREHOUSE_POOL, run_as_of_date
from crm.settings import Settings

DAGS = ("crm_pipeline", "crm_daily", "crm_training")


def _bag() -> DagBag:
    return DagBag(dag_folder=str(Settings.from_env().dags_dir))


def test_every_dag_file_imports_without_errors():
    bag = _bag()
    assert bag.import_errors == {}
    assert set(DAGS) <= set(bag.dag_ids)


def test_pipeline_dag_runs_the_gate_before_training_and_scoring():
    dag = _bag().dags["crm_pipeline"]
    gate = dag.get_task("quality_gate_marts")
    assert "train_churn" in gate.get_flat_relative_ids(upstream=False)
    assert "score_churn" in gate.get_flat_relative_ids(upstream=False)


def test_every_task_takes_the_warehouse_pool_retries_and_reports_failures():
    bag = _bag()
    for dag_id in DAGS:
        dag = bag.dags[dag_id]
        assert dag.max_active_runs == 1 and dag.doc_md
        assert set(dag.params) == {"as_of_date", "churn_window_days", "full_refresh"}
        for task in dag.tasks:
            assert task.pool == WAREHOUSE_POOL, (dag_id, task.task_id)
            assert task.retries == 2 and task.retry_exponential_backoff, (dag_id, task.task_id)
            assert task.on_failure_callback, (dag_id, task.task_id)


def test_daily_dag_gates_scores_and_publishes_and_announces_new_features():
    dag = _bag().dags["crm_daily"]
    assert not any(task.task_id.startswith("train_") for task in dag.tasks)
    gate = dag.get_task("quality_gate_marts")
    assert CUSTOMER_FEATURES in gate.outlets
    downstream = gate.get_flat_relative_ids(upstream=False)
    assert {"score_churn", "score_segments", "score_satisfaction", "publish_marts"} <= downstream
    assert "dbt_build" in gate.get_flat_relative_ids(upstream=True)


def test_training_dag_runs_weekly_and_when_new_features_land():
    dag = _bag().dags["crm_training"]
    assert "crm_customer_features" in str(dag.timetable.asset_condition)
    assert dag.timetable.timetable.summary == "0 4 * * 1"
    preflight = dag.get_task("training_preflight")
    assert {"train_churn", "train_segments", "train_satisfaction"} <= preflight.get_flat_relative_ids(upstream=False)


def test_a_run_processes_its_param_date_else_the_day_before_a_scheduled_run():
    midnight = pendulum.datetime(2026, 11, 24, tz="UTC")
    assert run_as_of_date({"as_of_date": "2026-10-01"}, "scheduled", midnight) == date(2026, 10, 1)
    assert run_as_of_date({"as_of_date": None}, "scheduled", midnight) == date(2026, 11, 23)
    assert run_as_of_date({"as_of_date": None}, "backfill", midnight) == date(2026, 11, 23)
    assert run_as_of_date({"as_of_date": None}, "manual", midnight) is None  # the last delivered day

"""The production configuration without Docker: Airflow metadata and the MLflow backend store on
the local PostgreSQL server, LocalExecutor, and one crm_daily run through the real scheduler.

Each test run creates its own two databases and drops them afterwards.
"""

from __future__ import annotations

import os
import uuid

import psycopg2
import pytest

from crm import services
from crm.generate import GeneratorConfig, generate
from crm.settings import Settings

SERVER = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "postgres"}


def _admin_connection():
    try:
        connection = psycopg2.connect(connect_timeout=5, **SERVER)
    except psycopg2.OperationalError as error:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"no PostgreSQL server at {SERVER['host']}:{SERVER['port']}: {error}".strip())
    connection.autocommit = True
    return connection


@pytest.fixture(scope="module")
def databases():
    suffix = uuid.uuid4().hex[:10]
    names = {"airflow": f"crm_test_airflow_{suffix}", "mlflow": f"crm_test_mlflow_{suffix}"}
    connection = _admin_connection()
    with connection.cursor() as cursor:
        for name in names.values():
            cursor.execute(f'create database "{name}"')
    yield names
    with connection.cursor() as cursor:
        for name in names.values():
            cursor.execute(f'drop database if exists "{name}" with (force)')
    connection.close()


def _url(driver: str, database: str) -> str:
    return f"{driver}://{SERVER['user']}@{SERVER['host']}:{SERVER['port']}/{database}"


def test_a_daily_run_succeeds_with_airflow_and_mlflow_on_postgresql(databases, tmp_path, free_port):
    settings = Settings.from_env(
        home=tmp_path, daily_schedule="none", airflow_ui_port=free_port(), mlflow_ui_port=free_port(),
        airflow_database_url=_url("postgresql+psycopg2", databases["airflow"]),
        mlflow_tracking_uri=_url("postgresql+psycopg2", databases["mlflow"]))
    generate(GeneratorConfig(customers=500, days=120), settings.landing_dir, settings.truth_dir)
    endpoints = services.start(settings)
    try:
        api = services.AirflowApi(endpoints)
        assert "crm_daily" in api.dag_ids({"crm_daily"})
        state, tasks = api.wait_for_run("crm_daily", api.trigger("crm_daily"))
        assert services.request_json(f"{endpoints.mlflow_url}/api/2.0/mlflow/experiments/search?max_results=10")
    finally:
        services.stop(settings)
    assert state == "success", f"crm_daily ended {state}: {tasks} (logs under {settings.airflow_home / 'logs'})"
    # No model is registered in this fresh MLflow store: scoring skips, everything else ran.
    assert tasks["publish_marts"] == "success" and tasks["score_churn"] == "skipped", tasks
    with psycopg2.connect(dbname=databases["airflow"], **{k: v for k, v in SERVER.items() if k != "dbname"}) as conn:
        with conn.cursor() as cursor:
            cursor.execute("select count(*) from dag_run where dag_id = 'crm_daily' and state = 'success'")
            assert cursor.fetchone()[0] == 1
    with psycopg2.connect(dbname=databases["mlflow"], **{k: v for k, v in SERVER.items() if k != "dbname"}) as conn:
        with conn.cursor() as cursor:
            cursor.execute("select count(*) from information_schema.tables where table_name = 'registered_models'")
            assert cursor.fetchone()[0] == 1

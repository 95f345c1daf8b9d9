"""docker-compose.yml is validated by the Compose v2 binary (no Docker engine runs here)."""

import json
import subprocess
from pathlib import Path

import compose

from crm import services
from crm.settings import CHECKOUT

# The package's console script drops the binary's exit code, so call the binary it ships.
COMPOSE = [str(Path(compose.__file__).with_name("docker-compose")), "--project-directory", str(CHECKOUT)]
SERVICES = {
    "postgres",
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "mlflow",
    "dashboard",
}


def _config(env_file: Path, *profiles: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            *COMPOSE,
            "--env-file",
            str(env_file),
            *(f"--profile={name}" for name in profiles),
            "config",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        cwd=CHECKOUT,
    )


def test_compose_file_is_valid_with_the_example_env():
    completed = _config(CHECKOUT / ".env.example")
    assert completed.returncode == 0, completed.stderr
    config = json.loads(completed.stdout)
    assert set(config["services"]) == SERVICES
    conn = config["services"]["airflow-scheduler"]["environment"]["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert conn.startswith("postgresql+psycopg2://airflow:") and conn.endswith("@postgres:5432/airflow")
    assert "--serve-artifacts" in config["services"]["mlflow"]["command"]
    # The pipeline's warehouse is a database of the same server, BI's role named for the grants.
    environment = config["services"]["airflow-scheduler"]["environment"]
    assert environment["CRM_WAREHOUSE_URL"].startswith("postgresql+psycopg://crm:")
    assert environment["CRM_WAREHOUSE_URL"].endswith("@postgres:5432/crm")
    assert environment["CRM_BI_READER_ROLE"] == "crm_bi"
    # The scheduler's task processes start warmed up, as under `crm ui`.
    assert environment["AIRFLOW__SCHEDULER__MP_START_METHOD"] == "forkserver"
    assert environment["AIRFLOW__SCHEDULER__MP_FORKSERVER_PRELOAD"] == ",".join(services.TASK_PRELOAD)
    assert environment["AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME"] == services.SCHEDULER_IDLE_SLEEP_S
    assert environment["AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL"] == services.DAG_FILE_PARSE_INTERVAL_S
    # Every long-running service says whether it is healthy (the init job runs once).
    unchecked = {name for name, service in config["services"].items() if "healthcheck" not in service}
    assert unchecked == {"airflow-init"}, unchecked
    # The dashboard reads the publication as the BI role, which may read the bi_ schemas only.
    dashboard = config["services"]["dashboard"]
    assert dashboard["environment"]["CRM_WAREHOUSE_URL"].startswith("postgresql+psycopg://crm_bi:")
    assert dashboard["command"] == ["crm", "dashboard", "--address", "0.0.0.0"]


def test_secrets_are_required_from_the_environment(tmp_path: Path):
    empty_env = tmp_path / "empty.env"
    empty_env.write_text("")
    completed = _config(empty_env)
    assert completed.returncode != 0
    assert "set " in completed.stderr and "in .env" in completed.stderr


def test_the_celery_profile_adds_the_broker_and_scalable_workers(tmp_path: Path):
    env_file = tmp_path / "celery.env"
    # The example's commented celery lines, uncommented.
    example = (CHECKOUT / ".env.example").read_text()
    env_file.write_text(
        example.replace("# AIRFLOW_EXECUTOR=", "AIRFLOW_EXECUTOR=").replace("# CRM_AIRFLOW", "CRM_AIRFLOW")
    )
    completed = _config(env_file, "celery")
    assert completed.returncode == 0, completed.stderr
    config = json.loads(completed.stdout)
    assert set(config["services"]) == SERVICES | {"redis", "airflow-worker"}
    worker = config["services"]["airflow-worker"]
    assert worker["command"][:3] == ["airflow", "celery", "worker"]
    assert "redis" in worker["depends_on"] and "postgres" in worker["depends_on"]
    environment = config["services"]["airflow-scheduler"]["environment"]
    assert environment["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert environment["AIRFLOW__CELERY__BROKER_URL"] == "redis://redis:6379/0"
    assert environment["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql+psycopg2://airflow:")

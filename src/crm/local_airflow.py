"""Run the DAGs through real Airflow on the embedded default: SQLite metadata under the home folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from crm.settings import Settings


def airflow_env(settings: Settings) -> dict[str, str]:
    home = settings.airflow_home
    return {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(settings.dags_dir),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__PARALLELISM": "4",
        # Tasks build their settings from the environment: point them at the same home.
        "CRM_HOME": str(settings.home),
    }


def airflow(settings: Settings, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    executable = str(Path(sys.executable).with_name("airflow"))
    return subprocess.run([executable, *args], env=airflow_env(settings), check=check, text=True)


def migrate(settings: Settings) -> None:
    settings.airflow_home.mkdir(parents=True, exist_ok=True)
    airflow(settings, "db", "migrate")


def test_dag(settings: Settings, dag_id: str, mark_success_pattern: str | None = None) -> int:
    """Run one DAG run in-process with ``airflow dags test``; return its exit code."""
    args = ["dags", "test", dag_id]
    if mark_success_pattern:
        args += ["--mark-success-pattern", mark_success_pattern]
    return airflow(settings, *args, check=False).returncode

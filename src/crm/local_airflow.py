"""Run the DAGs through real Airflow on the embedded default: SQLite metadata under the home folder."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from crm.settings import Settings

TASK_STARTED = re.compile(r"\[DAG TEST\] starting task_id=(\S+)")
TASK_STATE = re.compile(r"Task instance state updated .*new_state=(\w+)")
TAIL_LINES = 80


def airflow_env(settings: Settings) -> dict[str, str]:
    home = settings.airflow_home
    return {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(settings.dags_dir),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": settings.airflow_database_url,
        "AIRFLOW__CORE__PARALLELISM": "4",
        # astronomer-cosmos (crm_daily's per-model tasks): offline, and its dbt ls cache in the home.
        "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
        "AIRFLOW__COSMOS__CACHE_DIR": str(home / "cosmos"),
        # Cached `dbt ls` (keyed by the project's files): otherwise every task lists the project again.
        "AIRFLOW__COSMOS__ENABLE_CACHE_DBT_LS": "True",
        # Tasks build their settings from the environment: point them at the same home.
        "CRM_HOME": str(settings.home),
    }


def airflow_command(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("airflow")), *args]


def run_airflow(env: dict[str, str], *args: str) -> None:
    """Run one Airflow CLI command; a failure raises with the end of its output."""
    completed = subprocess.run(airflow_command(*args), env=env, text=True, capture_output=True)
    if completed.returncode != 0:
        raise RuntimeError(
            f"airflow {' '.join(args[:2])} failed:\n{completed.stdout[-2000:]}{completed.stderr[-2000:]}"
        )


def migrate(settings: Settings) -> None:
    """Create or upgrade the metadata database (idempotent)."""
    settings.airflow_home.mkdir(parents=True, exist_ok=True)
    run_airflow(airflow_env(settings), "db", "migrate")


def test_dag(
    settings: Settings,
    dag_id: str,
    log_path: Path,
    params: dict[str, object] | None = None,
    mark_success_pattern: str | None = None,
) -> int:
    """Run one DAG run in-process with ``airflow dags test`` (``params`` as the run's conf; the tasks
    whose id matches ``mark_success_pattern`` marked successful without running); return its exit code.

    Airflow's full output goes to ``log_path``; the console gets each task's final state and, when
    the run fails, the end of the log.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    tail: list[str] = []
    task = "?"
    with (
        log_path.open("w") as log_file,
        subprocess.Popen(
            airflow_command(
                "dags",
                "test",
                dag_id,
                *(["--conf", json.dumps(params)] if params else []),
                *(["--mark-success-pattern", mark_success_pattern] if mark_success_pattern else []),
            ),
            env=airflow_env(settings),
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        ) as process,
    ):
        assert process.stdout is not None
        for line in process.stdout:
            log_file.write(line)
            tail = (tail + [line])[-TAIL_LINES:]
            if started := TASK_STARTED.search(line):
                task = started.group(1)
            elif state := TASK_STATE.search(line):
                print(f"  {task:<24} {state.group(1)}", flush=True)
    if process.returncode != 0:
        print("".join(tail), end="", file=sys.stderr)
    print(f"Airflow log: {log_path}")
    return process.returncode

"""Run dbt in a subprocess: dbt-duckdb keeps the warehouse file locked in the calling process after
an in-process invocation, which would lock out the tasks that run after it in the same process."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from crm.settings import Settings

log = logging.getLogger(__name__)


class DbtError(RuntimeError):
    pass


def dbt_executable() -> str:
    return str(Path(sys.executable).with_name("dbt"))


# The build's values that change with every run reach dbt as environment variables, not as --vars:
# dbt parses the whole project again whenever the vars differ from those of its last parse (5 s and
# more, in every dbt task of a day's first run), but re-parses only the files that read an
# environment variable when its value changes.
RUN_ENV = {"as_of_dates": "CRM_DBT_AS_OF_DATES", "tests_since": "CRM_DBT_TESTS_SINCE"}
# CRM_DBT_TESTS_SINCE this early: the tests check every row (the project's var test_every_row_since,
# its default where the variable is unset).
EVERY_ROW = "1900-01-01"


def vars_and_env(variables: dict[str, object]) -> tuple[dict[str, object], dict[str, str]]:
    """A build's variables (crm.pipeline.dbt_vars) as dbt's --vars and the environment of RUN_ENV.
    Both RUN_ENV variables are always set, so none is inherited from the calling process."""
    dates = variables.get("as_of_dates") or []
    env = {
        RUN_ENV["as_of_dates"]: ",".join(str(day) for day in dates),  # type: ignore[union-attr]
        RUN_ENV["tests_since"]: str(variables.get("tests_since") or EVERY_ROW),
    }
    return {name: value for name, value in variables.items() if name not in RUN_ENV}, env


def run_dbt(settings: Settings, command: list[str], variables: dict[str, object] | None = None) -> None:
    """Run ``dbt <command>`` on the project; raise DbtError with dbt's failure lines when it fails."""
    args = [dbt_executable(), "--no-use-colors", *command, "--project-dir", str(settings.dbt_project_dir)]
    dbt_vars, run_env = vars_and_env(variables or {})
    if dbt_vars:
        args += ["--vars", json.dumps(dbt_vars)]
    log.info("running %s", " ".join(args[:2]))
    if settings.warehouse_engine == "spark":
        from crm import spark

        spark.release()  # dbt opens its own session; the embedded metastore admits one process
    completed = subprocess.run(
        args,
        env={**os.environ, **settings.dbt_env(), **run_env},
        capture_output=True,
        text=True,
        cwd=settings.dbt_project_dir,
    )
    output = completed.stdout + completed.stderr
    for line in output.splitlines():
        log.info("dbt | %s", line)
    if completed.returncode != 0:
        failures = [line for line in output.splitlines() if "ERROR" in line or "FAIL" in line or "Error" in line]
        raise DbtError(f"dbt {command[0]} failed (exit {completed.returncode}):\n" + "\n".join(failures[-20:]))

"""Run dbt in a subprocess: dbt-duckdb keeps the warehouse file locked in the calling process after
an in-process invocation, which would lock out the tasks that run after it in the same process. In a
local Spark session (spark+session://) dbt runs in-process instead, on the process's session: the
embedded metastore admits one process."""

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
    try:
        if settings.spark_local_session:
            _run_in_session(settings, args[1:], run_env)
        else:
            _run_in_subprocess(settings, args, run_env)
    finally:
        share_artifacts(settings)


# What dbt leaves in its target folder that others read (a worker's manifest, run results for the
# summary and the benchmark, the docs site); the compiled SQL stays with the worker.
SHARED_ARTIFACTS = ("manifest.json", "run_results.json", "sources.json", "catalog.json", "index.html")


def share_artifacts(settings: Settings) -> None:
    """Upload the target folder's shared artifacts to CRM_DBT_ARTIFACTS_URL, when it is set."""
    if settings.dbt_artifacts_url:
        from crm import storage

        storage.upload(settings.dbt_artifacts_dir / "target", settings.dbt_artifacts_url, SHARED_ARTIFACTS)


def _run_in_subprocess(settings: Settings, args: list[str], run_env: dict[str, str]) -> None:
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
        raise DbtError(f"dbt {args[2]} failed (exit {completed.returncode}):\n" + "\n".join(failures[-20:]))


def _run_in_session(settings: Settings, args: list[str], run_env: dict[str, str]) -> None:
    """dbt in this process, on this process's Spark session (dbt-spark's session mode takes the running
    one): the embedded metastore admits one process, and a second JVM would cost seconds per step."""
    from dbt.cli.main import dbtRunner

    from crm import spark

    spark.session(settings)
    lines: list[str] = []

    def keep(event) -> None:
        if event.info.msg and event.info.level != "debug":
            lines.append(f"{event.info.ts.ToDatetime():%H:%M:%S}  {event.info.msg}")

    env = {**settings.dbt_env(), **run_env}
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        # dbt's console lines reach the log through ``keep``, as the subprocess's output does.
        result = dbtRunner(callbacks=[keep]).invoke(["--log-level", "none", *args])
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    for line in lines:
        log.info("dbt | %s", line)
    if not result.success:
        failures = [line for line in lines if "ERROR" in line or "FAIL" in line or "Error" in line]
        if result.exception is not None:
            failures.append(str(result.exception))
        raise DbtError(f"dbt {args[1]} failed:\n" + "\n".join(failures[-20:]))

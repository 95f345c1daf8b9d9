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


def run_dbt(settings: Settings, command: list[str], variables: dict[str, object] | None = None) -> None:
    """Run ``dbt <command>`` on the project; raise DbtError with dbt's failure lines when it fails."""
    args = [dbt_executable(), "--no-use-colors", *command, "--project-dir", str(settings.dbt_project_dir)]
    if variables:
        args += ["--vars", json.dumps(variables)]
    log.info("running %s", " ".join(args[:2]))
    completed = subprocess.run(
        args, env={**os.environ, **settings.dbt_env()}, capture_output=True, text=True, cwd=settings.dbt_project_dir
    )
    output = completed.stdout + completed.stderr
    for line in output.splitlines():
        log.info("dbt | %s", line)
    if completed.returncode != 0:
        failures = [line for line in output.splitlines() if "ERROR" in line or "FAIL" in line or "Error" in line]
        raise DbtError(f"dbt {command[0]} failed (exit {completed.returncode}):\n" + "\n".join(failures[-20:]))

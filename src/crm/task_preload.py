"""What the scheduler's task processes start with: imported and warmed once in the LocalExecutor's
forkserver (`[core] mp_forkserver_preload`), inherited by every worker and task process it forks.

Importing dbt is not enough. A dbt invocation in a fresh process also generates the serialisation
code of its artifact classes (mashumaro compiles it on first use), builds the JSON schemas that
validate the project, and lets ``inspect`` map every loaded module to its file: about 1.6 s of a
per-model dbt task's 2.7 s at demo size (measured). One ``dbt parse`` of the project here does all of
it once, into a throw-away target folder (the home's partial-parse file is copied in, never
written), without connecting to the warehouse. Afterwards a one-model build in a forked process took
0.8 s instead of 1.4 to 1.65 s, dbt's own time for the node unchanged.

Nothing here may stop the forkserver: a failed warm-up is logged, and tasks then warm up themselves.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import airflow.sdk.execution_time.task_runner  # noqa: F401
import cosmos.operators.local  # noqa: F401
import dbt.adapters.duckdb  # noqa: F401
import great_expectations  # noqa: F401
import mlflow.sklearn  # noqa: F401
from dbt.cli.main import dbtRunner

from crm.services import TASK_PRELOAD_FAILED, TASK_PRELOAD_WARMED_UP
from crm.settings import Settings

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _environment(values: dict[str, str]):
    """``values`` in the environment for the block only: the secrets dbt's profile reads must not stay
    in the environment every forked task inherits."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def warm_dbt(settings: Settings) -> bool:
    """Run ``dbt parse`` once in this process, into a temporary target folder; True if it succeeded."""
    project = settings.dbt_project_dir
    with tempfile.TemporaryDirectory(prefix="crm-dbt-warmup-") as target:
        partial_parse = settings.dbt_artifacts_dir / "target" / "partial_parse.msgpack"
        if partial_parse.exists():
            shutil.copy(partial_parse, target)  # so that reading one is warmed up too
        args = ["parse", "--project-dir", str(project), "--profiles-dir", str(project)]
        args += ["--target", settings.dbt_target, "--target-path", target, "--log-path", target]
        # No --vars: the project's defaults let it parse; each task brings its run's own.
        args += ["--no-write-json", "--quiet"]
        env = {**settings.dbt_env(), "DBT_TARGET_PATH": target, "DBT_LOG_PATH": target}
        with _environment(env):
            result = dbtRunner().invoke(args)
    return bool(result.success)


def _warm_up() -> None:
    # The forkserver has no logging configured: its lines go to the scheduler's output as they are.
    started = time.monotonic()
    try:
        settings = Settings.from_env()
        if not Path(settings.dbt_project_dir, "dbt_project.yml").exists():
            return
        if warm_dbt(settings):
            print(f"{TASK_PRELOAD_WARMED_UP} in {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
        else:
            log.warning("%s: each dbt task warms up on its own", TASK_PRELOAD_FAILED)
    except Exception:  # noqa: BLE001 - the forkserver must start whatever happens here
        log.warning(TASK_PRELOAD_FAILED, exc_info=True)


_warm_up()

"""The scheduler's forkserver preload (crm.task_preload): dbt is warmed up by one parse of the project
without changing the home or holding the warehouse. The daily run through the scheduler that starts
from it is tested in test_local_ui."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from crm import services
from crm.warehouse import open_warehouse

# Imports the preload as the forkserver does, says so, then lives on until its stdin closes.
PRELOADED_PROCESS = "import crm.task_preload, sys; print('preloaded', flush=True); sys.stdin.read()"


def test_the_warm_up_parses_the_project_and_leaves_the_home_and_the_warehouse_as_they_were(home_copy, tmp_path: Path):
    settings = home_copy("preload")
    partial_parse = settings.dbt_artifacts_dir / "target" / "partial_parse.msgpack"
    before = partial_parse.read_bytes()
    stderr_path = tmp_path / "stderr.log"
    with (
        stderr_path.open("w") as stderr,
        subprocess.Popen(
            [sys.executable, "-c", PRELOADED_PROCESS],
            env={**os.environ, "CRM_HOME": str(settings.home)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        ) as process,
    ):
        assert process.stdout is not None and process.stdin is not None
        assert "preloaded" in (line.strip() for line in process.stdout), stderr_path.read_text()[-3000:]
        # While the preloaded process lives on, as the forkserver does, a task may write the warehouse.
        with open_warehouse(settings) as warehouse:
            assert warehouse.row("select count(*) from marts.dim_customers")[0] > 0
        process.stdin.close()
    log = stderr_path.read_text()
    assert services.TASK_PRELOAD_WARMED_UP in log, log[-3000:]
    assert services.TASK_PRELOAD_FAILED not in log
    # The warm-up parsed into a folder of its own: the tasks' partial-parse file is untouched.
    assert partial_parse.read_bytes() == before

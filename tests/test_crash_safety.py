"""Crash safety: a daily run SIGKILLed in the middle of its load, its dbt build, its score write and its
publication, each step then rerun, publishes exactly what the uninterrupted run did; after every
kill the warehouse opens and BI still reads the previous complete copy.

Each step runs as its own `crm` process group, killed with SIGKILL at a point it is known to have
reached: the load once its first source has committed (the other sources are still loading), the
dbt build once dbt's log shows the incremental customer_features executing. The score write and
the publication are too short to catch from outside, so they run through a small driver that
kills its own process right after the statement of interest: the new scores inserted but not
committed, or three of the published tables written into the next BI file.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

from crm import pipeline
from crm.landing import LOAD_LOG_TABLE
from crm.settings import Settings
from ml import steps

STEP_TIMEOUT_S = 300

# Runs a `crm` step with every DuckDB connection wrapped: right after the COUNT-th statement that
# starts with PREFIX has executed, the process SIGKILLs itself (a crash at a known point).
CRASHING_DRIVER = """
import os, signal, sys
import duckdb

step, prefix, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
seen = 0
real_connect = duckdb.connect


class CrashingConnection:
    def __init__(self, con):
        self._con = con

    def execute(self, sql, *args):
        global seen
        result = self._con.execute(sql, *args)
        if sql.lstrip().lower().startswith(prefix):
            seen += 1
            if seen == count:
                print(f"crashing after: {sql.strip()[:80]}", flush=True)
                os.kill(os.getpid(), signal.SIGKILL)
        return result

    def __getattr__(self, name):
        return getattr(self._con, name)


duckdb.connect = lambda *args, **kwargs: CrashingConnection(real_connect(*args, **kwargs))
from crm import cli

sys.exit(cli.main(step.split()))
"""


def _crm() -> str:
    return str(Path(sys.executable).with_name("crm"))


def _kill_when(args: list[str], env: dict[str, str], reached: Callable[[str], bool]) -> str:
    """Start ``args`` in a process group of its own and SIGKILL the whole group (dbt's subprocess
    too) as soon as ``reached(output so far)`` holds; return the output. Fails if the step ends first."""
    process = subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(process.stdout), daemon=True)
    reader.start()
    deadline = time.monotonic() + STEP_TIMEOUT_S
    try:
        while not reached("".join(output)):
            assert process.poll() is None, (
                f"{args[1:]} ended (exit {process.returncode}) before the kill point:\n" + "".join(output)[-3000:]
            )
            assert time.monotonic() < deadline, f"{args[1:]} did not reach the kill point in {STEP_TIMEOUT_S} s"
            time.sleep(0.02)
        os.killpg(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=60)
        reader.join(timeout=10)
        # The step's children (dbt) die on their own schedule; until they have, one may still hold the
        # warehouse's file lock, and the next step would fail on it instead of testing recovery.
        _wait_until_exited(process.pid)
    assert process.returncode == -signal.SIGKILL, f"{args[1:]} exited {process.returncode}, it was not killed"
    return "".join(output)


def _wait_until_exited(group: int, timeout_s: float = 60) -> None:
    """Wait until no thread of any process of the process group ``group`` is running.

    Threads, not processes: a SIGKILLed multi-threaded process (dbt with DuckDB's threads) shows its
    leader as a zombie while its other threads are still exiting and holding its files, the
    warehouse lock included. Exited threads not yet reaped hold nothing and count as gone."""
    deadline = time.monotonic() + timeout_s
    while True:
        running = []
        for stat in Path("/proc").glob("[0-9]*/task/[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue  # it exited while we looked
            state, process_group = fields[0], int(fields[2])
            if process_group == group and state not in ("Z", "X"):
                running.append(f"{stat.parent.parent.parent.name}/{stat.parent.name}")
        if not running:
            return
        assert time.monotonic() < deadline, f"thread(s) {running} of the killed step still run"
        time.sleep(0.05)


def _crash_at(step: str, statement_prefix: str, count: int, env: dict[str, str]) -> str:
    """Run `crm <step>` through the crashing driver; it must die by SIGKILL at the given statement."""
    completed = subprocess.run(
        [sys.executable, "-c", CRASHING_DRIVER, step, statement_prefix, str(count)],
        env=env,
        capture_output=True,
        text=True,
        timeout=STEP_TIMEOUT_S,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == -signal.SIGKILL, f"crm {step} exited {completed.returncode}:\n{output[-3000:]}"
    assert "crashing after:" in output
    return output


def _loaded_sources(settings: Settings) -> set[str]:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return {
            row[0]
            for row in con.execute(
                f"select source from {LOAD_LOG_TABLE} where partition_date = ?", [settings.as_of_date]
            ).fetchall()
        }


def _assert_recovered(settings: Settings, published_before: dict[str, str]) -> None:
    """The warehouse opens read-write (DuckDB replays or discards its WAL) and BI reads the previous copy."""
    with duckdb.connect(str(settings.warehouse_path)) as con:
        assert con.execute(f"select count(*) from {LOAD_LOG_TABLE}").fetchone()[0] > 0
    assert pipeline.published_checksums(settings) == published_before


def test_a_daily_run_killed_in_every_step_converges_to_the_uninterrupted_run(daily_runs, tmp_path):
    """About 1.5 minutes: four `crm` steps killed and each rerun (a dbt build among them); the first
    file to ask for the daily history builds it (2 to 3 minutes, shared with two other files)."""
    previous_day, day = daily_runs.days[-2], daily_runs.days[-1]
    home = tmp_path / "crash"
    shutil.copytree(daily_runs.after_first_day, home)
    settings = daily_runs.settings(home, day)
    env = daily_runs.env(settings)
    published_before = pipeline.published_checksums(settings)
    assert published_before == daily_runs.checksums[previous_day]

    # Mid load: killed once the first source (the customer master) has committed the day.
    _kill_when([_crm(), "load"], env, lambda output: "source customers: loaded" in output)
    partial = _loaded_sources(settings)
    assert "customers" in partial and "web_sessions" not in partial
    _assert_recovered(settings, published_before)
    pipeline.load(settings)
    assert {"customers", "orders", "web_sessions"} <= _loaded_sources(settings)

    # Mid dbt build: killed while dbt executes the incremental customer_features.
    dbt_log = settings.dbt_artifacts_dir / "logs" / "dbt.log"
    log_start = dbt_log.stat().st_size

    def features_executing(_output: str) -> bool:
        with dbt_log.open(errors="replace") as log:
            log.seek(log_start)
            return "Began executing node model.crm.customer_features" in log.read()

    _kill_when([_crm(), "build"], env, features_executing)
    _assert_recovered(settings, published_before)
    pipeline.build_warehouse(settings)
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        leftovers = con.execute(
            "select table_schema || '.' || table_name from information_schema.tables "
            "where table_name like '%\\_\\_dbt\\_%' escape '\\'"
        ).fetchall()
    assert leftovers == []

    # Mid score write: the day's churn scores inserted, the transaction not committed.
    _crash_at("score --model churn", "insert into scores.churn", 1, env)
    _assert_recovered(settings, published_before)
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        assert con.execute("select count(*) from scores.churn where as_of_date = ?", [day]).fetchone()[0] == 0
    steps.score(settings)
    steps.monitor(settings)

    # Mid publish: three tables written whole into the next BI file (a copy of the previous one),
    # which is never renamed into place.
    _crash_at("publish", "create or replace table bi.", 3, env)
    assert settings.bi_warehouse_path.with_name(f".{settings.bi_warehouse_path.name}.publishing").exists()
    _assert_recovered(settings, published_before)
    pipeline.publish(settings)

    assert pipeline.published_checksums(settings) == daily_runs.checksums[day]
    assert not settings.bi_warehouse_path.with_name(f".{settings.bi_warehouse_path.name}.publishing").exists()

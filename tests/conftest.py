"""Shared fixtures: what is built once per session, and how a test gets a copy it may change.

docs/testing.md explains them; a new test uses these instead of building a pipeline of its own.
"""

from __future__ import annotations

import collections
import contextlib
import csv
import decimal
import hashlib
import io
import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import traceback
import uuid
import zipfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from filelock import FileLock

from crm import data_docs, pipeline, postgres
from crm.contact_rules import EMAIL_IN_TEXT, PHONE_IN_TEXT
from crm.contracts import CONTRACTS
from crm.generate import DefectRates, GeneratorConfig, generate
from crm.landing import partition_files
from crm.settings import Settings, hmac_pads
from crm.warehouse import DuckDBWarehouse, PostgresWarehouse
from ml import steps


def pytest_configure(config: pytest.Config) -> None:
    # Airflow creates its home on import; keep it out of the user's ~/airflow.
    os.environ.setdefault("AIRFLOW_HOME", str(Path(config.rootpath) / ".airflow" / "pytest"))
    # DAGs parsed in this process (a plain DagBag) have no metadata database for cosmos's dbt ls
    # cache, which lives in an Airflow Variable; the Airflow processes the tests start do cache.
    os.environ.setdefault("AIRFLOW__COSMOS__ENABLE_CACHE_DBT_LS", "False")
    os.environ.setdefault("AIRFLOW__COSMOS__ENABLE_TELEMETRY", "False")


# The order in which pytest-xdist hands out the test files (one file to one worker, see docs/testing.md):
# the longest first, so that the two workers end together; the files that read the end-to-end home
# after it is built (by the first file); those that share the daily history next to each other.
FILE_ORDER = (
    "test_spark_equivalence.py",
    "test_end_to_end.py",
    "test_postgres_stack.py",
    "test_crash_safety.py",
    "test_idempotency.py",
    "test_erasure.py",
    "test_engine_equivalence.py",
    "test_local_ui.py",
    "test_model_shift.py",
    "test_warehouse.py",
    "test_quality_gates.py",
    "test_preflight.py",
    "test_hostile_inputs.py",
    "test_privacy.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return FILE_ORDER.index(name) if name in FILE_ORDER else len(FILE_ORDER)

    items.sort(key=rank)  # stable: tests keep their order within a file


def built_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]) -> Path:
    """The folder ``name``, made by ``build(folder)`` once per test session: under pytest-xdist the
    first worker that asks builds it while the others wait, then all read it. A failed build is
    reported to every test that asks, without building again."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the workers' base folders share this parent
    folder, done, failed = root / name, root / f"{name}.done", root / f"{name}.failed"
    with FileLock(str(root / f"{name}.lock")):
        if failed.exists():
            pytest.fail(f"building {name} failed in another worker:\n{failed.read_text()}")
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            try:
                build(folder)
            except BaseException:
                failed.write_text(traceback.format_exc())
                raise
            done.touch()
    return folder


def copy_home(source: Path, target: Path) -> Path:
    """A copy of a built home that is a home of its own: the absolute paths that Airflow's config and
    metadata and MLflow's store keep (log folder, artifact locations, model sources) name the copy,
    so nothing run in the copy writes into the original. A file copy: milliseconds, not a rebuild."""
    shutil.copytree(source, target)
    old, new = f"{source.resolve()}/", f"{target.resolve()}/"
    config = target / ".airflow" / "airflow.cfg"
    if config.exists():
        config.write_text(config.read_text().replace(old, new))
    for store in (target / ".airflow" / "airflow.db", target / "mlflow" / "mlflow.db"):
        if store.exists():
            _replace_in_sqlite(store, old, new)
    return target


def _replace_in_sqlite(path: Path, old: str, new: str) -> None:
    with sqlite3.connect(path) as con:
        tables = [row[0] for row in con.execute("select name from sqlite_master where type = 'table'")]
        for table in tables:
            for column in [row[1] for row in con.execute(f'pragma table_info("{table}")')]:
                con.execute(
                    f'update "{table}" set "{column}" = replace("{column}", ?, ?) '
                    f'where typeof("{column}") = \'text\' and instr("{column}", ?) > 0',
                    [old, new, old],
                )


def settings_for(home: Path) -> Settings:
    return Settings.from_env(home=home)


def _delivered_records(landing: Path, source: str) -> int:
    """Records as delivered: CSV records after the header (quoted newlines included), non-blank JSON
    lines, Parquet rows."""
    contract = CONTRACTS[source]
    total = 0
    for path in (path for folder in (landing / source).glob("dt=*") for path in partition_files(contract, folder)):
        if contract.file_format == "parquet":
            total += pq.read_metadata(path).num_rows
        elif contract.file_format == "csv":
            rows = csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"), newline=""))
            total += sum(1 for row in list(rows)[1:] if row)
        else:
            total += sum(1 for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip())
    return total


@pytest.fixture
def delivered_records():
    """``delivered_records(landing_dir, source)``: how many records a source's landing files hold."""
    return _delivered_records


@pytest.fixture
def small_landing(tmp_path: Path) -> Settings:
    """A home with a small generated dataset (a few hundred customers, 60 days)."""
    settings = settings_for(tmp_path)
    generate(GeneratorConfig(customers=300, days=60), settings.landing_dir, settings.truth_dir)
    return settings


def run_crm(settings: Settings, *args: str, timeout: float = 900, **environment: str):
    """Run ``crm ARGS`` in a subprocess on the home of ``settings`` (plus ``environment``)."""
    return subprocess.run(
        [str(Path(sys.executable).with_name("crm")), *args],
        env={**os.environ, "CRM_HOME": str(settings.home), **environment},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def crm_command() -> Callable[..., subprocess.CompletedProcess[str]]:
    """``crm_command(settings, *args, **environment)``: run the `crm` command on a home, as a user does."""
    return run_crm


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, subprocess.CompletedProcess[str]]:
    """One real end-to-end run through Airflow (`crm run`, as `make run` does) in a fresh home, once per
    session: about one and a half to two and a half minutes (every DAG task, three trainings). Read it,
    never change it: a test that changes a home works on ``home_copy()``."""

    def run(home: Path) -> None:
        completed = run_crm(settings_for(home), "run")
        (home.parent / f"{home.name}.run.json").write_text(
            json.dumps({"returncode": completed.returncode, "stdout": completed.stdout, "stderr": completed.stderr})
        )

    home = built_once(tmp_path_factory, "pipeline_home", run)
    result = json.loads((home.parent / f"{home.name}.run.json").read_text())
    completed = subprocess.CompletedProcess(["crm", "run"], result["returncode"], result["stdout"], result["stderr"])
    return settings_for(home), completed


@pytest.fixture(scope="session")
def home_copy(pipeline_run, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Settings]:
    """``home_copy(name, **settings)``: a fresh copy of the end-to-end home, for a test that changes it."""

    def make(name: str, **overrides: object) -> Settings:
        home = copy_home(pipeline_run[0].home, tmp_path_factory.mktemp(name) / "home")
        return Settings.from_env(home=home, **overrides)

    return make


@pytest.fixture(scope="session")
def free_port():
    """A function that returns a loopback port nobody listens on right now."""

    def pick() -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]

    return pick


# The machine's PostgreSQL server (trust authentication) for the tests of the production configuration.
POSTGRES_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"


@pytest.fixture(scope="session")
def postgres_database() -> Callable[[str], contextlib.AbstractContextManager[str]]:
    """``with postgres_database(prefix) as url``: a database of the test's own on the local PostgreSQL
    server, dropped afterwards. Without a server the test skips with the reason, except under CI=true,
    where it fails."""
    return _postgres_database


@contextmanager
def _postgres_database(prefix: str) -> Iterator[str]:
    url = f"{POSTGRES_SERVER}/{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        postgres.create_database(url)
    except postgres.psycopg.OperationalError as error:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"no PostgreSQL server at {POSTGRES_SERVER}: {error}".strip())
    try:
        yield url
    finally:
        postgres.drop_database(url)


# Daily runs for the reliability tests (idempotency, crash safety): a small dataset, a 30-day churn
# window so a champion can be trained on 120 days, and the raw gate on each load's newest day only.
DAILY_RUN_DAYS = (date(2026, 11, 22), date(2026, 11, 23))


@dataclass
class DailyRuns:
    """Homes that run the daily steps (load, dbt build, score with every champion, publish) in-process,
    sharing one MLflow store (one champion, trained once) and one PII hash key."""

    root: Path
    days: tuple[date, ...] = DAILY_RUN_DAYS
    reference: Path = field(init=False)
    # The reference home copied right after the first day's run, and its published checksums per day.
    after_first_day: Path = field(init=False)
    checksums: dict[date, dict[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.reference = self.root / "reference"
        self.after_first_day = self.root / "reference_after_first_day"

    def settings(self, home: Path, day: date, **overrides: object) -> Settings:
        mlflow_dir = self.root / "mlflow"
        return Settings.from_env(
            home=home,
            as_of_date=day,
            churn_window_days=30,
            gate_recent_days=1,
            mlflow_tracking_uri=f"sqlite:///{mlflow_dir / 'mlflow.db'}",
            mlflow_artifacts_dir=mlflow_dir / "artifacts",
            # Only the reference generates the dbt docs site (test_idempotency reads it); the other
            # homes publish without: it costs a dbt run each and no test there reads it.
            **{"dbt_docs": home == self.reference, **overrides},
        )

    def env(self, settings: Settings) -> dict[str, str]:
        """The environment that gives a `crm` subprocess these settings."""
        return {
            **os.environ,
            "CRM_HOME": str(settings.home),
            "CRM_AS_OF_DATE": settings.as_of_date.isoformat(),
            "CRM_CHURN_WINDOW_DAYS": str(settings.churn_window_days),
            "CRM_GATE_RECENT_DAYS": str(settings.gate_recent_days),
            "CRM_DBT_DOCS": str(settings.dbt_docs).lower(),
            "CRM_MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
            "CRM_MLFLOW_ARTIFACTS_DIR": str(settings.mlflow_artifacts_dir),
        }

    def new_home(self, home: Path) -> Path:
        """A home with the reference's landing data and PII hash key (one deployment, another warehouse)."""
        shutil.copytree(self.reference / "data", home / "data")
        shutil.copytree(self.reference / ".crm", home / ".crm")
        return home

    @staticmethod
    def run_day(settings: Settings) -> None:
        """What crm_daily does for one day, minus the read-only mart gate; models without a champion skip."""
        pipeline.load(settings)
        pipeline.build_warehouse(settings)
        steps.score(settings)
        steps.monitor(settings)
        pipeline.publish(settings)


@pytest.fixture(scope="session")
def daily_runs(tmp_path_factory: pytest.TempPathFactory) -> DailyRuns:
    """The reference: the days of DAILY_RUN_DAYS run in order, without interruption, in one home; the
    champions are trained once, after the first day's build, in a copy of the reference: the training
    data (features at the training dates) is no part of what a daily run builds and publishes.
    Built once per session (about one to one and a half minutes: two days' load, build, scoring and
    publication, two trainings); tests make new homes beside it (``new_home``) or copy it."""

    def build(root: Path) -> None:
        runs = DailyRuns(root)
        first = runs.settings(runs.reference, DAILY_RUN_DAYS[0])
        # More persons with a second CRM record than by default, so that identity resolution links some
        # (the erasure test erases such a person).
        defects = replace(DefectRates(), duplicate_person=0.1)
        config = GeneratorConfig(customers=500, days=120, end_date=DAILY_RUN_DAYS[-1], defects=defects)
        generate(config, first.landing_dir, first.truth_dir)
        first.pii_hash_key()  # created once, copied into every other home
        for day in DAILY_RUN_DAYS:
            # A day's run (DailyRuns.run_day); on the first day the champions are trained between the
            # build and the scoring.
            settings = runs.settings(runs.reference, day)
            pipeline.load(settings)
            pipeline.build_warehouse(settings)
            if day == DAILY_RUN_DAYS[0]:
                training = runs.settings(runs.root / "training", day)
                shutil.copytree(runs.reference, training.home)
                pipeline.build_training_data(training)
                for model in ("churn", "segments"):
                    steps.train(training, model)
            steps.score(settings)
            # Drift against the reference profile the champion logged: its training date's features
            # are in the training copy only.
            steps.monitor(settings)
            pipeline.publish(settings)
            runs.checksums[day] = pipeline.published_checksums(settings)
            if day == DAILY_RUN_DAYS[0]:
                shutil.copytree(runs.reference, runs.after_first_day)
        (root / "checksums.json").write_text(
            json.dumps({day.isoformat(): tables for day, tables in runs.checksums.items()})
        )

    runs = DailyRuns(built_once(tmp_path_factory, "daily_runs", build))
    checksums = json.loads((runs.root / "checksums.json").read_text())
    runs.checksums = {date.fromisoformat(day): tables for day, tables in checksums.items()}
    return runs


# PII scans ----------------------------------------------------------------------------------------

EMAIL_TOKEN = re.compile(EMAIL_IN_TEXT)
PHONE_TOKEN = re.compile(PHONE_IN_TEXT)


class PiiScan:
    """Every email and phone the generator delivered, raw and normalised (what a leak could look like),
    and where to look for them: table values, files, zip members, SQLite stores.

    It extracts email- and phone-like tokens with two regular expressions and looks each one up in
    the set of generated values, so a scan takes seconds."""

    def __init__(self, landing_dir: Path) -> None:
        self.emails: set[str] = set()
        self.phone_digits: set[str] = set()
        for path in sorted((landing_dir / "customers").glob("dt=*/customers.csv")):
            with path.open(newline="", encoding="utf-8-sig") as file:
                for row in csv.DictReader(file):
                    email, phone = (row.get("email") or "").strip(), (row.get("phone") or "").strip()
                    if "@" in email:
                        self.emails.add(email.lower())
                    digits = re.sub(r"[^0-9]", "", phone)
                    if len(digits) >= 7:
                        self.phone_digits.add(digits)

    def found_in(self, text: str) -> set[str]:
        """The generated emails and phones ``text`` contains (normalised; hashing them keeps reports PII-free)."""
        hits = {token.lower() for token in EMAIL_TOKEN.findall(text)} & self.emails
        return hits | {re.sub(r"[^0-9]", "", token) for token in PHONE_TOKEN.findall(text)} & self.phone_digits

    def scan(self, texts: Iterable[tuple[str, str]], secret: str) -> tuple[dict[str, set[str]], int]:
        """(where -> the values found there, how many texts were scanned); ``secret`` counts as a leak too."""
        leaks: dict[str, set[str]] = {}
        scanned = 0
        for where, text in texts:
            scanned += 1
            hits = self.found_in(text)
            if secret in text:
                hits.add("<the PII hash key>")
            if hits:
                leaks.setdefault(where, set()).update(hits)
        return leaks, scanned

    def home_leaks(self, settings: Settings, *outputs: str) -> dict[str, set[str]]:
        """Leaks in what runs leave in a home: Airflow's logs, dbt's logs and artifacts, the Data Docs (and
        the validation results kept for them), the summary, the MLflow store and artifacts (when under
        the home), the BI copy, and ``outputs``."""
        folders = (settings.airflow_home / "logs", settings.dbt_artifacts_dir, settings.data_docs_dir)
        files = list(self.files(*folders, data_docs.validations_dir(settings)))
        assert any(path.suffix == ".log" for path in files), "no log to scan"
        texts = [
            *(("output", output) for output in outputs),
            ("run summary", settings.run_summary_path.read_text()),
            *(text for path in files for text in self.file_texts(path)),
        ]
        store = Path(settings.mlflow_tracking_uri.removeprefix("sqlite:///"))
        if store.is_relative_to(settings.home):
            artifacts = self.files(settings.mlflow_artifacts_dir)
            texts += [*self.sqlite_texts(store), *(text for path in artifacts for text in self.file_texts(path))]
        if settings.bi_warehouse_path.exists():
            with duckdb.connect(str(settings.bi_warehouse_path), read_only=True) as con:
                tables = con.execute("select table_schema, table_name from information_schema.tables").fetchall()
                texts += [
                    (f"bi {schema}.{name}.{column}", value)
                    for schema, name in tables
                    for column, value in self.text_values(con, schema, name)
                ]
        return self.scan(texts, settings.pii_hash_key())[0]

    @staticmethod
    def report(leaks: dict[str, set[str]]) -> str:
        """Where leaks were found, with fingerprints instead of the values (test output is a log too)."""
        return "; ".join(
            f"{where}: {len(values)} value(s), e.g. sha256 {hashlib.sha256(min(values).encode()).hexdigest()[:12]}"
            for where, values in sorted(leaks.items())[:20]
        )

    @staticmethod
    def text_values(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> Iterator[tuple[str, str]]:
        """(column, distinct value as text) of every column of one DuckDB table."""
        for column, column_type, *_ in con.execute(f'describe "{schema}"."{table}"').fetchall():
            if column_type in ("DATE", "BOOLEAN", "DOUBLE", "FLOAT") or column_type.startswith(
                ("TIMESTAMP", "DECIMAL")
            ):
                continue
            for (value,) in con.execute(
                f'select distinct cast("{column}" as varchar) from "{schema}"."{table}" where "{column}" is not null'
            ).fetchall():
                yield column, value

    @staticmethod
    def files(*folders: Path) -> Iterator[Path]:
        for folder in folders:
            if folder.is_dir():
                yield from (path for path in folder.rglob("*") if path.is_file())

    @staticmethod
    def file_texts(path: Path) -> Iterator[tuple[str, str]]:
        """The text of a file, and of every member when it is a zip archive (skops models, for one)."""
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                for member in archive.namelist():
                    yield f"{path}!{member}", archive.read(member).decode("utf-8", errors="ignore")
        else:
            yield str(path), path.read_bytes().decode("utf-8", errors="ignore")

    @staticmethod
    def sqlite_texts(path: Path) -> Iterator[tuple[str, str]]:
        """Every text value of every table of a SQLite database (the MLflow store)."""
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as con:
            tables = [row[0] for row in con.execute("select name from sqlite_master where type = 'table'")]
            for table in tables:
                for row in con.execute(f'select * from "{table}"'):
                    for value in row:
                        if isinstance(value, bytes):
                            value = value.decode("utf-8", errors="ignore")
                        if isinstance(value, str):
                            yield f"mlflow.db {table}", value


@pytest.fixture(scope="session")
def pii_scan() -> type[PiiScan]:
    """``pii_scan(landing_dir)``: a scanner for the PII a landing folder delivered (see PiiScan)."""
    return PiiScan


class EngineComparison:
    """Row-for-row comparison of a DuckDB warehouse with a PostgreSQL one: every table of the compared
    schemas as a multiset (order does not matter), doubles and numerics to 10 significant digits (the
    scores to 1e-9), dates and timestamps as ISO text, the columns that record when a run happened
    left out, and the landing folder's path made the same."""

    SCHEMAS = ("raw", "staging", "audit", "snapshots", "marts", "scores", "monitoring")
    # When a run happened, not what it computed (crm.pipeline.RUN_PROVENANCE_COLUMNS and the load times).
    RUN_TIME_COLUMNS = frozenset({"_loaded_at", "loaded_at", "scored_at", "computed_at", "loads_through"})
    SCORE_COLUMNS = frozenset({"churn_probability", "satisfied_probability"})

    @classmethod
    def normalised(cls, value: object, column: str, landing: tuple[str, str]) -> object:
        if isinstance(value, float | decimal.Decimal):
            number = float(value)
            if number != number:
                return "nan"
            return round(number, 9) if column in cls.SCORE_COLUMNS else f"{number:.10g}"
        if isinstance(value, date):  # datetimes too
            return value.isoformat()
        if isinstance(value, str):
            return value.replace(*landing)
        return value

    @classmethod
    def rows(
        cls, rows: list[tuple], columns: list[str], landing: tuple[str, str], ignored: frozenset[str]
    ) -> collections.Counter:
        """The rows as a multiset of normalised values, without the run-time and ``ignored`` columns."""
        kept = [index for index, column in enumerate(columns) if column not in cls.RUN_TIME_COLUMNS | ignored]
        return collections.Counter(
            tuple(cls.normalised(row[index], columns[index], landing) for index in kept) for row in rows
        )

    @classmethod
    def differences(
        cls,
        duckdb_path: Path,
        postgres_url: str,
        tables: dict[str, str],
        landing: tuple[str, str],
        pads: tuple[bytes, bytes],
        ignored: frozenset[str] = frozenset(),
    ) -> tuple[list[str], list[str]]:
        """The tables compared, and a line per table whose columns or rows differ (with examples).
        ``tables`` maps a DuckDB table to its PostgreSQL counterpart; ``pads`` are the PII hash key's (the
        staging views hash the ids of erased kinds); ``ignored`` columns are left out."""
        compared, differences = [], []
        with duckdb.connect(str(duckdb_path), read_only=True) as local, postgres.connect(postgres_url) as team:
            # Staging views hash the ids of the erased kinds: both sessions get the deployment's key.
            DuckDBWarehouse(local).set_pii_pads(*pads)
            PostgresWarehouse(team).set_pii_pads(*pads)
            for local_table, team_table in sorted(tables.items()):
                local_result = local.execute(f"select * from {local_table}")
                local_columns = [column[0] for column in local_result.description]
                local_rows = cls.rows(local_result.fetchall(), local_columns, landing, ignored)
                team_result = team.execute(f"select * from {team_table}")
                team_columns = [column.name for column in team_result.description]
                team_rows = cls.rows(team_result.fetchall(), team_columns, landing, ignored)
                compared.append(f"{local_table} ({sum(local_rows.values())} rows)")
                if local_columns != team_columns:
                    differences.append(
                        f"{local_table}: columns {local_columns} on DuckDB, {team_columns} on PostgreSQL"
                    )
                elif local_rows != team_rows:
                    # Only the first column of the rows that differ (a key): raw and staging rows hold contact details.
                    only_local = sorted({row[0] for row in (local_rows - team_rows).elements()}, key=str)[:5]
                    only_team = sorted({row[0] for row in (team_rows - local_rows).elements()}, key=str)[:5]
                    differences.append(
                        f"{local_table}: {sum(local_rows.values())} rows on DuckDB, {sum(team_rows.values())} on "
                        f"PostgreSQL; {local_columns[0]} of rows on DuckDB only {only_local}, "
                        f"on PostgreSQL only {only_team}"
                    )
        return compared, differences

    @classmethod
    def tables(cls, duckdb_path: Path, postgres_url: str) -> tuple[set[str], set[str]]:
        """The tables of the compared schemas on DuckDB and on PostgreSQL."""
        query = "select table_schema || '.' || table_name from information_schema.tables where table_schema = any(%s)"
        with duckdb.connect(str(duckdb_path), read_only=True) as local, postgres.connect(postgres_url) as team:
            on_postgres = {name for (name,) in team.execute(query, [list(cls.SCHEMAS)]).fetchall()}
            on_duckdb = {
                name
                for (name,) in local.execute(
                    query.replace("= any(%s)", "in (select unnest(?))"), [list(cls.SCHEMAS)]
                ).fetchall()
            }
        return on_duckdb, on_postgres

    @classmethod
    def warehouses(
        cls,
        settings: Settings,
        postgres_url: str,
        landing: tuple[str, str],
        ignored: frozenset[str] = frozenset(),
        not_compared: frozenset[str] = frozenset(),
    ) -> tuple[list[str], list[str]]:
        """Every table both warehouses hold (``settings``' DuckDB file and the PostgreSQL database), but
        ``not_compared``; a table on DuckDB only is a difference."""
        on_duckdb, on_postgres = cls.tables(settings.warehouse_path, postgres_url)
        missing = sorted(on_duckdb - on_postgres - not_compared)
        both = {table: table for table in (on_duckdb & on_postgres) - not_compared}
        pads = hmac_pads(settings.pii_hash_key())
        compared, differences = cls.differences(settings.warehouse_path, postgres_url, both, landing, pads, ignored)
        return compared, ([f"on DuckDB only: {missing}"] if missing else []) + differences


@pytest.fixture(scope="session")
def engines() -> type[EngineComparison]:
    """Compares a DuckDB warehouse with a PostgreSQL one row for row (see EngineComparison)."""
    return EngineComparison

"""The one settings object: every path, date and window of the platform, overridable from the environment.

Each field reads ``CRM_<FIELD>`` (upper case) when it is set and not empty. Data paths default
to locations under ``CRM_HOME`` and code assets (the dbt project, the expectation suites) to the
checkout, which is also the default home, so a clone runs with no configuration at all.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

# The checkout that holds this package (src/crm/settings.py → the repository root).
CHECKOUT = Path(__file__).resolve().parents[2]

# Warehouse tasks at once on a server by default (and dbt's threads there): most of the five trainings
# or scorings side by side, without asking more of a modest server than a few sessions.
SERVER_WAREHOUSE_SLOTS = 4
# Spark Connect's own default port (spark.connect.grpc.binding.port).
SPARK_CONNECT_DEFAULT_PORT = 15002


@dataclass(frozen=True)
class Settings:
    home: Path
    landing_dir: Path
    truth_dir: Path
    warehouse_path: Path
    # Where the warehouse lives: empty for the embedded DuckDB file at warehouse_path (the default), a
    # PostgreSQL URL (postgresql+psycopg://user:password@host:port/database) for a team warehouse, or
    # Apache Spark: spark+session:// (a Spark session in each process, master spark_master),
    # spark+connect://host:port (a cluster's Spark Connect server, for dbt and the platform's steps alike)
    # or spark://host:port (a cluster's Spark Thrift server for dbt, its Spark Connect for the steps).
    warehouse_url: str = dataclasses.field(repr=False)  # it may hold a password
    # On Spark: the session's master (local[2]: this machine's cores), and where its tables (Parquet) and
    # its metastore live; a cluster's own settings decide these for spark://.
    spark_master: str
    spark_dir: Path
    # A local session's driver heap (the JVM's -Xmx). Spark's own default, 1g, ran out of heap in the
    # load at 100,000 customers (3.6M web sessions appended from Arrow) and the session then hung.
    spark_driver_memory: str
    # More settings of a local Spark session, `key=value` pairs separated by commas (dbt's session is the
    # platform's, so both take them): tuning for a data size, such as code generation off for small data.
    spark_conf: str
    # On a Spark cluster (spark://host:port, dbt through its Thrift server): the Spark Connect endpoint
    # the platform's own steps (load, gates, scoring, publication) use, sc://host:port. Empty: the
    # Thrift server's host on Spark Connect's default port.
    spark_connect_url: str
    # The read-only copy BI tools query, replaced as a whole after each successful run.
    bi_warehouse_path: Path
    # On PostgreSQL: the role BI tools log in with; every publication grants it read access to the
    # published schemas (bi_marts, bi_monitoring, bi_scores), which are new each time. Empty: no grants.
    bi_reader_role: str
    dbt_project_dir: Path
    dags_dir: Path
    expectations_dir: Path
    data_docs_dir: Path
    # The monitoring report of each model (HTML with its plots), rewritten by every monitoring run.
    monitoring_reports_dir: Path
    mlflow_tracking_uri: str
    mlflow_artifacts_dir: Path
    run_summary_path: Path
    # The date the pipeline scores at; None means "the last delivered landing day".
    as_of_date: date | None
    # Order and sign-up dates before this are quarantined as implausibly early (1970-01-01 and
    # 1900-01-01 are what zero or empty values become in many exporters).
    earliest_plausible_date: date
    # How many days the as-of date may lie after the last delivered order day (a daily run before
    # the day's export arrived); further out the run stops before anything is built or trained.
    as_of_tolerance_days: int
    # Churn: no completed order within this many days after the as-of date.
    churn_window_days: int
    # Lifetime value: the models predict orders and spend in this many days after the as-of date;
    # None means the churn window (validation needs the horizon's outcomes delivered: at most that).
    clv_horizon_days: int | None
    # Recommendations: this many products per customer, graded on what customers buy in the churn window.
    recommendations_top_n: int
    # crm_daily refreshes the recommendations on this weekday only ("daily": every day): at a million
    # customers they are ten million rows a date; crm_pipeline and `crm score` refresh them at any date.
    recommendations_weekday: str
    # Churn drivers are carried forward from the date they were computed (a column says which) while the
    # customer stays in its risk band and its probability moves by at most this much since that date,
    # for at most churn_drivers_max_age_days; the others are explained again at each scoring date.
    churn_drivers_max_shift: float
    churn_drivers_max_age_days: int
    # Monitoring (ml.monitoring): an input or a score whose population stability index against the
    # data the scoring version trained on exceeds monitoring_psi_limit has drifted; a backtest whose
    # ROC-AUC falls more than monitoring_auc_margin below the version's validation ROC-AUC has degraded.
    # A backtest whose calibration error (ECE) exceeds monitoring_ece_limit has its champion recalibrated
    # on those outcomes (ml.calibration), promoted when that lowers the error out of sample.
    monitoring_psi_limit: float
    monitoring_auc_margin: float
    monitoring_ece_limit: float
    random_seed: int
    # Supervised models fit on a random sample of at most this many training examples (validation and
    # scoring use every customer): beyond a few hundred thousand rows more data hardly changes them.
    training_max_rows: int
    # The quality gates check the rows of the last this many days: each load's newest raw partitions
    # and the newest orders in the marts (older rows were checked when they were new).
    gate_recent_days: int
    # The mart gate blocks when a source's quarantined share of a recent day passes this (and the day
    # is large enough to judge: crm.gates.quarantine_frame), naming the dominant reason.
    quarantine_share_limit: float
    # The raw gate's daily row-count bounds per source: "learned" from the source's previous days (the
    # default, except for sources that arrive in bursts: "off"), "off", or fixed "MIN..MAX", as in
    # "customers=off,orders=100..5000" (a cohort whose sign-ups ended delivers empty customer days).
    row_count_bounds: str
    # Rebuild every incremental model from scratch (after a logic change, or to verify a run).
    full_refresh: bool
    # Whether the publication generates the dbt docs site (when the project or the tables changed since
    # it last did): off where nobody reads it, since it compiles the project and reads the catalog.
    dbt_docs: bool
    # Train a model again even when its training data, settings and code are those its latest version
    # learned from (by default such a training is skipped: it would register the same model again).
    retrain_unchanged: bool
    # Airflow's metadata database: SQLite under the home by default, PostgreSQL in production.
    airflow_database_url: str
    # When crm_daily runs on its own: a cron preset or expression, or "none" for triggered runs only.
    daily_schedule: str
    # crm_daily's schedule under `crm ui` (`make ui`): "none" by default, so the local console runs only
    # what is triggered (unpausing a scheduled DAG would start its latest interval's run beside it).
    ui_daily_schedule: str
    # How crm_daily shows the dbt build: "watch" (one dbt build, watched by a task per seed, snapshot
    # and model and one per model's tests), "model" (a task per node, each running dbt on its node) or
    # "build" (one task).
    daily_dbt_tasks: str
    # DuckDB's memory limit in the dbt build (beyond it DuckDB spills to disk). The full build at 1M
    # customers measured 4.36 GB peak RSS in 98 s with "4GB", 3.85 GB in 109 s with "3500MB" (the
    # default: the platform's peak stays under 4 GB) and 3.46 GB in 118 s with "3GB"; DuckDB's own
    # default (80% of the RAM) measured 9.3 GB.
    duckdb_memory_limit: str
    # Loopback ports of the local UIs (`make ui`).
    airflow_ui_port: int
    # Airflow's executor for `crm ui` and the compose stack: local (LocalExecutor, one machine) or celery
    # (CeleryExecutor: tasks go through the broker to workers, which may run on other hosts).
    airflow_executor: str
    celery_broker_url: str
    # Celery's result backend; empty: the Airflow metadata database ("db+" and its URL).
    celery_result_backend: str
    # Celery workers `crm ui` starts on this machine (each in a working directory of its own).
    celery_workers: int
    # How many tasks may use the warehouse at once (the Airflow pool crm_warehouse), and dbt's threads
    # on a server: 0 for the engine's own, one on DuckDB (a file has one writer; more is refused) and
    # SERVER_WAREHOUSE_SLOTS on a server, where independent dbt nodes, trainings and scorings overlap.
    warehouse_slots: int
    mlflow_ui_port: int
    # The analysts' dashboard over the BI copy (crm.dashboard), served beside the two UIs.
    dashboard_port: int
    # Object-store URLs (s3://bucket/prefix, or any fsspec URL) that workers on other hosts share; empty:
    # the local folders above only. The landing URL is mirrored into landing_dir before each load; the
    # dbt artifacts (manifest, run results, docs) and the Data Docs are uploaded after the step that
    # wrote them; MLflow's artifacts are written there directly (by the tracking server, or by the task
    # with a database-backed store). Credentials and endpoint: the store's own environment (AWS_*).
    landing_url: str
    dbt_artifacts_url: str
    data_docs_url: str
    mlflow_artifacts_url: str

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Build settings from ``overrides``, then ``CRM_*`` variables, then the defaults."""
        home_value = overrides.get("home") or os.environ.get("CRM_HOME") or CHECKOUT
        home = Path(str(home_value)).resolve()
        mlflow_dir = home / "mlflow"
        defaults: dict[str, object] = {
            "home": home,
            "landing_dir": demo_landing_dir(home),
            "truth_dir": home / "data" / "truth",
            "warehouse_path": home / "warehouse" / "crm.duckdb",
            "warehouse_url": "",
            "spark_master": "local[2]",
            "spark_dir": home / "warehouse" / "spark",
            "spark_driver_memory": "4g",
            "spark_conf": "",
            "spark_connect_url": "",
            "bi_warehouse_path": home / "warehouse" / "bi.duckdb",
            "bi_reader_role": "",
            "dbt_project_dir": CHECKOUT / "dbt_project",
            "dags_dir": CHECKOUT / "dags",
            "expectations_dir": CHECKOUT / "expectations",
            "data_docs_dir": home / "expectations" / "uncommitted" / "data_docs",
            "monitoring_reports_dir": home / "warehouse" / "monitoring",
            "mlflow_tracking_uri": f"sqlite:///{mlflow_dir / 'mlflow.db'}",
            "mlflow_artifacts_dir": mlflow_dir / "artifacts",
            "run_summary_path": home / "warehouse" / "run_summary.json",
            "as_of_date": None,
            "as_of_tolerance_days": 1,
            "earliest_plausible_date": date(1990, 1, 1),
            "churn_window_days": 90,
            "clv_horizon_days": None,
            "recommendations_top_n": 10,
            "recommendations_weekday": "monday",
            "churn_drivers_max_shift": 0.05,
            "churn_drivers_max_age_days": 28,
            # 0.1 to 0.25 is the usual "moderate shift" band of the population stability index.
            "monitoring_psi_limit": 0.2,
            "monitoring_auc_margin": 0.05,
            "monitoring_ece_limit": 0.03,
            "random_seed": 42,
            "training_max_rows": 300_000,
            "gate_recent_days": 7,
            "quarantine_share_limit": 0.05,
            "row_count_bounds": "",
            "full_refresh": False,
            "dbt_docs": True,
            "retrain_unchanged": False,
            "airflow_database_url": f"sqlite:///{home / '.airflow' / 'airflow.db'}",
            "daily_schedule": "@daily",
            "ui_daily_schedule": "none",
            "daily_dbt_tasks": "watch",
            "duckdb_memory_limit": "3500MB",
            "airflow_ui_port": 8080,
            "airflow_executor": "local",
            "celery_broker_url": "redis://127.0.0.1:6379/0",
            "celery_result_backend": "",
            "celery_workers": 1,
            "warehouse_slots": 0,
            "mlflow_ui_port": 5000,
            "dashboard_port": 8501,
            "landing_url": "",
            "dbt_artifacts_url": "",
            "data_docs_url": "",
            "mlflow_artifacts_url": "",
        }
        values: dict[str, object] = {}
        for field in fields(cls):
            if field.name == "home":
                values["home"] = home
                continue
            if field.name in overrides:
                values[field.name] = overrides[field.name]
                continue
            raw = os.environ.get(f"CRM_{field.name.upper()}", "")
            values[field.name] = _parse(field.name, raw) if raw and field.name != "home" else defaults[field.name]
        return cls(**values)  # type: ignore[arg-type]

    @property
    def warehouse_engine(self) -> str:
        """The warehouse's engine: duckdb (the embedded default), postgres or spark."""
        if self.warehouse_url.startswith("spark"):
            return "spark"
        return "postgres" if self.warehouse_url else "duckdb"

    @property
    def warehouse_pool_slots(self) -> int:
        """How many tasks may use the warehouse at once: one on DuckDB, warehouse_slots (or
        SERVER_WAREHOUSE_SLOTS) on a server."""
        if self.warehouse_engine == "duckdb":
            if self.warehouse_slots > 1:
                raise ValueError(
                    f"CRM_WAREHOUSE_SLOTS={self.warehouse_slots}: the embedded DuckDB warehouse allows one writer "
                    "at a time; leave it unset (or 1), or set CRM_WAREHOUSE_URL to a warehouse server"
                )
            return 1
        if self.spark_local_session:
            return 1  # a local session's embedded metastore admits one process at a time
        return self.warehouse_slots or SERVER_WAREHOUSE_SLOTS

    @property
    def dbt_threads(self) -> int:
        """dbt's threads: two in DuckDB's one writing process; four in a local Spark session, whose
        jobs share the process's executor; a session per thread on a server, as many as the pool."""
        if self.warehouse_engine == "duckdb":
            return 2
        if self.spark_local_session:
            return 4
        return self.warehouse_pool_slots

    @property
    def parallel_warehouse_tasks(self) -> bool:
        """Whether the DAGs run their trainings and scorings side by side (else one after another)."""
        return self.warehouse_pool_slots > 1

    @property
    def warehouse_location(self) -> str:
        """Where the warehouse is, fit to print: the DuckDB file, the PostgreSQL URL without its password,
        a local Spark session's folder, or the Spark cluster's endpoints."""
        if self.warehouse_engine == "postgres":
            from sqlalchemy.engine import make_url

            return make_url(self.warehouse_url).render_as_string(hide_password=True)
        if self.warehouse_engine == "spark":
            if self.spark_local_session:
                return f"the local Spark session's tables under {self.spark_dir}"
            if self.spark_connect_only:
                return f"the Spark cluster at {self.spark_connect_endpoint} (Spark Connect)"
            return f"the Spark cluster at {self.warehouse_url} (Spark Connect {self.spark_connect_endpoint})"
        return str(self.warehouse_path)

    @property
    def bi_location(self) -> str:
        """Where BI reads: the BI copy's file, or (PostgreSQL) the published schemas of the warehouse."""
        if self.warehouse_engine == "postgres":
            return f"schemas bi_marts, bi_monitoring and bi_scores of {self.warehouse_location}"
        if self.warehouse_engine == "spark":
            return f"views of the databases bi_marts, bi_monitoring and bi_scores of {self.warehouse_location}"
        return str(self.bi_warehouse_path)

    @property
    def celery_results_url(self) -> str:
        """Celery's result backend: celery_result_backend, or the Airflow metadata database."""
        return self.celery_result_backend or f"db+{self.airflow_database_url}"

    def recommendations_due(self, as_of: date) -> bool:
        """Whether crm_daily refreshes the recommendations at ``as_of`` (recommendations_weekday)."""
        return self.recommendations_weekday in ("daily", WEEKDAYS[as_of.weekday()])

    @property
    def clv_horizon(self) -> int:
        """The lifetime-value horizon in days: clv_horizon_days, or the churn window where unset."""
        return self.clv_horizon_days or self.churn_window_days

    @property
    def warehouse_dir(self) -> Path:
        return self.warehouse_path.parent

    @property
    def docs_dir(self) -> Path:
        return self.dbt_project_dir.parent / "docs"

    @property
    def bench_dir(self) -> Path:
        return self.dbt_project_dir.parent / "bench"

    @property
    def erasure_audit_path(self) -> Path:
        """The erasure audit log (crm.erasure): one JSON line per erasure, hashed ids only."""
        return self.warehouse_dir / "erasure_audit.jsonl"

    @property
    def airflow_home(self) -> Path:
        return self.home / ".airflow"

    @property
    def dbt_artifacts_dir(self) -> Path:
        """dbt's target and log folders: per home, so separate homes never share them."""
        return self.warehouse_dir / "dbt"

    def pii_hash_key(self) -> str:
        """The secret that keys the hashes standing in for PII outside the restricted schemas.

        ``CRM_PII_HASH_KEY`` in production (a secret store fills it); otherwise one generated per home
        and kept under it, readable only by the owner. Not a field, so it never shows in a repr or log.
        """
        return os.environ.get(PII_HASH_KEY_VARIABLE) or home_secret(
            self.home / ".crm" / "pii_hash_key", lambda: secrets.token_hex(32)
        )

    def hash_pii(self, value: str) -> str:
        """The keyed hash (HMAC-SHA256, hex) of one identifier, as audit logs store it."""
        return hmac.new(self.pii_hash_key().encode(), value.encode(), hashlib.sha256).hexdigest()

    def dbt_env(self) -> dict[str, str]:
        """Environment variables for a dbt invocation (dbt_project/profiles.yml reads them).

        The hash key and the warehouse password go by dbt's DBT_ENV_SECRET_ prefix, which dbt scrubs
        from its logs."""
        env = {
            "CRM_DBT_TARGET": self.dbt_target,
            "CRM_DBT_THREADS": str(self.dbt_threads),
            "CRM_WAREHOUSE_PATH": str(self.warehouse_path),
            "DBT_ENV_SECRET_PII_HASH_KEY": self.pii_hash_key(),
            "CRM_DUCKDB_MEMORY_LIMIT": self.duckdb_memory_limit,
            "DBT_PROFILES_DIR": str(self.dbt_project_dir),
            "DBT_TARGET_PATH": str(self.dbt_artifacts_dir / "target"),
            "DBT_LOG_PATH": str(self.dbt_artifacts_dir / "logs"),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        }
        if self.warehouse_engine == "postgres":
            from sqlalchemy.engine import make_url

            url = make_url(self.warehouse_url)
            inner, outer = hmac_pads(self.pii_hash_key())
            env |= {
                "CRM_POSTGRES_HOST": url.host or "localhost",
                "CRM_POSTGRES_PORT": str(url.port or 5432),
                "CRM_POSTGRES_USER": url.username or "postgres",
                "CRM_POSTGRES_DATABASE": url.database or "postgres",
                "DBT_ENV_SECRET_POSTGRES_PASSWORD": url.password or "",
                # libpq's session settings for every connection dbt opens: the PII hash pads that
                # the hash_pii macro reads (dbt passes no settings of its own to PostgreSQL).
                "PGOPTIONS": f"-c crm.pii_hmac_inner={inner.hex()} -c crm.pii_hmac_outer={outer.hex()}",
            }
        if self.warehouse_engine == "spark":
            inner, outer = hmac_pads(self.pii_hash_key())
            if self.spark_connect_only:
                # The spark_connect target: dbt-spark's session mode, whose session pyspark opens on
                # the Spark Connect server SPARK_REMOTE names.
                env["SPARK_REMOTE"] = self.spark_connect_endpoint
            env |= {
                "CRM_SPARK_METHOD": "thrift" if self.spark_thrift else "session",
                "CRM_SPARK_HOST": self.spark_server[0],
                "CRM_SPARK_PORT": str(self.spark_server[1]),
                **{f"CRM_SPARK_{name.upper()}": value for name, value in self.spark_session_conf.items()},
                # Session settings the hash_pii macro reads (as ${spark.crm.pii_hmac_inner}): the SQL and
                # dbt's compiled files name them, never their values.
                "DBT_ENV_SECRET_PII_HMAC_INNER": inner.hex(),
                "DBT_ENV_SECRET_PII_HMAC_OUTER": outer.hex(),
            }
        return env

    @property
    def spark_local_session(self) -> bool:
        """Whether the warehouse is a Spark session inside each process (spark+session://)."""
        return self.warehouse_url.startswith("spark+session:")

    @property
    def dbt_target(self) -> str:
        """profiles.yml's target: the engine's, or spark_connect for a cluster's Spark Connect server."""
        return "spark_connect" if self.spark_connect_only else self.warehouse_engine

    @property
    def spark_connect_only(self) -> bool:
        """Whether dbt and the platform's steps both reach a cluster through Spark Connect
        (spark+connect://host:port)."""
        return self.warehouse_url.startswith("spark+connect:")

    @property
    def spark_thrift(self) -> bool:
        """Whether dbt reaches a cluster through its Spark Thrift server (spark://host:port)."""
        return self.warehouse_url.startswith("spark:")

    @property
    def spark_server(self) -> tuple[str, int]:
        """The Spark Thrift server's host and port (spark://host:port); ("NA", 0) without one."""
        from urllib.parse import urlsplit

        if not self.spark_thrift:
            return "NA", 0
        parts = urlsplit(self.warehouse_url)
        return parts.hostname or "localhost", parts.port or 10000

    @property
    def spark_connect_endpoint(self) -> str:
        """The Spark Connect endpoint of a cluster: spark+connect://host:port's own, else (spark://host:port)
        spark_connect_url, or the Thrift server's host on Spark Connect's default port."""
        from urllib.parse import urlsplit

        if self.spark_connect_only:
            parts = urlsplit(self.warehouse_url)
            return f"sc://{parts.hostname or 'localhost'}:{parts.port or SPARK_CONNECT_DEFAULT_PORT}"
        return self.spark_connect_url or f"sc://{self.spark_server[0]}:{SPARK_CONNECT_DEFAULT_PORT}"

    @property
    def spark_session_conf(self) -> dict[str, str]:
        """A local Spark session's settings, the same for dbt's session and the platform's own: the
        master, and the tables and the Derby metastore under spark_dir (not the working directory). The
        driver's JVM exits when its heap runs out: a session whose JVM has thrown OutOfMemoryError can
        hang its caller for ever, where an ended JVM fails the step with an error."""
        return {
            "master": self.spark_master,
            "driver_memory": self.spark_driver_memory,
            "warehouse_dir": str(self.spark_dir / "tables"),
            "metastore": f"jdbc:derby:;databaseName={self.spark_dir / 'metastore'};create=true",
            "driver_java_options": f"-Dderby.system.home={self.spark_dir} -XX:+ExitOnOutOfMemoryError",
        }


PII_HASH_KEY_VARIABLE = "CRM_PII_HASH_KEY"
SHA256_BLOCK_SIZE = 64


def hmac_pads(key: str) -> tuple[bytes, bytes]:
    """The inner and outer HMAC-SHA256 pads of ``key`` (RFC 2104)."""
    block = key.encode()
    if len(block) > SHA256_BLOCK_SIZE:
        block = hashlib.sha256(block).digest()
    block = block.ljust(SHA256_BLOCK_SIZE, b"\0")
    return bytes(byte ^ 0x36 for byte in block), bytes(byte ^ 0x5C for byte in block)


def home_secret(path: Path, make: Callable[[], str]) -> str:
    """A per-home secret, created once, readable only by the owner (never committed: under the home)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
            file.write(make())
    return path.read_text().strip()


def parse_row_count_bounds(text: str) -> dict[str, str | tuple[int, int]]:
    """``source=learned|off|MIN..MAX`` items, comma-separated, as a dict per source."""
    from crm.contracts import CONTRACTS

    bounds: dict[str, str | tuple[int, int]] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        source, _, mode = (piece.strip() for piece in item.partition("="))
        low, dots, high = mode.partition("..")
        if source not in CONTRACTS:
            raise ValueError(f"CRM_ROW_COUNT_BOUNDS: {item!r}: unknown source {source!r}")
        if mode in ("learned", "off"):
            bounds[source] = mode
        elif dots and low.isdigit() and high.isdigit() and int(low) <= int(high):
            bounds[source] = (int(low), int(high))
        else:
            raise ValueError(f"CRM_ROW_COUNT_BOUNDS: {item!r}: expected {source}=learned, =off or =MIN..MAX")
    return bounds


@cache
def dbt_project_vars() -> dict[str, Any]:
    """The vars of the checkout's dbt_project.yml: what dbt and the platform's Python define once there."""
    import yaml

    return yaml.safe_load((CHECKOUT / "dbt_project" / "dbt_project.yml").read_text())["vars"]


def demo_landing_dir(home: Path) -> Path:
    """The home's own landing folder: the default, and the only one demo data is ever generated into."""
    return home / "data" / "landing"


def parse_spark_conf(text: str) -> dict[str, str]:
    """``spark.key=value`` items, comma-separated, as a dict."""
    conf: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, equals, value = (piece.strip() for piece in item.partition("="))
        if not (equals and key.startswith("spark.") and value):
            raise ValueError(f"CRM_SPARK_CONF: {item!r}: expected spark.<setting>=<value>")
        conf[key] = value
    return conf


OBJECT_STORE_URLS = ("landing_url", "dbt_artifacts_url", "data_docs_url", "mlflow_artifacts_url")

# Settings that are a share or a difference of probabilities: between 0 and 1.
SHARES = ("quarantine_share_limit", "churn_drivers_max_shift", "monitoring_auc_margin", "monitoring_ece_limit")

_EXPECTED = {
    "quarantine_share_limit": "a share between 0 and 1, e.g. 0.05",
    "churn_drivers_max_shift": "a probability difference between 0 and 1, e.g. 0.05",
    "monitoring_psi_limit": "a positive number, e.g. 0.2",
    "monitoring_auc_margin": "a ROC-AUC difference between 0 and 1, e.g. 0.05",
    "monitoring_ece_limit": "a calibration error between 0 and 1, e.g. 0.03",
    "as_of_date": "YYYY-MM-DD",
    "earliest_plausible_date": "YYYY-MM-DD",
    "full_refresh": "true or false",
    "dbt_docs": "true or false",
    "retrain_unchanged": "true or false",
    "daily_dbt_tasks": "watch, model or build",
    "airflow_executor": "local or celery",
    "recommendations_weekday": "a weekday in English (monday ... sunday) or daily",
    **dict.fromkeys(OBJECT_STORE_URLS, "an object-store URL such as s3://bucket/prefix (empty: local folders only)"),
    "warehouse_url": "a PostgreSQL URL, postgresql+psycopg://user:password@host:port/database, spark+session://, "
    "spark+connect://host:port or spark://host:port (empty: DuckDB)",
}


WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _parse(name: str, text: str) -> object:
    variable = f"CRM_{name.upper()}"
    if name.endswith(("_dir", "_path")):
        return Path(text).resolve()
    if name == "spark_conf":
        parse_spark_conf(text)  # refuses a bad value now, naming the item it cannot read
        return text
    if name == "spark_connect_url" and not text.startswith("sc://"):
        raise ValueError(f"{variable}={text!r}: expected a Spark Connect URL, sc://host:port")
    if name == "row_count_bounds":
        parse_row_count_bounds(text)  # refuses a bad value now, naming the item it cannot read
        return text
    try:
        if name in ("as_of_date", "earliest_plausible_date"):
            return date.fromisoformat(text)
        if name in (
            "as_of_tolerance_days",
            "churn_window_days",
            "clv_horizon_days",
            "recommendations_top_n",
            "churn_drivers_max_age_days",
            "random_seed",
            "training_max_rows",
            "gate_recent_days",
            "airflow_ui_port",
            "celery_workers",
            "warehouse_slots",
            "mlflow_ui_port",
            "dashboard_port",
        ):
            return int(text)
        if name in SHARES:
            share = float(text)
            if not 0 <= share <= 1:
                raise ValueError
            return share
        if name == "monitoring_psi_limit":
            limit = float(text)
            if not limit > 0:
                raise ValueError
            return limit
        if name in ("full_refresh", "dbt_docs", "retrain_unchanged"):
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return text.lower() in ("true", "1", "yes")
        if name == "daily_dbt_tasks" and text not in ("watch", "model", "build"):
            raise ValueError
        if name == "airflow_executor" and text not in ("local", "celery"):
            raise ValueError
        if name == "recommendations_weekday":
            if text.lower() not in (*WEEKDAYS, "daily"):
                raise ValueError
            return text.lower()
        if name in OBJECT_STORE_URLS and "://" not in text:
            raise ValueError
        if name == "warehouse_url" and not text.startswith(
            ("postgresql://", "postgresql+", "spark://", "spark+session:", "spark+connect://")
        ):
            raise ValueError
    except ValueError:
        raise ValueError(
            f"{variable}={text!r} is not valid: expected {_EXPECTED.get(name, 'a whole number')}"
        ) from None
    return text

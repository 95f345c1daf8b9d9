from __future__ import annotations

import csv
import io
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from crm import pipeline
from crm.contracts import CONTRACTS
from crm.generate import GeneratorConfig, generate
from crm.settings import Settings


def pytest_configure(config: pytest.Config) -> None:
    # Airflow creates its home on import; keep it out of the user's ~/airflow.
    os.environ.setdefault("AIRFLOW_HOME", str(Path(config.rootpath) / ".airflow" / "pytest"))
    # DAGs parsed in this process (a plain DagBag) have no metadata database for cosmos's dbt ls
    # cache, which lives in an Airflow Variable; the Airflow processes the tests start do cache.
    os.environ.setdefault("AIRFLOW__COSMOS__ENABLE_CACHE_DBT_LS", "False")
    os.environ.setdefault("AIRFLOW__COSMOS__ENABLE_TELEMETRY", "False")


def settings_for(home: Path) -> Settings:
    return Settings.from_env(home=home)


def _delivered_records(landing: Path, source: str) -> int:
    """Records as delivered: CSV records after the header (quoted newlines included), non-blank JSON
    lines, Parquet rows."""
    contract = CONTRACTS[source]
    total = 0
    for path in (landing / source).glob(f"dt=*/{contract.file_name}"):
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


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, subprocess.CompletedProcess[str]]:
    """One real end-to-end run through Airflow (`crm run`, as `make run` does) in a fresh home."""
    home = tmp_path_factory.mktemp("pipeline_home")
    completed = subprocess.run(
        [str(Path(sys.executable).with_name("crm")), "run"],
        env={**os.environ, "CRM_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    return settings_for(home), completed


@pytest.fixture(scope="session")
def free_port():
    """A function that returns a loopback port nobody listens on right now."""

    def pick() -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]

    return pick


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
            **overrides,
        )

    def env(self, settings: Settings) -> dict[str, str]:
        """The environment that gives a `crm` subprocess these settings."""
        return {
            **os.environ,
            "CRM_HOME": str(settings.home),
            "CRM_AS_OF_DATE": settings.as_of_date.isoformat(),
            "CRM_CHURN_WINDOW_DAYS": str(settings.churn_window_days),
            "CRM_GATE_RECENT_DAYS": str(settings.gate_recent_days),
            "CRM_MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
            "CRM_MLFLOW_ARTIFACTS_DIR": str(settings.mlflow_artifacts_dir),
        }

    def new_home(self, name: str) -> Path:
        """A home with the reference's landing data and PII hash key (one deployment, another warehouse)."""
        home = self.root / name
        shutil.copytree(self.reference / "data", home / "data")
        shutil.copytree(self.reference / ".crm", home / ".crm")
        return home

    @staticmethod
    def run_day(settings: Settings) -> None:
        """What crm_daily does for one day, minus the read-only mart gate; models without a champion skip."""
        pipeline.load(settings)
        pipeline.build_warehouse(settings)
        pipeline.score(settings)
        pipeline.publish(settings)


@pytest.fixture(scope="session")
def daily_runs(tmp_path_factory: pytest.TempPathFactory) -> DailyRuns:
    """The reference: the days of DAILY_RUN_DAYS run in order, without interruption, in one home; the
    champions are trained once, after the first day's build, in a copy of the reference: the training
    data (features at the training dates) is no part of what a daily run builds and publishes."""
    runs = DailyRuns(tmp_path_factory.mktemp("daily_runs"))
    first = runs.settings(runs.reference, DAILY_RUN_DAYS[0])
    generate(GeneratorConfig(customers=500, days=120, end_date=DAILY_RUN_DAYS[-1]), first.landing_dir, first.truth_dir)
    first.pii_hash_key()  # created once, copied into every other home
    for day in DAILY_RUN_DAYS:
        settings = runs.settings(runs.reference, day)
        if day == DAILY_RUN_DAYS[0]:
            pipeline.load(settings)
            pipeline.build_warehouse(settings)
            training = runs.settings(runs.root / "training", day)
            shutil.copytree(runs.reference, training.home)
            pipeline.build_training_data(training)
            for model in ("churn", "segments"):
                pipeline.train(training, model)
        runs.run_day(settings)
        runs.checksums[day] = pipeline.published_checksums(settings)
        if day == DAILY_RUN_DAYS[0]:
            shutil.copytree(runs.reference, runs.after_first_day)
    return runs

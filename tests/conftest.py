from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

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
    completed = subprocess.run([str(Path(sys.executable).with_name("crm")), "run"], env={**os.environ, "CRM_HOME": str(home)},
                               capture_output=True, text=True, timeout=900)
    return settings_for(home), completed


@pytest.fixture(scope="session")
def free_port():
    """A function that returns a loopback port nobody listens on right now."""
    def pick() -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]

    return pick

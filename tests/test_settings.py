from datetime import date
from pathlib import Path

import pytest

from crm.settings import Settings


def test_paths_default_under_home(tmp_path: Path):
    settings = Settings.from_env(home=tmp_path)
    assert settings.warehouse_path == tmp_path / "warehouse" / "crm.duckdb"
    assert settings.landing_dir == tmp_path / "data" / "landing"
    assert settings.mlflow_tracking_uri == f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    assert (settings.dbt_project_dir / "dbt_project.yml").is_file()


def test_environment_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CRM_HOME", str(tmp_path))
    monkeypatch.setenv("CRM_AS_OF_DATE", "2026-03-01")
    monkeypatch.setenv("CRM_CHURN_WINDOW_DAYS", "60")
    monkeypatch.setenv("CRM_WAREHOUSE_PATH", str(tmp_path / "elsewhere.duckdb"))
    settings = Settings.from_env()
    assert settings.home == tmp_path
    assert settings.as_of_date == date(2026, 3, 1)
    assert settings.churn_window_days == 60
    assert settings.warehouse_path == tmp_path / "elsewhere.duckdb"


def test_bad_environment_value_names_the_variable(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CRM_AS_OF_DATE", "01/03/2026")
    with pytest.raises(ValueError, match="CRM_AS_OF_DATE"):
        Settings.from_env()

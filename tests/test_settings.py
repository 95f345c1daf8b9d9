from datetime import date
from pathlib import Path

import pytest

from crm import spark
from crm.settings import SERVER_WAREHOUSE_SLOTS, Settings, parse_row_count_bounds


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
    monkeypatch.setenv("CRM_CHURN_DRIVERS_MAX_SHIFT", "0.1")
    monkeypatch.setenv("CRM_WAREHOUSE_PATH", str(tmp_path / "elsewhere.duckdb"))
    settings = Settings.from_env()
    assert settings.home == tmp_path
    assert settings.as_of_date == date(2026, 3, 1)
    assert settings.churn_window_days == 60
    assert settings.clv_horizon == 60, "the lifetime-value horizon follows the churn window unless set"
    assert settings.churn_drivers_max_shift == 0.1
    assert settings.warehouse_path == tmp_path / "elsewhere.duckdb"
    monkeypatch.setenv("CRM_CLV_HORIZON_DAYS", "30")
    assert Settings.from_env().clv_horizon == 30


def test_bad_environment_value_names_the_variable(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CRM_AS_OF_DATE", "01/03/2026")
    with pytest.raises(ValueError, match="CRM_AS_OF_DATE"):
        Settings.from_env()


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("CRM_ROW_COUNT_BOUNDS", "customer=off", "unknown source 'customer'"),
        ("CRM_ROW_COUNT_BOUNDS", "orders=5..1", "expected orders=learned, =off or =MIN..MAX"),
        ("CRM_QUARANTINE_SHARE_LIMIT", "5%", "a share between 0 and 1"),
        ("CRM_AS_OF_TOLERANCE_DAYS", "one", "a whole number"),
        ("CRM_CHURN_DRIVERS_MAX_SHIFT", "5", "a probability difference between 0 and 1"),
        ("CRM_SPARK_CONF", "spark.sql.codegen.wholeStage=false, codegen=off", "'codegen=off': expected spark."),
        ("CRM_SPARK_CONNECT_URL", "spark-connect.internal:15002", "expected a Spark Connect URL, sc://host:port"),
    ],
)
def test_bad_gate_setting_names_the_variable_and_the_item(monkeypatch: pytest.MonkeyPatch, variable, value, message):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=variable) as error:
        Settings.from_env()
    assert message in str(error.value)


def test_gate_settings_parse(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CRM_ROW_COUNT_BOUNDS", "customers=off, orders=100..5000")
    monkeypatch.setenv("CRM_QUARANTINE_SHARE_LIMIT", "0.2")
    settings = Settings.from_env()
    assert parse_row_count_bounds(settings.row_count_bounds) == {"customers": "off", "orders": (100, 5000)}
    assert settings.quarantine_share_limit == 0.2


def test_extra_spark_settings_reach_the_local_session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from crm import spark

    monkeypatch.setenv("CRM_SPARK_CONF", "spark.sql.codegen.wholeStage=false, spark.sql.shuffle.partitions=4")
    conf = spark.session_conf(Settings.from_env(home=tmp_path, warehouse_url="spark+session://"))
    # Added to the platform's own, and overriding one of them.
    assert conf["spark.sql.codegen.wholeStage"] == "false" and conf["spark.sql.shuffle.partitions"] == "4"
    assert conf["spark.sql.sources.partitionOverwriteMode"] == "dynamic"


def test_the_warehouse_is_duckdb_unless_a_postgresql_url_is_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    assert Settings.from_env(home=tmp_path).warehouse_engine == "duckdb"
    assert Settings.from_env(home=tmp_path).dbt_env()["CRM_DBT_TARGET"] == "duckdb"
    monkeypatch.setenv("CRM_WAREHOUSE_URL", "postgresql+psycopg://crm@db.internal:5433/warehouse")
    settings = Settings.from_env(home=tmp_path)
    assert settings.warehouse_engine == "postgres"
    env = settings.dbt_env()
    assert (env["CRM_DBT_TARGET"], env["CRM_POSTGRES_HOST"], env["CRM_POSTGRES_PORT"]) == (
        "postgres",
        "db.internal",
        "5433",
    )
    assert (env["CRM_POSTGRES_USER"], env["CRM_POSTGRES_DATABASE"]) == ("crm", "warehouse")
    monkeypatch.setenv("CRM_WAREHOUSE_URL", "mysql://crm@db/warehouse")
    with pytest.raises(
        ValueError, match="CRM_WAREHOUSE_URL='mysql://crm@db/warehouse' is not valid: expected a PostgreSQL URL"
    ):
        Settings.from_env(home=tmp_path)


def test_recommendations_refresh_on_their_weekday_or_daily(monkeypatch):
    monday, tuesday = date(2026, 11, 23), date(2026, 11, 24)
    settings = Settings.from_env()
    assert settings.recommendations_due(monday) and not settings.recommendations_due(tuesday)
    monkeypatch.setenv("CRM_RECOMMENDATIONS_WEEKDAY", "Tuesday")
    assert Settings.from_env().recommendations_due(tuesday)
    monkeypatch.setenv("CRM_RECOMMENDATIONS_WEEKDAY", "daily")
    assert Settings.from_env().recommendations_due(monday) and Settings.from_env().recommendations_due(tuesday)
    monkeypatch.setenv("CRM_RECOMMENDATIONS_WEEKDAY", "weekly")
    with pytest.raises(ValueError, match="CRM_RECOMMENDATIONS_WEEKDAY='weekly' is not valid: expected a weekday"):
        Settings.from_env()


def test_the_celery_executor_keeps_results_in_the_airflow_database_unless_told(monkeypatch):
    monkeypatch.setenv("CRM_AIRFLOW_EXECUTOR", "celery")
    monkeypatch.setenv("CRM_AIRFLOW_DATABASE_URL", "postgresql+psycopg2://airflow@db:5432/airflow")
    settings = Settings.from_env()
    assert settings.airflow_executor == "celery"
    assert settings.celery_results_url == "db+postgresql+psycopg2://airflow@db:5432/airflow"
    monkeypatch.setenv("CRM_CELERY_RESULT_BACKEND", "redis://cache:6379/1")
    assert Settings.from_env().celery_results_url == "redis://cache:6379/1"
    monkeypatch.setenv("CRM_AIRFLOW_EXECUTOR", "kubernetes")
    with pytest.raises(ValueError, match="CRM_AIRFLOW_EXECUTOR='kubernetes' is not valid: expected local or celery"):
        Settings.from_env()


def test_the_warehouse_pool_is_sized_from_the_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from crm.orchestration import DBT_NODE_POOL, WAREHOUSE_POOL, pools

    duckdb = Settings.from_env(home=tmp_path)
    assert duckdb.warehouse_pool_slots == 1 and not duckdb.parallel_warehouse_tasks
    assert pools(duckdb)[WAREHOUSE_POOL][0] == pools(duckdb)[DBT_NODE_POOL][0] == 1
    assert duckdb.dbt_env()["CRM_DBT_THREADS"] == "2"
    monkeypatch.setenv("CRM_WAREHOUSE_SLOTS", "3")
    with pytest.raises(ValueError, match="CRM_WAREHOUSE_SLOTS=3: the embedded DuckDB warehouse allows one writer"):
        _ = Settings.from_env(home=tmp_path).warehouse_pool_slots
    monkeypatch.setenv("CRM_WAREHOUSE_URL", "postgresql+psycopg://crm@db.internal/warehouse")
    server = Settings.from_env(home=tmp_path)
    assert server.warehouse_pool_slots == 3 and server.parallel_warehouse_tasks
    assert server.dbt_env()["CRM_DBT_THREADS"] == "3"
    assert pools(server)[WAREHOUSE_POOL] == (3, "postgres: up to 3 warehouse tasks at once (CRM_WAREHOUSE_SLOTS)")
    monkeypatch.delenv("CRM_WAREHOUSE_SLOTS")
    assert Settings.from_env(home=tmp_path).warehouse_pool_slots == SERVER_WAREHOUSE_SLOTS


def test_a_spark_warehouse_is_a_local_session_or_a_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CRM_WAREHOUSE_URL", "spark+session://")
    local = Settings.from_env(home=tmp_path)
    env = local.dbt_env()
    assert local.warehouse_engine == env["CRM_DBT_TARGET"] == "spark" and env["CRM_SPARK_METHOD"] == "session"
    # Tables and metastore under the home, never in the working directory; one process at a time.
    assert env["CRM_SPARK_WAREHOUSE_DIR"] == str(tmp_path / "warehouse" / "spark" / "tables")
    assert str(tmp_path / "warehouse" / "spark" / "metastore") in env["CRM_SPARK_METASTORE"]
    # dbt's session and the platform's start their driver alike: Derby under the home, and a JVM that
    # ends when its heap runs out (a caller then gets an error instead of waiting for ever).
    java_options = env["CRM_SPARK_DRIVER_JAVA_OPTIONS"]
    assert f"-Dderby.system.home={tmp_path / 'warehouse' / 'spark'}" in java_options
    assert "-XX:+ExitOnOutOfMemoryError" in java_options
    assert spark.session_conf(local)["spark.driver.extraJavaOptions"] == java_options
    assert local.warehouse_pool_slots == 1 and env["CRM_DBT_THREADS"] == "4"
    # The hash key's pads reach the session as secrets dbt scrubs from its logs.
    assert len(env["DBT_ENV_SECRET_PII_HMAC_INNER"]) == len(env["DBT_ENV_SECRET_PII_HMAC_OUTER"]) == 128
    monkeypatch.setenv("CRM_WAREHOUSE_URL", "spark://spark-thrift.internal:10001")
    cluster = Settings.from_env(home=tmp_path)
    env = cluster.dbt_env()
    assert (env["CRM_SPARK_METHOD"], env["CRM_SPARK_HOST"], env["CRM_SPARK_PORT"]) == (
        "thrift",
        "spark-thrift.internal",
        "10001",
    )
    assert cluster.warehouse_pool_slots == SERVER_WAREHOUSE_SLOTS
    # The platform's own steps reach the cluster through Spark Connect: by default on the Thrift
    # server's host at Connect's own port.
    assert cluster.spark_connect_endpoint == "sc://spark-thrift.internal:15002"
    assert cluster.warehouse_location == (
        "the Spark cluster at spark://spark-thrift.internal:10001 (Spark Connect sc://spark-thrift.internal:15002)"
    )
    assert local.warehouse_location == f"the local Spark session's tables under {tmp_path / 'warehouse' / 'spark'}"
    monkeypatch.setenv("CRM_SPARK_CONNECT_URL", "sc://spark-connect.internal:15010")
    assert Settings.from_env(home=tmp_path).spark_connect_endpoint == "sc://spark-connect.internal:15010"
    assert "SPARK_REMOTE" not in env and cluster.dbt_target == "spark"
    # A cluster's Spark Connect server for everything: dbt's session mode opens its session there.
    monkeypatch.setenv("CRM_WAREHOUSE_URL", "spark+connect://spark-connect.internal:15003")
    connect = Settings.from_env(home=tmp_path)
    env = connect.dbt_env()
    assert (env["CRM_DBT_TARGET"], env["CRM_SPARK_METHOD"]) == ("spark_connect", "session")
    assert env["SPARK_REMOTE"] == connect.spark_connect_endpoint == "sc://spark-connect.internal:15003"
    assert connect.warehouse_engine == "spark" and not connect.spark_local_session
    assert connect.warehouse_pool_slots == SERVER_WAREHOUSE_SLOTS
    assert connect.warehouse_location == "the Spark cluster at sc://spark-connect.internal:15003 (Spark Connect)"
    monkeypatch.setenv("CRM_WAREHOUSE_URL", "spark+connect://spark-connect.internal")
    assert Settings.from_env(home=tmp_path).spark_connect_endpoint == "sc://spark-connect.internal:15002"


def test_shared_locations_take_object_store_urls_and_refuse_plain_paths(monkeypatch: pytest.MonkeyPatch):
    assert Settings.from_env().landing_url == ""  # the local landing folder only
    monkeypatch.setenv("CRM_LANDING_URL", "s3://crm-prod/landing")
    assert Settings.from_env().landing_url == "s3://crm-prod/landing"
    monkeypatch.setenv("CRM_DATA_DOCS_URL", "/shared/data_docs")
    with pytest.raises(ValueError, match="CRM_DATA_DOCS_URL='/shared/data_docs' is not valid"):
        Settings.from_env()

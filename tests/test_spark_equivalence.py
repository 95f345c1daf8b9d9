"""Engine equivalence on Apache Spark: a day's run gives the same rows on DuckDB and on Spark, first in
a local Spark session (CRM_WAREHOUSE_URL=spark+session://), then, from the mart gate on, on the same
warehouse served as a cluster serves it (spark+connect://): a Spark Connect server, the platform's
steps and dbt (the publication's build) its clients.

One delivery, two homes with a landing folder each (the same files) and one PII key: the first load
and build with the last days held back (on Spark without the data tests: the incremental build runs
them on every row); one customer erased on both engines; then those days, with an earlier day's
orders delivered again later and the erased customer's records delivered again (a second load, and
an incremental build: on Spark the raw tables are partitioned by delivery day and the incremental
models by a date, a build overwrites only the partitions it touches, the staging partition whose
orders all moved is dropped, and the base models that keep erased rows out are tables). After the
incremental build every raw, staging, audit and mart table is compared row for row with the engine
comparison of the PostgreSQL test (multisets, doubles to 10 significant digits, run times left out).
Then the rest of the day on both engines, Spark through its Connect server: the mart gate, the
scoring with the same champions (segmentation and churn, trained once on a copy of the DuckDB home,
churn with the preflight's minimum lowered for 200 customers), monitoring, the publication; the
score, monitoring and published tables are compared too (on Spark BI reads the views of bi_marts,
bi_monitoring and bi_scores, on DuckDB the BI copy's file). Last, a corrected re-delivery is loaded on
both.
"""

from __future__ import annotations

import collections
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest

from crm import erasure, pipeline, spark
from crm.contracts import CONTRACTS
from crm.dbt import run_dbt
from crm.generate import GeneratorConfig, generate
from crm.landing import LOAD_LOG_TABLE
from crm.pipeline import PUBLISHED_TABLES, RUN_LOG_TABLES
from crm.settings import Settings, hmac_pads
from crm.warehouse import (
    PUBLISHED_SCHEMA_PREFIX,
    DuckDBWarehouse,
    PublicationRefused,
    SparkWarehouse,
    publish_for_bi,
)
from ml import preflight, steps

END = date(2026, 11, 23)
HELD_BACK_FROM = END - timedelta(days=4)
SCHEMAS = ("raw", "staging", "audit", "marts")
# Each home has its landing folder and erases at its own time: the times of the files the erasure and
# the tests write, and of the erasure, differ.
ERASURE_TIMES = frozenset({"file_modified_ns", "erased_at"})
# Small data: compiling a query plan's Java code costs more than running it (a build took a tenth less
# without). Spark's expressions keep their own generated code: with none at all (its testing setting
# factoryMode=NO_CODEGEN) the catalog fails to list tables.
SMALL_DATA_SPARK_CONF = "spark.sql.codegen.wholeStage=false"
# Tables partitioned on Spark, and by what: a raw table, incremental models keyed by version, by order
# and by as-of date, a score and a monitoring table.
PARTITIONED = {
    "raw.orders": ["_partition_date"],
    "staging.stg_shop__orders": ["delivered_on"],
    "marts.fct_orders": ["order_date"],
    "marts.customer_features": ["as_of_date"],
    "scores.churn": ["as_of_date"],
    "monitoring.drift": ["scoring_date"],
}


@dataclass
class Build:
    loaded: dict[str, collections.Counter]
    spark_settings: Settings
    local_settings: Settings
    # The DuckDB home's landing folder and the Spark home's: raw rows name their files.
    landing: tuple[str, str]
    compared: list[str] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)
    gated: dict[str, object] = field(default_factory=dict)
    scored: dict[str, object] = field(default_factory=dict)
    monitored: dict[str, object] = field(default_factory=dict)
    published: dict[str, object] = field(default_factory=dict)
    erased: dict[str, dict] = field(default_factory=dict)
    victim: tuple[int, list[int]] = (0, [])
    partitions: dict[str, list[str]] = field(default_factory=dict)
    partition_days: dict[str, set[str]] = field(default_factory=dict)
    # A staging partition no new row touches: its files before and after the incremental build.
    untouched: tuple[str, set[str], set[str]] = ("", set(), set())
    moved: date | None = None


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory, engines, free_port) -> Iterator[Build]:
    if shutil.which("java") is None and os.environ.get("CI") != "true":
        pytest.skip("no Java for Spark here: `make java` installs Debian's OpenJDK 17 (as root)")
    root = tmp_path_factory.mktemp("spark")
    landings = {"duckdb": root / "duckdb-landing", "spark": root / "spark-landing"}
    generate(GeneratorConfig(customers=200, days=60, end_date=END), landings["duckdb"], root / "truth")
    shutil.copytree(landings["duckdb"], landings["spark"])
    held = {engine: _hold_back(landing, root / f"held-{engine}") for engine, landing in landings.items()}
    with pytest.MonkeyPatch.context() as patch, contextlib.ExitStack() as stack:
        patch.setenv("CRM_PII_HASH_KEY", "spark-equivalence-" + "0" * 46)
        # A 14-day churn window puts the validation date, where the segmentation trains, inside 60 days.
        # No dbt docs site: nothing here reads it.
        common = {"gate_recent_days": 1, "as_of_tolerance_days": 10, "churn_window_days": 14, "dbt_docs": False}
        local = Settings.from_env(home=root / "duckdb", landing_dir=landings["duckdb"], **common)
        # One MLflow store: both engines score with the same champion.
        on_spark = Settings.from_env(
            home=root / "spark",
            landing_dir=landings["spark"],
            warehouse_url="spark+session://",
            spark_conf=SMALL_DATA_SPARK_CONF,
            mlflow_tracking_uri=local.mlflow_tracking_uri,
            mlflow_artifacts_dir=local.mlflow_artifacts_dir,
            **common,
        )
        homes = (local, on_spark)
        try:
            loaded = {"duckdb": collections.Counter(), "spark": collections.Counter()}
            result = Build(loaded, on_spark, local, (str(landings["duckdb"]), str(landings["spark"])))
            for settings in homes:
                result.loaded[settings.warehouse_engine].update(pipeline.load(settings)["rows"])
                if settings is on_spark:
                    _build_without_data_tests(settings)
                else:
                    pipeline.build_warehouse(settings)
            # One customer erased between the builds: the held-back days deliver their records again.
            result.victim = _customer_delivered_again(local, held["duckdb"])
            request = root / "erase.txt"
            request.write_text(f"{result.victim[0]}\n")
            for settings in homes:
                result.erased[settings.warehouse_engine] = erasure.erase(settings, request, rebuild=False)
            for engine, landing in landings.items():
                for folder, target in held[engine]:
                    shutil.move(folder, target)
                result.moved = _deliver_again_later(landing, HELD_BACK_FROM)
            session = spark.session(on_spark)
            untouched_day = _day_no_later_order_touches(landings["spark"], result.moved).isoformat()
            before = _files(session, "staging.stg_shop__orders", f"delivered_on = '{untouched_day}'")
            for settings in homes:
                result.loaded[settings.warehouse_engine].update(pipeline.load(settings)["rows"])
                pipeline.build_warehouse(settings)
            after = _files(session, "staging.stg_shop__orders", f"delivered_on = '{untouched_day}'")
            result.untouched = (untouched_day, before, after)
            # Compared once, after the incremental build: Spark's statements cost a fraction of a second
            # to a second each.
            result.compared, result.differences = _compare(
                engines, local, on_spark, _warehouse_tables(local), result.landing
            )
            # The champion both score with, trained on a copy: the training data stays out of the compared marts.
            training = Settings.from_env(
                home=root / "training",
                landing_dir=landings["duckdb"],
                mlflow_tracking_uri=local.mlflow_tracking_uri,
                mlflow_artifacts_dir=local.mlflow_artifacts_dir,
                **common,
            )
            # The same warehouse on a cluster from here on: a server holds its metastore now, and the
            # platform's steps and dbt (the publication's build) are its Spark Connect clients. The
            # server starts while the champions train.
            spark.release()
            on_spark = replace(on_spark, warehouse_url=f"spark+connect://127.0.0.1:{free_port()}")
            result.spark_settings = on_spark
            homes = (local, on_spark)
            server_ready = stack.enter_context(spark_connect_server(on_spark, root / "spark-server.log"))
            shutil.copytree(local.home, training.home)
            pipeline.build_training_data(training)
            steps.train(training, "segments")
            # Churn too, so that monitoring has a champion to watch: 200 customers give fewer than the
            # 100 labels of each class the preflight asks for.
            patch.setattr(preflight, "MIN_LABELS_PER_CLASS", 20)
            steps.train(training, "churn")
            server_ready()
            session = spark.session(on_spark)
            for settings in homes:
                engine = settings.warehouse_engine
                result.gated[engine] = pipeline.gate_marts(settings)
                result.scored[engine] = {
                    model: scored.get("rows", "skipped") for model, scored in steps.score(settings).items()
                }
                monitored = steps.monitor(settings)
                result.monitored[engine] = {key: monitored[key] for key in ("drift_checked", "backtested", "alerts")}
                result.published[engine] = pipeline.publish(settings)
            compared, differences = _compare(
                engines, local, on_spark, _scored_and_published_tables(local), result.landing
            )
            result.compared += compared
            result.differences += differences
            result.partitions = {table: spark.partition_columns(session, table) for table in PARTITIONED}
            result.partition_days = {
                table: {row[0].split("=")[1] for row in session.sql(f"show partitions {table}").collect()}
                for table in ("raw.orders", "staging.stg_shop__orders")
            }
            yield result
        finally:
            spark.release()  # before the server stops (the stack's exit)


@contextlib.contextmanager
def spark_connect_server(settings: Settings, log: Path) -> Iterator[Callable[[], None]]:
    """Spark's Connect server, one JVM on loopback at the port of ``settings`` (spark+connect://),
    serving the warehouse of ``settings.spark_dir`` with a local session's settings: what a cluster's
    endpoint is to the platform, on one machine. Yields a function that waits until it listens."""
    import pyspark

    spark_home = Path(pyspark.__file__).parent
    conf = spark.session_conf(settings)
    port = int(settings.spark_connect_endpoint.rsplit(":", 1)[1])
    args = [
        str(spark_home / "bin" / "spark-submit"),
        "--class",
        "org.apache.spark.sql.connect.service.SparkConnectServer",
        f"--master={conf.pop('spark.master')}",
        f"--driver-memory={conf.pop('spark.driver.memory')}",
        f"--driver-java-options={conf.pop('spark.driver.extraJavaOptions')}",
        f"--conf=spark.hadoop.javax.jdo.option.ConnectionURL={conf.pop('javax.jdo.option.ConnectionURL')}",
        *(f"--conf={key}={value}" for key, value in conf.items()),
        "--conf=spark.sql.catalogImplementation=hive",
        "--conf=spark.connect.grpc.binding.address=127.0.0.1",
        f"--conf=spark.connect.grpc.binding.port={port}",
        "spark-internal",
    ]
    with log.open("w") as output:
        server = subprocess.Popen(
            args,
            env={**os.environ, "SPARK_HOME": str(spark_home), "SPARK_LOCAL_IP": "127.0.0.1"},
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def ready() -> None:
        deadline = time.monotonic() + 180
        while not _listening(port):
            assert server.poll() is None, f"the Spark Connect server ended: {log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"the Spark Connect server did not listen within 180 s: {log}"
            time.sleep(0.5)

    try:
        yield ready
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _build_without_data_tests(settings: Settings) -> None:
    """The first build's models without its data tests (pipeline.build_warehouse otherwise): no build
    has recorded tested loads yet, so the incremental build tests every row, on each engine once. Data
    tests cost a second or two each on Spark."""
    run_dbt(
        settings,
        ["build", "--exclude", pipeline.TRAINING_ONLY, pipeline.SCORE_READERS]
        + ["--exclude-resource-type", "test", "--exclude-resource-type", "unit_test"],
        pipeline.dbt_vars(settings),
    )


def _files(session, table: str, where: str) -> set[str]:
    return {row[0] for row in session.sql(f"select input_file_name() from {table} where {where}").collect()}


def _hold_back(landing: Path, held: Path) -> list[tuple[Path, Path]]:
    """Move the deliveries from HELD_BACK_FROM on out of the landing folder; where each goes back."""
    moved = []
    for source in CONTRACTS:
        for folder in sorted((landing / source).glob("dt=*")):
            if date.fromisoformat(folder.name[3:]) >= HELD_BACK_FROM:
                target = held / source / folder.name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(folder, target)
                moved.append((target, folder))
    return moved


def _loaded_order_files(landing: Path) -> dict[date, Path]:
    """The orders files of the days loaded first (before HELD_BACK_FROM)."""
    files = {
        date.fromisoformat(path.parent.name[3:]): path for path in (landing / "orders").glob("dt=*/orders.parquet")
    }
    return {day: path for day, path in sorted(files.items()) if day < HELD_BACK_FROM}


def _correct_orders(landing: Path) -> date:
    """Deliver the busiest loaded orders day again, corrected: one order less, and another order's
    status changed. Returns the day."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = _loaded_order_files(landing)
    day = max(files, key=lambda day: (pq.read_metadata(files[day]).num_rows, day))
    orders = pq.read_table(files[day]).slice(1)
    status = orders.column("status").to_pylist()
    status[0] = "cancelled" if status[0] != "cancelled" else "completed"
    column = orders.schema.get_field_index("status")
    orders = orders.set_column(column, "status", pa.array(status, orders.schema.field(column).type))
    pq.write_table(orders, files[day])
    return day


def _deliver_again_later(landing: Path, later: date) -> date:
    """Deliver the orders of the loaded day with the fewest again, unchanged, within ``later``'s orders:
    each order's kept version moves to ``later`` (the later delivery wins a tie), which empties the
    first day's partition of the staging table on Spark. Returns that day."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = _loaded_order_files(landing)
    target = landing / "orders" / f"dt={later.isoformat()}" / "orders.parquet"
    later_orders = pq.read_table(target)
    later_ids = set(later_orders.column("order_id").to_pylist())
    # Days none of whose orders ``later`` delivers already: one delivery holds an order once.
    ids = {day: set(pq.read_table(path).column("order_id").to_pylist()) for day, path in files.items()}
    counts = {day: len(ids[day]) for day in files if ids[day] and not ids[day] & later_ids}
    day = min(counts, key=lambda day: (counts[day], day))
    pq.write_table(pa.concat_tables([later_orders, pq.read_table(files[day]).cast(later_orders.schema)]), target)
    return day


def _customer_delivered_again(local: Settings, held: list[tuple[Path, Path]]) -> tuple[int, list[int]]:
    """A customer with at least two loaded orders whose records the held-back days deliver again
    (the most loaded orders): their id and loaded order ids."""
    import pyarrow.parquet as pq

    again = {
        customer
        for path, _ in held
        if path.parent.name == "orders"
        for customer in pq.read_table(path / "orders.parquet").column("customer_id").to_pylist()
    }
    with duckdb.connect(str(local.warehouse_path), read_only=True) as con:
        customer, order_ids = con.execute(
            "select customer_id, list(order_id order by order_id) from raw.orders "
            "where customer_id in (select unnest(?)) group by customer_id "
            "having count(*) >= 2 order by count(*) desc, customer_id limit 1",
            [sorted(again)],
        ).fetchone()
    return customer, order_ids


def _day_no_later_order_touches(landing: Path, moved: date) -> date:
    """The first loaded orders day, other than ``moved``, none of whose orders a later day delivers."""
    import pyarrow.parquet as pq

    later = {
        order_id
        for path in (landing / "orders").glob("dt=*/orders.parquet")
        if date.fromisoformat(path.parent.name[3:]) >= HELD_BACK_FROM
        for order_id in pq.read_table(path).column("order_id").to_pylist()
    }
    return min(
        day
        for day, path in _loaded_order_files(landing).items()
        if day != moved and not set(pq.read_table(path).column("order_id").to_pylist()) & later
    )


def _warehouse_tables(local: Settings) -> list[tuple[Path, str, str]]:
    """Every table of SCHEMAS in the DuckDB warehouse, and the Spark table of the same name."""
    with duckdb.connect(str(local.warehouse_path), read_only=True) as con:
        return [
            (local.warehouse_path, name, name)
            for (name,) in con.execute(
                "select table_schema || '.' || table_name from information_schema.tables "
                "where table_schema in (select unnest(?)) order by 1",
                [list(SCHEMAS)],
            ).fetchall()
        ]


def _scored_and_published_tables(local: Settings) -> list[tuple[Path, str, str]]:
    """The score tables, and every published table: in DuckDB's BI copy, and as Spark's bi_ views."""
    scores = [(local.warehouse_path, table, table) for table in PUBLISHED_TABLES if table.startswith("scores.")]
    computed = [table for table in PUBLISHED_TABLES if table not in RUN_LOG_TABLES]  # not the run logs
    return scores + [(local.bi_warehouse_path, table, PUBLISHED_SCHEMA_PREFIX + table) for table in computed]


def _compare(
    engines, local: Settings, on_spark: Settings, tables: list[tuple[Path, str, str]], landing: tuple[str, str]
) -> tuple[list[str], list[str]]:
    """Each (DuckDB file, table, Spark table) of ``tables``: the tables compared, and a line per table
    missing on Spark or with other columns or rows (``landing``: the DuckDB home's landing folder, and
    the Spark home's that stands for it in file names)."""
    pads = hmac_pads(local.pii_hash_key())
    compared, differences = [], []
    warehouse = SparkWarehouse(spark.session(on_spark))
    warehouse.set_pii_pads(*pads)
    for path, table, spark_table in tables:
        if not warehouse.table_exists(spark_table):
            differences.append(f"{spark_table}: missing on Spark")
            continue
        with duckdb.connect(str(path), read_only=True) as con:
            DuckDBWarehouse(con).set_pii_pads(*pads)
            result = con.execute(f"select * from {table}")
            columns = [column[0] for column in result.description]
            on_duckdb = engines.rows(result.fetchall(), columns, landing, ERASURE_TIMES)
        if sorted(warehouse.columns(spark_table)) != sorted(columns):
            differences.append(f"{table}: columns {columns} on DuckDB, {warehouse.columns(spark_table)} on Spark")
            continue
        selected = ", ".join(f"`{column}`" for column in columns)
        on_spark_rows = engines.rows(
            warehouse.rows(f"select {selected} from {spark_table}"), columns, landing, ERASURE_TIMES
        )
        compared.append(f"{spark_table} ({sum(on_duckdb.values())} rows)")
        if on_duckdb != on_spark_rows:
            # The first column only (a key): raw and staging rows hold contact details.
            only_duckdb = sorted({row[0] for row in (on_duckdb - on_spark_rows).elements()}, key=str)[:5]
            only_spark = sorted({row[0] for row in (on_spark_rows - on_duckdb).elements()}, key=str)[:5]
            differences.append(
                f"{spark_table}: {sum(on_duckdb.values())} rows on DuckDB, {sum(on_spark_rows.values())} on Spark; "
                f"{columns[0]} of rows on DuckDB only {only_duckdb}, on Spark only {only_spark}"
            )
    return compared, differences


def test_a_day_gives_the_same_rows_on_duckdb_and_spark(build):
    """Two loads and builds on each engine with an erasure between them, the second build incremental,
    then the gate, the scoring and the publication on each: about six minutes alone on two cores, nine
    beside the other test worker."""
    print(f"compared {len(build.compared)} tables: " + ", ".join(build.compared))
    assert build.loaded["spark"] == build.loaded["duckdb"] and sum(build.loaded["duckdb"].values()) > 0
    assert build.partitions == PARTITIONED
    # Raw partitions stay per delivery; the second build was incremental (a partition no new row
    # touches kept its files), and the staging partition whose every order was delivered again later
    # was emptied by it, and dropped.
    untouched_day, files_before, files_after = build.untouched
    assert files_before and files_after == files_before, build.untouched
    assert {build.moved.isoformat(), untouched_day} <= build.partition_days["raw.orders"], build.partition_days
    assert untouched_day in build.partition_days["staging.stg_shop__orders"]
    assert build.moved.isoformat() not in build.partition_days["staging.stg_shop__orders"], build.partition_days
    assert len(build.compared) >= 50 + len(PUBLISHED_TABLES), build.compared
    assert not build.differences, "\n".join(build.differences)
    assert build.gated["spark"] == build.gated["duckdb"], build.gated
    assert build.scored["spark"] == build.scored["duckdb"] and build.scored["duckdb"]["segments"] > 100, build.scored
    assert build.published["spark"] == build.published["duckdb"], build.published
    # Monitoring on Spark: the churn champion's drift at the scoring date, as on DuckDB (the monitoring
    # tables are among the published tables compared above).
    assert build.monitored["spark"] == build.monitored["duckdb"], build.monitored
    assert build.monitored["spark"]["drift_checked"].get("churn"), build.monitored


def test_the_published_views_on_spark_describe_their_tables(build):
    """BI reads views whose comments are the dbt project's table descriptions (column comments are
    left out on Spark: crm.spark._view_comment)."""
    session = spark.session(build.spark_settings)
    undescribed = [
        table for table in PUBLISHED_TABLES if not session.catalog.getTable(PUBLISHED_SCHEMA_PREFIX + table).description
    ]
    assert undescribed == []
    assert session.catalog.getTable("bi_marts.definitions").description.startswith("The definitions behind")


def test_a_publication_on_spark_refuses_contact_details_and_keeps_the_previous_one(build):
    """The PII guard of the publication on Spark: a table whose text holds an email address refuses the
    whole publication, and BI's views still read the previous one."""
    session = spark.session(build.spark_settings)
    before = session.sql("select count(*) from bi_marts.customer_360").collect()[0][0]
    session.sql("create database if not exists scratch")
    session.sql("create table scratch.leaky using parquet as select 'someone@example.com' as note")
    with pytest.raises(PublicationRefused, match="scratch.leaky looks like it holds raw contact details"):
        spark.publish_tables(session, ["marts.customer_360", "scratch.leaky"])
    assert session.sql("select count(*) from bi_marts.customer_360").collect()[0][0] == before > 0
    assert not session.catalog.databaseExists("bi_scratch")


def test_deleting_rows_on_spark_overwrites_only_the_partitions_that_held_them(build):
    """crm.spark.delete_rows on a partitioned table (as a corrected re-delivery's raw rows leave): the
    partitions holding deleted rows are written again with the rows they keep, one left empty is
    dropped, and the other partitions' files are not touched."""
    session = spark.session(build.spark_settings)
    session.sql("create database if not exists scratch")
    session.sql("drop table if exists scratch.parted")
    session.sql("create table scratch.parted (id int, day date) using parquet partitioned by (day)")
    session.sql(
        "insert into scratch.parted values (1, date'2026-01-01'), (2, date'2026-01-01'), "
        "(3, date'2026-01-02'), (4, date'2026-01-03')"
    )

    def files(day: str) -> set[str]:
        return {
            row[0] for row in session.sql(f"select input_file_name() from scratch.parted where day = '{day}'").collect()
        }

    untouched, rewritten = files("2026-01-03"), files("2026-01-01")
    assert spark.delete_rows(session, "scratch.parted", "id in (?, ?)", [2, 3]) == 2
    assert sorted(tuple(row) for row in session.table("scratch.parted").collect()) == [
        (1, date(2026, 1, 1)),
        (4, date(2026, 1, 3)),
    ]
    assert [row[0] for row in session.sql("show partitions scratch.parted").collect()] == [
        "day=2026-01-01",
        "day=2026-01-03",
    ]
    assert files("2026-01-03") == untouched and files("2026-01-01") != rewritten
    session.sql("drop table scratch.parted")


def test_a_raw_table_written_before_partitioning_is_partitioned_once_with_its_rows(build):
    """A Spark home from before the raw tables were partitioned: the next load finds its table
    unpartitioned, with the columns in DuckDB's order, and rewrites it partitioned by delivery day."""
    session = spark.session(build.spark_settings)
    session.sql("create table raw.legacy (id int, _partition_date date, note string) using parquet")
    session.sql("insert into raw.legacy values (1, date'2026-01-01', 'a'), (2, date'2026-01-02', 'b')")
    with duckdb.connect() as scratch:
        scratch.execute("create schema raw")
        scratch.execute("create table raw.legacy (id integer, _partition_date date, note varchar)")
        spark.ensure_tables_like(scratch, session, ["raw.legacy"], frozenset({"raw.legacy"}))
        spark.ensure_tables_like(scratch, session, ["raw.legacy"], frozenset({"raw.legacy"}))  # nothing more
    assert spark.partition_columns(session, "raw.legacy") == ["_partition_date"]
    assert sorted(tuple(row) for row in session.sql("select id, note, _partition_date from raw.legacy").collect()) == [
        (1, "a", date(2026, 1, 1)),
        (2, "b", date(2026, 1, 2)),
    ]
    session.sql("drop table raw.legacy")


def test_an_erasure_on_spark_deletes_what_it_deletes_on_duckdb_and_keeps_the_customer_out(build):
    """One customer erased on both engines between the builds: the same rows left the same tables.
    Their records delivered again afterwards wait in the raw tables of those deliveries only, staging
    keeps them out on both engines (the staging and audit tables compared above), and no other Spark
    table or published view holds the customer's ids."""
    on_spark, on_duckdb = build.erased["spark"], build.erased["duckdb"]
    assert on_spark["suppressed"] == on_duckdb["suppressed"] and on_spark["suppressed"]["customer_id"] >= 1
    # The snapshot is DuckDB's and PostgreSQL's only (dbt-spark snapshots need Delta).
    duckdb_deleted = {t: n for t, n in on_duckdb["removed"]["warehouse"].items() if not t.startswith("snapshots.")}
    victim, order_ids = build.victim
    assert on_spark["removed"]["warehouse"] == duckdb_deleted and duckdb_deleted["raw.orders"] >= len(order_ids)
    warehouse = SparkWarehouse(spark.session(build.spark_settings))
    suppressed = warehouse.rows("select source, sum(suppressed_rows) from audit.suppressed_rows group by source")
    assert dict(suppressed).get("orders", 0) >= 1, suppressed
    published_views = [
        (PUBLISHED_SCHEMA_PREFIX + table, column)
        for table in PUBLISHED_TABLES
        for column in warehouse.columns(PUBLISHED_SCHEMA_PREFIX + table)
    ]
    columns: dict[str, list[str]] = {}
    # The views read the publication's copies: the copies are not scanned twice.
    for relation, column in warehouse.base_table_columns(PUBLISHED_SCHEMA_PREFIX) + published_views:
        if column in ("customer_id", "order_id"):
            columns.setdefault(relation, []).append(column)
    residue = {}
    for relation, id_columns in columns.items():
        conditions, wanted = [], []
        for column in id_columns:
            ids = [victim] if column == "customer_id" else order_ids
            canonical = warehouse.try_bigint(f"trim(cast({column} as string))")
            conditions.append(f"{canonical} in ({', '.join('?' for _ in ids)})")
            wanted += ids
        # Raw rows delivered after the erasure wait there: staging keeps them out.
        later = f" and _partition_date < '{HELD_BACK_FROM.isoformat()}'" if relation.startswith("raw.") else ""
        hits = warehouse.row(f"select count(*) from {relation} where ({' or '.join(conditions)}){later}", wanted)[0]
        if hits:
            residue[relation] = hits
    assert not residue, residue


def test_a_publication_after_an_erasure_on_spark_keeps_no_earlier_copy(build):
    """A daily publication keeps the previous one's copies for reads in flight; a publication without
    partitions (an erasure's, crm.erasure.republish_bi) keeps none: they hold the erased rows. On a
    table of its own: the BI copy stays as the day published it."""
    session = spark.session(build.spark_settings)
    session.sql("create database if not exists scratch")
    session.sql("drop table if exists scratch.published")
    session.sql("create table scratch.published using parquet as select 1 as n")

    def copies() -> list[str]:
        return sorted(database.name for database in session.catalog.listDatabases("bi_scratch__v*"))

    daily = {"scratch.published": "n"}
    publish_for_bi(build.spark_settings, ["scratch.published"], daily)
    publish_for_bi(build.spark_settings, ["scratch.published"], daily)
    assert len(copies()) == 2, copies()
    kept = copies()
    publish_for_bi(build.spark_settings, ["scratch.published"])
    assert len(copies()) == 1 and copies()[0] not in kept, (kept, copies())
    assert session.sql("select n from bi_scratch.published").first()[0] == 1
    session.sql("drop database bi_scratch cascade")
    for database in copies():
        session.sql(f"drop database {database} cascade")


def test_a_corrected_redelivery_on_spark_replaces_its_days_raw_rows_as_on_duckdb(build, engines):
    """Last in this module (it loads into both homes): the busiest orders day delivered again corrected
    (one order less, a status changed) replaces that day's raw rows and nothing else, as on DuckDB, and
    makes the next build a full refresh on both."""
    loaded = {}
    for settings in (build.local_settings, build.spark_settings):
        day = _correct_orders(settings.landing_dir)
        loaded[settings.warehouse_engine] = pipeline.load(settings)["rows"]
        assert pipeline.refreshed_after_corrections(settings).full_refresh
    assert loaded["spark"] == loaded["duckdb"] and loaded["duckdb"].get("orders", 0) > 0, loaded
    tables = [(build.local_settings.warehouse_path, table, table) for table in ("raw.orders", LOAD_LOG_TABLE)]
    compared, differences = _compare(engines, build.local_settings, build.spark_settings, tables, build.landing)
    assert len(compared) == 2 and not differences, differences
    session = spark.session(build.spark_settings)
    deliveries = session.sql(
        f"select delivery from {LOAD_LOG_TABLE} where source = 'orders' and partition_date = ?", args=[day]
    )
    assert sorted(row[0] for row in deliveries.collect()) == [1, 2]

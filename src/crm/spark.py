"""The Apache Spark warehouse: the session, the raw layer loaded as Parquet tables, and the warehouse
layer's queries (crm.warehouse.SparkWarehouse).

dbt builds the project on Spark with dbt-spark (profiles.yml's ``spark`` and ``spark_connect`` targets).
Three ways to reach Spark:

- ``CRM_WAREHOUSE_URL=spark+session://``: a local session in each process, its tables (Parquet) and its
  Hive metastore (embedded Derby) under ``CRM_SPARK_DIR``. The embedded metastore admits one process at
  a time, so dbt runs inside the process that holds the session (crm.dbt runs it in-process there:
  dbt-spark's session mode takes the running session), and one warehouse task runs at a time.
- ``CRM_WAREHOUSE_URL=spark+connect://host:port``: a cluster's Spark Connect server, for dbt (dbt-spark's
  session mode, whose session pyspark opens on the server: SPARK_REMOTE) and the platform's own steps.
- ``CRM_WAREHOUSE_URL=spark://host:port``: a cluster's Spark Thrift server, which dbt reaches; the
  platform's own steps reach the same cluster through Spark Connect (``CRM_SPARK_CONNECT_URL``).

On a cluster every task has sessions of its own on the server's one metastore, so tasks run side by side.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa

from crm.contracts import CONTRACTS
from crm.settings import Settings, parse_spark_conf
from crm.table_docs import TableDoc

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from crm.landing import BatchGate

# Raw tables are partitioned by their delivery's day: a corrected re-delivery replaces its partitions only.
RAW_PARTITION = "_partition_date"

# DuckDB's types as Spark names them (those the raw layer uses).
_SPARK_TYPES = {
    "VARCHAR": "string",
    "BIGINT": "bigint",
    "INTEGER": "int",
    "SMALLINT": "smallint",
    "DOUBLE": "double",
    "FLOAT": "float",
    "DATE": "date",
    "TIMESTAMP": "timestamp",
    "TIMESTAMP WITH TIME ZONE": "timestamp",
    "BOOLEAN": "boolean",
    "BLOB": "binary",
}

_session: SparkSession | None = None


# Session settings the platform's SQL relies on, on a local session and on a cluster's alike (a
# cluster keeps its own for the rest). The metastore's filter parser refuses a column named with a
# leading underscore (the raw tables' _partition_date): Spark lists the partitions and prunes them itself.
RUNTIME_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.sources.partitionOverwriteMode": "dynamic",
    "spark.sql.hive.metastorePartitionPruning": "false",
}


def session_conf(settings: Settings) -> dict[str, str]:
    """The local session's Spark settings, as profiles.yml gives them to dbt's session."""
    conf = settings.spark_session_conf
    return {
        "spark.master": conf["master"],
        "spark.driver.memory": conf["driver_memory"],
        "spark.sql.warehouse.dir": conf["warehouse_dir"],
        "javax.jdo.option.ConnectionURL": conf["metastore"],
        "spark.driver.extraJavaOptions": conf["driver_java_options"],
        "spark.ui.enabled": "false",
        "spark.sql.shuffle.partitions": "2",
        **RUNTIME_CONF,
        "spark.ui.showConsoleProgress": "false",
        **parse_spark_conf(settings.spark_conf),
    }


def session(settings: Settings) -> SparkSession:
    """This process's Spark session, started on first use and kept: a local one (about five seconds),
    or a Spark Connect session of the cluster (spark+connect://, spark://), with RUNTIME_CONF set."""
    global _session
    if _session is None:
        from pyspark.sql import SparkSession

        if settings.spark_local_session:
            settings.spark_dir.mkdir(parents=True, exist_ok=True)
            builder = SparkSession.builder.enableHiveSupport()
            for key, value in session_conf(settings).items():
                builder = builder.config(key, value)
            _session = builder.getOrCreate()
            _session.sparkContext.setLogLevel("ERROR")
        else:
            _session = SparkSession.builder.remote(settings.spark_connect_endpoint).create()
            for key, value in RUNTIME_CONF.items():
                _session.conf.set(key, value)
    return _session


def release() -> None:
    """End this process's Spark session: a local one stops with its JVM, so that another process can
    open the embedded metastore; a Spark Connect one closes its connection. The next session() starts
    a new one."""
    global _session
    if _session is None:
        return
    if _session.__class__.__module__.startswith("pyspark.sql.connect"):
        _session.stop()
        _session = None
        # pyspark marks the process as a Spark Connect client: a local session could not start after it.
        os.environ.pop("SPARK_CONNECT_MODE_ENABLED", None)
        return
    from pyspark import SparkContext

    _session.stop()
    gateway = SparkContext._gateway
    if gateway is not None:
        process = getattr(gateway, "proc", None)
        gateway.shutdown()
        if process is not None:
            process.stdin.close()
            process.wait(timeout=60)
    SparkContext._gateway = None
    SparkContext._jvm = None
    _session = None


def arrow(spark: SparkSession, query: str, params: list[object] | None = None) -> pa.Table:
    return spark.sql(query, args=params or None).toArrow()


def spark_type(duckdb_type: str) -> str:
    return _SPARK_TYPES.get(duckdb_type, "string")


def ensure_tables_like(
    scratch: duckdb.DuckDBPyConnection,
    spark: SparkSession,
    tables: list[str],
    partitioned: frozenset[str] = frozenset(),
) -> None:
    """Create each of ``tables`` (schema.name) on Spark as a Parquet table with the columns it has on
    DuckDB, where it is missing; those in ``partitioned`` partitioned by ``_partition_date`` (Spark
    keeps a partition column last). Refuse one that exists with other columns, naming both lists; a
    table of ``partitioned`` written before it was partitioned is rewritten partitioned once."""
    from crm.landing import table_layout

    for table in tables:
        schema, name = table.split(".")
        layout = table_layout(scratch, table)
        partition = [RAW_PARTITION] if table in partitioned else []
        columns = [column for column, _ in layout if column not in partition] + partition
        spark.sql(f"create database if not exists {schema}")
        if not spark.catalog.tableExists(table):
            described = ", ".join(f"`{column}` {spark_type(kind)}" for column, kind in layout)
            partitioned_by = f" partitioned by ({RAW_PARTITION})" if partition else ""
            spark.sql(f"create table {table} ({described}) using parquet{partitioned_by}")
            continue
        existing = [column.name for column in spark.catalog.listColumns(table)]
        if sorted(existing) == sorted(columns) and partition and partition_columns(spark, table) != partition:
            _rewrite(spark, table, f"select {_quoted(columns)} from {table}", partition)
            existing = columns
        if existing != columns:
            raise ValueError(
                f"{table} has columns {existing} on Spark, the load writes {columns}: migrate or drop the table first"
            )


def partition_columns(spark: SparkSession, table: str) -> list[str]:
    """The partition columns of a Spark table, in order (none for an unpartitioned one)."""
    return [column.name for column in spark.catalog.listColumns(table) if column.isPartition]


def _quoted(columns: list[str]) -> str:
    return ", ".join(f"`{column}`" for column in columns)


def _rewrite(
    spark: SparkSession, table: str, rows: str, partition: list[str], params: list[object] | None = None
) -> None:
    """Replace ``table`` by ``rows`` (a query that may read it): written beside it, then swapped in.
    Between the drop and the rename a reader finds no table; a failure before the drop changes nothing."""
    rewritten = f"{table}__rewrite"
    partitioned_by = f" partitioned by ({_quoted(partition)})" if partition else ""
    spark.sql(f"drop table if exists {rewritten}")
    spark.sql(f"create table {rewritten} using parquet{partitioned_by} as {rows}", args=params or None)
    spark.sql(f"drop table {table}")
    spark.sql(f"alter table {rewritten} rename to {table}")


def append(spark: SparkSession, table: str, rows: pa.Table) -> int:
    """Append ``rows`` (the table's columns, in any order) to a Spark table as new Parquet files, into
    the partitions their values name."""
    if rows.num_rows:
        # insertInto matches columns by position, and Spark keeps partition columns last.
        spark.createDataFrame(rows.select(spark.table(table).columns)).write.insertInto(table)
    return rows.num_rows


def delete_rows(spark: SparkSession, table: str, condition: str, params: list[object] | None = None) -> int:
    """Delete the rows of ``table`` for which ``condition`` holds; how many. A Parquet file cannot delete
    rows in place: the partitions holding such rows are overwritten with the rows they keep (a
    partition left empty is dropped), and the others are not touched; an unpartitioned table is
    rewritten whole (macros/delete_rows.sql does the same in dbt's hooks)."""
    partition = partition_columns(spark, table)
    deleted = f"coalesce({condition}, false)"
    args = params or None
    if not partition:
        count = spark.sql(f"select count(*) from {table} where {deleted}", args=args).first()[0]
        if count:
            _rewrite(spark, table, f"select * from {table} where not {deleted}", [], params)
        return count
    columns = _quoted(partition)
    # The partitions holding rows to delete and how many go (pruned where the condition names them),
    # then how many rows those partitions hold.
    going = {
        tuple(row[:-1]): row[-1]
        for row in spark.sql(
            f"select {columns}, count(*) from {table} where {deleted} group by {columns}", args=args
        ).collect()
    }
    if not going:
        return 0
    in_touched = " or ".join(
        f"({_partition_values(partition, values, ' and ', '<=>')})" for values in sorted(going, key=str)
    )
    held = {
        tuple(row[:-1]): row[-1]
        for row in spark.sql(f"select {columns}, count(*) from {table} where {in_touched} group by {columns}").collect()
    }
    if any(held[values] > count for values, count in going.items()):
        # Dynamic partition overwrite (session_conf): only the partitions the kept rows fall in are replaced.
        spark.sql(
            f"insert overwrite table {table} partition ({columns}) "
            f"select {_quoted(spark.table(table).columns)} from {table} where ({in_touched}) and not {deleted}",
            args=args,
        )
    for values, count in going.items():
        if held[values] == count:  # every row of the partition goes
            spark.sql(
                f"alter table {table} drop if exists partition ({_partition_values(partition, values, ', ', '=')})"
            )
    return sum(going.values())


def rewrite_table(spark: SparkSession, table: str, query: str, params: list[object] | None = None) -> None:
    """Replace every row of an unpartitioned ``table`` by those of ``query``, which may read it: the rows
    are staged in a table of their own first (Spark cannot overwrite a table a query reads), then
    overwrite the table, which keeps its definition and column types."""
    if partition_columns(spark, table):
        raise ValueError(f"{table} is partitioned: rewrite_table replaces unpartitioned tables only")
    staged = f"{table}__staged"
    spark.sql(f"drop table if exists {staged}")
    spark.sql(f"create table {staged} using parquet as {query}", args=params or None)
    spark.sql(f"insert overwrite table {table} select {_quoted(spark.table(table).columns)} from {staged}")
    spark.sql(f"drop table {staged}")


def _partition_values(partition: list[str], values: tuple, separator: str, operator: str) -> str:
    """Each partition column compared with its value: a filter (`` and ``, ``<=>``) or a partition spec."""
    return separator.join(
        f"`{column}` {operator} {_literal(value)}" for column, value in zip(partition, values, strict=True)
    )


def _literal(value: object) -> str:
    """A partition value as a Spark SQL literal (Spark casts it to the column's type)."""
    if value is None:
        return "null"
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def load_landing(
    spark: SparkSession, landing_dir: Path, gate: BatchGate | None = None, up_to: date | None = None
) -> dict[str, int]:
    """Load the landing folder's new and re-delivered partitions into the Spark raw layer, with the same
    checks, quarantine and raw gate as the embedded warehouse; rows inserted per source.

    As on PostgreSQL (crm.postgres.load_landing), DuckDB reads and checks the deliveries in a scratch
    database seeded with what decides a load (the load log, the customer master's ids and days), where
    crm.landing.load_landing runs unchanged. Then the partitions of corrected re-deliveries leave the
    raw tables, the accepted sources' new rows are appended as Parquet files, the rejected lines too,
    and the load log is replaced. Spark has no transactions: a load that failed while writing leaves
    rows whose delivery the load log, written last, does not list; the next load removes them first
    (their partitions are then new to it, and load again whole).
    """
    from crm.landing import ERASED_IDS_TABLE, LOAD_LOG_TABLE, REJECTED_ROWS_TABLE, ensure_raw_schema, load_in_scratch

    raw_tables = [LOAD_LOG_TABLE, REJECTED_ROWS_TABLE, *(contract.raw_table for contract in CONTRACTS.values())]
    with (
        tempfile.TemporaryDirectory(prefix="crm-load-") as folder,
        duckdb.connect(f"{folder}/scratch.duckdb") as scratch,
    ):
        ensure_raw_schema(scratch)
        ensure_tables_like(
            scratch,
            spark,
            [*raw_tables, ERASED_IDS_TABLE],
            frozenset(contract.raw_table for contract in CONTRACTS.values()),
        )
        for contract in CONTRACTS.values():
            unlogged = (
                f"not exists (select 1 from {LOAD_LOG_TABLE} as loads where loads.source = '{contract.name}' "
                "and loads.file = _source_file and loads.delivery = _delivery)"
            )
            if spark.sql(f"select 1 from {contract.raw_table} where {unlogged} limit 1").count():
                delete_rows(spark, contract.raw_table, unlogged)
        load = load_in_scratch(scratch, lambda query: arrow(spark, query), landing_dir, gate, up_to)
        for source, day in load.corrected:
            delete_rows(spark, CONTRACTS[source].raw_table, "_partition_date = ?", [day])
            delete_rows(spark, REJECTED_ROWS_TABLE, "source = ? and partition_date = ?", [source, day])
        for contract in CONTRACTS.values():
            new_rows = f"select * from {contract.raw_table} where _source_file is not null"
            append(spark, contract.raw_table, scratch.sql(new_rows).to_arrow_table())
        append(spark, REJECTED_ROWS_TABLE, scratch.sql(f"select * from {REJECTED_ROWS_TABLE}").to_arrow_table())
        # Loads also update logged files (a touched, unchanged file's new size and time): written whole.
        spark.createDataFrame(scratch.sql(f"select * from {LOAD_LOG_TABLE}").to_arrow_table()).write.insertInto(
            LOAD_LOG_TABLE, overwrite=True
        )
    if load.problem is not None:
        raise load.problem
    return load.inserted


def publish_tables(
    spark: SparkSession, tables: list[str], keep_previous: bool = True, docs: Mapping[str, TableDoc] | None = None
) -> dict[str, int]:
    """Publish ``tables`` (schema.name) for BI: each is copied into a database of this publication's own,
    ``bi_<schema>__v<time>``, then the views BI reads, ``bi_<schema>.<name>``, are pointed at the copies.

    A table with raw PII or contact details in text refuses the whole publication before anything is
    written (crm.warehouse.refuse_pii), and a failed copy leaves the views on the previous
    publication. Spark's catalog has no transactions: each view switches at once, but a reader that
    queries two tables while the views switch (well under a second) may see one from each
    publication. The previous publication's copies stay for reads in flight (unless not
    ``keep_previous``: after an erasure they hold rows that must go); older ones are dropped.
    ``docs`` (crm.table_docs) give the views their comments (the tables' descriptions).
    Returns the rows published per table."""
    from datetime import UTC, datetime

    from crm.warehouse import PUBLISHED_SCHEMA_PREFIX, contact_details_in_text, refuse_pii

    for table in tables:
        if not spark.catalog.tableExists(table):
            raise ValueError(f"{table} does not exist: nothing was published")
        columns = [column.name for column in spark.catalog.listColumns(table)]
        refuse_pii(table, columns, lambda table=table: _contact_details(spark, table, contact_details_in_text))
    version = datetime.now(UTC).strftime("v%Y%m%d%H%M%S%f")
    rows: dict[str, int] = {}
    schemas = sorted({table.split(".")[0] for table in tables})
    try:
        for schema in schemas:
            copies = f"{PUBLISHED_SCHEMA_PREFIX}{schema}__{version}"
            spark.sql(f"create database {copies}")
            for table in (table for table in tables if table.split(".")[0] == schema):
                name = table.split(".")[1]
                spark.sql(f"create table {copies}.{name} using parquet as select * from {table}")
                rows[table] = spark.table(f"{copies}.{name}").count()
    except BaseException:
        # A failed copy is no publication: nothing of it stays to be taken for the previous one.
        for schema in schemas:
            spark.sql(f"drop database if exists {PUBLISHED_SCHEMA_PREFIX}{schema}__{version} cascade")
        raise
    for schema in schemas:
        published, copies = f"{PUBLISHED_SCHEMA_PREFIX}{schema}", f"{PUBLISHED_SCHEMA_PREFIX}{schema}__{version}"
        spark.sql(f"create database if not exists {published}")
        names = {table.split(".")[1] for table in tables if table.split(".")[0] == schema}
        for name in sorted(names):
            doc = (docs or {}).get(f"{schema}.{name}")
            spark.sql(f"create or replace view {published}.{name}{_view_comment(doc)} as select * from {copies}.{name}")
        for view in spark.catalog.listTables(published):
            if view.name not in names and not view.isTemporary:
                spark.sql(f"drop view if exists {published}.{view.name}")  # no longer published
        earlier = sorted(
            database.name for database in spark.catalog.listDatabases(f"{published}__v*") if database.name != copies
        )
        for database in earlier[:-1] if keep_previous else earlier:
            spark.sql(f"drop database {database} cascade")
    return rows


def _view_comment(doc: TableDoc | None) -> str:
    """A view's comment clause for ``doc`` (empty without one). The table's description only: Spark
    keeps a view's column comments only where its definition lists them, and a view defined so took
    about two seconds to create, against a tenth of one (measured on the Spark test's 22 views)."""
    if doc is None or not doc.description:
        return ""
    return f" comment {_text_literal(doc.description)}"


def _text_literal(text: str) -> str:
    """A Spark SQL string literal (Spark escapes with backslashes)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _contact_details(spark: SparkSession, table: str, find) -> dict[str, dict[str, int]]:
    """``find`` (crm.warehouse.contact_details_in_text, DuckDB SQL) over ``table``'s text columns, read
    from Spark into an in-memory DuckDB: one rule of what looks like an email or a phone on every engine."""
    text_columns = [field.name for field in spark.table(table).schema.fields if field.dataType.typeName() == "string"]
    if not text_columns:
        return {}
    selected = ", ".join(f"`{column}`" for column in text_columns)
    values = arrow(spark, f"select {selected} from {table}")
    with duckdb.connect() as con:
        con.register("candidate", values)
        return find(con, "candidate")

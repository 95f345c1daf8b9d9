"""Connections to the DuckDB warehouse and the one way rows are written back to it.

DuckDB allows one read-write process or many read-only ones per file, never both, so every
writer opens, writes and closes; readers use ``read_only=True``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pandas as pd

from crm.contact_rules import EMAIL_IN_TEXT, PHONE_IN_TEXT
from crm.contracts import PII_COLUMNS
from crm.settings import Settings
from crm.table_docs import TableDoc, comment_statements, published_docs

if TYPE_CHECKING:
    import psycopg

    from crm.landing import BatchGate


# On a warehouse server (PostgreSQL) BI reads the published copy of schema ``marts`` as ``bi_marts``,
# replaced as a whole after each run.
PUBLISHED_SCHEMA_PREFIX = "bi_"


class EngineNotSupported(RuntimeError):
    """A stage that runs on DuckDB only was asked to run on another warehouse."""


@contextmanager
def connect(settings: Settings, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    if settings.warehouse_engine != "duckdb":
        # Better no run than a run whose Python stages write to one warehouse and dbt to another.
        raise EngineNotSupported(
            f"CRM_WAREHOUSE_URL is set: every stage runs on {settings.warehouse_engine} through "
            "crm.warehouse.open_warehouse; this code opened the embedded DuckDB file directly "
            "(crm.warehouse.connect), which only tests and DuckDB's own tools may do"
        )
    if not read_only:
        settings.warehouse_dir.mkdir(parents=True, exist_ok=True)
    elif not settings.warehouse_path.exists():
        raise FileNotFoundError(f"warehouse {settings.warehouse_path} does not exist yet: run the pipeline first")
    con = duckdb.connect(str(settings.warehouse_path), read_only=read_only)
    try:
        yield con
    finally:
        con.close()


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """One transaction around the block: committed when it ends, rolled back when it raises, so
    that readers and a crash see all of its writes or none."""
    con.execute("begin transaction")
    try:
        yield con
    except BaseException:
        con.execute("rollback")
        raise
    # Outside the handler: DuckDB rolls a failed commit back itself, and a rollback then would fail
    # too and hide the commit's own error (a write conflict, a constraint).
    con.execute("commit")


class Warehouse:
    """What the pipeline's stages need of a warehouse, the same on every engine: rows of a query or a
    pandas frame of them, a statement, a transaction, a table's columns, whether it exists, and one
    partition of a table replaced by a frame. Queries use ``?`` placeholders and SQL that DuckDB and
    PostgreSQL read alike; frames come out with the dtypes DuckDB gives on both engines."""

    engine: str

    def rows(self, query: str, params: Sequence[object] = ()) -> list[tuple]:
        raise NotImplementedError

    def frame(self, query: str, params: Sequence[object] = ()) -> pd.DataFrame:
        raise NotImplementedError

    def execute(self, statement: str, params: Sequence[object] = ()) -> None:
        raise NotImplementedError

    def transaction(self) -> contextlib.AbstractContextManager[object]:
        raise NotImplementedError

    def modify(self, statement: str, params: Sequence[object] = ()) -> int:
        """Run an insert, update or delete; the number of rows it changed."""
        raise NotImplementedError

    def delete_rows(self, table: str, condition: str, params: Sequence[object] = ()) -> int:
        """Delete the rows of ``table`` for which ``condition`` holds; how many."""
        return self.modify(f"delete from {table} where {condition}", params)

    def rewrite_table(self, table: str, query: str, params: Sequence[object] = ()) -> None:
        """Replace every row of ``table`` by those of ``query``, which may read it; the table keeps its
        definition. Inside a transaction, readers see the old rows or the new ones."""
        staged = f"rewrite_{table.replace('.', '_')}"
        self.execute(f"create temp table {staged} as {query}", params)
        self.execute(f"delete from {table}")
        self.execute(f"insert into {table} select * from {staged}")
        self.execute(f"drop table {staged}")

    def ensure_erased_ids_table(self) -> None:
        """The right-to-be-forgotten suppression list's table exists (crm.landing.ERASED_IDS_DDL)."""
        from crm.landing import ERASED_IDS_DDL

        self.execute("create schema if not exists raw")
        self.execute(ERASED_IDS_DDL)

    def base_table_columns(self, skipped_schemas: str = "") -> list[tuple[str, str]]:
        """(schema.table, column) of every column of every base table (not views), in column order; not
        those of the schemas whose names start with ``skipped_schemas`` (when given)."""
        return self.rows(
            """
            select c.table_schema || '.' || c.table_name, c.column_name
            from information_schema.columns as c
            join information_schema.tables as t
                on t.table_catalog = c.table_catalog and t.table_schema = c.table_schema
                and t.table_name = c.table_name
            where t.table_type = 'BASE TABLE' and (? = '' or not starts_with(c.table_schema, ?))
            order by 1, c.ordinal_position""",
            [skipped_schemas, skipped_schemas],
        )

    def sql_type(self, standard: str) -> str:
        """The engine's name of a standard SQL type (text, double precision, ...)."""
        return standard

    def partitioned_by(self, column: str) -> str:
        """The end of a ``create table`` whose rows are replaced by ``column``'s values: partitions where
        the engine's tables are files (Spark), nothing where they change rows in place."""
        return ""

    def try_bigint(self, expression: str) -> str:
        """SQL reading ``expression`` as a bigint, null where it is none: DuckDB's ``try_cast``, which
        dbt's safe_cast macro makes the rule on every engine."""
        raise NotImplementedError

    def set_pii_pads(self, inner: bytes, outer: bytes) -> None:
        """Give this session the PII hash key's HMAC pads, as dbt's connections have them, so that it can
        read the staging views that hash ids (macros/hash_pii.sql)."""
        raise NotImplementedError

    def replace_partition(self, table: str, frame: pd.DataFrame, column: str, value: object) -> int:
        """Replace the rows of ``table`` whose ``column`` is ``value`` with ``frame`` in one transaction:
        readers see the old rows or the new ones, and a rerun never duplicates them. The frame's
        columns must be the table's, in order."""
        return self.replace_rows(table, frame, {column: value})

    def replace_rows(self, table: str, frame: pd.DataFrame, key: dict[str, object]) -> int:
        """``replace_partition`` with a key of several columns: the rows whose columns all equal ``key``'s values."""
        raise NotImplementedError

    def load_landing(
        self, landing_dir: Path, gate: BatchGate | None = None, up_to: date | None = None
    ) -> dict[str, int]:
        """Load the landing folder's new and corrected partitions into the raw layer, each source's batch
        checked, its bad lines quarantined and its raw gate passed before it commits
        (crm.landing.load_landing); rows inserted per source."""
        raise NotImplementedError

    def columns(self, table: str) -> list[str]:
        """The columns of ``table`` (schema.name) in order; empty when it does not exist."""
        schema, name = table.split(".")
        return [
            column
            for (column,) in self.rows(
                "select column_name from information_schema.columns where table_schema = ? and table_name = ? "
                "order by ordinal_position",
                [schema, name],
            )
        ]

    def catalog_columns(self) -> list[tuple]:
        """(schema, table, column, type) of every column of every table and view, sorted."""
        return self.rows(
            "select table_schema, table_name, column_name, data_type from information_schema.columns "
            "where table_schema not in ('information_schema', 'pg_catalog') order by 1, 2, 3, 4"
        )

    def _check_columns(self, table: str, frame: pd.DataFrame, ordered: bool = True) -> None:
        existing = self.columns(table)
        if (existing if ordered else sorted(existing)) != (list(frame.columns) if ordered else sorted(frame.columns)):
            raise ValueError(
                f"{table} has columns {existing}, the new rows have {list(frame.columns)}: "
                f"migrate or drop the table before writing rows of the new shape"
            )

    def row(self, query: str, params: Sequence[object] = ()) -> tuple:
        return self.rows(query, params)[0]

    def table_exists(self, qualified_name: str) -> bool:
        schema, name = qualified_name.split(".")
        return bool(
            self.row(
                "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
                [schema, name],
            )[0]
        )


class DuckDBWarehouse(Warehouse):
    engine = "duckdb"

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con

    def rows(self, query: str, params: Sequence[object] = ()) -> list[tuple]:
        return self.con.execute(query, list(params)).fetchall()

    def frame(self, query: str, params: Sequence[object] = ()) -> pd.DataFrame:
        return self.con.execute(query, list(params)).df()

    def execute(self, statement: str, params: Sequence[object] = ()) -> None:
        self.con.execute(statement, list(params))

    def transaction(self) -> contextlib.AbstractContextManager[object]:
        return transaction(self.con)

    def modify(self, statement: str, params: Sequence[object] = ()) -> int:
        return self.con.execute(statement, list(params)).fetchone()[0]

    def try_bigint(self, expression: str) -> str:
        return f"try_cast({expression} as bigint)"

    def set_pii_pads(self, inner: bytes, outer: bytes) -> None:
        from crm.dbt_pii import INNER_PAD_VARIABLE, OUTER_PAD_VARIABLE

        self.con.execute(f"set variable {INNER_PAD_VARIABLE} = ?", [inner])
        self.con.execute(f"set variable {OUTER_PAD_VARIABLE} = ?", [outer])

    def load_landing(
        self, landing_dir: Path, gate: BatchGate | None = None, up_to: date | None = None
    ) -> dict[str, int]:
        from crm.landing import load_landing

        return load_landing(self.con, landing_dir, gate, up_to)

    def replace_rows(self, table: str, frame: pd.DataFrame, key: dict[str, object]) -> int:
        try:
            with transaction(self.con):
                self._check_columns(table, frame)
                self.con.register("incoming_rows", frame)
                self.con.execute(f"delete from {table} where {_key_condition(key)}", list(key.values()))
                self.con.execute(f"insert into {table} by name select * from incoming_rows")
        finally:
            self.con.unregister("incoming_rows")
        return len(frame)


class PostgresWarehouse(Warehouse):
    engine = "postgres"

    def __init__(self, con: psycopg.Connection) -> None:
        self.con = con

    def rows(self, query: str, params: Sequence[object] = ()) -> list[tuple]:
        return self.con.execute(_postgres_placeholders(query), list(params)).fetchall()

    def frame(self, query: str, params: Sequence[object] = ()) -> pd.DataFrame:
        from crm import postgres

        return postgres.frame(self.con.execute(_postgres_placeholders(query), list(params)))

    def execute(self, statement: str, params: Sequence[object] = ()) -> None:
        self.con.execute(_postgres_placeholders(statement), list(params))

    def transaction(self) -> contextlib.AbstractContextManager[object]:
        return self.con.transaction()

    def modify(self, statement: str, params: Sequence[object] = ()) -> int:
        return self.con.execute(_postgres_placeholders(statement), list(params)).rowcount

    def try_bigint(self, expression: str) -> str:
        # Created by the dbt project's on-run-start hook (macros/safe_cast.sql), in the profile's schema.
        return f"public.crm_try_cast_bigint(cast({expression} as text))"

    def set_pii_pads(self, inner: bytes, outer: bytes) -> None:
        for name, pad in (("crm.pii_hmac_inner", inner), ("crm.pii_hmac_outer", outer)):
            self.con.execute("select set_config(%s, %s, false)", [name, pad.hex()])

    def load_landing(
        self, landing_dir: Path, gate: BatchGate | None = None, up_to: date | None = None
    ) -> dict[str, int]:
        from crm import postgres

        return postgres.load_landing(self.con, landing_dir, gate, up_to)

    def replace_rows(self, table: str, frame: pd.DataFrame, key: dict[str, object]) -> int:
        from crm import postgres

        with self.con.transaction():
            self._check_columns(table, frame)
            self.execute(f"delete from {table} where {_key_condition(key)}", list(key.values()))
            postgres.copy_frame(self.con, table, frame)
        return len(frame)


class SparkWarehouse(Warehouse):
    """A local Spark session (crm.spark): no transactions, so ``transaction`` only groups statements; a
    replaced partition is a rewrite of the table without it, then the new rows appended."""

    engine = "spark"

    def __init__(self, spark) -> None:
        self.spark = spark

    def rows(self, query: str, params: Sequence[object] = ()) -> list[tuple]:
        return [tuple(row) for row in self.spark.sql(query, args=list(params) or None).collect()]

    def frame(self, query: str, params: Sequence[object] = ()) -> pd.DataFrame:
        from crm import spark

        # Through DuckDB's conversion, as on PostgreSQL: the same dtypes on every engine.
        return duckdb.from_arrow(spark.arrow(self.spark, query, list(params))).df()

    def execute(self, statement: str, params: Sequence[object] = ()) -> None:
        self.spark.sql(statement, args=list(params) or None)

    def transaction(self) -> contextlib.AbstractContextManager[object]:
        return contextlib.nullcontext()

    def modify(self, statement: str, params: Sequence[object] = ()) -> int:
        raise EngineNotSupported(f"a Spark Parquet table cannot change rows in place: {statement.split()[0]}")

    def delete_rows(self, table: str, condition: str, params: Sequence[object] = ()) -> int:
        from crm import spark

        return spark.delete_rows(self.spark, table, condition, list(params))

    def rewrite_table(self, table: str, query: str, params: Sequence[object] = ()) -> None:
        from crm import spark

        spark.rewrite_table(self.spark, table, query, list(params))

    def ensure_erased_ids_table(self) -> None:
        from crm import spark
        from crm.landing import ERASED_IDS_TABLE, ensure_raw_schema

        if self.table_exists(ERASED_IDS_TABLE):
            return
        # The table as the load creates it: like DuckDB's (Spark's Parquet tables take no primary key).
        with duckdb.connect() as scratch:
            ensure_raw_schema(scratch)
            spark.ensure_tables_like(scratch, self.spark, [ERASED_IDS_TABLE])

    def base_table_columns(self, skipped_schemas: str = "") -> list[tuple[str, str]]:
        catalog = self.spark.catalog
        return [
            (f"{database.name}.{table.name}", column.name)
            for database in sorted(catalog.listDatabases(), key=lambda database: database.name)
            if not (skipped_schemas and database.name.startswith(skipped_schemas))
            for table in sorted(catalog.listTables(database.name), key=lambda table: table.name)
            if table.tableType in ("MANAGED", "EXTERNAL")
            for column in catalog.listColumns(f"{database.name}.{table.name}")
        ]

    def sql_type(self, standard: str) -> str:
        return {"text": "string", "double precision": "double"}.get(standard, standard)

    def partitioned_by(self, column: str) -> str:
        return f" using parquet partitioned by ({column})"

    def try_bigint(self, expression: str) -> str:
        # As the safe_cast macro on Spark: '12.0' and '1e3' read as DuckDB reads them.
        return (
            f"coalesce(try_cast({expression} as bigint), "
            f"try_cast(round(try_cast({expression} as decimal(38, 10))) as bigint))"
        )

    def set_pii_pads(self, inner: bytes, outer: bytes) -> None:
        self.spark.conf.set("spark.crm.pii_hmac_inner", inner.hex())
        self.spark.conf.set("spark.crm.pii_hmac_outer", outer.hex())

    def columns(self, table: str) -> list[str]:
        if not self.table_exists(table):
            return []
        schema, name = table.split(".")
        return [column.name for column in self.spark.catalog.listColumns(f"{schema}.{name}")]

    def table_exists(self, qualified_name: str) -> bool:
        return self.spark.catalog.tableExists(qualified_name)

    def catalog_columns(self) -> list[tuple]:
        # Spark's session catalog has no information_schema. Its listings include the session's
        # temporary views (dbt-spark's incremental models leave some), which belong to no database.
        catalog = self.spark.catalog
        return sorted(
            (database.name, table.name, column.name, column.dataType)
            for database in catalog.listDatabases()
            for table in catalog.listTables(database.name)
            if not table.isTemporary
            for column in catalog.listColumns(f"{database.name}.{table.name}")
        )

    def load_landing(
        self, landing_dir: Path, gate: BatchGate | None = None, up_to: date | None = None
    ) -> dict[str, int]:
        from crm import spark

        return spark.load_landing(self.spark, landing_dir, gate, up_to)

    def replace_rows(self, table: str, frame: pd.DataFrame, key: dict[str, object]) -> int:
        import pyarrow as pa

        from crm import spark

        # Spark keeps a partition column last: the frame's columns are matched by name (crm.spark.append).
        self._check_columns(table, frame, ordered=False)
        spark.delete_rows(self.spark, table, _key_condition(key), list(key.values()))
        return spark.append(self.spark, table, pa.Table.from_pandas(frame, preserve_index=False))


def _key_condition(key: dict[str, object]) -> str:
    return " and ".join(f"{column} = ?" for column in key)


def _postgres_placeholders(query: str) -> str:
    # psycopg takes %s; a literal % (as in like '%x') must be doubled.
    return query.replace("%", "%%").replace("?", "%s")


def warehouse_exists(settings: Settings) -> bool:
    """Whether there is a warehouse to read: the DuckDB file, or (PostgreSQL) always: the database is
    the deployment's."""
    return settings.warehouse_engine != "duckdb" or settings.warehouse_path.exists()


@contextmanager
def open_warehouse(settings: Settings, read_only: bool = False) -> Iterator[Warehouse]:
    """The warehouse of ``settings`` for the pipeline's bookkeeping queries, on its engine."""
    if settings.warehouse_engine == "postgres":
        from crm import postgres

        with postgres.connect(settings.warehouse_url, autocommit=True) as con:
            yield PostgresWarehouse(con)
    elif settings.warehouse_engine == "spark":
        from crm import spark

        # The session stays for the process's next steps (it takes seconds to start).
        yield SparkWarehouse(spark.session(settings))
    else:
        with connect(settings, read_only=read_only) as con:
            yield DuckDBWarehouse(con)


class PublicationRefused(ValueError):
    """A table would carry raw PII into the BI copy; nothing is published."""


# What raw contact details look like inside any text: an email address anywhere in a value; a phone
# number as a run of at least 7 digits with the usual separators, not glued to letters or digits
# (a hex hash holds digit runs too, always next to letters), and not an ISO date.
EMAIL_PATTERN = EMAIL_IN_TEXT
PHONE_PATTERN = rf"(^|[^0-9A-Za-z])({PHONE_IN_TEXT})($|[^0-9A-Za-z])"
DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}"


def contact_details_in_text(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, dict[str, int]]:
    """Per text column of ``table``: how many distinct values look like an email or a phone number.

    Only counts: the guard never prints the values it found. Columns without findings are left out.
    """
    text_columns = [row[0] for row in con.execute(f"describe {table}").fetchall() if row[1] == "VARCHAR"]
    findings: dict[str, dict[str, int]] = {}
    for column in text_columns:
        emails, phones = con.execute(
            f"""
            with distinct_values as (select distinct "{column}" as value from {table} where "{column}" is not null)
            select
                count(*) filter (where contains(value, '@') and regexp_matches(value, $email)),
                count(*) filter (where len(list_filter(
                    regexp_extract_all(value, $phone, 2),
                    lambda number: length(regexp_replace(number, '[^0-9]', '', 'g')) >= 7
                              and not regexp_matches(number, $date))) > 0)
            from distinct_values""",
            {"email": EMAIL_PATTERN, "phone": PHONE_PATTERN, "date": DATE_PATTERN},
        ).fetchone()
        found = {kind: count for kind, count in (("an email address", emails), ("a phone number", phones)) if count}
        if found:
            findings[column] = found
    return findings


def bi_published(settings: Settings) -> bool:
    """Whether there is a publication for BI: the BI copy's file, or (PostgreSQL) the bi_marts schema."""
    if settings.warehouse_engine == "postgres":
        with open_warehouse(settings, read_only=True) as warehouse:
            return bool(
                warehouse.row("select count(*) from information_schema.schemata where schema_name = 'bi_marts'")[0]
            )
    if settings.warehouse_engine == "spark":
        from crm import spark

        return spark.session(settings).catalog.databaseExists("bi_marts")
    return settings.bi_warehouse_path.exists()


def publish_for_bi(
    settings: Settings, tables: Iterable[str], partitions: Mapping[str, str] | None = None
) -> dict[str, int]:
    """Replace what BI reads with ``tables`` at once, behind the PII guard; the rows published per table.
    DuckDB: a new BI database file moved over the previous one (publish_copy). PostgreSQL: the schemas
    bi_<schema>, replaced in one transaction (crm.postgres.publish_schemas). Spark: the views of the
    databases bi_<schema>, pointed at this publication's copies (crm.spark.publish_tables); without
    ``partitions`` (an erasure) no earlier publication's copies are kept."""
    tables = list(tables)
    if settings.warehouse_engine == "postgres":
        from crm import postgres

        with postgres.connect(settings.warehouse_url) as con:
            return postgres.publish_schemas(con, tables, settings.bi_reader_role, published_docs(settings, tables))
    if settings.warehouse_engine == "spark":
        from crm import spark

        return spark.publish_tables(
            spark.session(settings), tables, keep_previous=partitions is not None, docs=published_docs(settings, tables)
        )
    return publish_copy(settings, tables, partitions, published_docs(settings, tables))


def publish_copy(
    settings: Settings,
    tables: Iterable[str],
    partitions: Mapping[str, str] | None = None,
    docs: Mapping[str, TableDoc] | None = None,
) -> dict[str, int]:
    """Write ``tables`` into a new BI database file and move it over the previous one.

    The rename is atomic: BI readers see the previous copy or the new one, never a half-written
    one, and never the warehouse file the pipeline writes to. A column named like a raw PII column,
    or a text column with a value that looks like an email address or a phone number, refuses the
    whole publication (PublicationRefused; the previous copy stays). Returns the rows published per
    table.

    Partition-aware: the new file starts as a copy of the previous one, and a table named in
    ``partitions`` (table -> SQL expression of its partition, say a date) has only the partitions
    whose rows changed replaced (publish_partitions); every other table is copied whole. The history
    tables grow by a day at a time, so a daily publication writes a day, not the whole history.
    Without ``partitions`` every table is written into an empty file (an erasure: no deleted row of
    an erased customer may survive in a copied file's free blocks). ``docs`` (crm.table_docs) become
    the tables' and columns' comments.
    """
    target = settings.bi_warehouse_path
    staging = target.with_name(f".{target.name}.publishing")
    staging.unlink(missing_ok=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    partitions = dict(partitions or {})
    tables = list(tables)
    rows = {}
    con = duckdb.connect()
    try:
        if partitions and target.exists():
            shutil.copyfile(target, staging)
        else:
            partitions = {}
        con.execute("attach ? as warehouse (read_only)", [str(settings.warehouse_path)])
        # Written in the storage format of DuckDB 1.5, so BI tools bundling an older DuckDB read it too.
        con.execute("attach ? as bi (storage_version 'v1.5.0')", [str(staging)])
        for table in tables:
            _refuse_pii(con, table)
        for table in _published_before(con, exclude=tables):
            con.execute(f"drop table bi.{table}")  # no longer published
        for table in tables:
            schema, name = table.split(".")
            con.execute(f"create schema if not exists bi.{schema}")
            if table not in partitions or publish_partitions(con, table, partitions[table]) is None:
                con.execute(f"create or replace table bi.{schema}.{name} as select * from warehouse.{table}")
            rows[table] = con.execute(f"select count(*) from bi.{schema}.{name}").fetchone()[0]
            if table in (docs or {}):
                columns = [row[0] for row in con.execute(f"describe bi.{schema}.{name}").fetchall()]
                for statement in comment_statements(table, docs[table], columns, prefix="bi."):
                    con.execute(statement)
        con.execute("checkpoint bi")
        con.execute("detach bi")
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    finally:
        con.close()
    os.replace(staging, target)
    return rows


def _refuse_pii(con: duckdb.DuckDBPyConnection, table: str) -> None:
    """Raise PublicationRefused if ``table`` of the warehouse has a raw PII column or contact details in text."""
    columns = [row[0] for row in con.execute(f"describe warehouse.{table}").fetchall()]
    refuse_pii(table, columns, lambda: contact_details_in_text(con, f"warehouse.{table}"))


def refuse_pii(table: str, columns: list[str], find_contact_details: Callable[[], dict[str, dict[str, int]]]) -> None:
    """Raise PublicationRefused if ``table`` has a raw PII column among ``columns``, or if the engine's
    ``find_contact_details`` (per text column, how many values look like an email or a phone) finds
    any: the one rule of what may be published, whatever the warehouse."""
    leaking = sorted(set(columns) & PII_COLUMNS)
    if leaking:
        raise PublicationRefused(
            f"{table} has raw PII column(s) {', '.join(leaking)}: it cannot be "
            f"published to BI; the previous BI copy stays"
        )
    findings = find_contact_details()
    if findings:
        described = "; ".join(
            f"column {column}: " + ", ".join(f"{count} distinct value(s) with {kind}" for kind, count in found.items())
            for column, found in findings.items()
        )
        raise PublicationRefused(
            f"{table} looks like it holds raw contact details ({described}): it "
            f"cannot be published to BI; hash or mask them in the mart "
            f"(macros hash_pii, mask_email, mask_phone); the previous BI copy stays"
        )


def _published_before(con: duckdb.DuckDBPyConnection, exclude: Iterable[str]) -> list[str]:
    """The tables of the BI file being written (a copy of the previous one) that are not in ``exclude``."""
    found = con.execute(
        "select schema_name || '.' || table_name from duckdb_tables() where database_name = 'bi'"
    ).fetchall()
    return sorted({row[0] for row in found} - set(exclude))


# Where more than this share of a table's partitions changed, copying it whole costs less.
WHOLE_TABLE_ABOVE = 0.5


def publish_partitions(con: duckdb.DuckDBPyConnection, table: str, partition: str) -> int | None:
    """Bring ``bi.<table>`` (a previous publication) up to ``warehouse.<table>`` by replacing only the
    partitions (values of the SQL expression ``partition``) whose rows differ; the number replaced.

    A partition's fingerprint is its row count and the sum of its rows' hashes, so a changed,
    added or removed row changes it (two different partitions agree with a chance of 2^-64).
    None, with nothing written, where the table is not published yet, its columns changed, or most
    of its partitions changed (WHOLE_TABLE_ABOVE).
    """
    schema, name = table.split(".")
    layout = (
        "select column_name, data_type from duckdb_columns() where database_name = ? and schema_name = ? "
        "and table_name = ? order by column_index"
    )
    published = con.execute(layout, ["bi", schema, name]).fetchall()
    if not published or published != con.execute(layout, ["warehouse", schema, name]).fetchall():
        return None

    try:
        for database in ("warehouse", "bi"):
            con.execute(f"""
                create temp table {database}_partitions as
                select {partition} as part, count(*) as row_count, sum(hash(row_values)) as row_hashes
                from (select * from {database}.{table}) as row_values
                group by all""")
        con.execute("""
            create temp table changed_partitions as
            select part from (select * from warehouse_partitions except select * from bi_partitions)
            union
            select part from (select * from bi_partitions except select * from warehouse_partitions)""")
        changed, total = con.execute(
            "select (select count(*) from changed_partitions), (select count(*) from warehouse_partitions)"
        ).fetchone()
        if changed > WHOLE_TABLE_ABOVE * max(total, 1):
            return None
        matches = f"exists (select 1 from changed_partitions where part is not distinct from ({partition}))"
        con.execute(f"delete from bi.{table} where {matches}")
        con.execute(f"insert into bi.{table} select * from warehouse.{table} where {matches}")
        return changed
    finally:
        for temporary in ("warehouse_partitions", "bi_partitions", "changed_partitions"):
            con.execute(f"drop table if exists {temporary}")


FLOATING_TYPES = {"DOUBLE", "FLOAT", "REAL"}


def table_checksums(
    database: Path, tables: Iterable[str], ignored_columns: Mapping[str, Iterable[str]] | None = None
) -> dict[str, str]:
    """An md5 per table of its rows in sorted order, over every column except ``ignored_columns[table]``
    (floating-point values to 12 significant digits).

    Two databases with the same rows in any physical order give the same checksums, so a rerun or a
    backfill in another order can be compared table by table with the run it should reproduce.
    """
    ignored_columns = ignored_columns or {}
    checksums = {}
    with duckdb.connect(str(database), read_only=True) as con:
        for table in tables:
            ignored = set(ignored_columns.get(table, ()))
            selected = ", ".join(
                # Sums and means of doubles differ in the last bits with the order DuckDB's threads
                # add them up in: compared to 12 significant digits, well beyond any published figure.
                f'format(\'{{:.12g}}\', "{name}") as "{name}"' if column_type in FLOATING_TYPES else f'"{name}"'
                for name, column_type, *_ in con.execute(f"describe {table}").fetchall()
                if name not in ignored
            )
            # A row's text is its struct literal (column names and values, nulls spelled out).
            checksums[table] = con.execute(
                f"select md5(coalesce(string_agg(row_text, chr(10) order by row_text), '')) "
                f"from (select cast(r as varchar) as row_text from (select {selected} from {table}) r)"
            ).fetchone()[0]
    return checksums

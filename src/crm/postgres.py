"""The PostgreSQL warehouse (``CRM_WAREHOUSE_URL``): connections, databases, tables copied in from
DuckDB with ``COPY``, and the publication BI reads (schemas replaced in one transaction).

dbt builds the whole project on PostgreSQL (profiles.yml's ``postgres`` target) and ``crm build``
runs here (crm.warehouse.open_warehouse). Loading the landing files and the other Python stages
still write to DuckDB; until they go through this layer, a team moves an embedded warehouse's raw
layer here with ``crm copy-raw`` (``copy_raw_layer``), as the engine equivalence test does.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pandas as pd
import psycopg
import pyarrow as pa
from psycopg import sql
from sqlalchemy.engine import URL, make_url

if TYPE_CHECKING:
    from crm.landing import BatchGate

from crm.contracts import CONTRACTS
from crm.settings import Settings
from crm.table_docs import TableDoc, comment_statements
from crm.warehouse import DATE_PATTERN, EMAIL_PATTERN, PHONE_PATTERN, PUBLISHED_SCHEMA_PREFIX, refuse_pii

# DuckDB's types as PostgreSQL names them (those the raw layer and the marts use).
_POSTGRES_TYPES = {
    "VARCHAR": "text",
    "BIGINT": "bigint",
    "INTEGER": "integer",
    "SMALLINT": "smallint",
    "DOUBLE": "double precision",
    "FLOAT": "real",
    "DATE": "date",
    "TIMESTAMP": "timestamp",
    "TIMESTAMP WITH TIME ZONE": "timestamptz",
    "BOOLEAN": "boolean",
    "BLOB": "bytea",
}


def conninfo(url: str | URL) -> str:
    """A libpq connection string from a SQLAlchemy URL (postgresql+psycopg://user:password@host/db)."""
    parsed = make_url(url)
    parts = {
        "host": parsed.host,
        "port": parsed.port,
        "user": parsed.username,
        "password": parsed.password,
        "dbname": parsed.database,
    }
    return psycopg.conninfo.make_conninfo(**{key: str(value) for key, value in parts.items() if value is not None})


@contextmanager
def connect(url: str | URL, autocommit: bool = False) -> Iterator[psycopg.Connection]:
    con = psycopg.connect(conninfo(url), autocommit=autocommit)
    try:
        yield con
    finally:
        con.close()


def create_database(url: str | URL, template: str = "") -> None:
    """Create the URL's database (through the server's ``postgres`` database); it must not exist. With
    ``template``, a copy of that database of the same server (no session may be connected to it)."""
    parsed = make_url(url)
    statement = sql.SQL("create database {}").format(sql.Identifier(parsed.database))
    if template:
        statement += sql.SQL(" template {}").format(sql.Identifier(template))
    with connect(parsed.set(database="postgres"), autocommit=True) as con:
        con.execute(statement)


def drop_database(url: str | URL) -> None:
    """Drop the URL's database if it exists, ending the sessions still connected to it."""
    parsed = make_url(url)
    with connect(parsed.set(database="postgres"), autocommit=True) as con:
        con.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(parsed.database)))


def _own_transaction(con: psycopg.Connection) -> psycopg.Transaction:
    """A transaction of the caller's own, committed when the block ends: on a connection already
    inside a transaction it would be a savepoint, which commits nothing."""
    if con.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise ValueError("the connection is inside a transaction: commit or roll it back first")
    return con.transaction()


def _columns(con: psycopg.Connection, table: str) -> list[tuple[str, str]]:
    """The columns of ``table`` (schema.name) and their types, in order; empty when it does not exist."""
    schema, name = table.split(".")
    return con.execute(
        "select column_name, data_type from information_schema.columns "
        "where table_schema = %s and table_name = %s order by ordinal_position",
        [schema, name],
    ).fetchall()


# PostgreSQL's type oids and the Arrow types their values take in a frame: the frame then goes through
# DuckDB's own conversion to pandas, so a frame has the same dtypes on both engines (nullable integers,
# datetime64 dates, numerics as floats).
_ARROW_TYPES = {
    16: pa.bool_(),
    20: pa.int64(),
    21: pa.int16(),
    23: pa.int32(),
    700: pa.float32(),
    701: pa.float64(),
    1700: pa.float64(),
    1082: pa.date32(),
    1114: pa.timestamp("us"),
    1184: pa.timestamp("us", tz="UTC"),
}


def arrow_table(cursor: psycopg.Cursor) -> pa.Table:
    """The rows of an executed query as an Arrow table, typed by the columns' PostgreSQL types."""
    names = [column.name for column in cursor.description]
    rows = cursor.fetchall()
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    arrays = []
    for column, values in zip(cursor.description, columns, strict=True):
        arrow_type = _ARROW_TYPES.get(column.type_code, pa.string())
        if column.type_code == 1700:
            values = [None if value is None else float(value) for value in values]
        elif arrow_type == pa.string():
            values = [None if value is None else str(value) for value in values]
        arrays.append(pa.array(values, type=arrow_type))
    return pa.Table.from_arrays(arrays, names=names)


def frame(cursor: psycopg.Cursor) -> pd.DataFrame:
    """The rows of an executed query as a pandas frame with the dtypes DuckDB's ``df()`` gives."""
    return duckdb.from_arrow(arrow_table(cursor)).df()


def copy_frame(con: psycopg.Connection, table: str, rows: pd.DataFrame) -> int:
    """Append the rows of a frame to ``table`` (schema.name, the frame's columns) with ``COPY``."""
    schema, name = table.split(".")
    statement = sql.SQL("copy {} ({}) from stdin").format(
        sql.Identifier(schema, name), sql.SQL(", ").join(sql.Identifier(column) for column in rows.columns)
    )
    values = rows.astype(object).where(rows.notna(), None)
    with con.cursor().copy(statement) as copy:
        for row in values.itertuples(index=False, name=None):
            copy.write_row(row)
    return len(rows)


def postgres_type(duckdb_type: str) -> str:
    if duckdb_type.startswith("DECIMAL"):
        return duckdb_type.replace("DECIMAL", "numeric")
    try:
        return _POSTGRES_TYPES[duckdb_type]
    except KeyError:
        raise ValueError(f"DuckDB type {duckdb_type} has no PostgreSQL counterpart here") from None


def copy_schemas_from_duckdb(
    duckdb_con: duckdb.DuckDBPyConnection, postgres_con: psycopg.Connection, schemas: list[str]
) -> dict[str, int]:
    """Give PostgreSQL's tables of ``schemas`` the rows of DuckDB's, in one transaction (a failure
    leaves PostgreSQL as it was); return the rows copied per table.

    A table missing on PostgreSQL is created; one with other columns is refused, naming both lists.
    Tables are refilled, not dropped, so the views that dbt built on them stay.
    """
    tables = [
        f"{schema}.{table}"
        for schema, table in duckdb_con.execute(
            "select schema_name, table_name from duckdb_tables() where schema_name in (select unnest(?)) order by all",
            [schemas],
        ).fetchall()
    ]
    copied: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="crm-copy-") as folder, _own_transaction(postgres_con):
        ensure_tables_like(duckdb_con, postgres_con, tables)
        for table in tables:
            postgres_con.execute(sql.SQL("delete from {}").format(sql.Identifier(*table.split("."))))
            copied[table] = copy_from_duckdb(duckdb_con, postgres_con, f"select * from {table}", table, Path(folder))
    return copied


def ensure_tables_like(
    duckdb_con: duckdb.DuckDBPyConnection, postgres_con: psycopg.Connection, tables: list[str]
) -> None:
    """Create each of ``tables`` (schema.name) on PostgreSQL with the columns it has on DuckDB, where it
    is missing; refuse one that exists with other columns, naming both lists."""
    from crm.landing import table_layout

    for table in tables:
        schema, name = table.split(".")
        columns = table_layout(duckdb_con, table)
        existing = [column for column, _ in _columns(postgres_con, table)]
        if not existing:
            postgres_con.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(schema)))
            postgres_con.execute(
                sql.SQL("create table {} ({})").format(
                    sql.Identifier(schema, name),
                    sql.SQL(", ").join(
                        sql.SQL("{} {}").format(sql.Identifier(column), sql.SQL(postgres_type(kind)))
                        for column, kind in columns
                    ),
                )
            )
        elif existing != [column for column, _ in columns]:
            raise ValueError(
                f"{table}: PostgreSQL has the columns {existing}, DuckDB {[column for column, _ in columns]}; "
                f"drop or migrate the PostgreSQL table first"
            )


def copy_from_duckdb(
    duckdb_con: duckdb.DuckDBPyConnection, postgres_con: psycopg.Connection, query: str, table: str, folder: Path
) -> int:
    """Append the rows of a DuckDB query to a PostgreSQL table with the same columns; the rows copied.

    Rows travel as CSV written by DuckDB into ``COPY FROM STDIN``: doubles in their shortest exact form,
    null as an empty field and the empty text quoted, which PostgreSQL's CSV format reads back alike."""
    path = folder / f"{table}.csv"
    duckdb_con.execute(f"copy ({query}) to '{path}' (header false)")
    cursor = postgres_con.cursor()
    try:
        with (
            path.open("rb") as rows,
            cursor.copy(sql.SQL("copy {} from stdin (format csv)").format(sql.Identifier(*table.split(".")))) as copy,
        ):
            while chunk := rows.read(1 << 20):
                copy.write(chunk)
    finally:
        os.remove(path)
    return cursor.rowcount


# Two loads into one PostgreSQL warehouse at once would both see a partition as new: a load holds this
# advisory lock (a number of the platform's own) from reading the load log to committing its rows.
LOAD_LOCK = 4_242_001


def load_landing(
    con: psycopg.Connection, landing_dir: Path, gate: BatchGate | None = None, up_to: date | None = None
) -> dict[str, int]:
    """Load the landing folder's new and re-delivered partitions into the PostgreSQL raw layer, with the
    same checks, quarantine and raw gate as the embedded warehouse; rows inserted per source.

    The deliveries are read and checked by DuckDB, which reads CSV, JSON lines and Parquet, in a scratch
    database seeded with what decides a load: PostgreSQL's load log (what is new or corrected) and the
    customer master's ids and days (the raw gate's known-customer check). crm.landing.load_landing
    runs there unchanged: each source in its own transaction, its raw gate before it commits. Then the
    accepted sources' new rows, their rejected lines and the load log reach PostgreSQL with ``COPY``
    in one transaction, the partitions of corrected re-deliveries deleted first: a failure leaves the
    warehouse as it was. A source refused by its checks or gate is absent from the scratch database,
    so nothing of it is written; its problem is raised after the others are written, as on DuckDB.
    """
    from crm.landing import ERASED_IDS_DDL, LOAD_LOG_TABLE, REJECTED_ROWS_TABLE, ensure_raw_schema, load_in_scratch

    raw_tables = [LOAD_LOG_TABLE, REJECTED_ROWS_TABLE, *(contract.raw_table for contract in CONTRACTS.values())]
    with (
        tempfile.TemporaryDirectory(prefix="crm-load-") as folder,
        duckdb.connect(f"{folder}/scratch.duckdb") as scratch,
    ):
        ensure_raw_schema(scratch)
        con.execute("select pg_advisory_lock(%s)", [LOAD_LOCK])
        try:
            with _own_transaction(con):
                con.execute("create schema if not exists raw")
                con.execute(ERASED_IDS_DDL)  # with its primary key, which a copied layout would lack
                ensure_tables_like(scratch, con, raw_tables)
            load = load_in_scratch(scratch, lambda query: arrow_table(con.execute(query)), landing_dir, gate, up_to)
            with _own_transaction(con):
                for source, day in load.corrected:
                    con.execute(
                        sql.SQL("delete from {} where _partition_date = %s").format(
                            sql.Identifier(*CONTRACTS[source].raw_table.split("."))
                        ),
                        [day],
                    )
                    con.execute(
                        f"delete from {REJECTED_ROWS_TABLE} where source = %s and partition_date = %s", [source, day]
                    )
                for contract in CONTRACTS.values():
                    query = f"select * from {contract.raw_table} where _source_file is not null"
                    copy_from_duckdb(scratch, con, query, contract.raw_table, Path(folder))
                copy_from_duckdb(
                    scratch, con, f"select * from {REJECTED_ROWS_TABLE}", REJECTED_ROWS_TABLE, Path(folder)
                )
                # Loads also update logged files (a touched, unchanged file's new size and time).
                con.execute(f"delete from {LOAD_LOG_TABLE}")
                copy_from_duckdb(scratch, con, f"select * from {LOAD_LOG_TABLE}", LOAD_LOG_TABLE, Path(folder))
            # Statistics for the planner before dbt reads the new rows (a table PostgreSQL has not
            # analysed yet is planned as if nearly empty).
            for table in raw_tables:
                con.execute(sql.SQL("analyze {}").format(sql.Identifier(*table.split("."))))
        finally:
            con.execute("select pg_advisory_unlock(%s)", [LOAD_LOCK])
    if load.problem is not None:
        raise load.problem
    return load.inserted


def copy_raw_layer(settings: Settings) -> dict[str, int]:
    """``crm copy-raw``: the raw layer of the embedded warehouse (``warehouse_path``) into the PostgreSQL
    warehouse (``warehouse_url``), while loading runs on DuckDB only: load there, copy, build here."""
    if settings.warehouse_engine != "postgres":
        raise ValueError("CRM_WAREHOUSE_URL is not set: there is no PostgreSQL warehouse to copy the raw layer into")
    if not settings.warehouse_path.exists():
        raise FileNotFoundError(f"no DuckDB warehouse at {settings.warehouse_path} (CRM_WAREHOUSE_PATH) to copy from")
    with (
        duckdb.connect(str(settings.warehouse_path), read_only=True) as source,
        connect(settings.warehouse_url) as target,
    ):
        return copy_schemas_from_duckdb(source, target, ["raw"])


def published_name(table: str) -> str:
    """Where BI reads ``table`` (schema.name) on PostgreSQL: bi_<schema>.<name>."""
    schema, name = table.split(".")
    return f"{PUBLISHED_SCHEMA_PREFIX}{schema}.{name}"


def contact_details_in_text(con: psycopg.Connection, table: str) -> dict[str, dict[str, int]]:
    """Per text column of ``table``: how many distinct values look like an email or a phone number (the
    rules of crm.contact_rules, as crm.warehouse.contact_details_in_text counts them on DuckDB). Counts
    only: the values are never read into Python."""
    schema, name = table.split(".")
    text_columns = [column for column, kind in _columns(con, table) if kind in ("text", "character varying")]
    findings: dict[str, dict[str, int]] = {}
    for column in text_columns:
        query = sql.SQL(
            """
            with distinct_values as (select distinct {column} as value from {table} where {column} is not null)
            select
                count(*) filter (where strpos(value, '@') > 0 and value ~ %(email)s),
                count(*) filter (where exists (
                    select 1 from regexp_matches(value, %(phone)s, 'g') as found(parts)
                    where length(regexp_replace(parts[2], '[^0-9]', '', 'g')) >= 7 and parts[2] !~ %(date)s))
            from distinct_values"""
        ).format(column=sql.Identifier(column), table=sql.Identifier(schema, name))
        emails, phones = con.execute(
            query, {"email": EMAIL_PATTERN, "phone": PHONE_PATTERN, "date": DATE_PATTERN}
        ).fetchone()
        found = {kind: count for kind, count in (("an email address", emails), ("a phone number", phones)) if count}
        if found:
            findings[column] = found
    return findings


def publish_schemas(
    con: psycopg.Connection, tables: list[str], reader_role: str = "", docs: Mapping[str, TableDoc] | None = None
) -> dict[str, int]:
    """Publish ``tables`` (schema.name) for BI in one transaction: each schema's tables are copied into a
    new schema that then takes the published name (bi_<schema>), so a reader sees the previous
    publication or this one, never a mix, and a refused or failed publication leaves the previous
    one as it was. A table with raw PII or contact details in text refuses the whole publication
    (crm.warehouse.refuse_pii). ``reader_role`` (BI's login role) may read the new schemas from the
    moment they are published; ``docs`` (crm.table_docs) become the tables' and columns' comments.
    Returns the rows published per table."""
    rows: dict[str, int] = {}
    schemas = sorted({table.split(".")[0] for table in tables})
    with _own_transaction(con):
        columns: dict[str, list[str]] = {}
        for table in tables:
            columns[table] = [column for column, _ in _columns(con, table)]
            if not columns[table]:
                raise ValueError(f"{table} does not exist: nothing was published")
            refuse_pii(table, columns[table], lambda table=table: contact_details_in_text(con, table))
        for schema in schemas:
            published = f"{PUBLISHED_SCHEMA_PREFIX}{schema}"
            staged = sql.Identifier(f"{published}__next")
            con.execute(sql.SQL("drop schema if exists {} cascade").format(staged))
            con.execute(sql.SQL("create schema {}").format(staged))
            for table in (table for table in tables if table.split(".")[0] == schema):
                name = table.split(".")[1]
                created = con.execute(
                    sql.SQL("create table {} as select * from {}").format(
                        sql.Identifier(f"{published}__next", name), sql.Identifier(schema, name)
                    )
                )
                rows[table] = created.rowcount
                if table in (docs or {}):
                    staged_table = f"{published}__next.{name}"
                    for statement in comment_statements(staged_table, docs[table], columns[table]):
                        con.execute(statement)
            if reader_role:
                for grant in ("grant usage on schema {} to {}", "grant select on all tables in schema {} to {}"):
                    con.execute(sql.SQL(grant).format(staged, sql.Identifier(reader_role)))
            con.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(published)))
            con.execute(sql.SQL("alter schema {} rename to {}").format(staged, sql.Identifier(published)))
    return rows

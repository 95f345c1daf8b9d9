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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import psycopg
from psycopg import sql
from sqlalchemy.engine import URL, make_url

from crm.settings import Settings
from crm.warehouse import DATE_PATTERN, EMAIL_PATTERN, PHONE_PATTERN, refuse_pii

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


def create_database(url: str | URL) -> None:
    """Create the URL's database (through the server's ``postgres`` database); it must not exist."""
    parsed = make_url(url)
    with connect(parsed.set(database="postgres"), autocommit=True) as con:
        con.execute(sql.SQL("create database {}").format(sql.Identifier(parsed.database)))


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
    Rows travel as CSV written by DuckDB (doubles in their shortest exact form, null apart from the
    empty text) into ``COPY FROM STDIN``. Tables are refilled, not dropped, so the views that dbt
    built on them stay.
    """
    tables = duckdb_con.execute(
        "select schema_name, table_name from duckdb_tables() where schema_name in (select unnest(?)) order by all",
        [schemas],
    ).fetchall()
    copied: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="crm-copy-") as folder, _own_transaction(postgres_con):
        for schema in schemas:
            postgres_con.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(schema)))
        for schema, table in tables:
            columns = duckdb_con.execute(
                "select column_name, data_type from duckdb_columns() "
                "where schema_name = ? and table_name = ? order by column_index",
                [schema, table],
            ).fetchall()
            target = sql.Identifier(schema, table)
            existing = [name for name, _ in _columns(postgres_con, f"{schema}.{table}")]
            if not existing:
                postgres_con.execute(
                    sql.SQL("create table {} ({})").format(
                        target,
                        sql.SQL(", ").join(
                            sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(postgres_type(kind)))
                            for name, kind in columns
                        ),
                    )
                )
            elif existing != [name for name, _ in columns]:
                raise ValueError(
                    f"{schema}.{table}: PostgreSQL has the columns {existing}, DuckDB {[name for name, _ in columns]}; "
                    f"drop or migrate the PostgreSQL table first"
                )
            else:
                postgres_con.execute(sql.SQL("delete from {}").format(target))
            path = Path(folder) / f"{schema}.{table}.csv"
            duckdb_con.execute(f"copy {schema}.\"{table}\" to '{path}' (header false)")
            cursor = postgres_con.cursor()
            with (
                path.open("rb") as rows,
                cursor.copy(sql.SQL("copy {} from stdin (format csv)").format(target)) as copy,
            ):
                while chunk := rows.read(1 << 20):
                    copy.write(chunk)
            os.remove(path)
            copied[f"{schema}.{table}"] = cursor.rowcount
    return copied


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


# BI reads the published copy of schema ``marts`` as ``bi_marts``: replaced as a whole after each run.
PUBLISHED_SCHEMA_PREFIX = "bi_"


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


def publish_schemas(con: psycopg.Connection, tables: list[str]) -> dict[str, int]:
    """Publish ``tables`` (schema.name) for BI in one transaction: each schema's tables are copied into a
    new schema that then takes the published name (bi_<schema>), so a reader sees the previous
    publication or this one, never a mix, and a refused or failed publication leaves the previous
    one as it was. A table with raw PII or contact details in text refuses the whole publication
    (crm.warehouse.refuse_pii). Returns the rows published per table."""
    rows: dict[str, int] = {}
    schemas = sorted({table.split(".")[0] for table in tables})
    with _own_transaction(con):
        for table in tables:
            columns = [column for column, _ in _columns(con, table)]
            if not columns:
                raise ValueError(f"{table} does not exist: nothing was published")
            refuse_pii(table, columns, lambda table=table: contact_details_in_text(con, table))
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
            con.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(published)))
            con.execute(sql.SQL("alter schema {} rename to {}").format(staged, sql.Identifier(published)))
    return rows

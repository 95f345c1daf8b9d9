"""The PostgreSQL warehouse (``CRM_WAREHOUSE_URL``): connections, databases, and tables copied in
from DuckDB with ``COPY``.

dbt builds the whole project on PostgreSQL (profiles.yml's ``postgres`` target). Loading the landing
files and the Python stages still write to DuckDB; until they go through this layer, a team moves an
embedded warehouse's raw layer here with ``copy_schemas_from_duckdb``, which the engine equivalence
test uses to give both engines the same rows.
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
    with tempfile.TemporaryDirectory(prefix="crm-copy-") as folder, postgres_con.transaction():
        for schema in schemas:
            postgres_con.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(schema)))
        for schema, table in tables:
            columns = duckdb_con.execute(
                "select column_name, data_type from duckdb_columns() "
                "where schema_name = ? and table_name = ? order by column_index",
                [schema, table],
            ).fetchall()
            target = sql.Identifier(schema, table)
            existing = [
                name
                for (name,) in postgres_con.execute(
                    "select column_name from information_schema.columns "
                    "where table_schema = %s and table_name = %s order by ordinal_position",
                    [schema, table],
                ).fetchall()
            ]
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
            with (
                path.open("rb") as rows,
                postgres_con.cursor().copy(sql.SQL("copy {} from stdin (format csv)").format(target)) as copy,
            ):
                while chunk := rows.read(1 << 20):
                    copy.write(chunk)
            os.remove(path)
            copied[f"{schema}.{table}"] = duckdb_con.execute(f'select count(*) from {schema}."{table}"').fetchone()[0]
    return copied

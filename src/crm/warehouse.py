"""Connections to the DuckDB warehouse and the one way rows are written back to it.

DuckDB allows one read-write process or many read-only ones per file, never both, so every
writer opens, writes and closes; readers use ``read_only=True``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import date

import duckdb
import pandas as pd

from crm.contracts import PII_COLUMNS
from crm.settings import Settings


@contextmanager
def connect(settings: Settings, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    if not read_only:
        settings.warehouse_dir.mkdir(parents=True, exist_ok=True)
    elif not settings.warehouse_path.exists():
        raise FileNotFoundError(f"warehouse {settings.warehouse_path} does not exist yet: run the pipeline first")
    con = duckdb.connect(str(settings.warehouse_path), read_only=read_only)
    try:
        yield con
    finally:
        con.close()


def table_exists(con: duckdb.DuckDBPyConnection, qualified_name: str) -> bool:
    schema, name = qualified_name.split(".")
    return bool(con.execute(
        "select count(*) from information_schema.tables where table_schema = ? and table_name = ?", [schema, name]
    ).fetchone()[0])


def replace_as_of_date(con: duckdb.DuckDBPyConnection, qualified_name: str, frame: pd.DataFrame,
                       as_of_date: date) -> int:
    """Replace one as-of date's rows of a table with ``frame`` in one transaction.

    Readers see the old rows or the new ones, never a mix; rerunning a date never duplicates it.
    """
    schema = qualified_name.split(".")[0]
    con.execute("begin transaction")
    try:
        con.execute(f"create schema if not exists {schema}")
        con.register("incoming_rows", frame)
        con.execute(f"create table if not exists {qualified_name} as select * from incoming_rows limit 0")
        existing = [row[0] for row in con.execute(f"describe {qualified_name}").fetchall()]
        if existing != list(frame.columns):
            raise ValueError(f"{qualified_name} has columns {existing}, the new rows have {list(frame.columns)}: "
                             f"migrate or drop the table before writing rows of the new shape")
        con.execute(f"delete from {qualified_name} where as_of_date = ?", [as_of_date])
        con.execute(f"insert into {qualified_name} by name select * from incoming_rows")
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise
    finally:
        con.unregister("incoming_rows")
    return len(frame)


def publish_copy(settings: Settings, tables: Iterable[str]) -> dict[str, int]:
    """Copy ``tables`` into a new BI database file and move it over the previous one.

    The rename is atomic: BI readers see the previous copy or the new one, never a half-written
    one, and never the warehouse file the pipeline writes to. A column named like a raw PII column
    refuses the publication. Returns the rows copied per table.
    """
    target = settings.bi_warehouse_path
    staging = target.with_name(f".{target.name}.publishing")
    staging.unlink(missing_ok=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    rows = {}
    con = duckdb.connect()
    try:
        con.execute("attach ? as warehouse (read_only)", [str(settings.warehouse_path)])
        # Written in the storage format of DuckDB 1.5, so BI tools bundling an older DuckDB read it too.
        con.execute("attach ? as bi (storage_version 'v1.5.0')", [str(staging)])
        for table in tables:
            schema, name = table.split(".")
            columns = [row[0] for row in con.execute(f"describe warehouse.{table}").fetchall()]
            leaking = sorted(set(columns) & PII_COLUMNS)
            if leaking:
                raise ValueError(f"{table} has raw PII column(s) {', '.join(leaking)}: it cannot be published to BI")
            con.execute(f"create schema if not exists bi.{schema}")
            con.execute(f"create table bi.{schema}.{name} as select * from warehouse.{table}")
            rows[table] = con.execute(f"select count(*) from bi.{schema}.{name}").fetchone()[0]
        con.execute("checkpoint bi")
        con.execute("detach bi")
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    finally:
        con.close()
    os.replace(staging, target)
    return rows

"""Connections to the DuckDB warehouse and the one way rows are written back to it.

DuckDB allows one read-write process or many read-only ones per file, never both, so every
writer opens, writes and closes; readers use ``read_only=True``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date

import duckdb
import pandas as pd

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

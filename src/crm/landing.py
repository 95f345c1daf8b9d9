"""The landing contract and the load of daily deliveries into the warehouse's raw schema.

Deliveries land as ``<landing>/<source>/dt=YYYY-MM-DD/<file>``. A load takes every partition not
loaded before, checks each file against its source's contract, and inserts the whole batch in one
transaction: a file that breaks the contract stops that source's load before anything is written
and names the file, the source and the problem.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

log = logging.getLogger(__name__)

PARTITION_PREFIX = "dt="
LOAD_LOG_TABLE = "raw._loaded_partitions"


@dataclass(frozen=True)
class SourceContract:
    name: str
    file_format: str  # csv or parquet
    columns: tuple[str, ...]
    key: str
    required: bool
    # Columns holding personal data: they never leave the restricted raw and staging schemas.
    pii: tuple[str, ...] = ()

    @property
    def file_name(self) -> str:
        return f"{self.name}.{self.file_format}"

    @property
    def raw_table(self) -> str:
        return f"raw.{self.name}"


CONTRACTS: dict[str, SourceContract] = {
    contract.name: contract
    for contract in (
        SourceContract(
            name="customers",
            file_format="csv",
            columns=("customer_id", "first_name", "last_name", "email", "phone", "birth_date", "gender",
                     "city", "country", "signup_date", "acquisition_channel", "email_consent", "updated_at"),
            key="customer_id",
            required=True,
            pii=("first_name", "last_name", "email", "phone", "birth_date"),
        ),
        SourceContract(
            name="orders",
            file_format="parquet",
            columns=("order_id", "customer_id", "ordered_at", "status", "amount", "currency", "channel"),
            key="order_id",
            required=True,
        ),
    )
}


PII_COLUMNS = frozenset(column for contract in CONTRACTS.values() for column in contract.pii)


class LandingError(Exception):
    """A delivery breaks the landing contract; the message names the file, source and problem."""


@dataclass(frozen=True)
class Partition:
    source: str
    day: date
    path: Path


def partition_dir(landing_dir: Path, source: str, day: date) -> Path:
    return landing_dir / source / f"{PARTITION_PREFIX}{day.isoformat()}"


def discover(landing_dir: Path) -> tuple[dict[str, list[Partition]], list[LandingError]]:
    """Every delivered partition per source, oldest first, and the problems found on the way.

    A source with a problem (a bad partition folder, a required source missing) is left out of the
    partitions, so that only its load stops; an unknown source folder is a problem of its own.
    """
    if not landing_dir.is_dir():
        raise LandingError(f"landing folder {landing_dir} does not exist")
    found: dict[str, list[Partition]] = {}
    problems: list[LandingError] = []
    for source_dir in sorted(p for p in landing_dir.iterdir() if p.is_dir()):
        contract = CONTRACTS.get(source_dir.name)
        if contract is None:
            problems.append(LandingError(f"{source_dir}: unknown source folder {source_dir.name!r}; "
                                         f"known sources are {', '.join(sorted(CONTRACTS))}"))
            continue
        try:
            found[contract.name] = [Partition(contract.name, _partition_day(folder), folder / contract.file_name)
                                    for folder in sorted(p for p in source_dir.iterdir() if p.is_dir())]
        except LandingError as problem:
            problems.append(problem)
    for contract in CONTRACTS.values():
        if contract.name in found or (landing_dir / contract.name).is_dir():
            continue
        if contract.required:
            problems.append(LandingError(f"{landing_dir}: required source {contract.name!r} has no folder"))
        else:
            log.info("source %s: not delivered, its features stay null", contract.name)
    return found, problems


def _partition_day(folder: Path) -> date:
    value = folder.name.removeprefix(PARTITION_PREFIX)
    try:
        if not folder.name.startswith(PARTITION_PREFIX):
            raise ValueError
        return date.fromisoformat(value)
    except ValueError:
        raise LandingError(f"{folder}: source {folder.parent.name!r}: partition folder must be named "
                           f"dt=YYYY-MM-DD, got {folder.name!r}") from None


def loaded_days(con: duckdb.DuckDBPyConnection, source: str) -> set[date]:
    ensure_raw_schema(con)
    rows = con.execute(f"select partition_date from {LOAD_LOG_TABLE} where source = ?", [source]).fetchall()
    return {row[0] for row in rows}


def ensure_raw_schema(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("create schema if not exists raw")
    con.execute(f"""
        create table if not exists {LOAD_LOG_TABLE} (
            source varchar not null,
            partition_date date not null,
            file varchar not null,
            row_count bigint not null,
            loaded_at timestamp not null,
            primary key (source, partition_date)
        )""")


def check_file(contract: SourceContract, partition: Partition) -> list[str]:
    """The file's columns, after checking it exists, is readable, and carries every contract column."""
    path = partition.path
    where = f"{path}: source {contract.name!r}"
    if not path.is_file():
        others = sorted(p.name for p in path.parent.iterdir())
        raise LandingError(f"{where}: expected file {contract.file_name} is missing (found {others or 'nothing'})")
    if path.stat().st_size == 0:
        raise LandingError(f"{where}: file is empty")
    try:
        columns = _header(contract, path)
    except (OSError, ValueError, pa.ArrowException) as error:
        raise LandingError(f"{where}: cannot be read as {contract.file_format}: {_first_line(error)}") from None
    missing = [c for c in contract.columns if c not in columns]
    if missing:
        raise LandingError(f"{where}: missing required column(s) {', '.join(missing)}")
    return columns


def _header(contract: SourceContract, path: Path) -> list[str]:
    """Column names from the file's header or schema, without reading its rows."""
    if contract.file_format == "parquet":
        return pq.read_schema(path).names
    with path.open(newline="", encoding="utf-8") as handle:
        header = next(csv.reader(handle), None)
    if not header:
        raise ValueError("no header line")
    return [name.strip() for name in header]


def _reader(contract: SourceContract, paths: Iterable[Path]) -> str:
    files = "[" + ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths) + "]"
    if contract.file_format == "csv":
        # Everything as text: typing and rejecting bad values is staging's job, so nothing is lost here.
        return f"read_csv({files}, header = true, all_varchar = true, filename = true, union_by_name = true)"
    return f"read_parquet({files}, filename = true, union_by_name = true)"


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0]


def load_source(con: duckdb.DuckDBPyConnection, contract: SourceContract, partitions: list[Partition]) -> int:
    """Load the partitions not loaded yet, in one transaction; return how many rows were inserted."""
    new = [p for p in partitions if p.day not in loaded_days(con, contract.name)]
    if not new:
        return 0
    for partition in new:
        check_file(contract, partition)
    columns = ", ".join(contract.columns)
    reader = _reader(contract, [p.path for p in new])
    partition_dates = ", ".join(f"('{p.path}', date '{p.day.isoformat()}')" for p in new)
    con.execute("begin transaction")
    try:
        con.execute(f"""
            create table if not exists {contract.raw_table} as
            select {columns}, cast(null as date) as _partition_date, cast(null as varchar) as _source_file,
                   cast(null as timestamp) as _loaded_at
            from {reader} limit 0""")
        inserted = con.execute(f"""
            insert into {contract.raw_table}
            select {columns}, partitions.partition_date, files.filename, current_timestamp::timestamp
            from {reader} as files
            join (values {partition_dates}) as partitions(filename, partition_date) using (filename)
        """).fetchone()[0]
        # Counted from what was inserted, so the log reconciles with the raw table by construction.
        con.execute(f"""
            insert into {LOAD_LOG_TABLE}
            select ?, partitions.partition_date, partitions.filename, coalesce(loaded.row_count, 0),
                   current_timestamp::timestamp
            from (values {partition_dates}) as partitions(filename, partition_date)
            left join (
                select _source_file as filename, count(*) as row_count from {contract.raw_table}
                where _partition_date in (select partition_date from (values {partition_dates}) as p(f, partition_date))
                group by all
            ) as loaded using (filename)""", [contract.name])
        con.execute("commit")
    except duckdb.Error as error:
        con.execute("rollback")
        raise LandingError(f"source {contract.name!r}: load of {len(new)} partition(s) failed, nothing was "
                           f"written: {_first_line(error)}") from None
    log.info("source %s: loaded %d rows from %d new partition(s)", contract.name, inserted, len(new))
    return inserted


def load_landing(con: duckdb.DuckDBPyConnection, landing_dir: Path) -> dict[str, int]:
    """Load every source's new partitions; return rows inserted per source.

    A source with a bad delivery loads nothing; the others load. Then every problem is raised together.
    """
    ensure_raw_schema(con)
    partitions, problems = discover(landing_dir)
    inserted = {}
    for source, source_partitions in partitions.items():
        try:
            inserted[source] = load_source(con, CONTRACTS[source], source_partitions)
        except LandingError as problem:
            problems.append(problem)
    if problems:
        raise LandingError("\n".join(str(problem) for problem in problems))
    return inserted

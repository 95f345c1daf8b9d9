"""Checking and loading daily deliveries into the warehouse's raw schema.

Deliveries land as ``<landing>/<source>/dt=YYYY-MM-DD/<source>.<format>`` (crm.contracts), or as part
files of that format (``<source>-part-0001.parquet``, ``<source>_2.csv``, ``part-00000-….parquet``), read
in natural name order; hidden and marker files (names starting with ``.`` or ``_``, such as Spark's
``_SUCCESS``) are skipped, and any other entry of a partition folder, or a symbolic link leading out of
the landing folder, refuses the source. A load takes every partition of a source that is new or
whose files changed since it was loaded (a corrected re-delivery, told by content fingerprints),
checks each file against the contract, and inserts the whole batch in one transaction; the load
log keeps a row per file and delivery. A file that breaks the contract (missing or empty,
unreadable, a contract column missing, a bad partition folder) stops that source's load before
anything is written, with a message naming the file, the source and the problem; the other sources
load. Text files must be UTF-8 (a byte order mark is allowed) with lines of at most
``MAX_CSV_LINE_BYTES`` in CSV, and Parquet columns must have a type of the contract column's kind;
otherwise the file is refused the same way. Lines that cannot be parsed (malformed CSV or JSON), a
header line repeated inside a CSV and Parquet values beyond the raw column's range are kept, with the
reason, in ``raw._rejected_rows``: nothing is dropped. Columns beyond the contract are kept as JSON in
``_extra``. What happens to each kind of hostile input is tabled in expectations/README.md.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from crm.contracts import CONTRACTS, SourceContract
from crm.progress import progress
from crm.warehouse import transaction

if TYPE_CHECKING:
    from crm.warehouse import Warehouse

log = logging.getLogger(__name__)

PARTITION_PREFIX = "dt="
LOAD_LOG_TABLE = "raw._loaded_partitions"
REJECTED_ROWS_TABLE = "raw._rejected_rows"
# The right-to-be-forgotten suppression list (crm.erasure): keyed hashes only, read by dbt staging.
ERASED_IDS_TABLE = "raw._erased_ids"
# The suppression list's table, the same on every engine (crm.erasure writes it).
ERASED_IDS_DDL = f"""
    create table if not exists {ERASED_IDS_TABLE} (
        id_kind varchar not null,
        id_hash varchar not null,
        erased_at timestamp not null,
        request_hash varchar not null,
        primary key (id_kind, id_hash)
    )"""
# How many lines of a JSON-lines file the contract check reads to find the keys.
JSONL_SAMPLE_LINES = 200
# The longest CSV line DuckDB is asked to read (its default is 2 MB); a longer line refuses the file,
# since the CSV reader cannot skip it and keep it as rejected. JSON lines have no limit.
MAX_CSV_LINE_BYTES = 8 * 1024 * 1024
# Python's csv module reads headers and repeated headers here: a field may be as long as a line.
csv.field_size_limit(max(csv.field_size_limit(), MAX_CSV_LINE_BYTES))
REPEATED_HEADER_REASON = "repeated header line (files concatenated?)"
CONFLICTING_VERSIONS_REASON = "conflicting versions in one delivery: the same key and updated_at, different values"
NUL_CHARACTER_REASON = "NUL character in text (column {column})"
NUL = b"\x00"
# The columns every insert of a line that cannot be loaded names (record_key: only where a record, not
# a line, is rejected).
_REJECTED_COLUMNS = "(source, partition_date, source_file, line_number, raw_line, reason, loaded_at, delivery)"
# Entries of a partition folder that are not part of the delivery: hidden files and the markers export
# tools write beside their part files (Spark's _SUCCESS, Hadoop's .crc checksums).
IGNORED_NAME_PREFIXES = (".", "_")


class LandingError(Exception):
    """A delivery breaks the landing contract; the message names the file, source and problem."""


# Called with the loading connection, the contract and the new partition days, after the batch is
# inserted and before it commits; it raises to refuse the batch (see crm.gates.RawBatchGate).
BatchGate = Callable[[duckdb.DuckDBPyConnection, SourceContract, list[date]], object]


@dataclass(frozen=True)
class CheckedFile:
    """What the contract check learned about a file: its columns and, for CSV, the header's repeats."""

    columns: list[str]
    repeated_header_lines: list[tuple[int, str]]  # (1-based line number, line text)
    parquet_out_of_range: list[str]  # integer columns whose Parquet type can exceed bigint
    # A CSV with an odd number of quote characters: a quote is left open (a line cut off). DuckDB
    # reports such a record only when it reads the file on its own, not within several files.
    open_quote: bool = False


@dataclass(frozen=True)
class Partition:
    source: str
    day: date
    folder: Path
    files: tuple[Path, ...]  # the delivery's files, in natural name order


def partition_dir(landing_dir: Path, source: str, day: date) -> Path:
    return landing_dir / source / f"{PARTITION_PREFIX}{day.isoformat()}"


def discover(landing_dir: Path) -> tuple[dict[str, list[Partition]], list[LandingError]]:
    """Every delivered partition per source, oldest first, and the problems found on the way.

    A source with a problem (a bad partition folder, a file that cannot belong to it, a symbolic link
    leading out of the landing folder, a required source missing) is left out of the partitions, so
    that only its load stops; an unknown source folder is a problem of its own.
    """
    if not landing_dir.is_dir():
        raise LandingError(f"landing folder {landing_dir} does not exist")
    root = landing_dir.resolve()
    found: dict[str, list[Partition]] = {}
    problems: list[LandingError] = []
    for source_dir in sorted(
        p for p in landing_dir.iterdir() if p.is_dir() and not p.name.startswith(IGNORED_NAME_PREFIXES)
    ):
        contract = CONTRACTS.get(source_dir.name)
        if contract is None:
            problems.append(
                LandingError(
                    f"{source_dir}: unknown source folder {source_dir.name!r}; "
                    f"known sources are {', '.join(sorted(CONTRACTS))}"
                )
            )
            continue
        try:
            _refuse_link_out(root, source_dir, contract)
            # os.scandir: a daily load lists every partition of two years, and the entries' types come
            # with the listing instead of a system call each.
            with os.scandir(source_dir) as listing:
                folders = sorted(
                    (entry for entry in listing if not entry.name.startswith(IGNORED_NAME_PREFIXES)),
                    key=lambda entry: entry.name,
                )
            found[contract.name] = [
                Partition(contract.name, _partition_day(folder), Path(folder), partition_files(contract, folder, root))
                for folder in folders
            ]
        except LandingError as problem:
            problems.append(problem)
    for contract in CONTRACTS.values():
        if contract.name in found or (landing_dir / contract.name).is_dir():
            continue
        if contract.required:
            problems.append(LandingError(f"{landing_dir}: required source {contract.name!r} has no folder"))
        else:
            log.info("source %s: not delivered; the features that depend on it stay null", contract.name)
    return found, problems


def partition_files(
    contract: SourceContract, folder: Path | os.DirEntry[str], root: Path | None = None, refuse_foreign: bool = True
) -> tuple[Path, ...]:
    """The files that make a partition's delivery, in natural name order (part-2 before part-10).

    A delivery is the contract's file or part files of the contract's format named for the source
    (``orders-part-0001.parquet``, ``customers_2.csv``) or as Spark and Hadoop name them
    (``part-00000-<id>.snappy.parquet``). Hidden and marker files are skipped. Anything else (another
    format, a file named for something else, a folder, a symbolic link leading out of ``root``)
    cannot belong to the partition and refuses it, naming every such entry (with ``refuse_foreign``
    false they are left out instead, as an erasure does, which must find every delivered record).
    """
    root = root or Path(folder).parent.parent.resolve()
    _refuse_link_out(root, folder, contract)
    pattern = _part_file_pattern(contract)
    files, foreign = [], []
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith(IGNORED_NAME_PREFIXES):
                continue
            if _links_out(root, entry):
                link = os.readlink(entry.path)
                foreign.append(f"{entry.name} (a symbolic link to {link}, outside the landing folder)")
            elif not entry.is_file():
                foreign.append(f"{entry.name} (a folder)")
            elif not entry.name.endswith(f".{contract.file_format}"):
                foreign.append(f"{entry.name} (not a .{contract.file_format} file)")
            elif not pattern.fullmatch(entry.name):
                foreign.append(f"{entry.name} (not named for source {contract.name})")
            else:
                files.append(Path(entry.path))
    where = f"{os.fspath(folder)}: source {contract.name!r}"
    expected = (
        f"{contract.file_name}, {contract.name}-<part>.{contract.file_format} or part-<part>.{contract.file_format}"
    )
    if foreign and refuse_foreign:
        raise LandingError(
            f"{where}: {', '.join(sorted(foreign))} cannot belong to this partition (expected {expected})"
        )
    if not files and refuse_foreign:
        raise LandingError(f"{where}: expected file {contract.file_name} is missing (found nothing of {expected})")
    return tuple(sorted(files, key=_natural_order) if len(files) > 1 else files)


def _part_file_pattern(contract: SourceContract) -> re.Pattern[str]:
    return re.compile(rf"(?:{re.escape(contract.name)}(?:[-_.].*)?|part-.*)\.{contract.file_format}")


def _natural_order(path: Path) -> list[object]:
    return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", path.name)]


def _links_out(root: Path, path: Path | os.DirEntry[str]) -> bool:
    """Whether ``path`` is a symbolic link that leads out of the landing folder ``root`` (a listed entry
    answers whether it is a link without a system call)."""
    return path.is_symlink() and not Path(os.path.realpath(path)).is_relative_to(root)


def _refuse_link_out(root: Path, path: Path | os.DirEntry[str], contract: SourceContract) -> None:
    """A symbolic link that leads out of the landing folder is refused: the folder is a trust boundary."""
    if _links_out(root, path):
        raise LandingError(
            f"{os.fspath(path)}: source {contract.name!r}: is a symbolic link to {os.readlink(path)}, outside "
            f"the landing folder; deliver the file itself (the landing folder is a trust boundary)"
        )


def record_rewritten_files(warehouse: Warehouse, paths: list[Path]) -> None:
    """The platform's own rewrite of delivered files (an erasure) is no re-delivery: the load log takes
    their new size, time and fingerprint (on their latest delivery). The log is written again (one
    query, the same on every engine: Spark's Parquet cannot update rows)."""
    if not paths:
        return
    files = [(str(path), path.stat(), file_fingerprint(path)) for path in paths]
    latest = (
        f"rewritten.file is not null and loads.delivery = "
        f"(select max(delivery) from {LOAD_LOG_TABLE} as l where l.file = loads.file)"
    )
    new_values = {
        "file_bytes": "cast(rewritten.file_bytes as bigint)",
        "file_modified_ns": "cast(rewritten.file_modified_ns as bigint)",
        "fingerprint": "rewritten.fingerprint",
    }
    columns = ", ".join(
        f"case when {latest} then {new_values[column]} else loads.{column} end as {column}"
        if column in new_values
        else f"loads.{column}"
        for column in warehouse.columns(LOAD_LOG_TABLE)
    )
    with warehouse.transaction():
        warehouse.rewrite_table(
            LOAD_LOG_TABLE,
            f"select {columns} from {LOAD_LOG_TABLE} as loads left join (values "
            + ", ".join("(?, ?, ?, ?)" for _ in files)
            + ") as rewritten (file, file_bytes, file_modified_ns, fingerprint) on rewritten.file = loads.file",
            [value for path, stat, digest in files for value in (path, stat.st_size, stat.st_mtime_ns, digest)],
        )


def file_fingerprint(path: Path) -> str:
    """The SHA-256 of a delivered file's content: the load log tells a corrected re-delivery by it."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _partition_day(folder: os.DirEntry[str]) -> date:
    if not folder.is_dir():
        raise LandingError(
            f"{folder.path}: source {Path(folder.path).parent.name!r}: a file beside the partition folders "
            f"cannot belong to the source; deliver it inside a dt=YYYY-MM-DD folder"
        )
    try:
        if not folder.name.startswith(PARTITION_PREFIX):
            raise ValueError
        return date.fromisoformat(folder.name.removeprefix(PARTITION_PREFIX))
    except ValueError:
        raise LandingError(
            f"{folder.path}: source {Path(folder.path).parent.name!r}: partition folder must be named "
            f"dt=YYYY-MM-DD with a real date, got {folder.name!r}"
        ) from None


def ensure_raw_schema(con: duckdb.DuckDBPyConnection) -> None:
    """The raw schema: the load log, the rejected lines, and every contract's table."""
    con.execute("create schema if not exists raw")
    _ensure_load_log(con)
    con.execute(f"""
        create table if not exists {REJECTED_ROWS_TABLE} (
            source varchar not null,
            partition_date date not null,
            source_file varchar not null,
            line_number bigint,
            raw_line varchar,
            reason varchar not null,
            loaded_at timestamp not null,
            delivery integer not null default 1,
            record_key varchar
        )""")
    con.execute(ERASED_IDS_DDL)
    _ensure_raw_tables(con)
    # Warehouses from before re-deliveries: every row and line so far came from a first delivery.
    _add_missing_columns(
        con,
        [
            (REJECTED_ROWS_TABLE, "delivery", "integer default 1"),
            (REJECTED_ROWS_TABLE, "record_key", "varchar"),
            *[(contract.raw_table, "_delivery", "integer default 1") for contract in CONTRACTS.values()],
        ],
    )


_LOAD_LOG_COLUMNS = """
    source varchar not null,
    partition_date date not null,
    file varchar not null,
    row_count bigint not null,
    rejected_count bigint not null,
    loaded_at timestamp not null,
    -- 1 for a partition's first delivery, one more for each corrected re-delivery of it
    delivery integer not null,
    -- what the file was when loaded: a changed size or time leads to comparing the fingerprint
    file_bytes bigint,
    file_modified_ns bigint,
    fingerprint varchar,
    primary key (source, partition_date, delivery, file)"""


def _add_missing_columns(con: duckdb.DuckDBPyConnection, columns: list[tuple[str, str, str]]) -> None:
    """Add each (raw table, column, definition) the table lacks; the catalog is read once (every load
    runs this)."""
    existing = set(
        con.execute(
            "select 'raw.' || table_name, column_name from duckdb_columns() where schema_name = 'raw'"
        ).fetchall()
    )
    for table, column, definition in columns:
        if (table, column) not in existing:
            con.execute(f"alter table {table} add column {column} {definition}")


def _ensure_load_log(con: duckdb.DuckDBPyConnection) -> None:
    """The load log, one row per loaded file; a log from before part files and re-deliveries (one row
    per partition) is carried over as first deliveries, their fingerprints taken at the next load."""
    old = con.execute(
        "select count(*) filter (where column_name = 'delivery'), count(*) from duckdb_columns() "
        "where schema_name = 'raw' and table_name = ?",
        [LOAD_LOG_TABLE.removeprefix("raw.")],
    ).fetchone()
    if old[1] and not old[0]:
        with transaction(con):
            con.execute(f"alter table {LOAD_LOG_TABLE} rename to _loaded_partitions_before_deliveries")
            con.execute(f"create table {LOAD_LOG_TABLE} ({_LOAD_LOG_COLUMNS})")
            con.execute(
                f"insert into {LOAD_LOG_TABLE} select source, partition_date, file, row_count, rejected_count, "
                f"loaded_at, 1, null, null, null from raw._loaded_partitions_before_deliveries"
            )
            con.execute("drop table raw._loaded_partitions_before_deliveries")
    con.execute(f"create table if not exists {LOAD_LOG_TABLE} ({_LOAD_LOG_COLUMNS})")


# Raw column types: CSV and JSON lines arrive as text (staging types them, so a bad value is
# quarantined, not fatal); Parquet carries its own types, which the contract pins.
_PARQUET_TYPES = {
    "integer": "bigint",
    "decimal": "double",
    "text": "varchar",
    "date": "date",
    "timestamp": "timestamp",
    "boolean": "boolean",
}


def _ensure_raw_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Every contract's raw table exists, delivered or not: an absent optional source reads as empty."""
    for contract in CONTRACTS.values():
        columns = ", ".join(
            f'"{c.name}" {_PARQUET_TYPES[c.type] if contract.file_format == "parquet" else "varchar"}'
            for c in contract.columns
        )
        con.execute(
            f"create table if not exists {contract.raw_table} ({columns}, _extra varchar, "
            f"_partition_date date, _source_file varchar, _loaded_at timestamp, _delivery integer default 1)"
        )


def check_file(contract: SourceContract, path: Path) -> CheckedFile:
    """Check a delivered file is readable as its format and has every contract column (of the
    contract's kind of type, for Parquet); return its columns and what the load must divert."""
    where = f"{path}: source {contract.name!r}"
    if path.stat().st_size == 0:
        if contract.file_format == "jsonl":  # zero JSON lines is a day without records
            return CheckedFile(list(contract.column_names), [], [])
        raise LandingError(
            f"{where}: file is empty (a day without records still needs the "
            f"{'header line' if contract.file_format == 'csv' else 'Parquet schema'})"
        )
    open_quote = _check_text(contract, path, where) if contract.file_format != "parquet" else False
    try:
        columns = _columns_of(contract, path)
    except (OSError, ValueError, UnicodeDecodeError, pa.ArrowException) as error:
        raise LandingError(f"{where}: cannot be read as {contract.file_format}: {_first_line(error)}") from None
    repeated = sorted({name for name in columns if columns.count(name) > 1})
    if repeated:
        positions = "; ".join(
            f"{name} in columns {', '.join(str(i + 1) for i, c in enumerate(columns) if c == name)}"
            for name in repeated
        )
        raise LandingError(
            f"{where}: the header names a column more than once ({positions}): which values are meant "
            f"cannot be told, so none is dropped silently; deliver one column per name"
        )
    missing = [name for name in contract.column_names if name not in columns]
    if missing:
        hint = ""
        if len(columns) == 1 and any(sep in columns[0] for sep in ";\t|"):
            hint = " (the header has a single column: is the delimiter not a comma?)"
        raise LandingError(f"{where}: missing required column(s) {', '.join(missing)}{hint}")
    if contract.file_format == "parquet":
        return CheckedFile(columns, [], _check_parquet_types(contract, path, where))
    repeats = _repeated_header_lines(path, columns) if contract.file_format == "csv" else []
    return CheckedFile(columns, repeats, [], open_quote)


def _check_text(contract: SourceContract, path: Path, where: str) -> bool:
    """Refuse a text file that is not UTF-8, or a CSV with a line DuckDB cannot read, naming the line;
    return whether a quote is left open (an odd number of quote characters in the file)."""
    quotes = 0
    with path.open("rb") as handle:
        for number, line in enumerate(handle, 1):
            quotes += line.count(b'"')
            if contract.file_format == "csv" and len(line) > MAX_CSV_LINE_BYTES:
                raise LandingError(
                    f"{where}: line {number} is {len(line):,} bytes long, above the limit of "
                    f"{MAX_CSV_LINE_BYTES:,} bytes per CSV line"
                )
            if NUL in line:
                # Valid UTF-8 but not text: no warehouse column holds it (PostgreSQL refuses it outright).
                raise LandingError(
                    f"{where}: line {number} holds a NUL byte (byte {line.index(NUL) + 1} of the line); "
                    f"the contract requires UTF-8 text: was the file exported as UTF-16 or binary?"
                )
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as error:
                bad = line[error.start : error.end].hex(" ")
                raise LandingError(
                    f"{where}: line {number} is not valid UTF-8 (byte {bad} at byte "
                    f"{error.start + 1} of the line); the contract requires UTF-8: was the "
                    f"file exported as latin-1 or Windows-1252?"
                ) from None
    return quotes % 2 == 1


def _repeated_header_lines(path: Path, columns: list[str]) -> list[tuple[int, str]]:
    """Lines after the first that repeat the header (as when two exports are concatenated)."""
    first = columns[0]
    repeats = []
    with path.open(encoding="utf-8-sig", newline="") as handle:
        next(handle, None)
        for number, line in enumerate(handle, 2):
            # Cheap test first: a repeated header starts with the first column name, maybe quoted.
            if not line.lstrip(' "').startswith(first):
                continue
            try:
                fields = next(csv.reader([line]), [])
            except csv.Error:  # e.g. a field above the csv module's size limit: not a header
                continue
            if [field.strip() for field in fields] == columns:
                repeats.append((number, line.rstrip("\r\n")))
    return repeats


_PARQUET_KINDS = {
    "integer": "an integer type",
    "decimal": "a number type (integer, floating point or decimal)",
    "text": "a UTF-8 string type",
    "date": "a date or timestamp type",
    "timestamp": "a timestamp or date type",
    "boolean": "boolean",
}


# The Parquet types each contract type accepts (the raw column's type can hold them).
def _parquet_type_fits(contract_type: str, arrow_type: pa.DataType) -> bool:
    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    if pa.types.is_null(arrow_type):
        return True
    return {
        "integer": pa.types.is_integer,
        "decimal": lambda t: pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t),
        "text": lambda t: pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t),
        "date": lambda t: pa.types.is_date(t) or pa.types.is_timestamp(t),
        "timestamp": lambda t: pa.types.is_date(t) or pa.types.is_timestamp(t),
        "boolean": pa.types.is_boolean,
    }[contract_type](arrow_type)


def _check_parquet_types(contract: SourceContract, path: Path, where: str) -> list[str]:
    """Refuse contract columns of the wrong kind of type; return the integer columns that may overflow."""
    schema = pq.read_schema(path)
    wrong = [
        f"{column.name} is {schema.field(column.name).type}, the contract wants {_PARQUET_KINDS[column.type]}"
        for column in contract.columns
        if not _parquet_type_fits(column.type, schema.field(column.name).type)
    ]
    if wrong:
        raise LandingError(f"{where}: column type(s) break the contract: {'; '.join(wrong)}")
    return [
        column.name
        for column in contract.columns
        if column.type == "integer" and schema.field(column.name).type == pa.uint64()
    ]


def _columns_of(contract: SourceContract, path: Path) -> list[str]:
    """Column names from the header, the Parquet schema, or the keys of the first JSON lines."""
    if contract.file_format == "parquet":
        return pq.read_schema(path).names
    with path.open(newline="", encoding="utf-8-sig") as handle:
        if contract.file_format == "csv":
            header = next(csv.reader(handle), None)
            if not header:
                raise ValueError("no header line")
            # An unnamed column (a trailing delimiter on every line) is named as DuckDB would name it.
            return [name.strip() or f"column{index}" for index, name in enumerate(header)]
        keys: dict[str, None] = {}
        parsed = 0
        for line in islice(handle, JSONL_SAMPLE_LINES):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                keys.update(dict.fromkeys(record))
                parsed += 1
        if not parsed:
            raise ValueError(f"none of the first {JSONL_SAMPLE_LINES} lines is a JSON object")
        return list(keys)


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _quote(value: object) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _ident(name: str) -> str:
    """A column name from a delivered file as a SQL identifier: file headers are untrusted text."""
    return '"' + name.replace('"', '""') + '"'


def _file_list(paths: list[Path]) -> str:
    return "[" + ", ".join(_quote(p) for p in paths) + "]"


@dataclass(frozen=True)
class DeliveredFile:
    path: Path
    size: int
    modified_ns: int
    fingerprint: str


@dataclass(frozen=True)
class Delivery:
    """A partition's files to load, as its delivery ``number``: 1 first, then one more per correction."""

    partition: Partition
    number: int
    files: tuple[DeliveredFile, ...]


def deliveries_to_load(
    con: duckdb.DuckDBPyConnection, contract: SourceContract, partitions: list[Partition]
) -> list[Delivery]:
    """The partitions never loaded (delivery 1) and those whose files changed since their latest
    delivery (a corrected re-delivery: the next number).

    A partition whose files have the names, sizes and times logged is unchanged without being read;
    otherwise the content fingerprints decide, so a copied or touched file is no re-delivery (its
    new size and time are logged, so the next load need not read it again).
    """
    logged: dict[date, tuple[int, dict[str, tuple]]] = {}
    for day, number, file, size, modified_ns, fingerprint in con.execute(
        f"""
        select partition_date, delivery, file, file_bytes, file_modified_ns, fingerprint from {LOAD_LOG_TABLE}
        where source = ? qualify delivery = max(delivery) over (partition by partition_date)""",
        [contract.name],
    ).fetchall():
        logged.setdefault(day, (number, {}))[1][os.path.basename(file)] = (size, modified_ns, fingerprint, file)
    deliveries, unchanged = [], []
    for partition in partitions:
        stats = {path.name: path.stat() for path in partition.files}
        number, files = logged.get(partition.day, (0, {}))
        if files.keys() == stats.keys() and all(
            files[name][:2] == (stat.st_size, stat.st_mtime_ns) for name, stat in stats.items()
        ):
            continue
        current = tuple(
            DeliveredFile(path, stats[path.name].st_size, stats[path.name].st_mtime_ns, file_fingerprint(path))
            for path in partition.files
        )
        # A log from before fingerprints (None) counts the file as it is now as what was loaded.
        if files.keys() == stats.keys() and all(files[f.path.name][2] in (None, f.fingerprint) for f in current):
            unchanged += [(f.size, f.modified_ns, f.fingerprint, files[f.path.name][3], number) for f in current]
        else:
            deliveries.append(Delivery(partition, number + 1, current))
    if unchanged:
        con.executemany(
            f"update {LOAD_LOG_TABLE} set file_bytes = ?, file_modified_ns = ?, fingerprint = ? "
            f"where file = ? and delivery = ? and source = '{contract.name}'",
            unchanged,
        )
    return deliveries


def load_source(
    con: duckdb.DuckDBPyConnection, contract: SourceContract, partitions: list[Partition], gate: BatchGate | None = None
) -> int:
    """Load the new and the re-delivered partitions in one transaction; return how many rows were inserted.

    A corrected re-delivery replaces its partition's rows in raw (every raw row carries the delivery
    it came from; the load log keeps every delivery's files, fingerprints and counts), and the next
    build rebuilds the incremental models (crm.pipeline), so records a correction removed go too.
    ``gate`` sees the batch before it commits; if it raises, the batch is rolled back.
    """
    deliveries = deliveries_to_load(con, contract, partitions)
    if not deliveries:
        return 0
    headers = {}
    for delivery in deliveries:
        for file in delivery.files:
            try:
                headers[file.path] = check_file(contract, file.path)
            except (OSError, csv.Error) as error:  # the file vanished or cannot be opened
                raise LandingError(f"{file.path}: source {contract.name!r}: cannot be read: {error}") from None
    corrected = [d.partition.day.isoformat() for d in deliveries if d.number > 1]
    if corrected:
        log.warning("source %s: corrected re-delivery of %s: loading it as a new delivery", contract.name, corrected)
    try:
        with transaction(con):
            con.execute(
                "create temp table landing_partitions as select * from (values "
                + ", ".join(
                    f"({_quote(f.path)}, date {_quote(d.partition.day.isoformat())}, {d.number}, {f.size}, "
                    f"{f.modified_ns}, {_quote(f.fingerprint)})"
                    for d in deliveries
                    for f in d.files
                )
                + ") as t(source_file, partition_date, delivery, file_bytes, file_modified_ns, fingerprint)"
            )
            # A corrected re-delivery replaces the partition: its earlier rows and lines leave raw (the
            # load log keeps what each delivery was: files, fingerprints, counts).
            for day in [d.partition.day for d in deliveries if d.number > 1]:
                con.execute(f"delete from {contract.raw_table} where _partition_date = ?", [day])
                con.execute(
                    f"delete from {REJECTED_ROWS_TABLE} where source = ? and partition_date = ?", [contract.name, day]
                )
            # Files with the same columns are read together (CSV readers need one header per scan).
            # A file with a quote left open is read on its own, so that DuckDB reports its last record.
            groups: dict[tuple[tuple[str, ...], Path | None], dict[Path, CheckedFile]] = {}
            for path, checked in headers.items():
                groups.setdefault((tuple(checked.columns), path if checked.open_quote else None), {})[path] = checked
            for (columns, _), files in groups.items():
                _insert_group(con, contract, list(columns), files)
            _divert_conflicting_versions(con, contract)
            if contract.file_format != "csv":  # a CSV with a NUL byte is refused at its check
                _divert_nul_characters(con, contract)
            # One pass over the new rows per table: the log reconciles with raw and rejects by construction.
            counts = con.execute(
                f"""
                insert into {LOAD_LOG_TABLE} (
                    source, partition_date, file, row_count, rejected_count, loaded_at, delivery,
                    file_bytes, file_modified_ns, fingerprint
                )
                select ?, p.partition_date, p.source_file, coalesce(loaded.n, 0), coalesce(rejected.n, 0),
                       current_timestamp::timestamp, p.delivery, p.file_bytes, p.file_modified_ns, p.fingerprint
                from landing_partitions p
                left join (
                    select _source_file as source_file, _delivery as delivery, count(*) as n
                    from {contract.raw_table}
                    where _source_file in (select source_file from landing_partitions) group by all
                ) loaded using (source_file, delivery)
                left join (
                    select source_file, delivery, count(*) as n from {REJECTED_ROWS_TABLE}
                    where source_file in (select source_file from landing_partitions) group by all
                ) rejected using (source_file, delivery)
                returning row_count, rejected_count""",
                [contract.name],
            ).fetchall()
            con.execute("drop table landing_partitions")
            if gate is not None:
                gate(con, contract, [d.partition.day for d in deliveries])
    except duckdb.Error as error:
        raise LandingError(
            f"source {contract.name!r}: load of {len(deliveries)} partition(s) failed, nothing was "
            f"written: {_first_line(error)}"
        ) from None
    except Exception as error:
        raise LandingError(
            f"source {contract.name!r}: {len(deliveries)} new partition(s) refused, nothing was written: {error}"
        ) from error
    inserted, rejected = sum(row[0] for row in counts), sum(row[1] for row in counts)
    log.info(
        "source %s: loaded %d rows from %d new or corrected partition(s) (%d file(s)), %d unparseable line(s) "
        "kept in %s",
        contract.name,
        inserted,
        len(deliveries),
        len(headers),
        rejected,
        REJECTED_ROWS_TABLE,
    )
    return inserted


OPEN_QUOTE_REASON = "unterminated quote: the quote opened on this line is never closed (the rest of the file loads)"
_OPEN_QUOTE_PLACEHOLDER = "__landing_open_quote_line__"


def _insert_group(
    con: duckdb.DuckDBPyConnection, contract: SourceContract, columns: list[str], files: dict[Path, CheckedFile]
) -> None:
    (first, checked), *others = files.items()
    if checked.open_quote and not others:
        _insert_with_open_quote(con, contract, columns, first, checked)
        return
    paths = list(files)
    extras = [c for c in columns if c not in contract.column_names and c != "filename"]
    # Null when every extra value of the row is (an empty column after a trailing delimiter).
    extra_sql = (
        f"case when {' and '.join(f'{_ident(c)} is null' for c in extras)} then null else "
        "to_json(struct_pack(" + ", ".join(f"{_ident(c)} := {_ident(c)}" for c in extras) + ")) end"
        if extras
        else "cast(null as varchar)"
    )
    wanted = ", ".join(_ident(c) for c in contract.column_names)
    lineage = (
        "p.partition_date as _partition_date, p.source_file as _source_file, "
        "current_timestamp::timestamp as _loaded_at, p.delivery as _delivery"
    )
    if contract.file_format == "jsonl":
        _insert_jsonl(con, contract, paths, lineage)
        return
    if contract.file_format == "csv":
        # The columns are the header's as checked, not sniffed: a sniffer gives up on a whole file for
        # one bad quote, where a fixed dialect rejects that record and loads the rest.
        names = "{" + ", ".join(f"{_quote(c)}: 'VARCHAR'" for c in columns if c != "filename") + "}"
        reader = (
            f"read_csv({_file_list(paths)}, header = true, auto_detect = false, columns = {names}, "
            f"filename = true, delim = ',', quote = '\"', escape = '\"', max_line_size = {MAX_CSV_LINE_BYTES}, "
            f"store_rejects = true, rejects_table = 'landing_rejects', rejects_scan = 'landing_scans')"
        )
        diverted = (
            _divert_repeated_headers(con, contract, files, columns, reader)
            if any(checked.repeated_header_lines for checked in files.values())
            else None
        )
    else:
        reader = f"read_parquet({_file_list(paths)}, filename = true, union_by_name = true, file_row_number = true)"
        overflowing = sorted({c for checked in files.values() for c in checked.parquet_out_of_range})
        diverted = _divert_out_of_range(con, contract, overflowing, reader, wanted) if overflowing else None
    source_sql = reader if diverted is None else diverted
    select_sql = (
        f"select {wanted}, {extra_sql} as _extra, {lineage} "
        f"from {source_sql} as f join landing_partitions p on p.source_file = f.filename"
    )
    if diverted is not None:
        select_sql += " where not f._diverted"
    con.execute(f"insert into {contract.raw_table} by name {select_sql}")
    if diverted is not None:
        con.execute(f"drop table {diverted}")
    if contract.file_format == "csv":
        con.execute(
            f"""
            insert into {REJECTED_ROWS_TABLE} {_REJECTED_COLUMNS}
            select ?, p.partition_date, p.source_file, r.line, r.csv_line,
                   r.error_type || ': ' || r.error_message, current_timestamp::timestamp, p.delivery
            from landing_rejects r
            join landing_scans s using (scan_id, file_id)
            join landing_partitions p on p.source_file = s.file_path
            -- DuckDB reports a short line once per missing column: keep one row per line.
            qualify row_number() over (partition by r.scan_id, r.file_id, r.line order by r.column_idx) = 1
            """,
            [contract.name],
        )
        con.execute("drop table landing_rejects")
        con.execute("drop table landing_scans")


def _insert_with_open_quote(
    con: duckdb.DuckDBPyConnection, contract: SourceContract, columns: list[str], path: Path, checked: CheckedFile
) -> None:
    """A CSV whose quote opened on one line is never closed would be one record from that line to the
    end of the file. The load reads a copy with that line replaced by a placeholder (rejected as a
    short line), so the rest of the file loads; the line is kept as rejected with its own text. The
    delivered file is not changed, and the rows keep it as their source file."""
    lines = path.read_bytes().splitlines(keepends=True)
    open_line, odd = None, False
    for number, line in enumerate(lines, 1):
        if line.count(b'"') % 2:
            odd = not odd
            if odd:
                open_line = number  # the quote still open at the end was opened on the last such line
    if open_line is None or open_line == 1:  # an open quote in the header: the header check names it
        _insert_group(con, contract, columns, {path: replace(checked, open_quote=False)})
        return
    original = lines[open_line - 1].decode("utf-8").rstrip("\r\n")
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / path.name
        lines[open_line - 1] = _OPEN_QUOTE_PLACEHOLDER.encode() + b"\n"
        copy.write_bytes(b"".join(lines))
        con.execute(
            "insert into landing_partitions select ?, partition_date, delivery, file_bytes, file_modified_ns, "
            "fingerprint from landing_partitions where source_file = ?",
            [str(copy), str(path)],
        )
        _insert_group(con, contract, columns, {copy: replace(checked, open_quote=False)})
        con.execute(f"update {contract.raw_table} set _source_file = ? where _source_file = ?", [str(path), str(copy)])
        con.execute(
            f"""
            update {REJECTED_ROWS_TABLE} set
                source_file = ?,
                line_number = case when rtrim(raw_line, chr(13) || chr(10)) = ? then ? else line_number end,
                reason = case when rtrim(raw_line, chr(13) || chr(10)) = ? then ? else reason end,
                raw_line = case when rtrim(raw_line, chr(13) || chr(10)) = ? then ? else raw_line end
            where source_file = ?""",
            [
                str(path),
                _OPEN_QUOTE_PLACEHOLDER,
                open_line,
                _OPEN_QUOTE_PLACEHOLDER,
                OPEN_QUOTE_REASON,
                _OPEN_QUOTE_PLACEHOLDER,
                original,
                str(copy),
            ],
        )
        con.execute("delete from landing_partitions where source_file = ?", [str(copy)])


def _divert_conflicting_versions(con: duckdb.DuckDBPyConnection, contract: SourceContract) -> None:
    """Two versions of one record in one delivery with the same key and ``updated_at`` but different
    values: neither can be taken for the truth, and the first in the file would win silently. Both
    leave raw for the rejected lines, with the reason and the key, in the source's own format."""
    if "updated_at" not in contract.column_names:
        return
    columns = [_ident(c) for c in contract.column_names]
    keys = [_ident(c) for c in contract.key]
    if contract.file_format == "csv":  # a CSV line in contract order, as erasure reads one
        quoted = [f"'\"' || replace(coalesce({c}, ''), '\"', '\"\"') || '\"'" for c in columns]
        line = "concat_ws(',', " + ", ".join(quoted) + ")"
    else:
        line = "to_json(struct_pack(" + ", ".join(f"{c} := cast({c} as varchar)" for c in columns) + "))"
    record = ", ".join([*keys, '"updated_at"', "_partition_date"])
    # Only a record that comes more than once is compared in full: a two-year first load has millions
    # of rows and a handful of repeats, so the keys are grouped first and the rows hashed after.
    con.execute(
        f"""
        create temp table landing_conflicts as
        with new_rows as (
            select rowid as _row_id, * from {contract.raw_table} as r
            where exists (select 1 from landing_partitions p
                          where p.source_file = r._source_file and p.delivery = r._delivery)
                and "updated_at" is not null and {" and ".join(f"{k} is not null" for k in keys)}
        ),

        repeated as (
            select {record} from new_rows group by {record} having count(*) > 1
        ),

        candidates as (
            select new_rows.*, md5(cast(row({", ".join(columns)}) as varchar)) as _version
            from new_rows inner join repeated using ({record})
        ),

        conflicting as (
            select {record} from candidates group by {record} having min(_version) <> max(_version)
        )

        select candidates._row_id from candidates inner join conflicting using ({record})"""
    )
    con.execute(
        f"""
        insert into {REJECTED_ROWS_TABLE} ({_REJECTED_COLUMNS.strip("()")}, record_key)
        select ?, _partition_date, _source_file, null, {line}, ?, current_timestamp::timestamp, _delivery,
               concat_ws('|', {", ".join(f"cast({k} as varchar)" for k in keys)})
        from {contract.raw_table}
        where rowid in (select _row_id from landing_conflicts)""",
        [contract.name, CONFLICTING_VERSIONS_REASON],
    )
    con.execute(f"delete from {contract.raw_table} where rowid in (select _row_id from landing_conflicts)")
    con.execute("drop table landing_conflicts")


def _divert_nul_characters(con: duckdb.DuckDBPyConnection, contract: SourceContract) -> None:
    """A JSON ``\\u0000`` escape or a Parquet string can carry a NUL character, which a text column on
    PostgreSQL cannot store: such a record leaves raw for the rejected lines on every engine, so that
    both keep the same rows, kept as JSON (where the NUL is an escape again) with the column named."""
    text_columns = [
        name
        for (name,) in con.execute(
            "select column_name from information_schema.columns where table_schema = ? and table_name = ? "
            "and data_type = 'VARCHAR' and column_name in (select unnest(?))",
            [*contract.raw_table.split("."), list(contract.column_names)],
        ).fetchall()
    ]
    if not text_columns:
        return
    found = " or ".join(f"contains({_ident(c)}, chr(0))" for c in text_columns)
    first_column = (
        "coalesce("
        + ", ".join(f"case when contains({_ident(c)}, chr(0)) then {_quote(c)} end" for c in text_columns)
        + ")"
    )
    columns = [_ident(c) for c in contract.column_names]
    new_rows = (
        f"from {contract.raw_table} as r where ({found}) and exists (select 1 from landing_partitions p "
        "where p.source_file = r._source_file and p.delivery = r._delivery)"
    )
    con.execute(
        f"""
        insert into {REJECTED_ROWS_TABLE} ({_REJECTED_COLUMNS.strip("()")}, record_key)
        select ?, _partition_date, _source_file, null,
               to_json(struct_pack({", ".join(f"{c} := cast({c} as varchar)" for c in columns)})),
               replace(?, '{{column}}', {first_column}), current_timestamp::timestamp, _delivery,
               concat_ws('|', {", ".join(f"cast({_ident(k)} as varchar)" for k in contract.key)})
        {new_rows}""",
        [contract.name, NUL_CHARACTER_REASON],
    )
    con.execute(f"delete {new_rows}")


def _divert_repeated_headers(
    con: duckdb.DuckDBPyConnection,
    contract: SourceContract,
    files: dict[Path, CheckedFile],
    columns: list[str],
    reader: str,
) -> str:
    """Read the CSVs into a temp table whose ``_diverted`` marks rows repeating the header; keep those
    lines, with their line numbers from the contract check, as rejected. Return the table's name."""
    is_header = " and ".join(f"coalesce(trim({_ident(c)}) = {_quote(c)}, false)" for c in columns if c != "filename")
    con.execute(f"create temp table landing_csv as select *, {is_header} as _diverted from {reader}")
    found = dict(con.execute("select filename, count(*) from landing_csv where _diverted group by all").fetchall())
    for path, checked in files.items():
        if found.get(str(path), 0) != len(checked.repeated_header_lines):
            raise LandingError(
                f"{path}: the header is repeated on line(s) "
                f"{', '.join(str(n) for n, _ in checked.repeated_header_lines) or 'none'} but "
                f"{found.get(str(path), 0)} row(s) read as a header: check the quoting"
            )
        if checked.repeated_header_lines:
            con.executemany(
                f"insert into {REJECTED_ROWS_TABLE} {_REJECTED_COLUMNS} select ?, partition_date, source_file, "
                f"?, ?, ?, current_timestamp::timestamp, delivery from landing_partitions where source_file = ?",
                [
                    [contract.name, number, line, REPEATED_HEADER_REASON, str(path)]
                    for number, line in checked.repeated_header_lines
                ],
            )
    return "landing_csv"


def _divert_out_of_range(
    con: duckdb.DuckDBPyConnection, contract: SourceContract, overflowing: list[str], reader: str, wanted: str
) -> str:
    """Read the Parquet files into a temp table whose ``_diverted`` marks rows with an integer beyond
    the raw column's bigint; keep those rows, as JSON with the reason, as rejected."""
    reasons = ", ".join(
        f"case when {_ident(c)} is not null and try_cast({_ident(c)} as bigint) is null then "
        f"'column {c}: ' || cast({_ident(c)} as varchar) || ' is beyond the bigint range' end"
        for c in overflowing
    )
    con.execute(
        f"create temp table landing_parquet as select *, _reason is not null as _diverted "
        f"from (select *, nullif(concat_ws('; ', {reasons}), '') as _reason from {reader})"
    )
    con.execute(
        f"""
        insert into {REJECTED_ROWS_TABLE} {_REJECTED_COLUMNS}
        select ?, p.partition_date, p.source_file, f.file_row_number + 1,
               to_json(struct_pack({
            ", ".join(f"{_ident(c)} := cast({_ident(c)} as varchar)" for c in contract.column_names)
        })),
               'value out of range: ' || f._reason, current_timestamp::timestamp, p.delivery
        from landing_parquet f join landing_partitions p on p.source_file = f.filename
        where f._diverted""",
        [contract.name],
    )
    return "landing_parquet"


def _insert_jsonl(con: duckdb.DuckDBPyConnection, contract: SourceContract, paths: list[Path], lineage: str) -> None:
    """JSON lines are split in SQL so that every line is kept: objects are loaded, the rest rejected."""
    # One parse per line extracts every field (one json_extract_string per field parsed it each time).
    json_paths = "[" + ", ".join(_quote(f'$."{c}"') for c in contract.column_names) + "]"
    fields = ", ".join(f"fields[{index}] as {_ident(c)}" for index, c in enumerate(contract.column_names, start=1))
    known = "[" + ", ".join(_quote(c) for c in contract.column_names) + "]"
    con.execute(f"""
        create temp table landing_lines as
        select filename, line_number, line,
               case when json_valid(line) then json_type(line) = 'OBJECT' else false end as is_object
        from (
            select filename, unnest(lines) as line, unnest(range(1, len(lines) + 1)) as line_number
            -- A byte order mark (some exporters write one) is not part of the first JSON object.
            from (select filename, string_split(ltrim(content, chr(65279)), chr(10)) as lines
                  from read_text({_file_list(paths)}))
        )
        where trim(line) <> ''""")
    select_sql = f"""
        select {fields},
               case when len(list_filter(json_keys(line), lambda k: not list_contains({known}, k))) > 0
                    then line end as _extra,
               {lineage}
        from (select *, json_extract_string(line, {json_paths}) as fields from landing_lines where is_object) l
        join landing_partitions p on p.source_file = l.filename"""
    con.execute(f"insert into {contract.raw_table} by name {select_sql}")
    con.execute(
        f"""
        insert into {REJECTED_ROWS_TABLE} {_REJECTED_COLUMNS}
        select ?, p.partition_date, p.source_file, l.line_number, l.line, 'malformed JSON line: not a JSON object',
               current_timestamp::timestamp, p.delivery
        from landing_lines l join landing_partitions p on p.source_file = l.filename
        where not l.is_object""",
        [contract.name],
    )
    con.execute("drop table landing_lines")


def latest_plausible_day() -> date:
    """Tomorrow (UTC): no exporter's time zone is further ahead, so a later partition cannot be true yet."""
    return datetime.now(UTC).date() + timedelta(days=1)


def load_landing(
    con: duckdb.DuckDBPyConnection, landing_dir: Path, gate: BatchGate | None = None, up_to: date | None = None
) -> dict[str, int]:
    """Load every source's new and re-delivered partitions (those of days up to ``up_to`` when given);
    return rows inserted per source.

    A source with a bad delivery loads nothing; the others load. Then every problem is raised together.
    Sources load in contract order, so the customer master is in before the activity that refers to it.
    A daily run for day D loads up to D only, so a backfill of past days sees what each day saw; a
    partition dated after tomorrow (no exporter's time zone is further ahead) is held back until its
    day comes, so a mistyped date never moves the scoring date.
    """
    ensure_raw_schema(con)
    partitions, problems = discover(landing_dir)
    latest_plausible = latest_plausible_day()
    last_day = min(up_to, latest_plausible) if up_to else latest_plausible
    inserted = {}
    for source in progress([name for name in CONTRACTS if name in partitions], "loading sources", unit="source"):
        days = [partition for partition in partitions[source] if partition.day <= last_day]
        for partition in partitions[source]:
            if partition.day > latest_plausible:
                log.warning(
                    "%s: source %s: dated after tomorrow, held back until its day comes", partition.folder, source
                )
        if not days:
            continue
        try:
            inserted[source] = load_source(con, CONTRACTS[source], days, gate)
        except LandingError as problem:
            problems.append(problem)
        except Exception as error:  # not ours: still one source's problem, and the others load
            log.exception("source %s: load failed", source)
            problems.append(
                LandingError(
                    f"{landing_dir / source}: source {source!r}: load failed, nothing was written: "
                    f"{type(error).__name__}: {_first_line(error)}"
                )
            )
    if problems:
        raise LandingError("\n".join(str(problem) for problem in problems))
    return inserted


@dataclass
class ScratchLoad:
    """A load run in a scratch DuckDB for a warehouse server: the rows inserted per source, the
    refusal to raise once the accepted sources are written, and the corrected partitions to replace."""

    inserted: dict[str, int]
    problem: LandingError | None
    corrected: list[tuple[str, date]]


def load_in_scratch(
    scratch: duckdb.DuckDBPyConnection,
    read: Callable[[str], pa.Table],
    landing_dir: Path,
    gate: BatchGate | None = None,
    up_to: date | None = None,
) -> ScratchLoad:
    """load_landing in ``scratch`` (a new database with the raw schema), seeded with what decides a load,
    read from the warehouse with ``read``: its load log (what is new or corrected) and the customer
    master's ids and days (the raw gate's known-customer check). The new rows are those with a source
    file (seeded rows have none); a refused source is absent from the scratch database."""
    customers = CONTRACTS["customers"].raw_table
    for table, query in (
        (LOAD_LOG_TABLE, f"select * from {LOAD_LOG_TABLE}"),
        (customers, f"select distinct customer_id, _partition_date from {customers}"),
    ):
        scratch.register("seed", read(query))
        scratch.execute(f"insert into {table} by name select * from seed")
        scratch.unregister("seed")
    scratch.execute(f"create temp table seeded_log as select * from {LOAD_LOG_TABLE}")
    try:
        inserted, problem = load_landing(scratch, landing_dir, gate, up_to), None
    except LandingError as refused:
        inserted, problem = {}, refused
    # Later deliveries that the seeded log did not list: corrected re-deliveries.
    corrected = scratch.execute(f"""
        select distinct source, partition_date from {LOAD_LOG_TABLE} as loads
        where delivery > 1 and not exists (
            select 1 from seeded_log as seeded
            where seeded.source = loads.source and seeded.partition_date = loads.partition_date
              and seeded.delivery = loads.delivery and seeded.file = loads.file)""").fetchall()
    return ScratchLoad(inserted, problem, corrected)


def table_layout(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple[str, str]]:
    """The columns of ``table`` (schema.name) in a DuckDB database and their types, in order: what a
    warehouse server's raw table is created like."""
    schema, name = table.split(".")
    return con.execute(
        "select column_name, data_type from duckdb_columns() "
        "where schema_name = ? and table_name = ? order by column_index",
        [schema, name],
    ).fetchall()

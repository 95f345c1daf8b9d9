"""Checking and loading daily deliveries into the warehouse's raw schema.

Deliveries land as ``<landing>/<source>/dt=YYYY-MM-DD/<source>.<format>`` (crm.contracts). A load
takes every partition of a source not loaded before, checks each file against the contract, and
inserts the whole batch in one transaction. A file that breaks the contract (missing or empty,
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
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from itertools import islice
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from crm.contracts import CONTRACTS, SourceContract
from crm.progress import progress
from crm.warehouse import transaction

log = logging.getLogger(__name__)

PARTITION_PREFIX = "dt="
LOAD_LOG_TABLE = "raw._loaded_partitions"
REJECTED_ROWS_TABLE = "raw._rejected_rows"
# The right-to-be-forgotten suppression list (crm.erasure): keyed hashes only, read by dbt staging.
ERASED_IDS_TABLE = "raw._erased_ids"
# How many lines of a JSON-lines file the contract check reads to find the keys.
JSONL_SAMPLE_LINES = 200
# The longest CSV line DuckDB is asked to read (its default is 2 MB); a longer line refuses the file,
# since the CSV reader cannot skip it and keep it as rejected. JSON lines have no limit.
MAX_CSV_LINE_BYTES = 8 * 1024 * 1024
REPEATED_HEADER_REASON = "repeated header line (files concatenated?)"


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
            problems.append(
                LandingError(
                    f"{source_dir}: unknown source folder {source_dir.name!r}; "
                    f"known sources are {', '.join(sorted(CONTRACTS))}"
                )
            )
            continue
        try:
            found[contract.name] = [
                Partition(contract.name, _partition_day(folder), folder / contract.file_name)
                for folder in sorted(p for p in source_dir.iterdir() if p.is_dir())
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


def _partition_day(folder: Path) -> date:
    try:
        if not folder.name.startswith(PARTITION_PREFIX):
            raise ValueError
        return date.fromisoformat(folder.name.removeprefix(PARTITION_PREFIX))
    except ValueError:
        raise LandingError(
            f"{folder}: source {folder.parent.name!r}: partition folder must be named "
            f"dt=YYYY-MM-DD with a real date, got {folder.name!r}"
        ) from None


def ensure_raw_schema(con: duckdb.DuckDBPyConnection) -> None:
    """The raw schema: the load log, the rejected lines, and every contract's table."""
    con.execute("create schema if not exists raw")
    con.execute(f"""
        create table if not exists {LOAD_LOG_TABLE} (
            source varchar not null,
            partition_date date not null,
            file varchar not null,
            row_count bigint not null,
            rejected_count bigint not null,
            loaded_at timestamp not null,
            primary key (source, partition_date)
        )""")
    con.execute(f"""
        create table if not exists {REJECTED_ROWS_TABLE} (
            source varchar not null,
            partition_date date not null,
            source_file varchar not null,
            line_number bigint,
            raw_line varchar,
            reason varchar not null,
            loaded_at timestamp not null
        )""")
    con.execute(f"""
        create table if not exists {ERASED_IDS_TABLE} (
            id_kind varchar not null,
            id_hash varchar not null,
            erased_at timestamp not null,
            request_hash varchar not null,
            primary key (id_kind, id_hash)
        )""")
    _ensure_raw_tables(con)


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
            f"_partition_date date, _source_file varchar, _loaded_at timestamp)"
        )


def loaded_days(con: duckdb.DuckDBPyConnection, source: str) -> set[date]:
    rows = con.execute(f"select partition_date from {LOAD_LOG_TABLE} where source = ?", [source]).fetchall()
    return {row[0] for row in rows}


def check_file(contract: SourceContract, partition: Partition) -> CheckedFile:
    """Check the file exists, is readable as its format, and has every contract column (of the
    contract's kind of type, for Parquet); return its columns and what the load must divert."""
    path = partition.path
    where = f"{path}: source {contract.name!r}"
    if not path.is_file():
        others = sorted(p.name for p in path.parent.iterdir())
        raise LandingError(f"{where}: expected file {contract.file_name} is missing (found {others or 'nothing'})")
    if path.stat().st_size == 0:
        if contract.file_format == "jsonl":  # zero JSON lines is a day without records
            return CheckedFile(list(contract.column_names), [], [])
        raise LandingError(
            f"{where}: file is empty (a day without records still needs the "
            f"{'header line' if contract.file_format == 'csv' else 'Parquet schema'})"
        )
    if contract.file_format != "parquet":
        _check_text(contract, path, where)
    try:
        columns = _columns_of(contract, path)
    except (OSError, ValueError, UnicodeDecodeError, pa.ArrowException) as error:
        raise LandingError(f"{where}: cannot be read as {contract.file_format}: {_first_line(error)}") from None
    missing = [name for name in contract.column_names if name not in columns]
    if missing:
        hint = ""
        if len(columns) == 1 and any(sep in columns[0] for sep in ";\t|"):
            hint = " (the header has a single column: is the delimiter not a comma?)"
        raise LandingError(f"{where}: missing required column(s) {', '.join(missing)}{hint}")
    if contract.file_format == "parquet":
        return CheckedFile(columns, [], _check_parquet_types(contract, path, where))
    repeats = _repeated_header_lines(path, columns) if contract.file_format == "csv" else []
    return CheckedFile(columns, repeats, [])


def _check_text(contract: SourceContract, path: Path, where: str) -> None:
    """Refuse a text file that is not UTF-8, or a CSV with a line DuckDB cannot read, naming the line."""
    with path.open("rb") as handle:
        for number, line in enumerate(handle, 1):
            if contract.file_format == "csv" and len(line) > MAX_CSV_LINE_BYTES:
                raise LandingError(
                    f"{where}: line {number} is {len(line):,} bytes long, above the limit of "
                    f"{MAX_CSV_LINE_BYTES:,} bytes per CSV line"
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
            return [name.strip() for name in header]
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


def load_source(
    con: duckdb.DuckDBPyConnection, contract: SourceContract, partitions: list[Partition], gate: BatchGate | None = None
) -> int:
    """Load the partitions not loaded yet in one transaction; return how many rows were inserted.

    ``gate`` sees the batch before it commits; if it raises, the batch is rolled back.
    """
    done = loaded_days(con, contract.name)
    new = [p for p in partitions if p.day not in done]
    if not new:
        return 0
    headers = {p.path: check_file(contract, p) for p in new}
    try:
        with transaction(con):
            con.execute(
                "create temp table landing_partitions as select * from (values "
                + ", ".join(f"({_quote(p.path)}, date {_quote(p.day.isoformat())})" for p in new)
                + ") as t(source_file, partition_date)"
            )
            # Files with the same columns are read together (CSV readers need one header per scan).
            groups: dict[tuple[str, ...], dict[Path, CheckedFile]] = {}
            for path, checked in headers.items():
                groups.setdefault(tuple(checked.columns), {})[path] = checked
            for columns, files in groups.items():
                _insert_group(con, contract, list(columns), files)
            # One pass over the new rows per table: the log reconciles with raw and rejects by construction.
            counts = con.execute(
                f"""
                insert into {LOAD_LOG_TABLE}
                select ?, p.partition_date, p.source_file, coalesce(loaded.n, 0), coalesce(rejected.n, 0),
                       current_timestamp::timestamp
                from landing_partitions p
                left join (
                    select _source_file as source_file, count(*) as n from {contract.raw_table}
                    where _source_file in (select source_file from landing_partitions) group by all
                ) loaded using (source_file)
                left join (
                    select source_file, count(*) as n from {REJECTED_ROWS_TABLE}
                    where source_file in (select source_file from landing_partitions) group by all
                ) rejected using (source_file)
                returning row_count, rejected_count""",
                [contract.name],
            ).fetchall()
            con.execute("drop table landing_partitions")
            if gate is not None:
                gate(con, contract, [p.day for p in new])
    except duckdb.Error as error:
        raise LandingError(
            f"source {contract.name!r}: load of {len(new)} partition(s) failed, nothing was "
            f"written: {_first_line(error)}"
        ) from None
    except Exception as error:
        raise LandingError(
            f"source {contract.name!r}: {len(new)} new partition(s) refused, nothing was written: {error}"
        ) from error
    inserted, rejected = sum(row[0] for row in counts), sum(row[1] for row in counts)
    log.info(
        "source %s: loaded %d rows from %d new partition(s), %d unparseable line(s) kept in %s",
        contract.name,
        inserted,
        len(new),
        rejected,
        REJECTED_ROWS_TABLE,
    )
    return inserted


def _insert_group(
    con: duckdb.DuckDBPyConnection, contract: SourceContract, columns: list[str], files: dict[Path, CheckedFile]
) -> None:
    paths = list(files)
    extras = [c for c in columns if c not in contract.column_names and c != "filename"]
    extra_sql = (
        "to_json(struct_pack(" + ", ".join(f"{_ident(c)} := {_ident(c)}" for c in extras) + "))"
        if extras
        else "cast(null as varchar)"
    )
    wanted = ", ".join(_ident(c) for c in contract.column_names)
    lineage = (
        "p.partition_date as _partition_date, p.source_file as _source_file, current_timestamp::timestamp as _loaded_at"
    )
    if contract.file_format == "jsonl":
        _insert_jsonl(con, contract, paths, lineage)
        return
    if contract.file_format == "csv":
        reader = (
            f"read_csv({_file_list(paths)}, header = true, all_varchar = true, filename = true, "
            f"delim = ',', quote = '\"', escape = '\"', max_line_size = {MAX_CSV_LINE_BYTES}, "
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
            insert into {REJECTED_ROWS_TABLE}
            select ?, p.partition_date, p.source_file, r.line, r.csv_line,
                   r.error_type || ': ' || r.error_message, current_timestamp::timestamp
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
                f"insert into {REJECTED_ROWS_TABLE} select ?, partition_date, source_file, ?, ?, ?, "
                f"current_timestamp::timestamp from landing_partitions where source_file = ?",
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
        insert into {REJECTED_ROWS_TABLE}
        select ?, p.partition_date, p.source_file, f.file_row_number + 1,
               to_json(struct_pack({
            ", ".join(f"{_ident(c)} := cast({_ident(c)} as varchar)" for c in contract.column_names)
        })),
               'value out of range: ' || f._reason, current_timestamp::timestamp
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
        insert into {REJECTED_ROWS_TABLE}
        select ?, p.partition_date, p.source_file, l.line_number, l.line, 'malformed JSON line: not a JSON object',
               current_timestamp::timestamp
        from landing_lines l join landing_partitions p on p.source_file = l.filename
        where not l.is_object""",
        [contract.name],
    )
    con.execute("drop table landing_lines")


def load_landing(
    con: duckdb.DuckDBPyConnection, landing_dir: Path, gate: BatchGate | None = None, up_to: date | None = None
) -> dict[str, int]:
    """Load every source's new partitions (those of days up to ``up_to`` when given); return rows
    inserted per source.

    A source with a bad delivery loads nothing; the others load. Then every problem is raised together.
    Sources load in contract order, so the customer master is in before the activity that refers to it.
    A daily run for day D loads up to D only, so a backfill of past days sees what each day saw.
    """
    ensure_raw_schema(con)
    partitions, problems = discover(landing_dir)
    inserted = {}
    for source in progress([name for name in CONTRACTS if name in partitions], "loading sources", unit="source"):
        days = [partition for partition in partitions[source] if up_to is None or partition.day <= up_to]
        if not days:
            continue
        try:
            inserted[source] = load_source(con, CONTRACTS[source], days, gate)
        except LandingError as problem:
            problems.append(problem)
    if problems:
        raise LandingError("\n".join(str(problem) for problem in problems))
    return inserted

"""Hostile inputs at the landing boundary: each loads correctly, is quarantined with a reason, or is
refused with a message naming file, source, line or column and the problem; nothing is dropped.

The table of behaviours is in expectations/README.md ("Hostile inputs"). Row-level cases are put into
one generated delivery, loaded and built once (real DuckDB, Great Expectations and dbt); file-level
refusals each load a copy of a generated delivery.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from crm import gates, pipeline
from crm.contracts import CONTRACTS
from crm.generate import GeneratorConfig, generate
from crm.landing import (
    LOAD_LOG_TABLE,
    MAX_CSV_LINE_BYTES,
    REJECTED_ROWS_TABLE,
    LandingError,
    load_landing,
    partition_dir,
)
from crm.quality import QualityGate, QualityGateFailed
from crm.settings import Settings
from crm.warehouse import DuckDBWarehouse, Warehouse, connect, open_warehouse
from ml.features import FEATURE_COLUMNS
from ml.training import preflight_result

FIRST_DAY = date(2026, 9, 25)  # the generator's first day: the full customer master, outside the gate's recent days
LAST_DAY = date(2026, 11, 23)
SQL_TEXT = "'); drop table raw.customers; --"
ONE_MB = 1_000_000
csv.field_size_limit(2 * MAX_CSV_LINE_BYTES)  # this test's own reading of the very long lines


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small generated delivery; every test works on its own copy."""
    home = tmp_path_factory.mktemp("hostile_generated")
    generate(GeneratorConfig(customers=300, days=60, end_date=LAST_DAY), home / "landing", home / "truth")
    return home / "landing"


def _copy(generated: Path, home: Path) -> Settings:
    # The raw gate checks the newest day only (the hostile records are on the first day, outside the
    # gate's days in any case); the gate itself is tested in test_quality_gates.py.
    settings = Settings.from_env(home=home, gate_recent_days=1)
    shutil.copytree(generated, settings.landing_dir)
    return settings


# Writing hostile records into a delivery ----------------------------------------------------------


def _csv_path(landing: Path, source: str, day: date = FIRST_DAY) -> Path:
    return partition_dir(landing, source, day) / CONTRACTS[source].file_name


def _read_csv(path: Path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"), newline="")))


# Hostile records are delivered on the first day: their event times move there, so that no other
# rule (an event after its delivery day) rejects them first.
_ON_FIRST_DAY = {
    "surveys": {"responded_at": f"{FIRST_DAY} 10:00:00"},
    "tickets": {"created_at": f"{FIRST_DAY}T10:00:00", "resolved_at": None, "csat": None},
    "marketing_events": {"event_at": f"{FIRST_DAY}T10:00:00"},
}


def _template(landing: Path, source: str) -> dict:
    """A well-formed record of the source to derive hostile ones from."""
    for path in _partitions_with_records(landing, source):
        if CONTRACTS[source].file_format == "jsonl":
            for line in path.read_text().splitlines():
                try:
                    return {**json.loads(line), **_ON_FIRST_DAY.get(source, {})}
                except ValueError:
                    continue
        else:
            header, *rows = _read_csv(path)
            for row in rows:
                if len(row) == len(header):
                    return {**dict(zip(header, row, strict=True)), **_ON_FIRST_DAY.get(source, {})}
    raise AssertionError(f"no record of {source} to copy")


def _partitions_with_records(landing: Path, source: str) -> list[Path]:
    paths = sorted((landing / source).glob(f"dt=*/{CONTRACTS[source].file_name}"))
    if CONTRACTS[source].file_format == "csv":
        return [path for path in paths if len(_read_csv(path)) > 1]
    return [path for path in paths if path.stat().st_size > 0]


def _append_csv(landing: Path, source: str, records: list[dict[str, str]]) -> None:
    path = _csv_path(landing, source)
    header = _read_csv(path)[0]
    buffer = io.StringIO()
    csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows(
        [record[name] for name in header] for record in records
    )
    with path.open("a", encoding="utf-8", newline="") as handle:
        handle.write(buffer.getvalue())


def _append_jsonl(
    landing: Path, source: str, records: list[dict[str, object]], numbers: dict[str, str] | None = None
) -> None:
    """Append records; ``numbers`` writes fields as bare JSON number literals (such as 1e400)."""
    numbers = numbers or {}
    path = partition_dir(landing, source, FIRST_DAY) / CONTRACTS[source].file_name
    lines = []
    for record in records:
        line = json.dumps({**record, **{field: "__number__" for field in numbers}})
        for field, literal in numbers.items():
            line = line.replace(f'"{field}": "__number__"', f'"{field}": {literal}', 1)
        lines.append(line + "\n")
    with path.open("a", encoding="utf-8") as handle:
        handle.writelines(lines)


def _with(template: dict, **values: object) -> dict:
    return {**template, **{k: (v if isinstance(v, str) or v is None else str(v)) for k, v in values.items()}}


@dataclass(frozen=True)
class Expect:
    """Where a hostile record must end up: loaded with a value, or quarantined with a reason."""

    source: str
    record_key: str  # the raw key as text, or "line N" (of the first day's file) for lines kept at load
    reason: str | None = None  # None: loaded and accepted
    loaded_value: tuple[str, str, object] | None = None  # (staging model, column, value) to find it by key


def _bom(landing: Path) -> list[Expect]:
    path = _partitions_with_records(landing, "surveys")[-1]
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    first_id = _read_csv(path)[1][0]
    jsonl = _partitions_with_records(landing, "tickets")[-1]
    jsonl.write_bytes(b"\xef\xbb\xbf" + jsonl.read_bytes())
    first_ticket = json.loads(jsonl.read_text(encoding="utf-8-sig").splitlines()[0])["ticket_id"]
    return [
        Expect("surveys", first_id, loaded_value=("stg_surveys__responses", "response_id", int(first_id))),
        Expect("tickets", str(first_ticket), loaded_value=("stg_service__tickets", "ticket_id", first_ticket)),
    ]


def _quoted_newlines(landing: Path) -> list[Expect]:
    text = 'first line\nsecond line, with "quotes"\r\nthird line'
    _append_csv(landing, "surveys", [_with(_template(landing, "surveys"), response_id=910001, comment=text)])
    return [Expect("surveys", "910001", loaded_value=("stg_surveys__responses", "comment", text))]


def _long_text(landing: Path) -> list[Expect]:
    text = "very long comment " * (ONE_MB // 18)
    _append_csv(landing, "surveys", [_with(_template(landing, "surveys"), response_id=910002, comment=text)])
    _append_jsonl(landing, "tickets", [{**_template(landing, "tickets"), "ticket_id": 910003, "description": text}])
    return [
        Expect("surveys", "910002", loaded_value=("stg_surveys__responses", "comment", text.strip())),
        Expect("tickets", "910003", loaded_value=("stg_service__tickets", "description", text.strip())),
    ]


def _numeric_overflow(landing: Path) -> list[Expect]:
    _append_csv(landing, "products", [_with(_template(landing, "products"), product_id=910004, list_price="1e400")])
    _append_csv(landing, "customers", [_with(_template(landing, "customers"), customer_id="99999999999999999999")])
    _append_jsonl(landing, "tickets", [{**_template(landing, "tickets"), "ticket_id": 910005}], {"csat": "1e400"})
    event = {**_template(landing, "marketing_events"), "event_id": 910006, "event_type": "conversion", "variant": "A"}
    _append_jsonl(landing, "marketing_events", [event], {"revenue": "1e400"})
    orders = partition_dir(landing, "orders", FIRST_DAY) / "orders.parquet"
    table = pq.read_table(orders)
    good = [row for row in table.to_pylist() if row["status"] == "completed" and (row["amount"] or 0) > 1]
    extra = [dict(good[0]), dict(good[0])]
    extra[0].update(order_id=2**64 - 1)  # beyond bigint: kept as rejected at load
    extra[1].update(order_id=910007, amount=float("inf"))  # a double overflow that arrives as infinity
    rows = table.to_pylist() + extra
    schema = table.schema.set(table.schema.get_field_index("order_id"), pa.field("order_id", pa.uint64()))
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), orders)
    return [
        Expect("products", "910004", "list_price not a finite number"),
        Expect("customers", "99999999999999999999", "missing or invalid customer_id"),
        Expect("tickets", "910005", "invalid csat"),
        Expect("marketing_events", "910006", "revenue not a finite number"),
        Expect(
            "orders",
            f"line {len(rows) - 1}",
            "value out of range: column order_id: 18446744073709551615 is beyond the bigint range",
        ),
        Expect("orders", "910007", "amount not a finite number"),
    ]


def _repeated_header(landing: Path) -> list[Expect]:
    path = _csv_path(landing, "customers")
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines.insert(5, lines[0])
    path.write_text("".join(lines), encoding="utf-8")
    return [Expect("customers", "line 6", "repeated header line (files concatenated?)")]


def _sql_text(landing: Path) -> list[Expect]:
    _append_csv(landing, "surveys", [_with(_template(landing, "surveys"), response_id=910008, comment=SQL_TEXT)])
    _append_jsonl(landing, "tickets", [{**_template(landing, "tickets"), "ticket_id": 910009, "description": SQL_TEXT}])
    # A column name is text from the file too: it is quoted as an identifier, kept in _extra.
    path = _partitions_with_records(landing, "campaigns")[0]
    header, *rows = _read_csv(path)
    buffer = io.StringIO()
    csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows(
        [header + ['x"); drop table raw.customers; --'], *(row + ["v"] for row in rows)]
    )
    path.write_text(buffer.getvalue(), encoding="utf-8")
    return [
        Expect("surveys", "910008", loaded_value=("stg_surveys__responses", "comment", SQL_TEXT)),
        Expect("tickets", "910009", loaded_value=("stg_service__tickets", "description", SQL_TEXT)),
    ]


def _wrong_date_formats(landing: Path) -> list[Expect]:
    customer = _template(landing, "customers")
    _append_csv(
        landing,
        "customers",
        [
            _with(customer, customer_id=910010, signup_date="24/11/2026"),
            _with(customer, customer_id=910011, signup_date="2026-13-01"),
            _with(customer, customer_id=910012, updated_at="Nov 24 2026"),
            _with(customer, customer_id=910013, birth_date="24/11/1980"),
        ],
    )
    _append_csv(
        landing, "surveys", [_with(_template(landing, "surveys"), response_id=910014, responded_at="Nov 24 2026")]
    )
    _append_jsonl(
        landing, "tickets", [{**_template(landing, "tickets"), "ticket_id": 910015, "created_at": "2026-13-01"}]
    )
    return [
        Expect("customers", "910010", "missing or invalid signup_date"),
        Expect("customers", "910011", "missing or invalid signup_date"),
        Expect("customers", "910012", "missing or invalid updated_at"),
        Expect("customers", "910013", "invalid birth_date"),
        Expect("surveys", "910014", "missing or invalid responded_at"),
        Expect("tickets", "910015", "missing or invalid created_at"),
    ]


def _currencies_and_free_orders(landing: Path) -> list[Expect]:
    """An order in US dollars and a free one (amount 0) are orders. On the last day every order comes
    in a currency without a rate: the day is quarantined, and the quarantine gate blocks it."""
    orders = partition_dir(landing, "orders", FIRST_DAY) / "orders.parquet"
    table = pq.read_table(orders)
    good = next(row for row in table.to_pylist() if row["status"] == "completed" and (row["amount"] or 0) > 1)
    extra = [dict(good, order_id=910016, currency="USD", amount=100.0), dict(good, order_id=910017, amount=0.0)]
    pq.write_table(pa.Table.from_pylist(table.to_pylist() + extra, schema=table.schema), orders)
    last = partition_dir(landing, "orders", LAST_DAY) / "orders.parquet"
    day = pq.read_table(last)
    position = day.schema.get_field_index("currency")
    pq.write_table(day.set_column(position, "currency", pa.array(["JPY"] * day.num_rows)), last)
    return [
        Expect("orders", "910016", loaded_value=("stg_shop__orders", "currency", "USD")),
        Expect("orders", "910017", loaded_value=("stg_shop__orders", "amount", 0.0)),
    ]


def _nul_characters(landing: Path) -> list[Expect]:
    """A NUL character decoded from a JSON escape or read from a Parquet string: no text column on
    PostgreSQL can hold one, so the record is quarantined on every engine (the same rows on both)."""
    _append_jsonl(landing, "tickets", [{**_template(landing, "tickets"), "ticket_id": 910018, "description": "a\x00b"}])
    orders = partition_dir(landing, "orders", FIRST_DAY) / "orders.parquet"
    table = pq.read_table(orders)
    good = next(row for row in table.to_pylist() if row["status"] == "completed")
    extra = dict(good, order_id=910019, status="completed\x00")
    pq.write_table(pa.Table.from_pylist([*table.to_pylist(), extra], schema=table.schema), orders)
    return [
        Expect("tickets", "910018", "NUL character in text (column description)"),
        Expect("orders", "910019", "NUL character in text (column status)"),
    ]


def _copy_control_text(landing: Path) -> list[Expect]:
    """Text that means something to PostgreSQL's COPY (its end-of-data line, its null marker, tabs and
    backslashes) loads as the text it is on every engine."""
    text = 'before\n\\.\nafter \\N\t"tab" \\\\ end'
    _append_csv(landing, "surveys", [_with(_template(landing, "surveys"), response_id=910020, comment=text)])
    _append_csv(landing, "surveys", [_with(_template(landing, "surveys"), response_id=910021, comment="\\.")])
    return [
        Expect("surveys", "910020", loaded_value=("stg_surveys__responses", "comment", text)),
        Expect("surveys", "910021", loaded_value=("stg_surveys__responses", "comment", "\\.")),
    ]


ROW_LEVEL_CASES: dict[str, Callable[[Path], list[Expect]]] = {
    "utf8_byte_order_mark": _bom,
    "quoted_newlines": _quoted_newlines,
    "one_megabyte_text": _long_text,
    "numeric_overflow": _numeric_overflow,
    "repeated_header_row": _repeated_header,
    "sql_like_text": _sql_text,
    "wrong_date_formats": _wrong_date_formats,
    "currencies_and_free_orders": _currencies_and_free_orders,
    "nul_characters": _nul_characters,
    "copy_control_text": _copy_control_text,
}


@pytest.fixture(scope="module")
def hostile_build(
    generated: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Settings, dict[str, list[Expect]]]:
    """Every row-level hostile case in one delivery, loaded (raw gate included) and built with dbt."""
    settings = _copy(generated, tmp_path_factory.mktemp("hostile_home"))
    expected = {name: make(settings.landing_dir) for name, make in ROW_LEVEL_CASES.items()}
    pipeline.load(settings)
    pipeline.build_warehouse(settings)
    return settings, expected


_KEYS = {"customers": "customer_id", "surveys": "response_id", "tickets": "ticket_id", "orders": "order_id"}


@pytest.fixture(scope="module")
def hostile_build_on_postgres(hostile_build, postgres_database, tmp_path_factory) -> Iterator[Settings]:
    """The same hostile delivery loaded and built on PostgreSQL: a home with the DuckDB home's landing
    folder and PII key, its warehouse a database of its own."""
    settings, _ = hostile_build
    home = tmp_path_factory.mktemp("hostile_team_home")
    shutil.copytree(settings.home / ".crm", home / ".crm")
    with postgres_database("crm_test_hostile") as url:
        team = Settings.from_env(home=home, gate_recent_days=1, landing_dir=settings.landing_dir, warehouse_url=url)
        pipeline.load(team)
        pipeline.build_warehouse(team)
        yield team


@pytest.fixture(params=["duckdb", "postgres"])
def hostile_warehouse(request) -> Iterator[Warehouse]:
    """The hostile build's warehouse on each engine (the PostgreSQL build is made on first use)."""
    settings = (
        request.getfixturevalue("hostile_build")[0]
        if request.param == "duckdb"
        else request.getfixturevalue("hostile_build_on_postgres")
    )
    with open_warehouse(settings, read_only=True) as warehouse:
        yield warehouse


@pytest.mark.parametrize("case", list(ROW_LEVEL_CASES))
def test_hostile_record_is_loaded_or_quarantined_with_a_reason(hostile_build, hostile_warehouse, case: str):
    """The first case waits for the module's one load and dbt build of every hostile record (under a
    minute), the first on PostgreSQL for the same there."""
    _, expected = hostile_build
    warehouse = hostile_warehouse
    for expect in expected[case]:
        at_load = expect.record_key.startswith("line ")
        reasons = [
            row[0]
            for row in warehouse.rows(
                "select reason from audit.rejected_rows where source = ? and record_key = ? "
                "and (not ? or partition_date = ?)",
                [expect.source, expect.record_key, at_load, FIRST_DAY],
            )
        ]
        if expect.reason is not None:
            assert reasons == [expect.reason], expect
            continue
        assert reasons == [], expect
        model, column, value = expect.loaded_value
        found = warehouse.rows(
            f"select {column} from staging.{model} where {_KEYS[expect.source]} = ?", [int(expect.record_key)]
        )
        assert found == [(value,)], (expect, [str(v)[:80] for (v,) in found])
    if case == "sql_like_text":
        assert warehouse.row("select count(*) from raw.customers")[0] > 0
        extra = warehouse.rows("select distinct _extra from raw.campaigns where _extra is not null")
        assert extra == [('{"x\\"); drop table raw.customers; --":"v"}',)]


def test_hostile_inputs_give_the_same_rows_on_duckdb_and_postgresql(hostile_build, hostile_build_on_postgres, engines):
    """Every raw, staging, audit, snapshot and mart table of the hostile build, both quarantines and
    the load log included, holds the same rows on both engines."""
    settings, _ = hostile_build
    same_landing = (str(settings.landing_dir), str(settings.landing_dir))
    compared, differences = engines.warehouses(settings, hostile_build_on_postgres.warehouse_url, same_landing)
    print(f"compared {len(compared)} tables: " + ", ".join(compared))
    assert len(compared) >= 50, compared
    assert not differences, "\n".join(differences)


def test_a_day_mostly_quarantined_blocks_the_mart_gate_naming_the_reason(hostile_build):
    """Every order of the last day is in a currency without a rate: the build passes, the gate does not."""
    settings, _ = hostile_build
    with connect(settings, read_only=True) as con:
        delivered = con.execute("select count(*) from raw.orders where _partition_date = ?", [LAST_DAY]).fetchone()[0]
        frames = gates.mart_frames(
            DuckDBWarehouse(con), LAST_DAY, settings.gate_recent_days, settings.quarantine_share_limit
        )
    with pytest.raises(QualityGateFailed) as error:
        gates.gate_marts(QualityGate(settings), frames)
    blocked = [f for f in error.value.failures if f.suite == gates.QUARANTINE_SUITE]
    assert [
        (ids["source"], str(ids["partition_date"])[:10], ids["dominant_reason"])
        for failure in blocked
        for ids in failure.sample_ids
    ] == [("orders", str(LAST_DAY), "unknown currency (not in seed currency_rates)")]
    # (limit, share): every one of the day's orders is quarantined.
    assert delivered > 0 and [tuple(map(float, pair)) for pair in blocked[0].sample_values] == [(0.05, 1.0)]


def test_nothing_delivered_is_dropped(hostile_build, delivered_records):
    """Per source: delivered records = raw rows + lines kept at load; raw rows = accepted + quarantined."""
    settings, _ = hostile_build
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        for source in CONTRACTS:
            raw = con.execute(f"select count(*) from raw.{source}").fetchone()[0]
            at_load = con.execute(f"select count(*) from {REJECTED_ROWS_TABLE} where source = ?", [source]).fetchone()[
                0
            ]
            assert raw + at_load == delivered_records(settings.landing_dir, source), source
            logged = con.execute(
                f"select sum(row_count), sum(rejected_count) from {LOAD_LOG_TABLE} where source = ?", [source]
            ).fetchone()
            assert logged == (raw, at_load), source
            audited = con.execute(
                "select count(*) from audit.rejected_rows where source = ? and rejected_at = 'load'", [source]
            ).fetchone()[0]
            assert audited == at_load, source
            assert (
                con.execute(
                    f"select count(*) from {REJECTED_ROWS_TABLE} where reason is null or reason = ''"
                ).fetchone()[0]
                == 0
            )
        # Every quarantined row names the file it came in.
        unnamed = "select count(*) from audit.rejected_rows where source_file is null or source_file = ''"
        assert con.execute(unnamed).fetchone() == (0,)
        named = "select distinct source_file from audit.rejected_rows where source = 'orders' and partition_date = ?"
        last_orders = partition_dir(settings.landing_dir, "orders", LAST_DAY) / "orders.parquet"
        assert con.execute(named, [LAST_DAY]).fetchall() == [(str(last_orders),)]


# File-level refusals ------------------------------------------------------------------------------


def _semicolons(landing: Path) -> tuple[str, Path, list[str]]:
    path = _csv_path(landing, "surveys", LAST_DAY)
    rows = _read_csv(path)
    csv.writer(path.open("w", newline=""), delimiter=";").writerows(rows)
    return "surveys", path, ["missing required column(s) response_id", "is the delimiter not a comma?"]


def _tabs(landing: Path) -> tuple[str, Path, list[str]]:
    path = _csv_path(landing, "customers", LAST_DAY)
    rows = _read_csv(path)
    csv.writer(path.open("w", newline=""), delimiter="\t").writerows(rows)
    return "customers", path, ["missing required column(s) customer_id", "is the delimiter not a comma?"]


def _latin1_csv(landing: Path) -> tuple[str, Path, list[str]]:
    path = _csv_path(landing, "customers", LAST_DAY)
    header, *rows = _read_csv(path)
    target = max(i for i, row in enumerate(rows) if len(row) == len(header))
    rows[target][header.index("city")] = "Zürich"
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows([header, *rows])
    path.write_bytes(buffer.getvalue().encode("latin-1"))
    return "customers", path, [f"line {target + 2} is not valid UTF-8 (byte fc at byte", "latin-1"]


def _latin1_jsonl(landing: Path) -> tuple[str, Path, list[str]]:
    path = partition_dir(landing, "tickets", LAST_DAY) / "tickets.jsonl"
    ticket = {**_template(landing, "tickets"), "description": "Die Lieferung kam nie an, schöne Grüße"}
    with path.open("ab") as handle:
        handle.write(json.dumps(ticket, ensure_ascii=False).encode("latin-1") + b"\n")
    line = len(path.read_bytes().splitlines())
    return "tickets", path, [f"line {line} is not valid UTF-8 (byte f6 at byte", "latin-1"]


def _line_above_limit(landing: Path) -> tuple[str, Path, list[str]]:
    _append_csv(landing, "surveys", [_with(_template(landing, "surveys"), comment="x" * (MAX_CSV_LINE_BYTES + 1))])
    path = _csv_path(landing, "surveys")
    line = len(path.read_bytes().splitlines())
    return "surveys", path, [f"line {line} is", f"above the limit of {MAX_CSV_LINE_BYTES:,} bytes per CSV line"]


def _parquet_wrong_type(landing: Path) -> tuple[str, Path, list[str]]:
    path = partition_dir(landing, "orders", LAST_DAY) / "orders.parquet"
    table = pq.read_table(path)
    amounts = pa.array([f"{value:.2f} EUR" for value in table.column("amount").to_pylist()])
    pq.write_table(table.set_column(table.schema.get_field_index("amount"), "amount", amounts), path)
    return "orders", path, ["column type(s) break the contract: amount is string, the contract wants a number type"]


def _duplicated_column(landing: Path) -> tuple[str, Path, list[str]]:
    path = _csv_path(landing, "customers", LAST_DAY)
    header, *rows = _read_csv(path)
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows([[*header, "city"], *([*row, "Elsewhere"] for row in rows)])
    path.write_text(buffer.getvalue(), encoding="utf-8")
    column = header.index("city") + 1
    return (
        "customers",
        path,
        [f"the header names a column more than once (city in columns {column}, {len(header) + 1})"],
    )


def _nul_byte_csv(landing: Path) -> tuple[str, Path, list[str]]:
    path = _csv_path(landing, "surveys", LAST_DAY)
    header = _read_csv(path)[0]
    record = _with(_template(landing, "surveys"), comment="exported as UTF-16?\x00")
    buffer = io.StringIO()
    csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\n").writerow([record[name] for name in header])
    with path.open("a", encoding="utf-8", newline="") as handle:
        handle.write(buffer.getvalue())
    line = len(path.read_bytes().splitlines())
    return "surveys", path, [f"line {line} holds a NUL byte (byte", "was the file exported as UTF-16 or binary?"]


FILE_LEVEL_CASES = [
    _semicolons,
    _tabs,
    _latin1_csv,
    _latin1_jsonl,
    _line_above_limit,
    _parquet_wrong_type,
    _duplicated_column,
    _nul_byte_csv,
]


@pytest.mark.parametrize("hostile", FILE_LEVEL_CASES, ids=lambda f: f.__name__.strip("_"))
def test_hostile_file_is_refused_clearly_and_writes_nothing(generated: Path, tmp_path: Path, hostile):
    settings = _copy(generated, tmp_path)
    source, path, expected = hostile(settings.landing_dir)
    con = duckdb.connect(":memory:")
    with pytest.raises(LandingError) as error:
        load_landing(con, settings.landing_dir)
    message = str(error.value)
    problem = next(line for line in message.splitlines() if f"source {source!r}" in line)
    assert str(path) in problem
    for part in expected:
        assert part in problem
    # The refused source wrote nothing (one transaction); the other sources loaded.
    assert con.execute(f"select count(*) from raw.{source}").fetchone()[0] == 0
    assert con.execute(f"select count(*) from {LOAD_LOG_TABLE} where source = ?", [source]).fetchone()[0] == 0
    healthy = "orders" if source != "orders" else "customers"
    assert con.execute(f"select count(*) from raw.{healthy}").fetchone()[0] > 0


def test_a_churn_label_of_one_class_says_where_the_orders_went(hostile_build):
    """Everyone churned (no completed order left): the preflight's reason counts the completed orders
    staging kept and names the quarantine's main reasons for orders."""
    settings, _ = hostile_build
    everyone_churned = pd.DataFrame({"is_churned": [1] * 200, **{c: [0.0] * 200 for c in FEATURE_COLUMNS}})
    check = preflight_result(settings, "churn", everyone_churned, everyone_churned, date(2025, 1, 1), FIRST_DAY)
    assert not check.passed
    diagnosis = next(reason for reason in check.reasons if reason.startswith("every label is one class"))
    assert "completed order(s)" in diagnosis and "'unknown currency (not in seed currency_rates)'" in diagnosis

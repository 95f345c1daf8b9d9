"""The landing boundary: every delivered line is loaded or kept as rejected; bad deliveries are refused clearly."""

import logging
import shutil
from dataclasses import replace
from datetime import date
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest

from crm.contracts import CONTRACTS
from crm.generate import DefectRates, GeneratorConfig, generate
from crm.landing import LOAD_LOG_TABLE, REJECTED_ROWS_TABLE, LandingError, load_landing, partition_dir
from crm.settings import Settings

LAST_DAY = date(2026, 11, 23)


def test_every_delivered_record_is_loaded_or_kept_as_rejected(small_landing: Settings, delivered_records):
    con = duckdb.connect(":memory:")
    loaded = load_landing(con, small_landing.landing_dir)
    assert set(loaded) == set(CONTRACTS)
    for source in CONTRACTS:
        raw = con.execute(f"select count(*) from raw.{source}").fetchone()[0]
        rejected = con.execute(f"select count(*) from {REJECTED_ROWS_TABLE} where source = ?", [source]).fetchone()[0]
        logged = con.execute(
            f"select sum(row_count), sum(rejected_count) from {LOAD_LOG_TABLE} where source = ?", [source]
        ).fetchone()
        assert raw + rejected == delivered_records(small_landing.landing_dir, source), source
        assert logged == (raw, rejected)
    manifest = pd.read_json(small_landing.truth_dir / "manifest.json", typ="series")
    malformed = {s: kinds.get("malformed_line", 0) for s, kinds in manifest["defects"].items()}
    assert con.execute(f"select count(*) from {REJECTED_ROWS_TABLE}").fetchone()[0] == sum(malformed.values()) > 0
    # A second load finds nothing new.
    assert set(load_landing(con, small_landing.landing_dir).values()) == {0}


def test_unannounced_extra_column_is_kept_not_dropped(small_landing: Settings):
    first_day = sorted((small_landing.landing_dir / "customers").iterdir())[0]  # the full initial master
    target = first_day / "customers.csv"
    frame = pd.read_csv(target, dtype=str).head(3).assign(loyalty_tier="gold")
    frame.to_csv(target, index=False)
    con = duckdb.connect(":memory:")
    load_landing(con, small_landing.landing_dir)
    extras = con.execute("select _extra from raw.customers where _source_file = ?", [str(target)]).fetchall()
    assert extras == [('{"loyalty_tier":"gold"}',)] * 3


def test_late_partition_for_an_old_day_is_loaded(small_landing: Settings, tmp_path: Path):
    landing = small_landing.landing_dir
    old_day = partition_dir(landing, "orders", date(2026, 10, 1))
    shutil.move(old_day, tmp_path / "held_back")
    con = duckdb.connect(":memory:")
    load_landing(con, landing)
    shutil.move(tmp_path / "held_back", old_day)
    assert load_landing(con, landing)["orders"] == pq.read_metadata(old_day / "orders.parquet").num_rows


def test_optional_sources_may_be_absent(small_landing: Settings, caplog: pytest.LogCaptureFixture):
    for source in ("tickets", "surveys", "campaigns", "marketing_events", "web_sessions", "order_items", "products"):
        shutil.rmtree(small_landing.landing_dir / source)
    con = duckdb.connect(":memory:")
    with caplog.at_level(logging.INFO, logger="crm.landing"):
        loaded = load_landing(con, small_landing.landing_dir)
    assert set(loaded) == {"customers", "orders"}
    missing_lines = [r.getMessage() for r in caplog.records if "not delivered" in r.getMessage()]
    assert len(missing_lines) == 7 and any("source tickets" in line for line in missing_lines)


def test_csv_with_byte_order_mark_loads(small_landing: Settings):
    target = partition_dir(small_landing.landing_dir, "surveys", LAST_DAY) / "surveys.csv"
    target.write_bytes(b"\xef\xbb\xbf" + target.read_bytes())
    con = duckdb.connect(":memory:")
    load_landing(con, small_landing.landing_dir)
    assert con.execute("select count(*) from raw.surveys where response_id is null").fetchone()[0] == 0


def _source_state(con: duckdb.DuckDBPyConnection, source: str) -> tuple:
    """What a load of ``source`` could change: its raw rows and its load-log entries."""
    return (
        con.execute(f"select count(*) from raw.{source}").fetchone()[0],
        con.execute(
            f"select count(*), max(partition_date) from {LOAD_LOG_TABLE} where source = ?", [source]
        ).fetchall(),
    )


def _break_missing_column(landing: Path) -> tuple[str, str]:
    target = partition_dir(landing, "customers", LAST_DAY) / "customers.csv"
    pd.read_csv(target, dtype=str).drop(columns=["email"]).to_csv(target, index=False)
    return "customers", "missing required column(s) email"


def _break_wrong_delimiter(landing: Path) -> tuple[str, str]:
    target = partition_dir(landing, "surveys", LAST_DAY) / "surveys.csv"
    pd.read_csv(target, dtype=str).to_csv(target, index=False, sep=";")
    return "surveys", "is the delimiter not a comma?"


def _break_empty_file(landing: Path) -> tuple[str, str]:
    (partition_dir(landing, "orders", LAST_DAY) / "orders.parquet").write_bytes(b"")
    return "orders", "file is empty"


def _break_wrong_format(landing: Path) -> tuple[str, str]:
    (partition_dir(landing, "orders", LAST_DAY) / "orders.parquet").write_text("order_id,amount\n1,2\n")
    return "orders", "cannot be read as parquet"


def _break_missing_file(landing: Path) -> tuple[str, str]:
    (partition_dir(landing, "web_sessions", LAST_DAY) / "web_sessions.parquet").unlink()
    return "web_sessions", "expected file web_sessions.parquet is missing"


def _break_partition_name(landing: Path) -> tuple[str, str]:
    (landing / "orders" / "dt=2026-13-45").mkdir()
    return "orders", "partition folder must be named dt=YYYY-MM-DD"


def _break_unknown_source(landing: Path) -> tuple[str, str]:
    (landing / "loyalty_points" / "dt=2026-11-23").mkdir(parents=True)
    return "loyalty_points", "unknown source folder 'loyalty_points'"


def _break_jsonl_garbage(landing: Path) -> tuple[str, str]:
    (partition_dir(landing, "tickets", LAST_DAY) / "tickets.jsonl").write_text("ticket_id;customer_id\n1;2\n")
    return "tickets", "cannot be read as jsonl"


@pytest.mark.parametrize(
    "breaker",
    [
        _break_missing_column,
        _break_wrong_delimiter,
        _break_empty_file,
        _break_wrong_format,
        _break_missing_file,
        _break_partition_name,
        _break_unknown_source,
        _break_jsonl_garbage,
    ],
)
def test_bad_delivery_is_refused_clearly_and_writes_nothing(small_landing: Settings, breaker, tmp_path: Path):
    landing = small_landing.landing_dir
    # First load everything but the last day; then the last day arrives, one file broken.
    held = {partition_dir(landing, source, LAST_DAY): tmp_path / f"held_{source}" for source in CONTRACTS}
    for folder, aside in held.items():
        shutil.move(folder, aside)
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    load_landing(con, landing)
    before = {source: _source_state(con, source) for source in CONTRACTS}
    for folder, aside in held.items():
        shutil.move(aside, folder)

    broken_source, expected = breaker(landing)
    with pytest.raises(LandingError) as error:
        load_landing(con, landing)
    message = str(error.value)
    assert expected in message
    assert f"'{broken_source}'" in message and str(landing) in message
    if broken_source in before:
        assert _source_state(con, broken_source) == before[broken_source]
    else:
        assert (
            con.execute("select count(*) from duckdb_tables() where table_name = ?", [broken_source]).fetchone()[0] == 0
        )
    # The other sources loaded their new day.
    healthy = next(s for s in ("orders", "customers") if s != broken_source)
    assert _source_state(con, healthy) != before[healthy]


def test_renamed_column_batch_from_the_generator_is_refused(tmp_path: Path):
    defects = replace(DefectRates.none(), renamed_column_batches=1)
    generate(GeneratorConfig(customers=100, days=20, defects=defects), tmp_path / "landing", tmp_path / "truth")
    with pytest.raises(LandingError, match=r"source 'customers': missing required column\(s\) email"):
        load_landing(duckdb.connect(":memory:"), tmp_path / "landing")

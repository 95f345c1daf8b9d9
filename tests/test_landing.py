import hashlib
from datetime import date
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from crm.generate import GeneratorConfig, generate
from crm.landing import LOAD_LOG_TABLE, LandingError, load_landing, partition_dir
from crm.settings import Settings


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_generator_is_deterministic(tmp_path: Path):
    config = GeneratorConfig(customers=200, days=30)
    generate(config, tmp_path / "a" / "landing", tmp_path / "a" / "truth")
    generate(config, tmp_path / "b" / "landing", tmp_path / "b" / "truth")
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert len(_digest(tmp_path / "a" / "landing")) == 2 * 30  # one file per source per day


def test_load_is_complete_and_incremental(small_landing: Settings):
    con = duckdb.connect(":memory:")
    loaded = load_landing(con, small_landing.landing_dir)
    orders = pd.concat(pd.read_parquet(p) for p in small_landing.landing_dir.glob("orders/*/orders.parquet"))
    assert loaded == {"customers": 300, "orders": len(orders)}
    assert con.execute(f"select sum(row_count) from {LOAD_LOG_TABLE} where source = 'orders'").fetchone()[0] \
        == len(orders)
    assert load_landing(con, small_landing.landing_dir) == {"customers": 0, "orders": 0}


def _source_state(con: duckdb.DuckDBPyConnection, source: str) -> tuple:
    """What a load of ``source`` could change: its raw rows and its load-log entries."""
    return (con.execute(f"select count(*) from raw.{source}").fetchone()[0],
            con.execute(f"select count(*), max(partition_date) from {LOAD_LOG_TABLE} where source = ?",
                        [source]).fetchall())


def _break_missing_column(landing: Path) -> tuple[str, str]:
    target = partition_dir(landing, "customers", date(2026, 11, 23)) / "customers.csv"
    frame = pd.read_csv(target).drop(columns=["email"])
    frame.to_csv(target, index=False)
    return "customers", "missing required column(s) email"


def _break_empty_file(landing: Path) -> tuple[str, str]:
    (partition_dir(landing, "orders", date(2026, 11, 23)) / "orders.parquet").write_bytes(b"")
    return "orders", "file is empty"


def _break_wrong_format(landing: Path) -> tuple[str, str]:
    (partition_dir(landing, "orders", date(2026, 11, 23)) / "orders.parquet").write_text("order_id,amount\n1,2\n")
    return "orders", "cannot be read as parquet"


def _break_partition_name(landing: Path) -> tuple[str, str]:
    (landing / "orders" / "dt=2026-13-45").mkdir()
    return "orders", "partition folder must be named dt=YYYY-MM-DD"


def _break_unknown_source(landing: Path) -> tuple[str, str]:
    (landing / "loyalty_points" / "dt=2026-11-23").mkdir(parents=True)
    return "loyalty_points", "unknown source folder 'loyalty_points'"


@pytest.mark.parametrize("breaker", [_break_missing_column, _break_empty_file, _break_wrong_format,
                                     _break_partition_name, _break_unknown_source])
def test_bad_delivery_is_refused_clearly_and_writes_nothing(small_landing: Settings, breaker):
    landing = small_landing.landing_dir
    # Deliver the last day late, after a first successful load of the rest.
    late = {partition_dir(landing, source, date(2026, 11, 23)): small_landing.home / f"late_{source}"
            for source in ("customers", "orders")}
    for folder, aside in late.items():
        folder.rename(aside)
    con = duckdb.connect(str(small_landing.home / "wh.duckdb"))
    load_landing(con, landing)
    before = {source: _source_state(con, source) for source in ("customers", "orders")}
    for folder, aside in late.items():
        aside.rename(folder)

    broken_source, expected = breaker(landing)
    with pytest.raises(LandingError) as error:
        load_landing(con, landing)
    message = str(error.value)
    assert expected in message
    assert f"'{broken_source}'" in message and str(landing) in message
    if broken_source in before:
        assert _source_state(con, broken_source) == before[broken_source]
    else:
        assert con.execute("select count(*) from duckdb_tables() where table_name = ?", [broken_source]).fetchone()[0] == 0

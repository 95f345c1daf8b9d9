"""The landing boundary: every delivered line is loaded or kept as rejected; bad deliveries are refused clearly."""

import logging
import os
import shutil
from dataclasses import replace
from datetime import date
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
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
    _assert_every_record_is_accounted_for(con, small_landing.landing_dir, tuple(CONTRACTS), delivered_records)
    manifest = pd.read_json(small_landing.truth_dir / "manifest.json", typ="series")
    malformed = {s: kinds.get("malformed_line", 0) for s, kinds in manifest["defects"].items()}
    assert con.execute(f"select count(*) from {REJECTED_ROWS_TABLE}").fetchone()[0] == sum(malformed.values()) > 0
    # A second load finds nothing new.
    assert set(load_landing(con, small_landing.landing_dir).values()) == {0}


def _assert_every_record_is_accounted_for(con, landing: Path, sources: tuple[str, ...], delivered_records) -> None:
    """Per source: records delivered = raw rows + lines kept as rejected, and the load log says so."""
    for source in sources:
        raw = con.execute(f"select count(*) from raw.{source}").fetchone()[0]
        rejected = con.execute(f"select count(*) from {REJECTED_ROWS_TABLE} where source = ?", [source]).fetchone()[0]
        assert raw + rejected == delivered_records(landing, source), source
        logged = f"select sum(row_count), sum(rejected_count) from {LOAD_LOG_TABLE} where source = ?"
        assert con.execute(logged, [source]).fetchone() == (raw, rejected), source


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


# Real deliveries: part files, corrections, dates that cannot be true ------------------------------


def _split_parquet(path: Path, names: list[str]) -> None:
    """Deliver a Parquet file as part files, as Spark or BigQuery would write it."""
    table = pq.read_table(path)
    size = -(-table.num_rows // len(names))
    for index, name in enumerate(names):
        pq.write_table(table.slice(index * size, size), path.with_name(name))
    path.unlink()


def test_a_partition_delivered_as_part_files_loads_every_file(small_landing: Settings, delivered_records):
    landing = small_landing.landing_dir
    orders = partition_dir(landing, "orders", LAST_DAY)
    delivered = pq.read_metadata(orders / "orders.parquet").num_rows
    parts = ["orders-part-0002.parquet", "orders-part-0010.parquet", "part-00001-3f2a.snappy.parquet"]
    _split_parquet(orders / "orders.parquet", parts)
    # What export tools leave beside their parts: success markers and checksums, not records.
    (orders / "_SUCCESS").write_text("")
    (orders / ".orders-part-0002.parquet.crc").write_bytes(b"\x00crc")
    customers = partition_dir(landing, "customers", LAST_DAY) / "customers.csv"
    frame = pd.read_csv(customers, dtype=str)
    frame.iloc[:2].to_csv(customers, index=False)
    frame.iloc[2:].to_csv(customers.with_name("customers_2.csv"), index=False)

    con = duckdb.connect(":memory:")
    load_landing(con, landing)
    logged = con.execute(
        f"select file, row_count from {LOAD_LOG_TABLE} where source = 'orders' and partition_date = ? order by file",
        [LAST_DAY],
    ).fetchall()
    assert sorted(Path(file).name for file, _ in logged) == sorted(parts)
    assert sum(rows for _, rows in logged) == delivered
    assert (
        con.execute("select count(*) from raw.orders where _partition_date = ?", [LAST_DAY]).fetchone()[0] == delivered
    )
    _assert_every_record_is_accounted_for(con, landing, ("orders", "customers"), delivered_records)
    assert (
        con.execute(
            "select count(distinct _source_file) from raw.customers where _partition_date = ?", [LAST_DAY]
        ).fetchone()[0]
        == 2
    )
    # The files load in natural name order (part 2 before part 10), whatever the directory order.
    from crm.landing import discover

    found = next(p for p in discover(landing)[0]["orders"] if p.day == LAST_DAY)
    assert [f.name for f in found.files] == ["orders-part-0002.parquet", "orders-part-0010.parquet", parts[2]]


@pytest.mark.parametrize(
    ("intruder", "why"),
    [
        ("orders.csv", "orders.csv (not a .parquet file)"),
        ("web_sessions.parquet", "web_sessions.parquet (not named for source orders)"),
        ("backup", "backup (a folder)"),
    ],
)
def test_a_file_that_cannot_belong_to_the_partition_is_refused_by_name(small_landing: Settings, intruder, why):
    landing = small_landing.landing_dir
    target = partition_dir(landing, "orders", LAST_DAY) / intruder
    if intruder == "backup":
        target.mkdir()
    else:
        shutil.copy(partition_dir(landing, "web_sessions", LAST_DAY) / "web_sessions.parquet", target)
    con = duckdb.connect(":memory:")
    with pytest.raises(LandingError) as error:
        load_landing(con, landing)
    assert why in str(error.value) and str(target.parent) in str(error.value) and "'orders'" in str(error.value)
    assert con.execute("select count(*) from raw.orders").fetchone()[0] == 0
    assert con.execute("select count(*) from raw.customers").fetchone()[0] > 0, "the other sources load"


def test_a_symbolic_link_out_of_the_landing_folder_is_refused(small_landing: Settings, tmp_path: Path):
    landing = small_landing.landing_dir
    outside = tmp_path / "elsewhere" / "surveys.csv"
    outside.parent.mkdir()
    target = partition_dir(landing, "surveys", LAST_DAY) / "surveys.csv"
    shutil.move(target, outside)
    target.symlink_to(outside)
    # A link that stays inside the landing folder is only another name for a delivered file.
    kept = landing / ".uploads" / "products-last-day"
    kept.parent.mkdir()
    shutil.move(partition_dir(landing, "products", LAST_DAY), kept)
    partition_dir(landing, "products", LAST_DAY).symlink_to(kept)
    con = duckdb.connect(":memory:")
    with pytest.raises(
        LandingError, match=r"source 'surveys': surveys\.csv \(a symbolic link to .*, outside the landing folder\)"
    ):
        load_landing(con, landing)
    assert con.execute("select count(*) from raw.surveys").fetchone()[0] == 0
    assert con.execute("select count(*) from raw.products where _partition_date = ?", [LAST_DAY]).fetchone()[0] == len(
        pd.read_csv(kept / "products.csv")
    )


def test_a_corrected_redelivery_replaces_the_day_and_an_unchanged_one_is_a_no_op(small_landing: Settings):
    landing = small_landing.landing_dir
    target = partition_dir(landing, "customers", LAST_DAY) / "customers.csv"
    con = duckdb.connect(":memory:")
    load_landing(con, landing)
    # Reloading, or a file touched or copied without a change, loads nothing.
    os.utime(target, ns=(0, 1_000_000_000))
    assert set(load_landing(con, landing).values()) == {0}
    assert con.execute(f"select max(delivery) from {LOAD_LOG_TABLE}").fetchone()[0] == 1

    frame = pd.read_csv(target, dtype=str)
    corrected = frame.iloc[1:].assign(city="Corrected City")  # one record withdrawn, the others corrected
    corrected.to_csv(target, index=False)
    assert load_landing(con, landing) == {source: 0 for source in CONTRACTS if source != "customers"} | {
        "customers": len(corrected)
    }
    rows = con.execute(
        "select distinct city, _delivery from raw.customers where _partition_date = ?", [LAST_DAY]
    ).fetchall()
    assert rows == [("Corrected City", 2)], "the day holds only its latest delivery"
    deliveries = con.execute(
        f"select delivery, row_count, fingerprint from {LOAD_LOG_TABLE} "
        f"where source = 'customers' and partition_date = ? order by delivery",
        [LAST_DAY],
    ).fetchall()
    assert [(d, n) for d, n, _ in deliveries] == [(1, len(frame)), (2, len(corrected))]
    assert deliveries[0][2] != deliveries[1][2] and all(len(f) == 64 for _, _, f in deliveries)
    assert set(load_landing(con, landing).values()) == {0}, "the correction is loaded once"


def test_a_partition_dated_in_the_future_is_held_back(small_landing: Settings, caplog: pytest.LogCaptureFixture):
    landing = small_landing.landing_dir
    shutil.copytree(partition_dir(landing, "orders", LAST_DAY), partition_dir(landing, "orders", date(2099, 1, 1)))
    con = duckdb.connect(":memory:")
    with caplog.at_level(logging.WARNING, logger="crm.landing"):
        load_landing(con, landing)
    assert con.execute(f"select max(partition_date) from {LOAD_LOG_TABLE} where source = 'orders'").fetchone()[0] == (
        LAST_DAY
    )
    assert any("dt=2099-01-01" in r.getMessage() and "held back" in r.getMessage() for r in caplog.records)


def test_an_exception_that_is_not_ours_stops_only_its_source(small_landing: Settings, monkeypatch):
    import crm.landing

    real = crm.landing.check_file

    def failing(contract, path):
        if contract.name == "tickets":
            raise RuntimeError("disk quota exceeded")
        return real(contract, path)

    monkeypatch.setattr(crm.landing, "check_file", failing)
    con = duckdb.connect(":memory:")
    with pytest.raises(LandingError) as error:
        load_landing(con, small_landing.landing_dir)
    assert "source 'tickets'" in str(error.value) and "RuntimeError: disk quota exceeded" in str(error.value)
    assert str(small_landing.landing_dir / "tickets") in str(error.value)
    assert con.execute("select count(*) from raw.tickets").fetchone()[0] == 0
    assert con.execute("select count(*) from raw.orders").fetchone()[0] > 0


def test_a_warehouse_from_before_part_files_and_corrections_is_carried_over(small_landing: Settings):
    """A load log of one row per partition (no deliveries, no fingerprints) and raw tables without
    ``_delivery`` become first deliveries; nothing is loaded again."""
    con = duckdb.connect(":memory:")
    load_landing(con, small_landing.landing_dir)
    con.execute(
        f"create table old_log as select source, partition_date, file, row_count, rejected_count, loaded_at "
        f"from {LOAD_LOG_TABLE}"
    )
    con.execute(f"drop table {LOAD_LOG_TABLE}")
    con.execute(
        f"create table {LOAD_LOG_TABLE} (source varchar not null, partition_date date not null, file varchar not null, "
        "row_count bigint not null, rejected_count bigint not null, loaded_at timestamp not null, "
        "primary key (source, partition_date))"
    )
    con.execute(f"insert into {LOAD_LOG_TABLE} select * from old_log")
    for source in CONTRACTS:
        con.execute(f"alter table raw.{source} drop column _delivery")
    con.execute(f"alter table {REJECTED_ROWS_TABLE} drop column delivery")
    raw_before = {s: con.execute(f"select count(*) from raw.{s}").fetchone()[0] for s in CONTRACTS}

    assert set(load_landing(con, small_landing.landing_dir).values()) == {0}
    assert {s: con.execute(f"select count(*) from raw.{s}").fetchone()[0] for s in CONTRACTS} == raw_before
    assert (
        con.execute(
            f"select count(*), count(*) filter (where delivery = 1 and length(fingerprint) = 64) from {LOAD_LOG_TABLE}"
        ).fetchone()
        == (con.execute("select count(*) from old_log").fetchone()[0],) * 2
    )
    assert con.execute("select distinct _delivery from raw.customers").fetchall() == [(1,)]
    assert con.execute(f"select count(*) from {REJECTED_ROWS_TABLE} where delivery is distinct from 1").fetchone() == (
        0,
    )


def test_conflicting_versions_in_one_delivery_are_quarantined_both(small_landing: Settings, delivered_records):
    """One key twice with the same updated_at but different values: neither wins silently."""
    landing = small_landing.landing_dir
    target = partition_dir(landing, "customers", LAST_DAY) / "customers.csv"
    frame = pd.read_csv(target, dtype=str)
    twin = frame.iloc[[0]].assign(city="Elsewhere")
    exact_copy = frame.iloc[[1]]  # the same record twice is no conflict
    pd.concat([frame, twin, exact_copy]).to_csv(target, index=False)
    orders = partition_dir(landing, "orders", LAST_DAY) / "orders.parquet"
    table = pq.read_table(orders)
    conflicting = table.slice(0, 1).to_pylist()[0] | {"amount": 1234.5}
    pq.write_table(pa.concat_tables([table, pa.Table.from_pylist([conflicting], schema=table.schema)]), orders)

    con = duckdb.connect(":memory:")
    load_landing(con, landing)
    rejected = con.execute(
        f"select source, record_key, reason, raw_line from {REJECTED_ROWS_TABLE} "
        f"where reason like 'conflicting versions%' order by source, raw_line"
    ).fetchall()
    customer, order = frame.iloc[0]["customer_id"], table.slice(0, 1).to_pylist()[0]["order_id"]
    assert [(s, k) for s, k, _, _ in rejected] == [("customers", customer)] * 2 + [("orders", str(order))] * 2
    assert "Elsewhere" in rejected[0][3] or "Elsewhere" in rejected[1][3]
    assert con.execute(
        "select count(*) from raw.customers where customer_id = ? and _partition_date = ?", [customer, LAST_DAY]
    ).fetchone() == (0,)
    assert con.execute(
        "select count(*) from raw.customers where customer_id = ? and _partition_date = ?",
        [frame.iloc[1]["customer_id"], LAST_DAY],
    ).fetchone() == (2,)
    _assert_every_record_is_accounted_for(con, landing, ("customers", "orders"), delivered_records)


def test_broken_csv_shapes_quarantine_the_bad_lines_and_load_the_rest(small_landing: Settings, delivered_records):
    """Backslash-escaped quotes, a quote left open in the middle of a file, a last line cut inside a
    quote, a trailing delimiter on every line and a 200 KB header field: the bad lines are kept with
    their line numbers, everything else loads."""
    landing = small_landing.landing_dir

    def lines_of(source: str) -> tuple[Path, list[str]]:
        path = partition_dir(landing, source, LAST_DAY) / CONTRACTS[source].file_name
        return path, path.read_text(encoding="utf-8").splitlines()

    surveys_delivered = delivered_records(landing, "surveys")
    surveys, lines = lines_of("surveys")
    first = lines[1].split(",")
    lines.append(",".join([*first[:-1], '"he said \\"fine\\" and left"']))
    # A quote opened in the middle of the file and never closed: that line is rejected, not the rest.
    open_text = ",".join([*first[:-1], '"a comment whose quote never closes'])
    lines.insert(1, open_text)
    surveys.write_text("\n".join(lines) + "\n", encoding="utf-8")
    backslash_line = len(lines)
    campaigns, lines = lines_of("campaigns")
    lines.append(lines[-1].rsplit(",", 1)[0] + ',"cut off in the middle')
    campaigns.write_text("\n".join(lines) + "\n", encoding="utf-8")
    cut_line = len(lines)
    customers, lines = lines_of("customers")
    customers.write_text("\n".join(f"{line}," for line in lines) + "\n", encoding="utf-8")
    products, lines = lines_of("products")
    lines = [f"{lines[0]},{'n' * 200_000}", *(f"{line}," for line in lines[1:])]
    products.write_text("\n".join(lines) + "\n", encoding="utf-8")

    con = duckdb.connect(":memory:")
    load_landing(con, landing)
    rejected = con.execute(
        f"select source, line_number, reason from {REJECTED_ROWS_TABLE} where partition_date = ? order by source",
        [LAST_DAY],
    ).fetchall()
    assert [(source, line) for source, line, _ in rejected] == [
        ("campaigns", cut_line),
        ("surveys", 2),
        ("surveys", backslash_line),
    ]
    assert all("unterminated quote" in reason for _, _, reason in rejected)
    open_line = "select raw_line from raw._rejected_rows where source = 'surveys' and line_number = 2"
    assert con.execute(open_line).fetchone() == (open_text,)
    raw_surveys = con.execute("select count(*) from raw.surveys where _partition_date = ?", [LAST_DAY]).fetchone()
    assert raw_surveys == (backslash_line - 1 - 2,), "every other line of the day loads, from its own file"
    assert con.execute(
        "select distinct _source_file from raw.surveys where _partition_date = ?", [LAST_DAY]
    ).fetchall() == [(str(surveys),)]
    surveys_kept = (
        con.execute("select count(*) from raw.surveys").fetchone()[0]
        + con.execute(f"select count(*) from {REJECTED_ROWS_TABLE} where source = 'surveys'").fetchone()[0]
    )
    assert surveys_kept == surveys_delivered + 2, "the records delivered, and the two lines added"
    _assert_every_record_is_accounted_for(con, landing, ("customers", "products", "campaigns"), delivered_records)
    # The empty column after each trailing delimiter is no extra data.
    extras = "select distinct _extra from raw.customers where _partition_date = ?"
    assert con.execute(extras, [LAST_DAY]).fetchall() == [(None,)]

"""The BI publication writes only the partitions that changed, and publishes what a full copy would."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from crm.settings import Settings
from crm.warehouse import publish_copy, publish_partitions, table_checksums

TABLES = ["marts.fct_events", "marts.dim_things"]
PARTITIONS = {"marts.fct_events": "event_date"}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    settings = Settings.from_env(home=tmp_path)
    settings.warehouse_dir.mkdir(parents=True)
    with duckdb.connect(str(settings.warehouse_path)) as con:
        con.execute("create schema marts")
        con.execute("""create table marts.fct_events as
                       select range as event_id, date '2026-01-01' + cast(range % 10 as integer) as event_date,
                              range * 1.5 as amount
                       from range(1000)""")
        con.execute("create table marts.dim_things as select range as thing_id, 'thing' as kind from range(5)")
    return settings


def _warehouse(settings: Settings, sql: str) -> None:
    with duckdb.connect(str(settings.warehouse_path)) as con:
        con.execute(sql)


def _changed_partitions(settings: Settings, table: str) -> int | None:
    """What a publication now would replace, found on a throwaway copy of the BI file."""
    scratch = settings.bi_warehouse_path.with_name("scratch.duckdb")
    scratch.write_bytes(settings.bi_warehouse_path.read_bytes())
    with duckdb.connect() as con:
        con.execute("attach ? as warehouse (read_only)", [str(settings.warehouse_path)])
        con.execute("attach ? as bi", [str(scratch)])
        return publish_partitions(con, table, PARTITIONS[table])


def _assert_bi_equals_warehouse(settings: Settings) -> None:
    assert table_checksums(settings.bi_warehouse_path, TABLES) == table_checksums(settings.warehouse_path, TABLES)


def test_a_publication_replaces_only_the_changed_partitions_and_equals_a_full_copy(settings: Settings):
    assert publish_copy(settings, TABLES, PARTITIONS) == {"marts.fct_events": 1000, "marts.dim_things": 5}
    assert _changed_partitions(settings, "marts.fct_events") == 0

    # A changed row, a removed row, a new day: three partitions.
    _warehouse(settings, "update marts.fct_events set amount = -1 where event_id = 3")
    _warehouse(settings, "delete from marts.fct_events where event_id = 14")
    _warehouse(settings, "insert into marts.fct_events values (5000, date '2026-02-01', 2.0)")
    _warehouse(settings, "update marts.dim_things set kind = 'other' where thing_id = 2")
    assert _changed_partitions(settings, "marts.fct_events") == 3
    assert publish_copy(settings, TABLES, PARTITIONS)["marts.fct_events"] == 1000
    _assert_bi_equals_warehouse(settings)
    assert _changed_partitions(settings, "marts.fct_events") == 0


def test_a_table_whose_columns_or_most_partitions_changed_is_copied_whole(settings: Settings):
    publish_copy(settings, TABLES, PARTITIONS)
    _warehouse(settings, "update marts.fct_events set amount = amount + 1 where event_date < date '2026-01-07'")
    assert _changed_partitions(settings, "marts.fct_events") is None
    _warehouse(settings, "alter table marts.fct_events add column note varchar")
    assert _changed_partitions(settings, "marts.fct_events") is None
    publish_copy(settings, TABLES, PARTITIONS)
    _assert_bi_equals_warehouse(settings)
    with duckdb.connect(str(settings.bi_warehouse_path), read_only=True) as con:
        assert "note" in [row[0] for row in con.execute("describe marts.fct_events").fetchall()]


def test_a_table_no_longer_published_leaves_the_copy(settings: Settings):
    publish_copy(settings, TABLES, PARTITIONS)
    publish_copy(settings, ["marts.fct_events"], PARTITIONS)
    with duckdb.connect(str(settings.bi_warehouse_path), read_only=True) as con:
        assert con.execute("select table_name from duckdb_tables()").fetchall() == [("fct_events",)]


def _free_blocks(settings: Settings) -> int:
    with duckdb.connect(str(settings.bi_warehouse_path), read_only=True) as con:
        return con.execute("select free_blocks from pragma_database_size()").fetchone()[0]


def test_a_publication_without_partitions_writes_an_empty_file_again(settings: Settings):
    """An erasure publishes without partitions: a copied file keeps the blocks of deleted rows, freed
    but not wiped, and an empty file has none."""
    publish_copy(settings, TABLES, PARTITIONS)
    _warehouse(settings, "update marts.dim_things set kind = 'other' where thing_id = 1")
    _warehouse(settings, "update marts.fct_events set amount = 0 where event_id = 1")
    publish_copy(settings, TABLES, PARTITIONS)
    assert _free_blocks(settings) > 0
    publish_copy(settings, TABLES)
    _assert_bi_equals_warehouse(settings)
    assert _free_blocks(settings) == 0

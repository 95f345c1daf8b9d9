"""Engine equivalence on Apache Spark: the load and the dbt build give the same rows on DuckDB and on a
local Spark session (CRM_WAREHOUSE_URL=spark+session://).

One delivery, two homes with the same landing folder and PII key: the first load and build with the
last days held back, then those days (a second load, and an incremental build: on Spark the
incremental models' delete+insert rewrites their Parquet tables, the hooks' deletes too). After the
incremental build every raw, staging, audit and mart table is compared row
for row with the engine comparison of the PostgreSQL test (multisets, doubles to 10 significant
digits, run times left out). The scoring, the gates on the marts and the publication run on DuckDB
and PostgreSQL only so far.
"""

from __future__ import annotations

import collections
import os
import shutil
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest

from crm import pipeline, spark
from crm.contracts import CONTRACTS
from crm.generate import GeneratorConfig, generate
from crm.settings import Settings, hmac_pads
from crm.warehouse import DuckDBWarehouse, SparkWarehouse

END = date(2026, 11, 23)
HELD_BACK_FROM = END - timedelta(days=4)
SCHEMAS = ("raw", "staging", "audit", "marts")
# Both homes read one landing folder: its path needs no replacing.
SAME_LANDING = ("", "")


@dataclass
class Build:
    loaded: dict[str, collections.Counter]
    compared: list[str] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory, engines) -> Build:
    if shutil.which("java") is None and os.environ.get("CI") != "true":
        pytest.skip("no Java for Spark here: `make java` installs Debian's OpenJDK 17 (as root)")
    root = tmp_path_factory.mktemp("spark")
    landing = root / "landing"
    generate(GeneratorConfig(customers=200, days=60, end_date=END), landing, root / "truth")
    held = _hold_back(landing, root / "held")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CRM_PII_HASH_KEY", "spark-equivalence-" + "0" * 46)
        common = {"landing_dir": landing, "gate_recent_days": 1, "as_of_tolerance_days": 10}
        local = Settings.from_env(home=root / "duckdb", **common)
        on_spark = Settings.from_env(home=root / "spark", warehouse_url="spark+session://", **common)
        try:
            loaded: dict[str, collections.Counter] = {"duckdb": collections.Counter(), "spark": collections.Counter()}
            for step in ("first", "next"):
                if step == "next":
                    for folder, target in held:
                        shutil.move(folder, target)
                for settings in (local, on_spark):
                    loaded[settings.warehouse_engine].update(pipeline.load(settings)["rows"])
                    pipeline.build_warehouse(settings)
            result = Build(loaded)
            # Compared once, after the incremental build: Spark's statements cost about a second each.
            result.compared, result.differences = _compare(engines, local, on_spark)
        finally:
            spark.release()
    return result


def _hold_back(landing: Path, held: Path) -> list[tuple[Path, Path]]:
    """Move the deliveries from HELD_BACK_FROM on out of the landing folder; where each goes back."""
    moved = []
    for source in CONTRACTS:
        for folder in sorted((landing / source).glob("dt=*")):
            if date.fromisoformat(folder.name[3:]) >= HELD_BACK_FROM:
                target = held / source / folder.name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(folder, target)
                moved.append((target, folder))
    return moved


def _compare(engines, local: Settings, on_spark: Settings) -> tuple[list[str], list[str]]:
    """Every table of SCHEMAS on DuckDB against the Spark table of the same name: the tables compared,
    and a line per table missing on Spark or with other columns or rows."""
    pads = hmac_pads(local.pii_hash_key())
    compared, differences = [], []
    with duckdb.connect(str(local.warehouse_path), read_only=True) as con:
        DuckDBWarehouse(con).set_pii_pads(*pads)
        warehouse = SparkWarehouse(spark.session(on_spark))
        warehouse.set_pii_pads(*pads)
        tables = [
            name
            for (name,) in con.execute(
                "select table_schema || '.' || table_name from information_schema.tables "
                "where table_schema in (select unnest(?)) order by 1",
                [list(SCHEMAS)],
            ).fetchall()
        ]
        for table in tables:
            if not warehouse.table_exists(table):
                differences.append(f"{table}: missing on Spark")
                continue
            result = con.execute(f"select * from {table}")
            columns = [column[0] for column in result.description]
            if sorted(warehouse.columns(table)) != sorted(columns):
                differences.append(f"{table}: columns {columns} on DuckDB, {warehouse.columns(table)} on Spark")
                continue
            on_duckdb = engines.rows(result.fetchall(), columns, SAME_LANDING, frozenset())
            selected = ", ".join(f"`{column}`" for column in columns)
            on_spark_rows = engines.rows(
                warehouse.rows(f"select {selected} from {table}"), columns, SAME_LANDING, frozenset()
            )
            compared.append(f"{table} ({sum(on_duckdb.values())} rows)")
            if on_duckdb != on_spark_rows:
                # The first column only (a key): raw and staging rows hold contact details.
                only_duckdb = sorted({row[0] for row in (on_duckdb - on_spark_rows).elements()}, key=str)[:5]
                only_spark = sorted({row[0] for row in (on_spark_rows - on_duckdb).elements()}, key=str)[:5]
                differences.append(
                    f"{table}: {sum(on_duckdb.values())} rows on DuckDB, {sum(on_spark_rows.values())} on Spark; "
                    f"{columns[0]} of rows on DuckDB only {only_duckdb}, on Spark only {only_spark}"
                )
    return compared, differences


def test_the_load_and_the_build_give_the_same_rows_on_duckdb_and_spark(build):
    """Two loads and builds on each engine, the second incremental: about five minutes beside the
    other test worker on two cores."""
    print(f"compared {len(build.compared)} tables: " + ", ".join(build.compared))
    assert build.loaded["spark"] == build.loaded["duckdb"] and sum(build.loaded["duckdb"].values()) > 0
    assert len(build.compared) >= 50, build.compared
    assert not build.differences, "\n".join(build.differences)

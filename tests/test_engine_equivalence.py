"""Engine equivalence: the platform gives the same rows on DuckDB and on PostgreSQL.

The daily history's DuckDB homes are the reference: the home after the first day (a first load and
build) and the home after the second (incremental on top). A team home with the same landing files
and PII key runs the same daily steps on a PostgreSQL database of the test's own (load with the
raw gate, dbt build, mart gates, scoring with the same champions, publication), and every raw,
staging, audit, snapshot, mart and score table and the published BI tables are compared row for
row: as multisets (order does not matter), doubles and numerics to 10 significant digits (the
scores to 1e-9), dates and timestamps as ISO text, the columns that record when a run happened
left out, and the landing folder's path made the same. A regex, cast, rounding or type that
behaves differently on one engine changes some rows: with PostgreSQL's regexp_replace left without
its global flag, the phone numbers fail validation and the comparison names the tables that differ.
"""

from __future__ import annotations

import csv
import datetime
import shutil
import uuid
from dataclasses import dataclass, field

import duckdb
import pandas as pd
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from crm import erasure, gates, pipeline, postgres
from crm.erasure import hash_key_session
from crm.landing import LOAD_LOG_TABLE, LandingError
from crm.pipeline import PUBLISHED_TABLES, RUN_LOG_TABLES, build_warehouse, dbt_vars
from crm.settings import Settings, hmac_pads
from crm.warehouse import (
    DuckDBWarehouse,
    PublicationRefused,
    contact_details_in_text,
    open_warehouse,
)
from ml import steps
from ml.features import load_features_with_text

# What the DuckDB homes hold that the daily run on PostgreSQL does not make at the moment of the
# comparison: the loads whose tests passed are compared by their effect (tests_since), the marts that
# read the scores are rebuilt by publication (compared in the BI tables).
# The run logs record what each history did, not what it computed (crm.pipeline.RUN_LOG_TABLES).
NOT_COMPARED = frozenset({"audit.tested_loads", "marts.customer_360", "marts.campaign_audiences", *RUN_LOG_TABLES})
COMPARED_PUBLISHED = [table for table in PUBLISHED_TABLES if table not in RUN_LOG_TABLES]


@dataclass
class TeamDay:
    """One day of the daily run on PostgreSQL and its comparison with the DuckDB home of that day."""

    loaded: dict[str, int]
    gates: dict[str, object]
    scored: dict[str, dict[str, object]]
    published: dict[str, int]
    compared: list[str] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)
    published_compared: list[str] = field(default_factory=list)
    published_differences: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def team_warehouse(postgres_database):
    """The team's database, with every query PostgreSQL can run in parallel run so during the daily
    runs (team_days): at 100,000 customers the planner chooses parallel scans, where the safe-cast
    functions must still work."""
    with postgres_database("crm_test_engines") as url, postgres.connect(url, autocommit=True) as con:
        setting = con.execute(
            "select name from pg_settings where name in ('debug_parallel_query', 'force_parallel_mode')"
        ).fetchone()[0]  # the name since PostgreSQL 16, and before
        con.execute(
            sql.SQL("alter database {} set {} = on").format(
                sql.Identifier(make_url(url).database), sql.Identifier(setting)
            )
        )
        yield url


@pytest.fixture(scope="module")
def team_home(daily_runs, tmp_path_factory):
    """The same deployment as the DuckDB homes (landing files, PII hash key), warehouse elsewhere."""
    return daily_runs.new_home(tmp_path_factory.mktemp("team") / "home")


@pytest.fixture(scope="module")
def team_days(daily_runs, team_warehouse, team_home, engines) -> dict[datetime.date, TeamDay]:
    """The daily run on PostgreSQL for each day of the daily history, in order (the second day's load and
    build are incremental on the first's), each compared with the DuckDB home after that day."""
    results = {}
    for day, reference in zip(daily_runs.days, (daily_runs.after_first_day, daily_runs.reference), strict=True):
        local = daily_runs.settings(reference, day)
        team = daily_runs.settings(team_home, day, warehouse_url=team_warehouse)
        loaded = pipeline.load(team)["rows"]
        # The build plans its vars from PostgreSQL's own load log and build state, and must plan what
        # the DuckDB home planned (tests_since aside: the DuckDB home has recorded its tested loads).
        planned = {name: value for name, value in dbt_vars(team).items() if name != "tests_since"}
        assert planned == {name: value for name, value in dbt_vars(local).items() if name != "tests_since"}
        build_warehouse(team)
        gated, scored = pipeline.gate_marts(team), steps.score(team)
        steps.monitor(team)  # drift of the day against the champion's reference profile
        result = TeamDay(loaded, gated, scored, pipeline.publish(team))
        # Both DuckDB homes loaded their files as the reference home (the other is a copy of it).
        landing = (str(team.landing_dir), str(daily_runs.settings(daily_runs.reference, day).landing_dir))
        _compare(engines, result, local, team_warehouse, landing)
        results[day] = result
    # Parallel plans were for dbt's models and the daily steps; the tests after this one run without.
    with postgres.connect(team_warehouse, autocommit=True) as con:
        con.execute(sql.SQL("alter database {} reset all").format(sql.Identifier(make_url(team_warehouse).database)))
    return results


def _compare(
    engines, result: TeamDay, local: Settings, team_warehouse: str, landing: tuple[str, str], ignored=frozenset()
) -> None:
    """Compare every table both warehouses hold and the published tables into ``result``."""
    result.compared, result.differences = engines.warehouses(local, team_warehouse, landing, ignored, NOT_COMPARED)
    published = {table: postgres.published_name(table) for table in COMPARED_PUBLISHED}
    pads = hmac_pads(local.pii_hash_key())
    result.published_compared, result.published_differences = engines.differences(
        local.bi_warehouse_path, team_warehouse, published, landing, pads, ignored
    )


@pytest.mark.parametrize("day_index", [0, 1], ids=["first day", "next day, incremental"])
def test_the_daily_run_gives_the_same_rows_on_duckdb_and_postgresql(team_days, daily_runs, day_index):
    """The daily run on PostgreSQL (about 40 s a day) against the daily history that other tests share."""
    day = daily_runs.days[day_index]
    result = team_days[day]
    print(f"{day}: compared {len(result.compared)} tables: " + ", ".join(result.compared))
    print(f"{day}: compared {len(result.published_compared)} published tables: " + ", ".join(result.published_compared))
    assert sum(result.loaded.values()) > 0 and set(result.gates) >= {"dim_customers", "customer_features"}
    assert result.scored["churn"]["rows"] == result.scored["segments"]["rows"] > 0, result.scored
    assert result.published["scores.churn"] > 0
    # Monitoring too: the day's drift, against the champions' reference profiles (compared above).
    assert result.published["monitoring.drift"] > 0
    assert any(table.startswith("monitoring.drift ") for table in result.compared), result.compared
    assert len(result.compared) >= 55, result.compared
    assert len(result.published_compared) == len(COMPARED_PUBLISHED)
    assert not result.differences, "\n".join(result.differences)
    assert not result.published_differences, "\n".join(result.published_differences)


def test_the_gates_and_the_models_read_the_same_frames_on_both_engines(
    team_days, daily_runs, team_warehouse, team_home, engines
):
    """What Great Expectations validates and what the models score: the mart gates' frames and the
    scoring features come out of both warehouses with the same rows and the same dtypes, so every
    suite and every prediction sees the same input."""
    day = daily_runs.days[-1]
    team = daily_runs.settings(team_home, day, warehouse_url=team_warehouse)
    local = daily_runs.settings(daily_runs.reference, day)
    frames = {}
    for name, settings in (("duckdb", local), ("postgres", team)):
        with open_warehouse(settings, read_only=True) as warehouse:
            frames[name] = {
                suite: frame
                for suite, (frame, _) in gates.mart_frames(warehouse, day, 7, settings.quarantine_share_limit).items()
            }
            frames[name]["features"] = load_features_with_text(warehouse, day)
    for suite, expected in frames["duckdb"].items():
        actual = frames["postgres"][suite]
        # The facts' load times differ by design (when each warehouse loaded them).
        kept = [column for column in expected.columns if column not in engines.RUN_TIME_COLUMNS]
        key = kept[: 2 if suite == "quarantine_shares" else 1]
        pd.testing.assert_frame_equal(
            actual[kept].sort_values(key).reset_index(drop=True),
            expected[kept].sort_values(key).reset_index(drop=True),
            check_exact=False,
            rtol=1e-9,
            obj=suite,
        )
        assert len(expected) > 0, suite


def test_publication_on_postgresql_refuses_contact_details_and_keeps_the_previous_one(team_days, team_warehouse):
    """BI reads bi_marts, bi_monitoring and bi_scores, replaced in one transaction; one table with an email in a text
    column refuses the whole publication and the previous one stays, as with the DuckDB copy."""
    listed = "select table_schema || '.' || table_name from information_schema.tables where table_schema like 'bi_%%'"
    with postgres.connect(team_warehouse) as team:
        before = sorted(name for (name,) in team.execute(listed).fetchall())
        assert before == sorted(postgres.published_name(table) for table in PUBLISHED_TABLES)
        # The published tables and columns carry the dbt project's descriptions, as in the DuckDB copy.
        undescribed = team.execute(
            "select table_schema || '.' || table_name || '.' || column_name from ("
            "select *, (quote_ident(table_schema) || '.' || quote_ident(table_name))::regclass as relation "
            "from information_schema.columns where table_schema like 'bi_%%') as published "
            "where obj_description(relation) is null or col_description(relation, ordinal_position::int) is null"
        ).fetchall()
        assert undescribed == []
        team.commit()  # the listing's transaction: a publication runs in a transaction of its own
        with team.transaction():
            team.execute(
                "create table marts.contact_notes as select 1 as customer_key, 'write to a@example.com' as note"
            )
        with pytest.raises(
            PublicationRefused, match=r"marts.contact_notes .*column note: 1 distinct value\(s\) with an email"
        ):
            postgres.publish_schemas(team, ["marts.dim_customers", "marts.contact_notes"])
        assert sorted(name for (name,) in team.execute(listed).fetchall()) == before
        team.rollback()
        with team.transaction():
            team.execute("drop table marts.contact_notes")


def test_bi_reader_role_reads_the_published_schemas_only(team_days, team_warehouse):
    """CRM_BI_READER_ROLE: each publication grants BI's login role read access to the new bi_ schemas
    (they are new each time); the warehouse's own schemas stay closed to it."""
    role = f"crm_test_bi_{uuid.uuid4().hex[:8]}"  # roles belong to the server: dropped below
    with postgres.connect(team_warehouse, autocommit=True) as team:
        team.execute(f"create role {role}")
        try:
            postgres.publish_schemas(team, ["marts.dim_customers", "scores.churn"], reader_role=role)
            with team.transaction():
                team.execute(f"set local role {role}")
                assert team.execute("select count(*) from bi_marts.dim_customers").fetchone()[0] > 0
                assert team.execute("select count(*) from bi_scores.churn").fetchone()[0] > 0
            with pytest.raises(postgres.psycopg.errors.InsufficientPrivilege), team.transaction():
                team.execute(f"set local role {role}")
                team.execute("select count(*) from marts.dim_customers")
        finally:
            team.execute(f"drop owned by {role}")
            team.execute(f"drop role {role}")


def test_the_contact_details_guard_counts_the_same_on_both_engines(team_warehouse):
    """The BI guard's findings come from engine SQL on each side; the same texts give the same counts."""
    texts = [
        "call +49 30 1234567 before noon",
        "a.b@example.com",
        "x@y.z",
        "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8",
        "2026-11-24 10:00:00",
        "order 123456 of 2026",
        "(030) 555-0199 or +33 1 23 45 67 89",
        None,
    ]
    values = ", ".join("(null)" if text is None else f"('{text}')" for text in texts)
    with duckdb.connect() as local:
        local.execute(f"create table notes as select * from (values {values}) as t(note)")
        on_duckdb = contact_details_in_text(local, "notes")
    with postgres.connect(team_warehouse) as team, team.transaction():
        team.execute(f"create table public.notes as select * from (values {values}) as t(note)")
        on_postgres = postgres.contact_details_in_text(team, "public.notes")
    assert on_duckdb == on_postgres == {"note": {"an email address": 2, "a phone number": 2}}, (on_duckdb, on_postgres)


# Typed values (Parquet columns) as text both engines read, and the casts the staging models ask for.
TYPED_CASTS = {
    ("double", "bigint"): [
        "2.5",
        "-2.5",
        "3.5",
        "0.5",
        "-0.5",
        "1e10",
        "NaN",
        "Infinity",
        "-Infinity",
        "9223372036854775807",
        "-9223372036854775808",
        "9.3e18",
        "-9.3e18",
    ],
    ("double", "integer"): ["2.5", "-2.5", "2147483647.4", "2147483647.5", "-2147483648.5", "-2148483648.6", "NaN"],
    ("bigint", "integer"): ["2147483647", "2147483648", "-2147483648", "-2147483649", "0"],
    ("integer", "bigint"): ["-2147483648", "7"],
    ("bigint", "double"): ["9223372036854775807", "-3"],
    ("double", "double"): ["NaN", "Infinity", "-0.0", "1.7976931348623157e308", "5e-324"],
    ("timestamp", "date"): ["2024-01-05 23:59:59.999999", "1970-01-01 00:00:00", "0001-01-01 00:00:00"],
    ("date", "timestamp"): ["2024-02-29", "9999-12-31"],
    ("timestamp", "timestamp"): ["2024-01-05 10:00:00.5"],
}


def test_safe_casts_of_typed_columns_read_what_duckdb_reads(team_days, team_warehouse):
    """The safe casts of typed (Parquet) columns are plain SQL on PostgreSQL, not the text functions:
    doubles round half to even and go null beyond the range, for NaN and the infinities, as DuckDB's
    try_cast does; the generator's values never reach these edges."""
    names = {"double": "double precision"}
    differences = []
    with duckdb.connect() as local, postgres.connect(team_warehouse) as team:
        for (source, target), values in TYPED_CASTS.items():
            for value in values:
                expected = local.execute(f"select try_cast(cast(? as {source}) as {target})", [value]).fetchone()[0]
                actual = team.execute(
                    f"select public.crm_try_cast_{names.get(target, target).replace(' ', '_')}"
                    f"(cast(%s as {names.get(source, source)}))",
                    [value],
                ).fetchone()[0]
                if expected != actual and not (expected != expected and actual != actual):  # NaN equals NaN here
                    differences.append(f"{source} {value} as {target}: DuckDB {expected!r}, PostgreSQL {actual!r}")
        # The base view over a Parquet source calls the typed overloads, not the text functions.
        called = {
            name
            for (name,) in team.execute(
                "select distinct cast(cast(p.oid as regprocedure) as text) from pg_rewrite r "
                "join pg_depend d on d.objid = r.oid join pg_proc p on p.oid = d.refobjid "
                "where r.ev_class = cast('staging.base_shop__orders' as regclass) and p.proname like 'crm_try_cast%%'"
            ).fetchall()
        }
    assert not differences, "\n".join(differences)
    assert {"crm_try_cast_bigint(bigint)", "crm_try_cast_double_precision(double precision)"} <= called, called
    assert not any(name.endswith("(text)") for name in called), called


def test_copy_raw_without_a_postgresql_warehouse_says_so(crm_command, tmp_path):
    completed = crm_command(Settings.from_env(home=tmp_path), "copy-raw", CRM_WAREHOUSE_URL="")
    assert completed.returncode != 0
    assert "CRM_WAREHOUSE_URL is not set" in completed.stderr, completed.stderr
    assert "Traceback" not in completed.stderr


def test_erasure_on_postgresql_removes_what_it_removes_on_duckdb(
    team_days, daily_runs, team_warehouse, team_home, tmp_path, engines
):
    """The same erasure request (a person with two CRM records, named by one) on a copy of the DuckDB
    home and on PostgreSQL, each with its republication: the same rows deleted per table, the same
    suppression list (erasure times aside), and every table and published table equal again."""
    day = daily_runs.days[-1]
    local = daily_runs.settings(shutil.copytree(daily_runs.reference, tmp_path / "local"), day)
    team = daily_runs.settings(team_home, day, warehouse_url=team_warehouse)
    with duckdb.connect(str(local.warehouse_path), read_only=True) as con:
        hash_key_session(local, DuckDBWarehouse(con))
        person = con.execute(
            "select min(customer_id) from staging.int_customer_identity where customer_key in ("
            "select customer_key from staging.int_customer_identity group by customer_key having count(*) > 1)"
        ).fetchone()[0]
    assert person is not None
    request = tmp_path / "erase.txt"
    request.write_text(f"{person}\n")
    # Without the rebuild that `crm erase` runs after it: dbt's equality is the daily run's test.
    erased_locally = erasure.erase(local, request, rebuild=False)
    erased_on_team = erasure.erase(team, request, rebuild=False)
    assert erased_on_team["linked"] and erased_on_team["suppressed"] == erased_locally["suppressed"]
    assert erased_on_team["removed"]["warehouse"] == erased_locally["removed"]["warehouse"]
    assert erased_on_team["removed"]["bi"] == erased_locally["removed"]["bi"]
    with postgres.connect(team_warehouse) as con:
        left = con.execute(
            "select count(*) from raw.customers where public.crm_try_cast_bigint(trim(customer_id)) = %s", [person]
        ).fetchone()[0]
    assert left == 0
    result = TeamDay({}, {}, {}, {})
    # The DuckDB copy logged its files under the reference home's paths, so its load log keeps the
    # rewritten files' old sizes and fingerprints; PostgreSQL's are the new ones (the next test loads
    # again and must find nothing new).
    landing = (str(team.landing_dir), str(daily_runs.settings(daily_runs.reference, day).landing_dir))
    ignored = frozenset({"file_bytes", "file_modified_ns", "fingerprint", "erased_at"})
    _compare(engines, result, local, team_warehouse, landing, ignored)
    assert len(result.compared) >= 55 and not result.differences, "\n".join(result.differences)
    assert not result.published_differences, "\n".join(result.published_differences)


def test_loads_on_postgresql_are_idempotent_replace_corrected_partitions_and_refuse_a_bad_source_whole(
    team_days, daily_runs, team_warehouse, team_home
):
    """After the daily history (so it runs last): loading the same day again writes nothing; a corrected
    orders file replaces its partition, while a customers file that lost a contract column refuses that
    source alone, naming the file, and leaves its rows and load log as they were."""
    import pyarrow.parquet as pq

    day = daily_runs.days[-1]
    team = daily_runs.settings(team_home, day, warehouse_url=team_warehouse)
    counted = f"select source, count(*), sum(row_count) from {LOAD_LOG_TABLE} group by source order by source"

    def state() -> tuple[list[tuple], int, int]:
        with postgres.connect(team_warehouse) as con:
            return (
                con.execute(counted).fetchall(),
                con.execute("select count(*) from raw.customers").fetchone()[0],
                con.execute("select count(*) from raw.orders where _partition_date = %s", [day]).fetchone()[0],
            )

    log_before, customers_before, orders_before = state()
    assert set(pipeline.load(team)["rows"].values()) == {0}
    assert state() == (log_before, customers_before, orders_before)

    orders_file = team.landing_dir / "orders" / f"dt={day.isoformat()}" / "orders.parquet"
    orders = pq.read_table(orders_file)
    pq.write_table(orders.slice(0, orders.num_rows - 1), orders_file)  # the exporter's correction: one order less
    customers_file = team.landing_dir / "customers" / f"dt={day.isoformat()}" / "customers.csv"
    with customers_file.open(newline="") as file:
        rows = list(csv.DictReader(file))
    kept = [name for name in rows[0] if name != "email"]
    with customers_file.open("w", newline="") as file:
        writer = csv.DictWriter(file, kept, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(LandingError) as refused:
        pipeline.load(team)
    assert str(customers_file) in str(refused.value) and "email" in str(refused.value), refused.value
    assert "orders" not in str(refused.value)
    log_after, customers_after, orders_after = state()
    assert customers_after == customers_before
    assert [row for row in log_after if row[0] == "customers"] == [row for row in log_before if row[0] == "customers"]
    assert orders_after == orders_before - 1 == orders.num_rows - 1
    with postgres.connect(team_warehouse) as con:
        deliveries = con.execute(
            f"select delivery, row_count from {LOAD_LOG_TABLE} where source = 'orders' and partition_date = %s "
            "order by delivery",
            [day],
        ).fetchall()
    assert deliveries == [(1, orders.num_rows), (2, orders.num_rows - 1)]

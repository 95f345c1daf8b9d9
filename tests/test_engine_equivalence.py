"""Engine equivalence: the dbt project gives the same rows on DuckDB and on PostgreSQL.

The daily history's DuckDB homes are the reference: the home after the first day (a first build)
and the home after the second (an incremental build on top). Their raw layer is copied into a
PostgreSQL database of the test's own, the pipeline's build step runs there (planning the same vars
from PostgreSQL's own load log and build state), and every staging,
audit, snapshot and mart table that dbt builds is compared row for row: as multisets (order does
not matter), doubles and numerics to 10 significant digits, dates and timestamps as ISO text.
A regex, cast, rounding or type that behaves differently on one engine changes some rows: with
PostgreSQL's regexp_replace left without its global flag, the phone numbers fail validation and
the comparison names the tables that differ.
"""

from __future__ import annotations

import collections
import datetime
import decimal
import json
import shutil

import duckdb
import pytest

from crm import postgres
from crm.pipeline import PUBLISHED_TABLES, build_warehouse, dbt_vars
from crm.settings import Settings
from crm.warehouse import PublicationRefused, contact_details_in_text

COMPARED_SCHEMAS = ("staging", "audit", "snapshots", "marts")
# What the DuckDB homes hold that dbt's daily build does not make: the scores and the marts that
# read them (written by scoring and publication), and the loads whose tests passed (the pipeline's).
NOT_BUILT_BY_DBT = {"audit.tested_loads", "marts.customer_360", "marts.campaign_audiences"}


def _normalised(value: object) -> object:
    if isinstance(value, float | decimal.Decimal):
        number = float(value)
        return "nan" if number != number else f"{number:.10g}"
    if isinstance(value, datetime.date):  # datetimes too
        return value.isoformat()
    if isinstance(value, list | tuple):
        return tuple(_normalised(item) for item in value)
    return value


def _rows(cursor_rows) -> collections.Counter:
    return collections.Counter(tuple(_normalised(value) for value in row) for row in cursor_rows)


def _differences(duckdb_path, postgres_url) -> tuple[list[str], list[str]]:
    """The tables compared, and a line per table whose columns or rows differ (with examples)."""
    compared, differences = [], []
    schemas = list(COMPARED_SCHEMAS)
    with duckdb.connect(str(duckdb_path), read_only=True) as local, postgres.connect(postgres_url) as team:
        query = "select table_schema || '.' || table_name from information_schema.tables where table_schema = any(%s)"
        on_postgres = {name for (name,) in team.execute(query, [schemas]).fetchall()}
        on_duckdb = {
            name for (name,) in local.execute(query.replace("= any(%s)", "in (select unnest(?))"), [schemas]).fetchall()
        }
        missing = sorted(on_duckdb - on_postgres - NOT_BUILT_BY_DBT)
        if missing:
            differences.append(f"built on DuckDB only: {missing}")
        for table in sorted(on_duckdb & on_postgres):
            local_result = local.execute(f"select * from {table}")
            local_columns = [column[0] for column in local_result.description]
            local_rows = _rows(local_result.fetchall())
            team_result = team.execute(f"select * from {table}")
            team_columns = [column.name for column in team_result.description]
            team_rows = _rows(team_result.fetchall())
            compared.append(f"{table} ({sum(local_rows.values())} rows)")
            if local_columns != team_columns:
                differences.append(f"{table}: columns {local_columns} on DuckDB, {team_columns} on PostgreSQL")
            elif local_rows != team_rows:
                # Only the first column of the rows that differ (a key): staging rows hold contact details.
                only_local = sorted({row[0] for row in (local_rows - team_rows).elements()}, key=str)[:5]
                only_team = sorted({row[0] for row in (team_rows - local_rows).elements()}, key=str)[:5]
                differences.append(
                    f"{table}: {sum(local_rows.values())} rows on DuckDB, {sum(team_rows.values())} on PostgreSQL; "
                    f"{local_columns[0]} of rows on DuckDB only {only_local}, on PostgreSQL only {only_team}"
                )
    return compared, differences


@pytest.fixture(scope="module")
def team_warehouse(postgres_database):
    with postgres_database("crm_test_engines") as url:
        yield url


@pytest.fixture(scope="module")
def builds(
    daily_runs, team_warehouse, tmp_path_factory, crm_command
) -> dict[datetime.date, tuple[list[str], list[str]]]:
    """dbt on PostgreSQL for each day of the daily history, in order (the second day's build is
    incremental on the first's), each compared with the DuckDB home after that day: the tables
    compared and the differences, per day."""
    team_home = tmp_path_factory.mktemp("team")
    shutil.copytree(daily_runs.reference / ".crm", team_home / ".crm")  # one deployment: one PII hash key
    results = {}
    for day, reference in zip(daily_runs.days, (daily_runs.after_first_day, daily_runs.reference), strict=True):
        local = daily_runs.settings(reference, day)
        team = daily_runs.settings(team_home, day, warehouse_url=team_warehouse)
        # Loading runs on DuckDB only so far: the raw layer comes over as a team does it, `crm copy-raw`.
        copying = crm_command(
            team, "copy-raw", CRM_WAREHOUSE_URL=team_warehouse, CRM_WAREHOUSE_PATH=str(local.warehouse_path)
        )
        assert copying.returncode == 0, copying.stderr
        copied = json.loads(copying.stdout)
        assert copied["raw.orders"] > 0 and copied["raw.customers"] > 0, copied
        # The pipeline's build step, as `crm build` runs it: its vars come from PostgreSQL's own load
        # log and build state, and must plan what the DuckDB home planned (tests_since aside: the
        # DuckDB home has recorded its tested loads already, PostgreSQL not yet).
        planned = {name: value for name, value in dbt_vars(team).items() if name != "tests_since"}
        assert planned == {name: value for name, value in dbt_vars(local).items() if name != "tests_since"}
        build_warehouse(team)
        results[day] = _differences(local.warehouse_path, team_warehouse)
    return results


@pytest.mark.parametrize("day_index", [0, 1], ids=["first build", "incremental build of the next day"])
def test_dbt_gives_the_same_rows_on_duckdb_and_postgresql(builds, daily_runs, day_index):
    """Two dbt builds on PostgreSQL (about 15 s each) on the daily history that other tests share."""
    day = daily_runs.days[day_index]
    compared, differences = builds[day]
    print(f"{day}: compared {len(compared)} tables: " + ", ".join(compared))
    assert len(compared) >= 40, compared
    assert not differences, "\n".join(differences)


def test_publication_on_postgresql_replaces_the_bi_schemas_at_once_and_refuses_contact_details(builds, team_warehouse):
    """BI reads bi_marts: a publication replaces it in one transaction; one table with an email in a
    text column refuses the whole publication and the previous one stays, as with the DuckDB copy."""
    marts = [table for table in PUBLISHED_TABLES if table.startswith("marts.") and table not in NOT_BUILT_BY_DBT]
    with postgres.connect(team_warehouse) as team:
        published = postgres.publish_schemas(team, marts)
        for table in marts:
            source = team.execute(f"select count(*) from {table}").fetchone()[0]
            assert published[table] == source > 0, (table, published[table], source)
            copy = team.execute(f"select count(*) from {postgres.published_name(table)}").fetchone()[0]
            assert copy == source, table
        team.commit()  # the counts' transaction: a publication runs in a transaction of its own
        with team.transaction():
            team.execute(
                "create table marts.contact_notes as select 1 as customer_key, 'write to a@example.com' as note"
            )
        with pytest.raises(
            PublicationRefused, match=r"marts.contact_notes .*column note: 1 distinct value\(s\) with an email"
        ):
            postgres.publish_schemas(team, [*marts[:2], "marts.contact_notes"])
        still_published = team.execute(
            "select table_name from information_schema.tables where table_schema = 'bi_marts' order by 1"
        ).fetchall()
        assert sorted(name for (name,) in still_published) == sorted(table.split(".")[1] for table in marts)


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


def test_copy_raw_without_a_postgresql_warehouse_says_so(crm_command, tmp_path):
    completed = crm_command(Settings.from_env(home=tmp_path), "copy-raw", CRM_WAREHOUSE_URL="")
    assert completed.returncode != 0
    assert "CRM_WAREHOUSE_URL is not set" in completed.stderr, completed.stderr
    assert "Traceback" not in completed.stderr

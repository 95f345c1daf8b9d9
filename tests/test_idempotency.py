"""Idempotency: backfilling days in any order, rerunning a day, or rebuilding it with a full refresh
publishes exactly the tables of the run that processed the days once, in order: every table of the
BI copy has the same checksum of its sorted rows (run provenance columns aside, see
crm.pipeline.RUN_PROVENANCE_COLUMNS). Across orders the churn drivers are the ones computed at the
date each row names (crm.pipeline.SCORING_ORDER_COLUMNS). The champions are the reference's, trained once."""

from pathlib import Path

import duckdb

from crm import pipeline


def _differences(actual: dict[str, str], expected: dict[str, str]) -> list[str]:
    return [table for table in expected if actual.get(table) != expected[table]]


def _drivers(bi_copy: Path) -> dict[tuple, tuple]:
    """(customer_key, as_of_date) → (driver_1, driver_2, driver_3, drivers_as_of) of the published churn scores."""
    with duckdb.connect(str(bi_copy), read_only=True) as con:
        rows = con.execute(
            "select customer_key, as_of_date, driver_1, driver_2, driver_3, drivers_as_of from scores.churn"
        ).fetchall()
    return {(key, day): tuple(rest) for key, day, *rest in rows}


def test_backfill_in_reverse_order_then_a_full_refresh_rerun_publish_the_same_tables(daily_runs, tmp_path):
    """Three daily runs (load, dbt build, scoring, publication) in a new home: about 1.5 minutes."""
    first, last = daily_runs.days[0], daily_runs.days[-1]
    reference = daily_runs.settings(daily_runs.reference, last)
    expected = pipeline.published_checksums(reference, across_orders=True)
    home = daily_runs.new_home(tmp_path / "reverse_order")

    # The last day first: its load takes every partition up to it at once; the earlier day then loads
    # nothing new and its build and scoring run on a warehouse that already holds the later day.
    for day in reversed(daily_runs.days):
        daily_runs.run_day(daily_runs.settings(home, day))
    settings = daily_runs.settings(home, first)
    assert _differences(pipeline.published_checksums(settings, across_orders=True), expected) == []

    # Rerun the earlier day once more, rebuilding every incremental model from scratch.
    daily_runs.run_day(daily_runs.settings(home, first, full_refresh=True))
    assert _differences(pipeline.published_checksums(settings, across_orders=True), expected) == []

    # Newest first, no date had an earlier one scored: every driver was computed at its own date. In
    # order, the later day carried some forward; each is what the computation at its date gave.
    in_order, backfilled = _drivers(reference.bi_warehouse_path), _drivers(settings.bi_warehouse_path)
    assert all(drivers_as_of in (None, day) for (_, day), (*_, drivers_as_of) in backfilled.items())
    assert {row for row, (*_, as_of) in in_order.items() if as_of} == {
        row for row, (*_, as_of) in backfilled.items() if as_of
    }
    carried = {(key, day): as_of for (key, day), (*_, as_of) in in_order.items() if as_of not in (None, day)}
    assert carried, "the in-order run carried no drivers forward: nothing was compared"
    assert all(drivers[:3] == backfilled[(key, drivers[3])][:3] for (key, _), drivers in in_order.items() if drivers[3])
    # Scores exist for every day (one row per customer and day), so the comparison compares something.
    with duckdb.connect(str(settings.bi_warehouse_path), read_only=True) as con:
        per_day = con.execute(
            "select as_of_date, count(*), count(distinct customer_key) from scores.churn group by all order by all"
        ).fetchall()
    assert [row[0] for row in per_day] == list(daily_runs.days)
    assert all(rows == customers > 100 for _, rows, customers in per_day)


def test_dbt_docs_are_generated_again_only_when_the_project_or_the_tables_change(daily_runs, tmp_path):
    import shutil

    from crm.warehouse import connect

    home = tmp_path / "docs_probe"
    shutil.copytree(daily_runs.reference, home)
    settings = daily_runs.settings(home, daily_runs.days[-1])
    catalog = settings.dbt_artifacts_dir / "target" / "catalog.json"
    generated = catalog.read_text()
    # The days' data alone changed since the docs were generated: the site stays as it is.
    assert not pipeline.generate_dbt_docs(settings)
    assert catalog.read_text() == generated
    with connect(settings) as con:
        con.execute("alter table marts.customer_360 add column docs_probe integer")
    assert pipeline.generate_dbt_docs(settings)
    assert "docs_probe" in catalog.read_text()

"""The benchmark's report (targets, sections beside DuckDB) and its accounting of a stage's process tree."""

import sys
import time

from crm.bench import (
    _children,
    airflow_section,
    celery_section,
    covered_s,
    dbt_stage,
    engine_section,
    peak_concurrency,
    run_stage,
    target_checks,
    value_and_recommendation_cells,
)


def _scale(customers: int, full_run_s: float) -> dict:
    return {
        "customers": customers,
        "full_run_wall_s": full_run_s,
        "peak_rss_mb": 4_000.0,
        "incremental_run_wall_s": 90.0,
        "feature_stage_s": 10.0,
        "daily_feature_stage": {"per_as_of_date_s": 2.0},
        "floor_s": 5.0,
        "pandas_s": 60.0,
        "scoring_per_s": {"churn": 250_000, "segments": 3_000_000},
        "scoring_with_explanations_per_s": {"churn": 70_000},
        "daily_scoring_with_explanations_per_s": {"churn": 140_000},
    }


def test_targets_are_checked_at_the_largest_scale_with_the_drivers_rate_beside_the_churn_score():
    checks = {
        name: (measured, met)
        for name, measured, _, met in target_checks([_scale(100_000, 100.0), _scale(1_000_000, 500.0)])
    }
    assert checks["full run"] == ("500 s", False)
    assert checks["daily incremental run"] == ("90 s", False)
    assert checks["feature stage / floor"] == ("2.0×", True)
    assert checks["scoring churn (model load excluded)"] == ("250,000/s (70,000/s with its drivers)", True)
    assert checks["scoring segments (model load excluded)"] == ("3,000,000/s", True)
    assert checks["full-run time per customer, 1,000,000 vs 100,000"] == ("0.50×", True)


def _engine_run(load_s: float, daily_load_s: float, full_run_s: float, daily_run_s: float, rss_mb: float) -> dict:
    stage = {"wall_s": load_s, "cpu_s": 9.0, "peak_rss_mb": 500.0, "rows": 100}
    return {
        "stages": {"load": stage},
        "incremental_stages": {"daily load": {**stage, "wall_s": daily_load_s}},
        "full_run_wall_s": full_run_s,
        "incremental_run_wall_s": daily_run_s,
        "peak_rss_mb": rss_mb,
    }


def _with_stages(scale: dict) -> dict:
    stage = {"wall_s": 10.0, "cpu_s": 9.0, "peak_rss_mb": 500.0, "rows": 100}
    return {**scale, "stages": {"load": stage}, "incremental_stages": {"daily load": {**stage, "wall_s": 2.0}}}


def test_the_postgresql_section_compares_each_stage_with_the_embedded_run_and_the_floor():
    scale = {**_with_stages(_scale(100_000, 200.0)), "postgres": _engine_run(25.0, 3.0, 300.0, 120.0, 3_000.0)}
    lines = engine_section([scale, {**_scale(10_000, 20.0), "postgres": None}], "postgres")
    assert "## The warehouse on PostgreSQL" in lines
    assert "| customers | stage | DuckDB wall s | PostgreSQL wall s | PostgreSQL / DuckDB |" in lines
    assert "| 100,000 | load | 10.0 | 25.0 | 2.50× |" in lines
    assert "| 100,000 | daily load | 2.0 | 3.0 | 1.50× |" in lines
    assert "| 100,000 | 200.0 / 300.0 | 40.0× / 60.0× | 90.0 / 120.0 | 18.0× / 24.0× | 4,000.0 / 3,000.0 |" in lines
    assert not any(line.startswith("| 10,000") for line in lines)
    assert engine_section([_scale(10_000, 20.0)], "postgres") == []


def _celery_run(slots: int, wall_s: float) -> dict:
    return {
        **_airflow_run("2026-11-24", wall_s, None),
        "slots": slots,
        "tasks": {
            "plan_dbt_build": {"duration_s": 0.5, "state": "success"},
            "dbt.dbt_producer_watcher": {"duration_s": 40.0, "state": "success"},
        },
        "busy_s": 150.0,
        "peak_tasks": slots + 1,
        "peak_scorings": min(slots, 4),
    }


def test_the_celery_section_sets_each_slot_count_against_one_slot():
    celery = {"day": "2026-11-24", "runs": [_celery_run(1, 120.0), _celery_run(4, 80.0)], "speedup": 1.5}
    scale = {**_scale(100_000, 200.0), "postgres": {**_engine_run(25.0, 3.0, 300.0, 120.0, 3_000.0), "celery": celery}}
    lines = celery_section([scale, {**_scale(10_000, 20.0), "postgres": None}])
    assert "## crm_daily on Celery workers: one warehouse slot against several" in lines
    assert "| 100,000 | 2026-11-24 | 1 | success | 120.0 | 24.0× | 150.0 | 2 | 1 | 30.0 | 40.0 | 1.00× |" in lines
    assert "| 100,000 | 2026-11-24 | 4 | success | 80.0 | 16.0× | 150.0 | 5 | 4 | 30.0 | 40.0 | 1.50× |" in lines
    assert celery_section([{**_scale(10_000, 20.0), "postgres": {"celery": None}}]) == []
    # A stack that did not start is a line of the section, not a lost report.
    failed = celery_section([{**_scale(10_000, 20.0), "postgres": {"celery": {"error": "RuntimeError: a | b"}}}])
    assert "| 10,000 | – | – | RuntimeError: a / b | – | – | – | – | – | – | – | – |" in failed


def test_peak_concurrency_counts_the_intervals_running_at_one_moment():
    assert peak_concurrency([]) == 0
    assert peak_concurrency([(0, 10), (2, 4), (3, 5), (6, 7)]) == 3
    # One task ending as the next starts: never both at once.
    assert peak_concurrency([(0, 5), (5, 9)]) == 1


def test_the_spark_section_shows_the_same_ratios_beside_the_postgresql_one():
    """A result of the earlier layout (no "spark" key) renders no Spark section; a run on both engines
    renders each section from its own figures."""
    spark = {"master": "local[2]", **_engine_run(40.0, 12.0, 500.0, 150.0, 1_500.0)}
    scale = {
        **_with_stages(_scale(100_000, 200.0)),
        "postgres": _engine_run(25.0, 3.0, 300.0, 120.0, 3_000.0),
        "spark": spark,
    }
    lines = engine_section([scale], "spark")
    assert "## The warehouse on Spark" in lines
    assert "| customers | stage | DuckDB wall s | Spark wall s | Spark / DuckDB |" in lines
    assert "| 100,000 | load | 10.0 | 40.0 | 4.00× |" in lines
    assert "| 100,000 | daily load | 2.0 | 12.0 | 6.00× |" in lines
    assert "| 100,000 | 200.0 / 500.0 | 40.0× / 100.0× | 90.0 / 150.0 | 18.0× / 30.0× | 4,000.0 / 1,500.0 |" in lines
    assert "| 100,000 | load | 10.0 | 25.0 | 2.50× |" not in lines, "the PostgreSQL figures stay in their section"
    assert "| 100,000 | load | 10.0 | 25.0 | 2.50× |" in engine_section([scale], "postgres")
    assert engine_section([_with_stages(_scale(100_000, 200.0))], "spark") == []


def _airflow_run(day: str, wall_s: float, overhead_s: float | None, state: str = "success") -> dict:
    return {
        "as_of_date": day,
        "state": state,
        "wall_s": wall_s,
        "tasks": {"load_landing": {"duration_s": 4.5, "state": "success"}},
        "dbt_tasks": "model",
        "dbt_nodes": 48,
        "dbt_own_s": 50.0,
        "dbt_stage_s": 110.0,
        "node_overhead_median_s": overhead_s,
        "node_overhead_p90_s": 1.6,
        "between_tasks_s": 30.0,
    }


def test_the_targets_in_floors_judge_crm_daily_through_airflow_on_each_day():
    scale = {
        **_scale(1_000_000, 500.0),
        "airflow_daily": [_airflow_run("2026-11-22", 18.0, 1.2), _airflow_run("2026-11-23", 25.0, 1.7)],
    }
    checks = {name: (measured, met) for name, measured, _, met in target_checks([scale])}
    assert checks["full run, in floors"] == ("100.0", False)
    assert checks["feature stage of the daily run's new date, in floors"] == ("0.40", True)
    assert checks["peak RSS of the stages"] == ("4,000 MB", True)
    # The drivers' target is the daily run's, where the drivers of steady customers are carried forward.
    assert checks["churn scoring with its drivers in the daily run (model load excluded)"] == ("140,000/s", True)
    assert checks["crm_daily through Airflow, 2026-11-22, in floors"] == ("3.6", True)
    assert checks["crm_daily through Airflow, 2026-11-23, in floors"] == ("5.0", False)
    assert checks["median overhead per dbt node, 2026-11-22"] == ("1.2 s", True)
    assert checks["median overhead per dbt node, 2026-11-23"] == ("1.7 s", False)
    # A failed run meets no target, however fast it failed.
    failed = {**scale, "airflow_daily": [_airflow_run("2026-11-22", 5.0, None, state="failed")]}
    checks = {name: met for name, _, _, met in target_checks([failed])}
    assert not checks["crm_daily through Airflow, 2026-11-22, in floors"]
    assert not checks["median overhead per dbt node, 2026-11-22"]


def test_the_airflow_section_shows_each_daily_run_against_the_floor():
    scale = {**_scale(100_000, 200.0), "airflow_daily": [_airflow_run("2026-11-23", 20.0, 1.25)]}
    lines = airflow_section([scale])
    row = (
        "| 100,000 | 2026-11-23 | success | 20.0 | 4.0× | model | 48 | 50.0 | 110.0 | 1.25 / 1.6 | 30.0 | 4.5 "
        "| – | – | – |"
    )
    assert row in lines


def test_watching_node_tasks_overhead_is_the_groups_wall_time_beyond_the_build_per_node():
    """Node tasks that watch one build overlap it: their cost is what the group adds to the build's own
    time, per node task; tasks that each run dbt count their own duration beyond dbt's."""
    tasks = {
        "dbt.dbt_producer_watcher": {"duration_s": 52.0, "state": "success", "dbt_s": 44.0},
        "dbt.dbt_producer_watcher_done": {"duration_s": 0.0, "state": "success", "dbt_s": None},
        **{f"dbt.model_{n}.run": {"duration_s": 1.0, "state": "success", "dbt_s": None} for n in range(20)},
        "score_models": {"duration_s": 8.0, "state": "success"},
    }
    intervals = {
        "dbt.dbt_producer_watcher": (100.0, 152.0),
        **{f"dbt.model_{n}.run": (101.0 + 3 * n, 102.0 + 3 * n) for n in range(20)},
        "score_models": (170.0, 178.0),
    }
    stage = dbt_stage(tasks, intervals)
    assert stage["dbt_tasks"] == "watch" and stage["dbt_nodes"] == 20 and stage["dbt_own_s"] == 44.0
    assert stage["dbt_stage_s"] == 59.0  # from the build's start to the last node task's end
    assert stage["node_overhead_median_s"] == round((59.0 - 44.0) / 20, 3)
    per_node = {
        "dbt.a_model_build": {"duration_s": 3.0, "state": "success", "dbt_s": 1.0},
        "dbt.b_model_build": {"duration_s": 2.5, "state": "success", "dbt_s": 1.0},
        "dbt.c_model_build": {"duration_s": 4.0, "state": "success", "dbt_s": 1.0},
    }
    stage = dbt_stage(per_node, {"dbt.a_model_build": (0.0, 3.0), "dbt.c_model_build": (5.0, 9.0)})
    assert stage["dbt_tasks"] == "model" and stage["node_overhead_median_s"] == 2.0 and stage["dbt_own_s"] == 3.0
    assert covered_s([(0.0, 3.0), (2.0, 4.0), (6.0, 7.0)]) == 5.0


def test_lifetime_value_and_recommendations_show_each_figure_beside_its_reference():
    value = {"spearman": 0.7, "gini": 0.88, "mae": 132.6, "total_ratio": 1.03, "decile_calibration_error": 0.07}
    recommendations = {"precision_at_10": 0.12, "recall_at_10": 0.22, "map_at_10": 0.11, "coverage": 0.99}
    quality = {
        "clv": {**value, **{f"reference_{name}": figure / 2 for name, figure in value.items()}},
        "recommendations": {**recommendations, **{f"reference_{n}": f / 2 for n, f in recommendations.items()}},
    }
    cells = value_and_recommendation_cells({"model_quality": quality})
    assert cells[:3] == ["0.700 (0.350)", "0.880 (0.440)", "132.6 (66.3)"]
    assert cells[-4:] == ["0.120 (0.060)", "0.220 (0.110)", "0.110 (0.055)", "0.990 (0.495)"]
    skipped = value_and_recommendation_cells({"model_quality": {"clv": {"skipped": "no scores"}}})
    assert skipped == ["–"] * 9, "a scale without the figures keeps the table's columns"


# A grandchild that outlives its parent, as a local Spark session's JVM outlives the stage's Python
# process: it holds 300 MB and spins for half a second of CPU after the parent has exited.
ORPHAN = """
import subprocess, sys
subprocess.Popen([sys.executable, "-c", "import time; b = b'x' * (300 * 2**20); end = time.process_time() + 0.5\\n"
                  "while time.process_time() < end: pass"])
print("parent done")
"""


def test_a_stage_counts_the_descendants_it_orphans():
    before = _children()
    started = time.perf_counter()
    result, output = run_stage("orphan", [sys.executable, "-c", ORPHAN])
    assert output == "parent done\n"
    assert result.peak_rss_mb >= 300 and result.cpu_s >= 0.5, result
    assert time.perf_counter() - started >= 0.5, "the stage ends when its orphans have ended"
    assert _children() == before, "the orphan was reaped"

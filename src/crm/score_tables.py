"""The score tables: what the platform keeps of every model's scores, per customer and scoring date.

Their columns are a contract: dbt reads them as sources (customer_360, the audiences), the score
gates validate them, and BI reads them. The model package writes them; they exist before its first
scoring run, so that a build can read them empty.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from crm.warehouse import Warehouse

CHURN_SCORES_TABLE = "scores.churn"
SEGMENT_SCORES_TABLE = "scores.segments"
SATISFACTION_SCORES_TABLE = "scores.satisfaction"
CLV_SCORES_TABLE = "scores.clv"
RECOMMENDATION_SCORES_TABLE = "scores.recommendations"
# Lifetime-value tiers: buyers by their expected revenue at the date (top share first); a customer
# without a completed order yet is a prospect, with no value predicted.
VALUE_TIERS = (("high", 0.2), ("medium", 0.5), ("low", 1.0))
PROSPECT_TIER = "prospect"
# The churn drivers kept per customer at medium or high risk.
TOP_DRIVERS = 3
DRIVER_COLUMNS = [f"driver_{rank}" for rank in range(1, TOP_DRIVERS + 1)]
_PROVENANCE = {"model_name": "text", "model_version": "text", "run_id": "text", "scored_at": "timestamp"}
SCORE_TABLES = {
    CHURN_SCORES_TABLE: {
        "customer_key": "bigint",
        "as_of_date": "date",
        "churn_probability": "double precision",
        **_PROVENANCE,
        **dict.fromkeys(DRIVER_COLUMNS, "text"),
        # When the drivers were computed: this date, or an earlier one they were carried forward from
        # (the customer stayed in its risk band with a probability that hardly moved); null below medium risk.
        "drivers_as_of": "date",
    },
    SEGMENT_SCORES_TABLE: {
        "customer_key": "bigint",
        "as_of_date": "date",
        "segment_id": "bigint",
        "segment_name": "text",
        **_PROVENANCE,
    },
    SATISFACTION_SCORES_TABLE: {
        "customer_key": "bigint",
        "as_of_date": "date",
        "satisfied_probability": "double precision",
        **_PROVENANCE,
    },
    CLV_SCORES_TABLE: {
        "customer_key": "bigint",
        "as_of_date": "date",
        # In the lifetime-value horizon after the date; null for a prospect. Orders and the probability
        # of being alive come from the purchase model (null when the champion is another candidate).
        "expected_revenue_eur": "double precision",
        "expected_orders": "double precision",
        "probability_alive": "double precision",
        "value_tier": "text",
        "horizon_days": "bigint",
        **_PROVENANCE,
    },
    # CRM_RECOMMENDATIONS_TOP_N rows per customer and date, best first; the reason says why in words
    # and names the product it refers to ("bought together with ...") in reason_product_id.
    RECOMMENDATION_SCORES_TABLE: {
        "customer_key": "bigint",
        "as_of_date": "date",
        "rank": "bigint",
        "product_id": "bigint",
        "score": "double precision",
        "reason": "text",
        "reason_product_id": "bigint",
        **_PROVENANCE,
    },
}

# Monitoring (ml.monitoring): per model and scoring date, the backtest of the scores once their outcome
# window has closed, the drift of the inputs and the scores, and the alerts. BI and the run summary read them.
BACKTESTS_TABLE = "monitoring.backtests"
CALIBRATION_TABLE = "monitoring.calibration"
DRIFT_TABLE = "monitoring.drift"
ALERTS_TABLE = "monitoring.alerts"
_MODEL = {"model_name": "text", "model_version": "text", "run_id": "text", "scoring_date": "date"}
# When the monitored scores were written and when this was computed: a date scored again is monitored again.
_WHEN = {"scored_at": "timestamp", "computed_at": "timestamp"}
MONITORING_TABLES = {
    # One row per model, scoring date and metric (the metric names of training's validation runs).
    BACKTESTS_TABLE: {**_MODEL, "metric": "text", "value": "double precision", "customers": "bigint", **_WHEN},
    # The scores' deciles (1 = lowest scores): mean score against the realised rate.
    CALIBRATION_TABLE: {
        **_MODEL,
        "decile": "bigint",
        "customers": "bigint",
        "mean_score": "double precision",
        "realised_rate": "double precision",
        **_WHEN,
    },
    # One row per model, scoring date and input (and one for the score itself, feature SCORE_FEATURE):
    # its population stability index against the version's training date, and the shares missing.
    DRIFT_TABLE: {
        **_MODEL,
        "reference_date": "date",
        "feature": "text",
        "psi": "double precision",
        "psi_limit": "double precision",
        "missing_share": "double precision",
        "reference_missing_share": "double precision",
        **_WHEN,
    },
    # What crossed a limit: kind input_drift, score_drift or backtest_degraded, and what (subject).
    ALERTS_TABLE: {
        **_MODEL,
        "kind": "text",
        "subject": "text",
        "value": "double precision",
        "limit_value": "double precision",
        "message": "text",
        **_WHEN,
    },
}
# The quality gates' outcome per run day and suite (crm.gates.record_gate_results): what the gates of
# the load (raw), the mart gate (marts) and the scoring (scores) validated, and how many expectations
# failed. Counts only: the failing rows' samples stay in the Data Docs.
QUALITY_GATES_TABLE = "monitoring.quality_gates"
QUALITY_GATES_TABLES = {
    QUALITY_GATES_TABLE: {
        "as_of_date": "date",
        "gate": "text",
        "suite": "text",
        "validations": "bigint",
        "rows_validated": "bigint",
        "expectations": "bigint",
        "failed_expectations": "bigint",
        "blocking_failures": "bigint",
        "passed": "boolean",
        "computed_at": "timestamp",
    }
}
# The date by which a score or monitoring table's rows are replaced (each table has one of them).
REPLACED_BY = ("as_of_date", "scoring_date")
# The drift table's row for the scores themselves (beside one per input).
SCORE_FEATURE = "score"


def ensure_score_tables(warehouse: Warehouse) -> None:
    """Create the score tables, and add columns that a newer version of them has."""
    ensure_tables(warehouse, SCORE_TABLES)


def ensure_tables(warehouse: Warehouse, tables: dict[str, dict[str, str]]) -> None:
    """Create ``tables`` (qualified name: column types) and their schemas, and add columns that a newer
    version of them has (appended, so existing rows keep their values and the new columns are null
    for them). Standard type names: DuckDB reads ``text`` and ``double precision`` as VARCHAR and DOUBLE."""
    for schema in sorted({table.split(".")[0] for table in tables}):
        warehouse.execute(f"create schema if not exists {schema}")
    for table, columns in tables.items():
        described = ", ".join(f"{name} {warehouse.sql_type(kind)}" for name, kind in columns.items())
        # Rows are replaced a date at a time: on Spark that date partitions the table.
        date_column = next(column for column in REPLACED_BY if column in columns)
        warehouse.execute(f"create table if not exists {table} ({described}){warehouse.partitioned_by(date_column)}")
        existing = set(warehouse.columns(table))
        for name, column_type in columns.items():
            if name not in existing:
                warehouse.execute(f"alter table {table} add column {name} {warehouse.sql_type(column_type)}")

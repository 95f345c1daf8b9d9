"""What each quality gate validates: the frames read for the raw batch, mart and score suites.

crm.quality runs Great Expectations on a frame; this module decides which rows make the frame.
Frames are small on purpose: the new daily batch, not the whole history. Helper columns (prefixed
``_``) carry what one row cannot show on its own, such as whether a customer id exists in the
customer master, so that every check stays a plain expectation in the suite's JSON.
"""

from __future__ import annotations

import csv
import logging
import time
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import TYPE_CHECKING

import duckdb
import pandas as pd

from crm.contracts import CONTRACTS, SourceContract
from crm.landing import LOAD_LOG_TABLE
from crm.quality import GateResult, QualityGate, QualityGateFailed
from crm.score_tables import QUALITY_GATES_TABLE, QUALITY_GATES_TABLES
from crm.settings import Settings, parse_row_count_bounds

if TYPE_CHECKING:
    from crm.warehouse import Warehouse

log = logging.getLogger(__name__)

RAW_PARTITIONS_SUITE = "raw_partitions"
# Row-count bounds come from the previous partitions of the source: at least this many, at most
# this many of them, widened so that ordinary day-to-day variation passes.
BOUNDS_MIN_HISTORY = 7
BOUNDS_HISTORY = 28
# A problem in fewer rows than this is a row-level problem, quarantined at staging, not a reason to
# refuse a daily batch (crm.gates._row_problems_below_systemic) or to block a day's quarantine share.
SYSTEMIC_MIN_ROWS = 5
QUARANTINE_SUITE = "quarantine_shares"


def raw_suite_name(source: str) -> str:
    return f"raw_{source}"


@dataclass
class RawBatchGate:
    """Validates a source's new partitions inside the load's transaction, before it commits.

    Every new partition's row count is checked against the source's previous days. Rows are checked
    one daily batch at a time, so a bad day is not diluted by good ones, for the last
    ``recent_days`` days of the load (a first load or a catch-up brings months at once; older rows
    still pass staging's checks). Blocking failures of every day are raised together as
    crm.quality.QualityGateFailed, and the loader rolls the whole load of the source back.
    """

    quality: QualityGate
    recent_days: int
    # Settings.row_count_bounds: per source learned (the default), off, or fixed.
    row_count_bounds: str = ""
    # What the gate cost so far (the benchmark reports its share of a run).
    validations: int = 0
    seconds: float = 0.0

    def __call__(self, con: duckdb.DuckDBPyConnection, contract: SourceContract, days: list[date]) -> list[GateResult]:
        start = time.perf_counter()
        try:
            results = self._validate(con, contract, days)
        finally:
            self.seconds += time.perf_counter() - start
        self.validations += len(results)
        blocking = [failure for result in results for failure in result.blocking]
        if blocking:
            raise QualityGateFailed(blocking)
        return results

    def _validate(self, con: duckdb.DuckDBPyConnection, contract: SourceContract, days: list[date]) -> list[GateResult]:
        newest = max(days)
        recent = sorted(day for day in days if (newest - day).days < self.recent_days)
        batches = raw_batch_frame(con, contract, recent)
        ids = [*contract.key, "_partition_date"]
        results = [
            self.quality.validate(
                RAW_PARTITIONS_SUITE,
                partition_frame(con, contract, days, row_count_bounds(self.row_count_bounds, contract)),
                ["source", "partition_date"],
                raise_blocking=False,
            )
        ]
        by_day = dict(iter(batches.groupby(batches["_partition_date"].dt.date))) if len(batches) else {}
        parameters = {"accepted_currencies": accepted_currencies(self.quality.settings)}
        for day in recent:
            batch = by_day.get(day, batches.iloc[0:0])
            suite = raw_suite_name(contract.name)
            result = _row_problems_below_systemic(
                self.quality.validate(suite, batch, ids, parameters=parameters, raise_blocking=False)
            )
            self.quality.results[-1] = result  # what the gate decided, the demoted failures as warnings
            results.append(result)
        return results


def _row_problems_below_systemic(result: GateResult) -> GateResult:
    """A daily batch is refused for bad values only when the problem is systemic: more than 10% of its
    rows (the suites' ``mostly``) break an expectation, and they are at least SYSTEMIC_MIN_ROWS rows
    or more than half of the batch. Fewer bad rows (one bad value in a day of 4) are quarantined at
    staging instead, where the quarantine gate still blocks a day that is mostly quarantined."""
    demoted = [
        replace(failure, severity="warning")
        if failure.blocking
        and failure.unexpected_count is not None
        and failure.unexpected_count < SYSTEMIC_MIN_ROWS
        and failure.unexpected_count <= result.rows / 2
        else failure
        for failure in result.failures
    ]
    for before, after in zip(result.failures, demoted, strict=True):
        if before is not after:
            log.warning("below the systemic threshold, quarantined at staging instead: %s", before.describe())
    return replace(result, failures=demoted)


def accepted_currencies(settings: Settings) -> list[str]:
    """The currencies the deployment accepts: those of the dbt seed currency_rates (its configuration)."""
    with (settings.dbt_project_dir / "seeds" / "currency_rates.csv").open(newline="") as handle:
        return sorted({row["currency"].strip().upper() for row in csv.DictReader(handle)})


def row_count_bounds(configured: str, contract: SourceContract) -> str | tuple[int, int]:
    """The source's daily row-count bounds: as configured (Settings.row_count_bounds), else learned
    for a steady source and off for one that arrives in bursts."""
    default = "learned" if contract.steady_volume else "off"
    return parse_row_count_bounds(configured).get(contract.name, default)


def partition_frame(
    con: duckdb.DuckDBPyConnection,
    contract: SourceContract,
    days: list[date],
    bounds: str | tuple[int, int] = "learned",
) -> pd.DataFrame:
    """One row per new partition: its rows, rejected lines, and the row-count bounds: learned from the
    recent days, fixed, or none (``bounds``: "learned", (min, max) or "off")."""
    bounded = "true" if bounds == "learned" else "false"
    fixed_min, fixed_max = bounds if isinstance(bounds, tuple) else ("null", "null")
    return con.execute(
        f"""
        with partitions as (
            -- a partition's rows are those of its latest delivery, in all of its files
            select partition_date, sum(row_count) as row_count, sum(rejected_count) as rejected_count
            from {LOAD_LOG_TABLE}
            where source = $source
            group by partition_date, delivery
            qualify delivery = max(delivery) over (partition by partition_date)
        ),
        history as (
            select partition_date, row_count, rejected_count,
                   count(*) over recent as prior_partitions,
                   quantile_cont(row_count, 0.05) over recent as low,
                   quantile_cont(row_count, 0.95) over recent as high
            from partitions
            window recent as (order by partition_date rows between {BOUNDS_HISTORY} preceding and 1 preceding)
        )
        select $source as source, partition_date, row_count, rejected_count,
               rejected_count / nullif(row_count + rejected_count, 0) as rejected_share,
               -- half the usual low and twice the usual high, widened by three Poisson standard
               -- deviations so that small daily counts (a few sign-ups a day) do not trip them
               case when {bounded} and prior_partitions >= {BOUNDS_MIN_HISTORY}
                    then greatest(floor(low / 2 - 3 * sqrt(low)), 0) else {fixed_min} end as expected_min_rows,
               case when {bounded} and prior_partitions >= {BOUNDS_MIN_HISTORY}
                    then ceil(high * 2 + 3 * sqrt(high)) + 10 else {fixed_max} end as expected_max_rows
        from history
        where partition_date in (select unnest($days::date[]))
        order by partition_date""",
        {"source": contract.name, "days": days},
    ).df()


def raw_batch_frame(con: duckdb.DuckDBPyConnection, contract: SourceContract, days: list[date]) -> pd.DataFrame:
    """The raw rows of ``days``, with the partition's day bounds and, for customer activity, whether
    the customer id is known to the customer master.

    PII columns arrive shape-masked (letters become x, digits 9, punctuation stays): the format
    checks judge them exactly as the originals, while Data Docs, which show unexpected values,
    never see a real email, name or phone.
    """
    masked = ", ".join(f"{_shape_mask(f'batch.{name}')} as {name}" for name in contract.pii)
    customer_check = ""
    customer_join = ""
    if "customer_id" in contract.column_names and contract.name != "customers":
        customer_check = ", master.customer_id is not null as _customer_in_master"
        customer_join = f"""
            left join (select distinct try_cast(customer_id as bigint) as customer_id
                       from {CONTRACTS["customers"].raw_table}) as master
                on master.customer_id = try_cast(batch.customer_id as bigint)"""
    return con.execute(
        f"""
        select batch.*{f" replace ({masked})" if masked else ""},
               batch._partition_date::timestamp as _partition_start,
               (batch._partition_date + 1)::timestamp as _partition_end{customer_check}
        from {contract.raw_table} as batch{customer_join}
        where batch._partition_date in (select unnest($days::date[]))""",
        {"days": days},
    ).df()


def _shape_mask(column: str) -> str:
    return f"regexp_replace(regexp_replace({column}::varchar, '\\pL', 'x', 'g'), '\\pN', '9', 'g')"


def customers_known_at(warehouse: Warehouse, as_of_date: date) -> int:
    """How many customers have features and scores at ``as_of_date``: signed up and delivered by then."""
    return warehouse.row(f"select count(*) from ({_KNOWN_CUSTOMERS_SQL}) as known", [as_of_date, as_of_date])[0]


# Two parameters: the as-of date, twice.
_KNOWN_CUSTOMERS_SQL = """
    select customer_key from marts.dim_customers
    where signup_date <= cast(? as date) and first_delivered_on <= cast(? as date)"""


def mart_frames(
    warehouse: Warehouse, scoring: date, recent_days: int, quarantine_share_limit: float = 0.05
) -> dict[str, tuple[pd.DataFrame, list[str]]]:
    """Each mart suite's frame and id columns: the customer dimension whole, the orders of the last
    ``recent_days`` days, the features at the scoring date joined to every customer known then, and
    each source's quarantined share of each of the last days. The same SQL on every engine."""
    since = scoring - timedelta(days=recent_days - 1)
    # Every feature column the mart's contract has (the models choose among them).
    feature_columns = [
        name for name in warehouse.columns("marts.customer_features") if name not in ("customer_key", "as_of_date")
    ]
    features = ", ".join(f"features.{column}" for column in feature_columns)
    # The hashed customer id is no column the suite checks.
    orders = ", ".join(f"orders.{name}" for name in warehouse.columns("marts.fct_orders") if name != "customer_id")
    return {
        "dim_customers": (_vectorisable(warehouse.frame("select * from marts.dim_customers")), ["customer_key"]),
        "fct_orders": (
            warehouse.frame(
                f"""
            select {orders}, customers.customer_key is not null as _customer_in_dim_customers,
                   cast(cast(? as date) + 1 as timestamp) as _scoring_date_end
            from marts.fct_orders as orders
            left join marts.dim_customers as customers on customers.customer_key = orders.customer_key
            where orders.order_date between cast(? as date) and cast(? as date)""",
                [scoring, since, scoring],
            ),
            ["order_id"],
        ),
        "customer_features": (
            _as_floats(
                warehouse.frame(
                    f"""
            with known as ({_KNOWN_CUSTOMERS_SQL}),
            features as (select * from marts.customer_features where as_of_date = cast(? as date))
            select coalesce(features.customer_key, known.customer_key) as customer_key,
                   cast(? as date) as as_of_date,
                   {features},
                   known.customer_key is not null as _in_dim_customers,
                   features.customer_key is not null as _has_features
            from features full outer join known on known.customer_key = features.customer_key
            order by customer_key""",
                    [scoring] * 4,
                ),
                feature_columns,
            ),
            ["customer_key", "as_of_date"],
        ),
        QUARANTINE_SUITE: (
            quarantine_frame(warehouse, scoring, recent_days, quarantine_share_limit),
            ["source", "partition_date", "dominant_reason"],
        ),
    }


def quarantine_frame(warehouse: Warehouse, scoring: date, recent_days: int, share_limit: float) -> pd.DataFrame:
    """One row per source and delivered day of the last ``recent_days`` days: lines delivered (the
    latest delivery's raw rows and unparseable lines), rows quarantined (audit.rejected_rows, at
    load, staging or marts), the most frequent reason (the first by name among equals), and
    ``quarantined_share``, left null for a day too small to judge: fewer than SYSTEMIC_MIN_ROWS rows
    quarantined and not more than half of the day (one bad value in a day of 4 is a row-level
    problem)."""
    since = scoring - timedelta(days=recent_days - 1)
    double = warehouse.sql_type("double precision")
    return warehouse.frame(
        f"""
        with deliveries as (
            select source, partition_date, delivery, cast(sum(row_count + rejected_count) as bigint) as delivered_lines,
                   max(delivery) over (partition by source, partition_date) as latest_delivery
            from {LOAD_LOG_TABLE}
            where partition_date between cast(? as date) and cast(? as date)
            group by source, partition_date, delivery
        ),
        reasons as (
            select source, partition_date, reason,
                   cast(sum(count(*)) over (partition by source, partition_date) as bigint) as quarantined_rows,
                   row_number() over (partition by source, partition_date order by count(*) desc, reason) as rank
            from audit.rejected_rows
            where partition_date between cast(? as date) and cast(? as date)
            group by source, partition_date, reason
        ),
        final as (
            select deliveries.source, deliveries.partition_date, deliveries.delivered_lines,
                   coalesce(reasons.quarantined_rows, 0) as quarantined_rows,
                   coalesce(reasons.reason, '') as dominant_reason,
                   cast(coalesce(reasons.quarantined_rows, 0) as {double})
                       / nullif(deliveries.delivered_lines, 0) as share
            from deliveries
            left join reasons
                on reasons.source = deliveries.source and reasons.partition_date = deliveries.partition_date
                and reasons.rank = 1
            where deliveries.delivery = deliveries.latest_delivery
        )
        select source, partition_date, delivered_lines, quarantined_rows, dominant_reason,
               case when quarantined_rows >= {SYSTEMIC_MIN_ROWS} or share > 0.5 then share end as quarantined_share,
               cast(? as {double}) as _share_limit
        from final
        order by source, partition_date""",
        [since, scoring, since, scoring, share_limit],
    )


def _vectorisable(frame: pd.DataFrame) -> pd.DataFrame:
    """Integer columns narrower than int64 (DuckDB's integer) as floats: GX checks the range of such a
    column value by value in Python (2 s per million rows at 1M customers), of int64 and float64 at once."""
    narrow = [
        column for column, dtype in frame.dtypes.items() if pd.api.types.is_integer_dtype(dtype) and dtype != "int64"
    ]
    return _as_floats(frame, narrow) if narrow else frame


def _as_floats(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    # Nullable integer columns make GX check values one by one in Python; floats are vectorised.
    frame[columns] = frame[columns].astype("float64")
    return frame


def gate_marts(quality: QualityGate, frames: dict[str, tuple[pd.DataFrame, list[str]]]) -> list[GateResult]:
    """Validate every mart suite, then block once with the failures of all of them."""
    results = [quality.validate(suite, frame, ids, raise_blocking=False) for suite, (frame, ids) in frames.items()]
    blocking = [failure for result in results for failure in result.blocking]
    if blocking:
        raise QualityGateFailed(blocking)
    return results


def gate_outcomes(day: date, results: list[GateResult]) -> pd.DataFrame:
    """A row of monitoring.quality_gates per suite of ``results`` (a step's validations of the run's day)."""
    rows = {}
    for result in results:
        row = rows.setdefault(
            result.suite,
            {
                "as_of_date": day,
                "gate": gate_of(result.suite),
                "suite": result.suite,
                "validations": 0,
                "rows_validated": 0,
                "expectations": 0,
                "failed_expectations": 0,
                "blocking_failures": 0,
            },
        )
        row["validations"] += 1
        row["rows_validated"] += result.rows
        row["expectations"] += result.evaluated
        row["failed_expectations"] += len(result.failures)
        row["blocking_failures"] += len(result.blocking)
    frame = pd.DataFrame(list(rows.values()), columns=list(QUALITY_GATES_TABLES[QUALITY_GATES_TABLE]))
    frame["passed"] = frame["blocking_failures"] == 0
    frame["computed_at"] = pd.Timestamp.now(tz="UTC").tz_localize(None)
    return frame.astype({"as_of_date": "datetime64[us]"})


def gate_of(suite: str) -> str:
    """Which gate a suite belongs to: the load's (raw), the mart gate's (marts) or the scoring's (scores)."""
    if suite.startswith("raw_"):
        return "raw"
    return "scores" if suite.endswith("_scores") else "marts"


def record_gate_results(settings: Settings, quality: QualityGate) -> None:
    """Write what ``quality``'s gates decided to monitoring.quality_gates, a row per suite of the run's
    day, each replacing what an earlier run of that day wrote for its suite (a rerun's outcome wins).
    Called after the step, passed or failed: a failed gate's row is the one that matters most. A
    failure to write is logged, not raised, so that it never hides the gate's own outcome."""
    if not quality.results:
        return
    from crm.score_tables import ensure_tables
    from crm.warehouse import open_warehouse

    frame = gate_outcomes(quality.day, quality.results)
    try:
        with open_warehouse(settings) as warehouse:
            ensure_tables(warehouse, QUALITY_GATES_TABLES)
            for suite, rows in frame.groupby("suite", sort=True):
                warehouse.replace_rows(QUALITY_GATES_TABLE, rows, {"as_of_date": quality.day, "suite": suite})
    except Exception:  # noqa: BLE001 - the gate's own outcome (raised by the step) comes first
        log.warning("the gates' outcome of %s was not recorded in %s", quality.day, QUALITY_GATES_TABLE, exc_info=True)

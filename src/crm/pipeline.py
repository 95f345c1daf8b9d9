"""The pipeline's steps as plain functions: the Airflow DAGs and the CLI call these, and tests can too.

Each step derives what it needs from the settings and the warehouse (never from the previous
task's return value), so any step can be rerun on its own.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from crm import data_docs
from crm.landing import LOAD_LOG_TABLE
from crm.score_tables import DRIVER_COLUMNS, MONITORING_TABLES, QUALITY_GATES_TABLE
from crm.settings import Settings, demo_landing_dir

if TYPE_CHECKING:
    from crm.warehouse import Warehouse

log = logging.getLogger(__name__)

MODELS = ("churn", "segments", "satisfaction", "clv", "recommendations")
# Up to which load the dbt tests have passed (crm.pipeline.record_tested_loads).
TESTED_LOADS_TABLE = "audit.tested_loads"
PUBLISHED_TABLES = (
    "marts.dim_customers",
    "marts.fct_orders",
    "marts.fct_order_items",
    "marts.fct_support_tickets",
    "marts.fct_survey_responses",
    "marts.fct_marketing_events",
    "marts.campaign_performance",
    "marts.customer_features",
    "marts.customer_rfm",
    "marts.customer_360",
    "marts.campaign_audiences",
    "scores.churn",
    "scores.segments",
    "scores.satisfaction",
    "scores.clv",
    "scores.recommendations",
    "marts.customer_recommendations",
    "marts.definitions",
    "marts.metrics_daily",
    "marts.quarantine_daily",
    *MONITORING_TABLES,  # backtests, calibration, drift and alerts (ml.monitoring)
    QUALITY_GATES_TABLE,
)
# The published tables that grow with history, and what partitions them: a publication replaces only
# the partitions whose rows changed (crm.warehouse.publish_copy). The others are copied whole.
PUBLISHED_PARTITIONS = {
    "marts.fct_orders": "order_date",
    "marts.fct_order_items": "delivered_on",
    "marts.fct_support_tickets": "cast(created_at as date)",
    "marts.fct_survey_responses": "cast(responded_at as date)",
    "marts.fct_marketing_events": "cast(event_at as date)",
    "marts.customer_features": "as_of_date",
    "scores.churn": "as_of_date",
    "scores.segments": "as_of_date",
    "scores.satisfaction": "as_of_date",
    "scores.clv": "as_of_date",
    "scores.recommendations": "as_of_date",
    **dict.fromkeys(MONITORING_TABLES, "scoring_date"),
    QUALITY_GATES_TABLE: "as_of_date",
}
# Columns that record when a run happened, not what it computed: two runs of the same day differ in
# them by design, so the published checksums leave them out. They stay wall-clock on purpose:
# scored_at tells when a score was really (re)computed, and loaded_at is the incremental watermark
# of fct_orders and fct_order_items (a late partition of an earlier day must still count as new).
RUN_PROVENANCE_COLUMNS = {
    "marts.fct_orders": ("loaded_at",),
    "marts.fct_order_items": ("loaded_at",),
    "scores.churn": ("scored_at",),
    "scores.segments": ("scored_at",),
    "scores.satisfaction": ("scored_at",),
    "scores.clv": ("scored_at",),
    "scores.recommendations": ("scored_at",),
    **{table: ("scored_at", "computed_at") for table in MONITORING_TABLES},
    QUALITY_GATES_TABLE: ("computed_at",),
}
# Published tables that record what the runs did (which gate validated what, and when), not what they
# computed: two histories that computed the same (a rerun, a backfill in another order, a run killed
# and resumed, another engine) differ in them by design, so comparisons of published tables leave
# them out; their own tests check them.
RUN_LOG_TABLES = (QUALITY_GATES_TABLE,)
# Columns that depend on the order the scoring dates ran in: a customer's churn drivers are carried
# forward from the latest earlier scoring date (ml.explain.carried_drivers), so a backfill in another
# order computes some of them at other dates. drivers_as_of says which date; a comparison across orders
# checks that the drivers are the ones computed at that date (tests/test_idempotency.py).
SCORING_ORDER_COLUMNS = {
    "scores.churn": (*DRIVER_COLUMNS, "drivers_as_of"),
    "marts.customer_360": ("churn_drivers", "churn_drivers_as_of"),
}


@dataclass(frozen=True)
class AsOfPlan:
    """Time-based split: train two churn windows before scoring, validate one window before it."""

    train: date
    validation: date
    scoring: date

    @classmethod
    def ending(cls, scoring: date, window_days: int) -> AsOfPlan:
        return cls(
            train=scoring - timedelta(days=2 * window_days),
            validation=scoring - timedelta(days=window_days),
            scoring=scoring,
        )

    def training_dates(self) -> list[str]:
        return [self.train.isoformat(), self.validation.isoformat()]


def ensure_demo_data(settings: Settings) -> bool:
    """Generate the small demo dataset when the home's own landing folder holds none and no landing
    URL is set; True if it generated. An empty landing folder the user named (CRM_LANDING_DIR) is
    refused instead (NoDeliveries): demo data never goes where real exports are expected."""
    from crm.generate import GeneratorConfig, generate

    if settings.landing_url or (settings.landing_dir.is_dir() and any(settings.landing_dir.iterdir())):
        return False
    if settings.landing_dir != demo_landing_dir(settings.home):
        raise NoDeliveries(
            f"CRM_LANDING_DIR={settings.landing_dir} holds no deliveries: put the exports there (one folder per "
            "source, docs/sources.md), or leave CRM_LANDING_DIR unset for the demo data"
        )
    config = GeneratorConfig(churn_window_days=settings.churn_window_days)
    manifest = generate(config, settings.landing_dir, settings.truth_dir)
    log.info(
        "generated demo data in %s: %d customers over %d days up to %s, %d records (manifest: %s)",
        settings.landing_dir,
        config.customers,
        config.days,
        config.end_date,
        sum(manifest["rows"].values()),
        settings.truth_dir / "manifest.json",
    )
    return True


MODEL_STEPS_GROUP = "crm.model_steps"


def model_step(name: str) -> Callable[..., Any]:
    """A step of the model package (train, preflight, score, evaluate, registered_models), found by
    its entry point (group ``crm.model_steps`` in pyproject.toml): the model package builds on the
    platform, so the platform never imports it."""
    found = entry_points(group=MODEL_STEPS_GROUP, name=name)
    if not found:
        raise LookupError(
            f"no model step {name!r} is installed (entry points {MODEL_STEPS_GROUP}): "
            f"install the project (make install)"
        )
    return next(iter(found)).load()


def load(settings: Settings) -> dict[str, object]:
    """Load new landing partitions; each source's batch passes its raw quality suites before it commits.

    Returns the rows loaded per source and what the raw quality gate cost (validations, seconds
    including Data Docs).
    """
    from crm.gates import RawBatchGate, record_gate_results
    from crm.quality import QualityGate
    from crm.score_tables import ensure_score_tables, ensure_tables
    from crm.warehouse import open_warehouse

    if settings.landing_url:
        from crm import storage

        storage.mirror(settings.landing_url, settings.landing_dir)
    quality = QualityGate(settings, delivery_day(settings))
    gate = RawBatchGate(quality, settings.gate_recent_days, settings.row_count_bounds)
    try:
        with open_warehouse(settings) as warehouse:
            ensure_score_tables(warehouse)
            ensure_tables(warehouse, MONITORING_TABLES)
            rows = warehouse.load_landing(settings.landing_dir, gate, up_to=settings.as_of_date)
    finally:
        start = time.perf_counter()
        gate.quality.build_data_docs()
        gate.seconds += time.perf_counter() - start
        record_gate_results(settings, quality)
    log.info("raw quality gate: %d validations in %.1f s", gate.validations, gate.seconds)
    if not any(rows.values()):
        log.info("%s in %s", NOTHING_NEW, settings.landing_dir)
    return {"rows": rows, "raw_gate": {"validations": gate.validations, "seconds": round(gate.seconds, 2)}}


NOTHING_NEW = "nothing new loaded: no delivered partition added a row (all were loaded before, or held none)"


class StepSkipped(RuntimeError):
    """A step had nothing to do, or must not run on this data (the reason is the message): not a failure.
    The model package's skipped trainings are such steps (ml.preflight.TrainingSkipped)."""


def delivered_order_days(settings: Settings) -> list[date]:
    """The plausible days (not in the future) of the order partitions in the landing folder."""
    from crm.landing import discover, latest_plausible_day

    return [
        partition.day
        for partition in discover(settings.landing_dir)[0].get("orders", [])
        if partition.day <= latest_plausible_day()
    ]


def delivery_day(settings: Settings) -> date:
    """The day a load is about: the configured as-of date, else the newest plausible day with delivered
    orders (what plan() scores at once it is loaded), else today. Its gates' validations join that
    day's Data Docs site, as the later steps' do."""
    if settings.as_of_date is not None:
        return settings.as_of_date
    return max(delivered_order_days(settings), default=datetime.now(UTC).date())


class NoDeliveries(ValueError):
    """A landing folder the user named holds nothing to load (demo data goes only into the home's own)."""


class AsOfDateBeyondData(ValueError):
    """The configured scoring date lies after the delivered data (beyond the tolerance)."""


def plan(settings: Settings) -> AsOfPlan:
    """Score at the configured as-of date, or at the last delivered order day.

    A configured date more than ``as_of_tolerance_days`` after the last delivered order day is
    refused (AsOfDateBeyondData): features and scores there would describe days nobody delivered.
    """
    from crm.warehouse import open_warehouse, warehouse_exists

    last_delivered = None
    if settings.as_of_date is None or warehouse_exists(settings):
        with open_warehouse(settings, read_only=True) as warehouse:
            if settings.as_of_date is None or warehouse.table_exists(LOAD_LOG_TABLE):
                last_delivered = warehouse.row(
                    f"select max(partition_date) from {LOAD_LOG_TABLE} where source = 'orders'"
                )[0]
    if last_delivered is not None:
        check_as_of_date(settings, last_delivered)
    elif settings.as_of_date is None:
        raise LookupError("no order partition is loaded: nothing to plan")
    return AsOfPlan.ending(settings.as_of_date or last_delivered, settings.churn_window_days)


def check_as_of_date(settings: Settings, last_delivered: date) -> None:
    """Refuse a configured as-of date more than the tolerance after the last delivered order day."""
    if settings.as_of_date is None or (settings.as_of_date - last_delivered).days <= settings.as_of_tolerance_days:
        return
    raise AsOfDateBeyondData(
        f"as-of date {settings.as_of_date} is {(settings.as_of_date - last_delivered).days} days after the last "
        f"delivered order day {last_delivered} (tolerance: {settings.as_of_tolerance_days} day(s)): deliver the "
        f"days up to it, or set CRM_AS_OF_DATE to {last_delivered} or earlier"
    )


# dbt selections: the models only training reads (labels), and what the training-data build makes:
# the point-in-time models at the training and validation dates, and the labels. The marts that read
# the scores (customer_360, campaign_audiences) are built by publish, after scoring: built before it
# too, they would only show the previous run's scores until then.
TRAINING_ONLY = "tag:training"
TRAINING_DATA = ("tag:point_in_time", TRAINING_ONLY)
# The outcomes the backtests compare past scores with (the labels at closed scoring dates).
MONITORING_DATA = "tag:monitoring"
SCORE_READERS = "source:scores+"


def build_warehouse(settings: Settings) -> None:
    """dbt build (models, snapshot and tests) of everything scoring and BI read, with the features at
    the scoring date; once it has passed, its loads count as tested. The training data is not in it
    (build_training_data): a daily run would otherwise compute two more as-of dates that only
    training reads. Nor are the marts that read the scores (publish builds them)."""
    from crm.dbt import run_dbt

    settings = refreshed_after_corrections(settings)
    run_dbt(
        settings, ["build", "--exclude", TRAINING_ONLY, SCORE_READERS, *_full_refresh(settings)], dbt_vars(settings)
    )
    record_tested_loads(settings)


def refreshed_after_corrections(settings: Settings) -> Settings:
    """The settings of the next build: a full refresh when a corrected re-delivery was loaded since the
    last build that passed. The incremental models only add what is new, so a record the correction
    removed or an earlier version it changed would otherwise stay."""
    from crm.warehouse import open_warehouse, warehouse_exists

    if settings.full_refresh or not warehouse_exists(settings):
        return settings
    with open_warehouse(settings, read_only=True) as warehouse:
        if not warehouse.table_exists(TESTED_LOADS_TABLE):
            return settings
        text = warehouse.sql_type("text")
        corrected = warehouse.rows(
            f"select distinct source || ' ' || cast(partition_date as {text}) from {LOAD_LOG_TABLE} "
            f"where delivery > 1 and loaded_at > (select max(loads_through) from {TESTED_LOADS_TABLE}) order by 1"
        )
    if not corrected:
        return settings
    log.warning(
        "corrected re-deliveries since the last build (%s): this build refreshes the incremental models in full",
        ", ".join(row[0] for row in corrected),
    )
    return replace(settings, full_refresh=True)


def build_training_data(settings: Settings) -> None:
    """dbt build of what the supervised models learn from: the point-in-time features at the training and
    validation dates (incremental: a date already stored, say as an earlier scoring date, is kept) and
    the churn and satisfaction labels at those dates. Runs after build_warehouse, before training."""
    from crm.dbt import run_dbt

    run_dbt(
        settings, ["build", "--select", *TRAINING_DATA, *_full_refresh(settings)], dbt_vars(settings, training=True)
    )


def build_outcomes(settings: Settings, as_of_dates: list[date]) -> None:
    """dbt build of the outcomes at past scoring dates whose window has closed (the labels at those
    dates), for the backtests (ml.monitoring). Never a full refresh: the labels' table keeps the
    training dates the training-data build computed."""
    from crm.dbt import run_dbt

    variables = {**dbt_vars(settings), "as_of_dates": sorted(day.isoformat() for day in as_of_dates)}
    # int_as_of_dates is a view of the dates of the build that created it: rebuilt with these dates.
    run_dbt(
        settings,
        [
            "build",
            "--select",
            "int_as_of_dates",
            MONITORING_DATA,
            *_full_refresh(replace(settings, full_refresh=False)),
        ],
        variables,
    )


def _full_refresh(settings: Settings) -> list[str]:
    """A build's flags from the settings: a full refresh where asked. On Spark the unit tests stay out:
    they check the SQL on fixed inputs, which the DuckDB builds and the test suite do, and Spark 4.3's
    local executor fails on their unions of literal rows (a ClassCastException in UnionExec)."""
    flags = ["--full-refresh"] if settings.full_refresh else []
    return flags + (["--exclude-resource-type", "unit_test"] if settings.warehouse_engine == "spark" else [])


def dbt_vars(settings: Settings, training: bool = False) -> dict[str, object]:
    """The dbt vars of a build: the as-of dates to compute (the scoring date; with ``training`` the
    training and validation dates), the window, the id kinds on the suppression list, and from which
    partition on the large staging tables are tested.

    A full refresh also recomputes every as-of date the warehouse holds features for: otherwise it
    would keep only this run's dates and drop the other days' features (and with them what
    customer_rfm reads), so it would not equal the incremental runs it replays. Features are point
    in time, so each stored date comes out as it was. A full refresh tests every partition.
    """
    from crm.warehouse import open_warehouse, warehouse_exists

    as_of = plan(settings)
    dates = as_of.training_dates() if training else [as_of.scoring.isoformat()]
    variables: dict[str, object] = {
        "churn_window_days": settings.churn_window_days,
        "clv_horizon_days": settings.clv_horizon,
        "earliest_plausible_date": settings.earliest_plausible_date.isoformat(),
        "erased_id_kinds": [],
    }
    if warehouse_exists(settings):
        with open_warehouse(settings, read_only=True) as warehouse:
            variables["erased_id_kinds"] = _erased_id_kinds(warehouse)
            if settings.full_refresh:
                dates = sorted(set(dates) | {day.isoformat() for day in _stored_feature_dates(warehouse)})
            elif (since := _untested_since(warehouse)) is not None:
                variables["tests_since"] = since.isoformat()
    return {"as_of_dates": dates, **variables}


def _erased_id_kinds(warehouse: Warehouse) -> list[str]:
    """The id kinds with an id on the suppression list: staging hashes only the ids of these kinds to
    keep erased records out (macros/erasure.sql)."""
    from crm.landing import ERASED_IDS_TABLE

    if not warehouse.table_exists(ERASED_IDS_TABLE):
        return []
    return [kind for (kind,) in warehouse.rows(f"select distinct id_kind from {ERASED_IDS_TABLE} order by 1")]


def _untested_since(warehouse: Warehouse) -> date | None:
    """The earliest partition loaded since the last build whose tests passed; None when no build has
    passed yet (everything is tested). With nothing new loaded, the day after the newest partition."""
    if not warehouse.table_exists(TESTED_LOADS_TABLE):
        return None
    earliest, newest = warehouse.row(
        f"select min(partition_date) filter (where loaded_at > (select max(loads_through) from "
        f"{TESTED_LOADS_TABLE})), max(partition_date) from {LOAD_LOG_TABLE}"
    )
    return earliest if earliest is not None else newest + timedelta(days=1) if newest is not None else None


def record_tested_loads(settings: Settings) -> None:
    """Record that every partition loaded so far passed the dbt tests: the next build tests the large
    staging tables from the partitions loaded after it. Called only after a build succeeded, so a
    failed test is run again by the next build."""
    from crm.warehouse import open_warehouse

    with open_warehouse(settings) as warehouse, warehouse.transaction():
        warehouse.execute("create schema if not exists audit")
        warehouse.execute(f"drop table if exists {TESTED_LOADS_TABLE}")
        warehouse.execute(
            f"create table {TESTED_LOADS_TABLE} as select max(loaded_at) as loads_through from {LOAD_LOG_TABLE}"
        )


def _stored_feature_dates(warehouse: Warehouse) -> set[date]:
    if not warehouse.table_exists("marts.customer_features"):
        return set()
    return {day for (day,) in warehouse.rows("select distinct as_of_date from marts.customer_features")}


def gate_marts(settings: Settings) -> dict[str, object]:
    """The mart suites: the customer dimension, the new orders, the features at the scoring date, and
    each source's quarantined share of the recent days."""
    from crm import gates
    from crm.quality import QualityGate
    from crm.warehouse import open_warehouse

    scoring = plan(settings).scoring
    with open_warehouse(settings, read_only=True) as warehouse:
        frames = gates.mart_frames(warehouse, scoring, settings.gate_recent_days, settings.quarantine_share_limit)
    quality = QualityGate(settings, scoring)
    try:
        results = gates.gate_marts(quality, frames)
    finally:
        quality.build_data_docs()
        gates.record_gate_results(settings, quality)
    return {result.suite: {"rows": result.rows, "warnings": len(result.warnings)} for result in results}


def first_order_day(settings: Settings) -> date:
    from crm.warehouse import open_warehouse

    with open_warehouse(settings, read_only=True) as warehouse:
        return warehouse.row(f"select min(partition_date) from {LOAD_LOG_TABLE} where source = 'orders'")[0]


def publish(settings: Settings) -> dict[str, int]:
    """Build the marts that read the scores, then replace the BI copy with this run's tables (the
    history tables partition by partition: only the days that changed are written again).

    Only this step touches the BI copy, and it runs only after every gate passed: a blocked run
    leaves the previously published tables as they were.
    """
    from crm.dbt import run_dbt
    from crm.warehouse import publish_for_bi

    run_dbt(settings, ["build", "--select", SCORE_READERS], dbt_vars(settings))
    if settings.dbt_docs:
        generate_dbt_docs(settings)
    rows = publish_for_bi(settings, PUBLISHED_TABLES, PUBLISHED_PARTITIONS)
    log.info("published %d tables to %s", len(rows), settings.bi_location)
    return rows


# The dbt docs site as one file (dbt docs generate --static).
DBT_DOCS_PAGE = "static_index.html"


def generate_dbt_docs(settings: Settings) -> bool:
    """Generate the dbt docs site unless it already describes this project and these tables; True if it
    generated. The site shows the project (models, descriptions, tests, lineage) and the warehouse's
    tables and columns, no row counts, so a daily run whose data alone changed leaves it as it is.
    Its compiled SQL shows the vars of the run that generated it."""
    from crm.dbt import run_dbt

    fingerprint = _docs_fingerprint(settings)
    target = settings.dbt_artifacts_dir / "target"
    recorded = target / "docs_fingerprint.txt"
    if (target / DBT_DOCS_PAGE).exists() and recorded.exists() and recorded.read_text() == fingerprint:
        log.info("dbt docs are current: the project and the warehouse's tables and columns are unchanged")
        return False
    # --static: one page with the manifest and catalog inside, which a browser opens from the disk
    # (index.html fetches them, which browsers refuse for files; `dbt docs serve` needs the profile's
    # environment).
    run_dbt(settings, ["docs", "generate", "--static"], dbt_vars(settings))
    recorded.write_text(fingerprint)
    return True


def _docs_fingerprint(settings: Settings) -> str:
    """A hash of what the docs site shows: dbt's version, the project's files, and every table and column
    of the warehouse."""
    import hashlib
    from importlib.metadata import version

    from crm.warehouse import open_warehouse

    digest = hashlib.sha256(version("dbt-core").encode())
    for path in sorted(settings.dbt_project_dir.rglob("*")):
        if path.is_file() and not {"target", "logs", "dbt_packages"} & set(
            path.relative_to(settings.dbt_project_dir).parts
        ):
            digest.update(str(path.relative_to(settings.dbt_project_dir)).encode() + b"\0" + path.read_bytes())
    with open_warehouse(settings, read_only=True) as warehouse:
        columns = warehouse.catalog_columns()
    digest.update(repr(columns).encode())
    return digest.hexdigest()


def published_checksums(settings: Settings, across_orders: bool = False) -> dict[str, str]:
    """A checksum of every table of the BI copy (sorted rows; run provenance columns and the run logs,
    RUN_LOG_TABLES, left out): equal checksums mean a rerun or a backfill published exactly what the
    reference run did. ``across_orders`` leaves the scoring-order columns out too, for runs that scored
    the dates in another order."""
    from crm.warehouse import table_checksums

    ignored = dict(RUN_PROVENANCE_COLUMNS)
    if across_orders:
        for table, columns in SCORING_ORDER_COLUMNS.items():
            ignored[table] = (*ignored.get(table, ()), *columns)
    computed = [table for table in PUBLISHED_TABLES if table not in RUN_LOG_TABLES]
    return table_checksums(settings.bi_warehouse_path, computed, ignored)


def summarize(settings: Settings) -> dict[str, object]:
    """Row counts, registered models and where everything is; written to run_summary.json too."""
    from crm.warehouse import open_warehouse

    with open_warehouse(settings, read_only=True) as warehouse:
        counts = {
            table: warehouse.row(f"select count(*) from {table}")[0] if warehouse.table_exists(table) else None
            for table in PUBLISHED_TABLES
        }
        identity = (
            warehouse.row(
                "select customer_records, resolved_customers, consolidation_rate from audit.identity_resolution"
            )
            if warehouse.table_exists("audit.identity_resolution")
            else None
        )
        quarantined = (
            dict(warehouse.rows("select source, count(*) from audit.rejected_rows group by source order by source"))
            if warehouse.table_exists("audit.rejected_rows")
            else {}
        )
        scoring = plan(settings).scoring
        monitoring = _monitoring_summary(warehouse, scoring)
        # When something was last loaded: a rerun with nothing new delivered shows an earlier run's time.
        latest_load = warehouse.row(f"select max(loaded_at), max(partition_date) from {LOAD_LOG_TABLE}")
    monitoring["reports"] = sorted(str(path) for path in settings.monitoring_reports_dir.glob("*.html"))
    summary = {
        "as_of_date": scoring.isoformat(),
        "tables": counts,
        "identity_resolution": None
        if identity is None
        else {
            "customer_records": identity[0],
            "resolved_customers": identity[1],
            "consolidation_rate": round(identity[2] or 0.0, 4),
        },
        "quarantined_rows": quarantined,
        "latest_load": {"loaded_at": str(latest_load[0])[:16], "deliveries_up_to": str(latest_load[1])},
        "models": model_step("registered_models")(settings),
        "trainings": model_step("training_attempts")(settings),
        "monitoring": monitoring,
        "warehouse": settings.warehouse_location,
        "bi_warehouse": settings.bi_location,
        "mlflow_tracking_uri": settings.mlflow_tracking_uri,
        "mlflow_artifacts": str(settings.mlflow_artifacts_dir),
        # The run's own site (every gate's validations of its day), and the list of every run's.
        "data_docs": str(data_docs.site_dir(settings, scoring) / "index.html"),
        "data_docs_runs": str(settings.data_docs_dir / "index.html"),
        "dbt_docs": str(settings.dbt_artifacts_dir / "target" / DBT_DOCS_PAGE) if settings.dbt_docs else "",
        "ui": {
            "mlflow": f"make ui, then http://127.0.0.1:{settings.mlflow_ui_port}",
            "airflow": f"make ui, then http://127.0.0.1:{settings.airflow_ui_port} (it prints the login)",
            "dashboard": f"make ui, then http://127.0.0.1:{settings.dashboard_port}",
        },
    }
    settings.run_summary_path.parent.mkdir(parents=True, exist_ok=True)
    settings.run_summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _monitoring_summary(warehouse: Warehouse, scoring_date: date) -> dict[str, object]:
    """Each model's latest backtest (ROC-AUC and calibration error; Gini and the ratio of predicted to
    realised revenue for lifetime value) and the alerts raised at the run's scoring date (ml.monitoring)."""
    from crm.score_tables import ALERTS_TABLE, BACKTESTS_TABLE

    if not warehouse.table_exists(ALERTS_TABLE):
        return {"backtests": {}, "alerts": []}
    latest = warehouse.rows(
        f"""
        select model_name, cast(scoring_date as {warehouse.sql_type("text")}), metric, value, customers
        from {BACKTESTS_TABLE} as backtests
        where metric in ('roc_auc', 'ece', 'gini', 'total_ratio') and scoring_date = (
            select max(scoring_date) from {BACKTESTS_TABLE} as newer where newer.model_name = backtests.model_name
        )
        order by model_name, metric"""
    )
    backtests: dict[str, dict[str, object]] = {}
    for model, day, metric, value, customers in latest:
        backtests.setdefault(model, {"scoring_date": day, "customers": customers})[metric] = round(value, 4)
    alerts = [
        row[0]
        for row in warehouse.rows(
            f"select message from {ALERTS_TABLE} where scoring_date = cast(? as date) "
            "order by model_name, kind, subject",
            [scoring_date],
        )
    ]
    return {"backtests": backtests, "alerts": alerts}


def format_summary(summary: dict[str, object]) -> str:
    lines = [f"CRM pipeline summary (as of {summary['as_of_date']})", "", "Published tables:"]
    for table, rows in summary["tables"].items():  # type: ignore[union-attr]
        lines.append(f"  {table:<32} {'missing' if rows is None else f'{rows:>10,} rows'}")
    identity = summary.get("identity_resolution")
    if identity:
        lines += [
            "",
            f"Identity resolution: {identity['customer_records']:,} CRM records -> "
            f"{identity['resolved_customers']:,} customers "
            f"(consolidation rate {identity['consolidation_rate']:.2%})",
        ]
    latest_load = summary.get("latest_load") or {}
    if latest_load:
        lines.append(
            f"Latest load:         {latest_load['loaded_at']} UTC, deliveries up to {latest_load['deliveries_up_to']}"
            " (a load that finds nothing new leaves this time as it was)"
        )
    quarantined = summary.get("quarantined_rows") or {}
    if quarantined:
        lines.append(
            "Quarantined rows:    "
            + ", ".join(f"{source} {rows:,}" for source, rows in quarantined.items())
            + " (audit.rejected_rows)"
        )
    lines += ["", "Registered models:"]
    for model in summary["models"]:  # type: ignore[union-attr]
        aliases = ", ".join(f"{alias}=v{v}" for alias, v in model["aliases"].items()) or "no aliases"
        lines.append(f"  {model['name']:<20} latest v{model['latest_version']}  ({aliases})")
    if summary.get("trainings"):
        lines += ["", "Latest training of each model:"]
        for name, attempt in summary["trainings"].items():  # type: ignore[union-attr]
            lines.append(f"  {name:<20} {attempt['at'][:16].replace('T', ' ')}  {attempt['outcome']}")
    monitoring = summary.get("monitoring") or {}
    if monitoring.get("backtests") or monitoring.get("alerts") or monitoring.get("reports"):
        lines += ["", "Monitoring (monitoring.backtests, monitoring.drift, monitoring.alerts):"]
        for model, backtest in monitoring["backtests"].items():
            if "gini" in backtest:
                quality = f"Gini {backtest['gini']:.3f}, predicted/realised revenue {backtest['total_ratio']:.2f}"
            else:
                quality = f"ROC-AUC {backtest['roc_auc']:.3f}, calibration error {backtest['ece']:.3f}"
            lines.append(
                f"  {model:<20} backtest at {backtest['scoring_date']}: {quality} ({backtest['customers']:,} customers)"
            )
        lines += [f"  WARNING {alert}" for alert in monitoring["alerts"]]
    for report in monitoring.get("reports") or []:
        lines.append(f"  report: {report}")
    lines += [
        "",
        f"Warehouse:        {summary['warehouse']}",
        f"BI copy:          {summary['bi_warehouse']} (read-only, replaced after each successful run)",
        f"MLflow store:     {summary['mlflow_tracking_uri']} (artifacts {summary['mlflow_artifacts']})",
        f"Data Docs:        {summary['data_docs']} (every run: {summary['data_docs_runs']})",
        f"dbt docs:         {summary['dbt_docs']} (open it in a browser)"
        if summary["dbt_docs"]
        else "dbt docs:         not generated (CRM_DBT_DOCS=false)",
        f"MLflow UI:        {summary['ui']['mlflow']}",  # type: ignore[index]
        f"Airflow UI:       {summary['ui']['airflow']}",  # type: ignore[index]
        f"Dashboard:        {summary['ui']['dashboard']}",  # type: ignore[index]
    ]
    return "\n".join(lines)

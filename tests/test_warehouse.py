"""The dbt warehouse on real DuckDB: point-in-time features do not change when later data arrives."""

import logging
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from crm import pipeline
from crm.contracts import CONTRACTS
from crm.generate import GeneratorConfig, generate
from crm.settings import Settings
from crm.warehouse import transaction
from ml import steps
from ml.features import TrainingDataMissing

END = date(2026, 11, 23)
# The date whose features must not change when later data arrives, and the last day delivered before
# the last month, which comes late (with a correction of a day built before).
AS_OF = date(2026, 9, 20)
BEFORE_LATE_MONTH = date(2026, 10, 20)
# Each load's raw gate checks the newest day only (about 0.4 s a source and day): the gate itself is
# tested in test_quality_gates.py.
GATE_DAYS = 1


def _features(settings: Settings) -> list[tuple]:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return con.execute(
            "select * from marts.customer_features where as_of_date = ? order by all", [AS_OF]
        ).fetchall()


def _checksums(settings: Settings) -> dict[str, str]:
    tables = [
        "marts.dim_customers",
        "marts.fct_orders",
        "marts.customer_features",
        "marts.customer_rfm",
        "staging.int_order_versions",
    ]
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return {
            table: con.execute(
                f"select md5(string_agg(t::varchar, '|' order by t::varchar)) from {table} t"
            ).fetchone()[0]
            for table in tables
        }


def _stored_dates(settings: Settings) -> tuple[set[date], set[date] | None]:
    """The as-of dates stored in the features, and in the churn labels (None: no labels table)."""
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        features = {row[0] for row in con.execute("select distinct as_of_date from marts.customer_features").fetchall()}
        labels = (
            None
            if not con.execute(
                "select count(*) from information_schema.tables where table_name = 'customer_churn_labels'"
            ).fetchone()[0]
            else {
                row[0] for row in con.execute("select distinct as_of_date from marts.customer_churn_labels").fetchall()
            }
        )
    return features, labels


def _correct_customers_day(landing: Path, last: date) -> tuple[date, int, int]:
    """Deliver again, corrected, the busiest customers day up to ``last`` after the first (the
    initial master): a new city for every record, and without one customer who has no record on any
    other day. Returns the day, the records kept and the withdrawn id."""
    import pandas as pd

    days = {
        date.fromisoformat(path.parent.name[3:]): pd.read_csv(path, dtype=str)
        for path in sorted((landing / "customers").glob("dt=*/customers.csv"))
    }
    first = min(days)
    day = max((d for d in days if first < d <= last), key=lambda d: len(days[d]))
    others = {customer_id for d, frame in days.items() if d != day for customer_id in frame["customer_id"]}
    withdrawn = next(customer_id for customer_id in days[day]["customer_id"] if customer_id not in others)
    kept = days[day][days[day]["customer_id"] != withdrawn].assign(city="Corrected City")
    kept.to_csv(landing / "customers" / f"dt={day}" / "customers.csv", index=False)
    return day, len(kept), int(withdrawn)


@contextmanager
def _warnings(logger: str) -> Iterator[list[str]]:
    """The messages ``logger`` logs at WARNING or above inside the block."""
    messages: list[str] = []

    class Recorder(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    handler, target = Recorder(logging.WARNING), logging.getLogger(logger)
    level = target.level
    target.addHandler(handler)
    if not target.isEnabledFor(logging.WARNING):
        target.setLevel(logging.WARNING)
    try:
        yield messages
    finally:
        target.removeHandler(handler)
        target.setLevel(level)


@dataclass
class HeldBackRuns:
    """What each step of ``held_back_runs`` left (the tests below check these records)."""

    # 1. The days up to AS_OF, loaded and built at AS_OF (a daily build on a new warehouse).
    before: list[tuple]  # features at AS_OF
    daily_dates: tuple[set[date], set[date] | None]  # stored feature and label dates
    # 2. The days up to BEFORE_LATE_MONTH delivered: a load for AS_OF, a load of everything, a build at AS_OF.
    loaded_for_as_of: dict[str, object]
    loaded_later: dict[str, object]
    after: list[tuple]  # features at AS_OF
    # 3. The last month delivered late with a corrected customers day, loaded and built at END, then
    # refreshed in full.
    corrected_day: date
    corrected: int
    withdrawn: int
    warnings: list[str]  # what the build at END logged
    incremental: dict[str, str]  # checksums after the build at END
    withdrawn_rows: int
    corrected_day_cities: list[tuple]
    full_refresh: dict[str, str]  # checksums after the full refresh
    # 4. The training data, built at END and then at the day before.
    dates_before_training: tuple[set[date], set[date] | None]
    train_before_training_data: Exception | None  # what steps.train raised before the training-data build
    training: pipeline.AsOfPlan
    dates_after_training: tuple[set[date], set[date] | None]
    later_training: pipeline.AsOfPlan
    dates_after_later_training: tuple[set[date], set[date] | None]


@pytest.fixture(scope="module")
def held_back_runs(tmp_path_factory: pytest.TempPathFactory) -> HeldBackRuns:
    """One generated delivery (400 customers, 150 days up to END) held back and delivered in parts,
    with a load and a build after each: the days up to AS_OF (built at AS_OF), then the days up to
    BEFORE_LATE_MONTH (built at AS_OF again), then the last month with a corrected customers day built
    before (built at END, then refreshed in full), then the training data at END and at the day
    before. The steps run here, in this order, whichever test asks first; each records what it left.
    The features at AS_OF are recorded before the correction, which legitimately changes features at
    earlier dates (its withdrawn customer). Four dbt builds and two training-data builds: about 100 s."""
    home = tmp_path_factory.mktemp("held_back_runs")
    settings = Settings.from_env(home=home, as_of_date=AS_OF, churn_window_days=30, gate_recent_days=GATE_DAYS)
    generate(GeneratorConfig(customers=400, days=150, end_date=END), settings.landing_dir, settings.truth_dir)
    held = home / "held"
    for source in CONTRACTS:
        (held / source).mkdir(parents=True)
        for folder in (settings.landing_dir / source).iterdir():
            if date.fromisoformat(folder.name[3:]) > AS_OF:
                shutil.move(folder, held / source / folder.name)

    def deliver(through: date) -> None:
        for source in CONTRACTS:
            for folder in (held / source).iterdir():
                if date.fromisoformat(folder.name[3:]) <= through:
                    shutil.move(folder, settings.landing_dir / source / folder.name)

    # 1. A daily build at AS_OF on a new warehouse.
    pipeline.load(settings)
    pipeline.build_warehouse(settings)
    before, daily_dates = _features(settings), _stored_dates(settings)

    # 2. The later days arrive. A later day's run loads them (a run for the as-of date itself loads
    # nothing after it); the build at AS_OF again.
    deliver(BEFORE_LATE_MONTH)
    loaded_for_as_of = pipeline.load(settings)
    loaded_later = pipeline.load(replace(settings, as_of_date=None))
    pipeline.build_warehouse(settings)
    after = _features(settings)

    # 3. The last month, late, and with it a correction of a day already built: every record's city
    # changes and one customer who signed up that day is withdrawn.
    deliver(END)
    corrected_day, corrected, withdrawn = _correct_customers_day(settings.landing_dir, BEFORE_LATE_MONTH)
    at_end = replace(settings, as_of_date=END)
    pipeline.load(at_end)
    with _warnings("crm.pipeline") as warnings:
        pipeline.build_warehouse(at_end)
    incremental = _checksums(at_end)
    with duckdb.connect(str(at_end.warehouse_path), read_only=True) as con:
        withdrawn_rows = con.execute(
            "select count(*) from staging.stg_crm__customers where customer_id = ?", [withdrawn]
        ).fetchone()[0]
        corrected_day_cities = con.execute(
            "select distinct city from staging.stg_crm__customers where delivered_on = ?", [corrected_day]
        ).fetchall()
    pipeline.build_warehouse(replace(at_end, full_refresh=True))
    full_refresh = _checksums(at_end)

    # 4. The training data: training refuses to start before it is built.
    dates_before_training = _stored_dates(at_end)
    train_before_training_data = None
    try:
        steps.train(at_end, "segments")
    except TrainingDataMissing as error:
        train_before_training_data = error
    pipeline.build_training_data(at_end)
    dates_after_training = _stored_dates(at_end)
    day_before = replace(at_end, as_of_date=END - timedelta(days=1))
    pipeline.build_training_data(day_before)

    return HeldBackRuns(
        before=before,
        daily_dates=daily_dates,
        loaded_for_as_of=loaded_for_as_of,
        loaded_later=loaded_later,
        after=after,
        corrected_day=corrected_day,
        corrected=corrected,
        withdrawn=withdrawn,
        warnings=warnings,
        incremental=incremental,
        withdrawn_rows=withdrawn_rows,
        corrected_day_cities=corrected_day_cities,
        full_refresh=full_refresh,
        dates_before_training=dates_before_training,
        train_before_training_data=train_before_training_data,
        training=pipeline.plan(at_end),
        dates_after_training=dates_after_training,
        later_training=pipeline.plan(day_before),
        dates_after_later_training=_stored_dates(day_before),
    )


def test_features_at_a_date_ignore_data_delivered_after_it(held_back_runs: HeldBackRuns):
    """The first of the tests on held_back_runs to run waits for its steps (about 100 s)."""
    runs = held_back_runs
    assert not any(runs.loaded_for_as_of["rows"].values()), "a run for the as-of date loads nothing after it"
    assert runs.loaded_later["rows"]["orders"] > 0 and runs.loaded_later["raw_gate"]["validations"] > 0
    assert len(runs.before) > 100
    assert runs.after == runs.before


def test_incremental_runs_equal_a_full_refresh(held_back_runs: HeldBackRuns):
    """A month delivered late with a correction of a day built before: the build after it equals a full
    refresh (held_back_runs, step 3)."""
    runs = held_back_runs
    assert any("refreshes the incremental models in full" in message for message in runs.warnings), runs.warnings
    assert runs.withdrawn_rows == 0
    assert runs.corrected > 1 and runs.corrected_day_cities == [("Corrected City",)], (
        "the versions kept of that day are the corrected"
    )
    assert runs.full_refresh == runs.incremental


def test_the_daily_build_computes_the_scoring_date_and_the_training_data_build_the_training_dates(
    held_back_runs: HeldBackRuns,
):
    """held_back_runs, steps 1 and 4: the daily builds and the two training-data builds."""
    runs = held_back_runs
    assert runs.daily_dates == ({AS_OF}, None), "a daily build: the scoring date only, no labels"
    assert runs.dates_before_training == ({AS_OF, END}, None), "daily builds and full refreshes: no training dates"
    training = runs.training
    error = runs.train_before_training_data
    assert isinstance(error, TrainingDataMissing), "training before the training-data build"
    assert re.search(f"no features at {training.validation}.*crm build --training", str(error)), str(error)

    assert runs.dates_after_training == (
        {AS_OF, END, training.train, training.validation},
        {training.train, training.validation},
    )
    # Labels are incremental: a training-data build computes its own two dates and keeps the others (the
    # earlier build's here; in production also the scoring dates the monitoring step backtests).
    later = runs.later_training
    assert runs.dates_after_later_training[1] == {training.train, training.validation, later.train, later.validation}


def test_a_transaction_writes_all_or_nothing_and_reports_its_own_error():
    con = duckdb.connect(":memory:")
    con.execute("create table t (id integer primary key)")
    with pytest.raises(ValueError, match="refused"), transaction(con):
        con.execute("insert into t values (1)")
        raise ValueError("refused")
    assert con.execute("select count(*) from t").fetchone()[0] == 0
    # A commit that conflicts with a concurrent one fails with the conflict, not a failed rollback.
    other = con.cursor()
    with pytest.raises(duckdb.TransactionException, match="PRIMARY KEY"), transaction(con):
        con.execute("insert into t values (2)")
        with transaction(other):
            other.execute("insert into t values (2)")
    assert con.execute("select id from t").fetchall() == [(2,)]
    with transaction(con):
        con.execute("insert into t values (3)")
    assert con.execute("select count(*) from t").fetchone()[0] == 2


def test_a_build_tests_the_partitions_loaded_since_the_last_build_that_passed(tmp_path: Path):
    from crm.landing import LOAD_LOG_TABLE, ensure_raw_schema
    from crm.warehouse import connect

    settings = Settings.from_env(home=tmp_path, as_of_date=date(2026, 3, 2))

    def loaded(day: date, at: datetime) -> None:
        with connect(settings) as con:
            ensure_raw_schema(con)
            con.execute(
                f"insert into {LOAD_LOG_TABLE} (source, partition_date, file, row_count, rejected_count, loaded_at, "
                f"delivery) values ('orders', ?, 'orders.parquet', 10, 0, ?, 1)",
                [day, at],
            )

    loaded(date(2026, 3, 1), datetime(2026, 3, 2, 6))
    assert "tests_since" not in pipeline.dbt_vars(settings), "before any passing build every row is tested"
    pipeline.record_tested_loads(settings)
    assert pipeline.dbt_vars(settings)["tests_since"] == "2026-03-02", "nothing new: no old partition tested again"

    # A late partition of an earlier day and the next day arrive; their build fails (nothing recorded),
    # so the next build tests them again.
    loaded(date(2026, 2, 20), datetime(2026, 3, 3, 6))
    loaded(date(2026, 3, 2), datetime(2026, 3, 3, 6))
    assert pipeline.dbt_vars(settings)["tests_since"] == "2026-02-20"
    assert "tests_since" not in pipeline.dbt_vars(replace(settings, full_refresh=True)), "a full refresh tests all"
    pipeline.record_tested_loads(settings)
    assert pipeline.dbt_vars(settings)["tests_since"] == "2026-03-03"


def test_features_that_start_from_a_stored_date_equal_a_full_refresh(home_copy):
    """The end-to-end home holds features at its training, validation and scoring dates. A build 45 days
    after the validation date starts from that date's features: customers whose orders changed in
    between are computed from history, the others carried, with orders leaving the 90-day windows. A
    full refresh at the same date must give the same rows. About a minute (two builds of the demo home)."""
    settings = home_copy("features_from_state")
    start = pipeline.plan(settings).validation
    later = replace(settings, as_of_date=start + timedelta(days=45))
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        # The case is not trivial: customers to carry, and some of them with orders leaving a window.
        carried, leaving = con.execute(
            """
            with unchanged as (
                select customer_key from marts.customer_features as stored
                where as_of_date = $start and not exists (
                    select 1 from staging.int_order_version_validity as versions
                    where versions.customer_key = stored.customer_key
                        and (versions.known_from > $start and versions.known_from <= $later
                            or versions.superseded_on > $start and versions.superseded_on <= $later)
                )
            )
            select
                (select count(*) from unchanged),
                (select count(distinct versions.customer_key) from staging.int_order_version_validity as versions
                 where versions.customer_key in (select customer_key from unchanged)
                    and versions.status = 'completed'
                    and versions.order_date > $start - interval 180 day
                    and versions.order_date <= $later - interval 90 day)
            """,
            {"start": start, "later": later.as_of_date},
        ).fetchone()
    assert carried > 100 and leaving > 10

    def features() -> list[tuple]:
        with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
            return con.execute(
                "select * from marts.customer_features where as_of_date = ? order by all", [later.as_of_date]
            ).fetchall()

    pipeline.build_warehouse(later)
    from_state = features()
    pipeline.build_warehouse(replace(later, full_refresh=True))
    assert len(from_state) > 1000 and features() == from_state

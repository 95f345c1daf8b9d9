"""The raw batch, mart and score suites on real generated data, loaded and built with DuckDB and dbt.

Every defect kind of the generator's manifest is caught by the check listed in
expectations/README.md; clean data passes every suite; blocking failures refuse the batch or stop
the run and say where.
"""

import csv
import json
import shutil
from dataclasses import replace
from datetime import date
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from crm import gates, pipeline
from crm.contracts import CONTRACTS
from crm.generate import DefectRates, GeneratorConfig, generate
from crm.landing import LOAD_LOG_TABLE, LandingError, load_landing, partition_dir
from crm.quality import GateResult, QualityGate, QualityGateFailed
from crm.score_tables import ensure_score_tables
from crm.settings import Settings
from crm.warehouse import DuckDBWarehouse, connect

DAYS = 45
# The row-level suites check the last days of the generated history one day at a time.
RECENT_DAYS = 10
LAST_DAY = date(2026, 11, 23)
# Defects at rates that put every kind into a 45-day batch.
DEFECTS = replace(
    DefectRates(),
    schema_drift_batches=8,
    invalid_email=0.03,
    invalid_phone=0.03,
    missing_required=0.03,
    non_positive_amount=0.02,
    future_timestamp=0.02,
    unknown_customer=0.02,
    redelivered_duplicate=0.02,
    late_arriving=0.05,
    malformed_line_per_file=0.3,
)


def _home(tmp_path_factory: pytest.TempPathFactory, name: str, defects: DefectRates) -> Settings:
    settings = Settings.from_env(home=tmp_path_factory.mktemp(name), gate_recent_days=RECENT_DAYS)
    generate(GeneratorConfig(customers=2_000, days=DAYS, defects=defects), settings.landing_dir, settings.truth_dir)
    return settings


def _validate_every_source(settings: Settings, quality: QualityGate) -> dict[str, list[GateResult]]:
    """Load without a gate, then run each source's raw suites on everything it delivered."""
    raw_gate = gates.RawBatchGate(quality, settings.gate_recent_days)
    results: dict[str, list[GateResult]] = {}
    with connect(settings) as con:
        ensure_score_tables(DuckDBWarehouse(con))
        load_landing(con, settings.landing_dir)
        for source, contract in CONTRACTS.items():
            days = [
                row[0]
                for row in con.execute(
                    f"select partition_date from {LOAD_LOG_TABLE} where source = ?", [source]
                ).fetchall()
            ]
            results[source] = raw_gate(con, contract, days)
    return results


@pytest.fixture(scope="module")
def quality(tmp_path_factory: pytest.TempPathFactory) -> QualityGate:
    return QualityGate(Settings.from_env(home=tmp_path_factory.mktemp("quality_docs")))


@pytest.fixture(scope="module")
def defective(tmp_path_factory: pytest.TempPathFactory, quality: QualityGate):
    settings = _home(tmp_path_factory, "defective", DEFECTS)
    manifest = json.loads((settings.truth_dir / "manifest.json").read_text())["defects"]
    return settings, manifest, _validate_every_source(settings, quality)


@pytest.fixture(scope="module")
def clean_built(tmp_path_factory: pytest.TempPathFactory, quality: QualityGate) -> tuple[Settings, dict]:
    """Defect-free data: loaded, its raw suites run, and the warehouse built with dbt."""
    settings = _home(tmp_path_factory, "clean", DefectRates.none())
    results = _validate_every_source(settings, quality)
    pipeline.build_warehouse(settings)
    return settings, results


# defect kind -> (suite, expectation, column) that catches it in the raw batch
CAUGHT_BY = {
    "invalid_email": ("raw_customers", "expect_column_values_to_match_regex", "email"),
    "invalid_phone": ("raw_customers", "expect_column_values_to_match_regex", "phone"),
    "missing_required": ("raw_customers", "expect_column_values_to_not_be_null", "signup_date"),
    "schema_drift_extra_column": ("raw_customers", "expect_column_values_to_be_null", "_extra"),
    "malformed_line": ("raw_partitions", "expect_column_values_to_be_between", "rejected_count"),
    "unknown_customer": ("raw_orders", "expect_column_values_to_be_in_set", "_customer_in_master"),
    "non_positive_amount": ("raw_orders", "expect_column_values_to_be_between", "amount"),
    "future_timestamp": ("raw_orders", "expect_column_pair_values_a_to_be_greater_than_b", "_partition_end,ordered_at"),
    "late_arriving": ("raw_orders", "expect_column_pair_values_a_to_be_greater_than_b", "updated_at,_partition_start"),
    "redelivered_duplicate": ("raw_orders", "expect_compound_columns_to_be_unique", "order_id,updated_at"),
}
SOURCE_OF = {"malformed_line": "customers", "schema_drift_extra_column": "customers"}


@pytest.mark.parametrize("kind", sorted(CAUGHT_BY))
def test_raw_suites_catch_each_defect_kind(defective, kind: str):
    _, manifest, results = defective
    suite, expectation, column = CAUGHT_BY[kind]
    source = SOURCE_OF.get(kind) or suite.removeprefix("raw_")
    assert manifest[source][kind] > 0
    failures = [
        f
        for result in results[source]
        for f in result.failures
        if (f.suite, f.expectation, f.column) == (suite, expectation, column)
    ]
    assert failures, [f.describe() for result in results[source] for f in result.failures]
    # Defective rows are reported, not blocking: staging quarantines or resolves them.
    assert all(not f.blocking and f.unexpected_count > 0 and f.sample_ids for f in failures)


def test_every_manifest_defect_kind_has_a_check(defective):
    _, manifest, _ = defective
    # Handled before or after the raw suites: a renamed column is refused by the loader's contract
    # check (tests/test_landing.py); a person's duplicate record is merged by identity resolution,
    # and the dim_customers suite blocks on a repeated customer key.
    elsewhere = {"schema_drift_renamed_column", "duplicate_person"}
    kinds = {kind for kinds in manifest.values() for kind in kinds}
    assert kinds - elsewhere <= set(CAUGHT_BY), kinds - elsewhere - set(CAUGHT_BY)


def test_clean_data_passes_every_raw_suite(clean_built):
    """The first to ask builds the clean warehouse of this module (every raw suite on ten days, a dbt build)."""
    _, results = clean_built
    assert {source: [f.describe() for r in rs for f in r.failures] for source, rs in results.items()} == {
        source: [] for source in CONTRACTS
    }
    validated = {r.suite for rs in results.values() for r in rs}
    assert validated == {"raw_partitions", *(gates.raw_suite_name(source) for source in CONTRACTS)}


def test_clean_marts_pass_every_mart_suite(clean_built, quality: QualityGate):
    settings, _ = clean_built
    with connect(settings, read_only=True) as con:
        frames = gates.mart_frames(DuckDBWarehouse(con), LAST_DAY, settings.gate_recent_days)
    results = gates.gate_marts(quality, frames)
    assert [r.suite for r in results] == ["dim_customers", "fct_orders", "customer_features", "quarantine_shares"]
    assert all(r.rows > 0 and not r.blocking for r in results)
    # With 45 days of history most customers have not ordered yet: reported, as it should be.
    assert [(r.suite, f.column) for r in results for f in r.warnings] == [("customer_features", "recency_days")]
    # A share is reported with what was measured.
    assert 0 <= next(f.observed_value for r in results for f in r.warnings) < 0.5


def _copy_landing(settings: Settings, tmp_path: Path) -> Settings:
    """The clean delivery in a fresh home whose raw gate checks the newest day's rows only: the tests
    below break the last day (every new partition's row count is checked whatever the window)."""
    copy = Settings.from_env(home=tmp_path, gate_recent_days=1)
    shutil.copytree(settings.landing_dir, copy.landing_dir)
    return copy


def test_changed_date_format_refuses_the_batch_and_writes_nothing(clean_built, quality: QualityGate, tmp_path: Path):
    settings = _copy_landing(clean_built[0], tmp_path)
    path = partition_dir(settings.landing_dir, "customers", LAST_DAY) / "customers.csv"
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows, "the last customers partition has rows"
    for row in rows:  # 2026-11-23 becomes 23/11/2026
        year, month, day = row["signup_date"].split("-")
        row["signup_date"] = f"{day}/{month}/{year}"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with connect(settings) as con, pytest.raises(LandingError) as error:
        load_landing(con, settings.landing_dir, gates.RawBatchGate(quality, settings.gate_recent_days))
    message = str(error.value)
    assert "source 'customers'" in message and "refused, nothing was written" in message
    assert "suite raw_customers" in message and "column signup_date" in message
    assert "expect_column_values_to_match_regex" in message
    with connect(settings, read_only=True) as con:
        assert con.execute("select count(*) from raw.customers").fetchone()[0] == 0
        assert con.execute(f"select count(*) from {LOAD_LOG_TABLE} where source = 'customers'").fetchone()[0] == 0
        assert con.execute("select count(*) from raw.orders").fetchone()[0] > 0  # other sources load
    # The refusal is on record for BI, after the load rolled back (as crm.pipeline.load records it).
    gates.record_gate_results(settings, quality)
    with connect(settings, read_only=True) as con:
        recorded = con.execute(
            "select gate, passed, blocking_failures from monitoring.quality_gates where suite = 'raw_customers'"
        ).fetchall()
    assert [(gate, passed) for gate, passed, _ in recorded] == [("raw", False)] and recorded[0][2] >= 1


def test_one_bad_value_in_a_small_day_is_quarantined_not_refused(clean_built, quality: QualityGate, tmp_path: Path):
    """A day of 4 customers with one unreadable date: a row-level problem, not a systemic one."""
    settings = _copy_landing(clean_built[0], tmp_path)
    path = partition_dir(settings.landing_dir, "customers", LAST_DAY) / "customers.csv"
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))[:4]
    year, month, day = rows[0]["signup_date"].split("-")
    rows[0]["signup_date"] = f"{day}/{month}/{year}"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with connect(settings) as con:
        load_landing(con, settings.landing_dir, gates.RawBatchGate(quality, settings.gate_recent_days))
        loaded = con.execute("select count(*) from raw.customers where _partition_date = ?", [LAST_DAY]).fetchone()
    assert loaded == (4,), "the day loads; staging quarantines the bad row (missing or invalid signup_date)"
    # What the gate decided is recorded: the failure, demoted to a warning.
    decided = [result for result in quality.results if result.suite == "raw_customers"][-1]
    assert decided.failures and not decided.blocking, decided


def test_empty_daily_delivery_is_outside_the_learned_row_count_bounds(
    clean_built, quality: QualityGate, tmp_path: Path
):
    settings = _copy_landing(clean_built[0], tmp_path)
    path = partition_dir(settings.landing_dir, "orders", LAST_DAY) / "orders.parquet"
    pq.write_table(pq.read_table(path).slice(0, 0), path)
    with connect(settings) as con, pytest.raises(LandingError) as error:
        load_landing(con, settings.landing_dir, gates.RawBatchGate(quality, settings.gate_recent_days))
    message = str(error.value)
    assert "source 'orders'" in message and "suite raw_partitions" in message
    assert "column row_count,expected_min_rows" in message and f"'partition_date': '{LAST_DAY}" in message
    with connect(settings, read_only=True) as con:
        assert con.execute("select count(*) from raw.orders").fetchone()[0] == 0


def test_row_count_bounds_are_configurable_per_source(clean_built, quality: QualityGate, tmp_path: Path):
    """A cohort whose sign-ups ended delivers empty days: bounds off lets them load; fixed bounds refuse
    a day outside them, whatever the history."""
    settings = _copy_landing(clean_built[0], tmp_path / "off")
    path = partition_dir(settings.landing_dir, "orders", LAST_DAY) / "orders.parquet"
    pq.write_table(pq.read_table(path).slice(0, 0), path)
    with connect(settings) as con:
        load_landing(con, settings.landing_dir, gates.RawBatchGate(quality, 1, "orders=off"))
        assert con.execute(f"select count(*) from {LOAD_LOG_TABLE} where partition_date = ?", [LAST_DAY]).fetchone()[
            0
        ] == len(CONTRACTS)

    settings = _copy_landing(clean_built[0], tmp_path / "fixed")
    with connect(settings) as con, pytest.raises(LandingError) as error:
        load_landing(con, settings.landing_dir, gates.RawBatchGate(quality, 1, "customers=0..1"))
    assert "source 'customers'" in str(error.value) and "column expected_max_rows,row_count" in str(error.value)


def test_mart_suites_block_on_broken_referential_integrity_and_missing_features(
    clean_built, quality: QualityGate, tmp_path: Path
):
    settings, _ = clean_built
    broken = Settings.from_env(home=tmp_path, warehouse_path=tmp_path / "broken.duckdb")
    shutil.copy(settings.warehouse_path, broken.warehouse_path)
    with duckdb.connect(str(broken.warehouse_path)) as con:
        buyer = con.execute(
            "select customer_key from marts.fct_orders where order_date > ? - 7 limit 1", [LAST_DAY]
        ).fetchone()[0]
        con.execute("delete from marts.dim_customers where customer_key = ?", [buyer])
        dropped = con.execute(
            "select min(customer_key) from marts.customer_features where as_of_date = ? and customer_key <> ?",
            [LAST_DAY, buyer],
        ).fetchone()[0]
        con.execute(
            "delete from marts.customer_features where customer_key = ? and as_of_date = ?", [dropped, LAST_DAY]
        )
    with connect(broken, read_only=True) as con:
        frames = gates.mart_frames(DuckDBWarehouse(con), LAST_DAY, 7)
    with pytest.raises(QualityGateFailed) as error:
        gates.gate_marts(quality, frames)
    failed = {(f.suite, f.column): f for f in error.value.failures}
    # The known customer whose features row is gone has no tenure or order count either.
    assert set(failed) == {
        ("fct_orders", "_customer_in_dim_customers"),
        ("customer_features", "_in_dim_customers"),
        ("customer_features", "_has_features"),
        ("customer_features", "tenure_days"),
        ("customer_features", "frequency"),
    }
    assert [ids["customer_key"] for ids in failed["customer_features", "_has_features"].sample_ids] == [dropped]


def test_score_suite_blocks_when_a_known_customer_is_not_scored(clean_built, quality: QualityGate):
    settings, _ = clean_built
    with connect(settings, read_only=True) as con:
        known = gates.customers_known_at(DuckDBWarehouse(con), LAST_DAY)
        scores = con.execute(
            "select customer_key, as_of_date, 0.5 as churn_probability, '1' as model_version "
            "from marts.customer_features where as_of_date = ?",
            [LAST_DAY],
        ).df()
    assert len(scores) == known
    quality.validate(
        "churn_scores", scores, ["customer_key", "as_of_date"], parameters={"customers_known_at_as_of": known}
    )
    with pytest.raises(QualityGateFailed, match="expect_table_row_count_to_equal"):
        quality.validate(
            "churn_scores",
            scores.iloc[1:],
            ["customer_key", "as_of_date"],
            parameters={"customers_known_at_as_of": known},
        )

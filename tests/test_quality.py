import numpy as np
import pandas as pd
import pytest

from crm.quality import QualityGate, QualityGateFailed
from crm.settings import Settings
from ml.features import FEATURE_COLUMNS, ID_COLUMNS


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> QualityGate:
    return QualityGate(Settings.from_env(home=tmp_path_factory.mktemp("quality")))


def _features(rows: int = 50) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({column: rng.integers(0, 100, rows).astype(float) for column in FEATURE_COLUMNS})
    frame["last_nps"] = rng.integers(0, 11, rows).astype(float)
    frame["avg_nps"] = rng.uniform(0, 10, rows).round(2)
    frame["avg_csat"] = frame["avg_ticket_csat"] = rng.uniform(1, 5, rows).round(2)
    frame["email_open_rate_last_90d"] = rng.random(rows)
    frame.insert(0, "as_of_date", pd.Timestamp("2026-11-23").date())
    frame.insert(0, "customer_key", np.arange(1, rows + 1))
    frame["_in_dim_customers"] = True
    frame["_has_features"] = True
    return frame


def test_clean_mart_passes_and_writes_data_docs(gate: QualityGate):
    result = gate.validate("customer_features", _features(), ID_COLUMNS)
    assert result.failures == [] and result.evaluated >= 8
    assert gate.build_data_docs() == gate.data_docs_index and gate.data_docs_index.is_file()


def test_blocking_failure_names_suite_expectation_column_count_and_ids(gate: QualityGate):
    frame = _features()
    frame.loc[[3, 7], "monetary"] = -10.0
    with pytest.raises(QualityGateFailed) as error:
        gate.validate("customer_features", frame, ID_COLUMNS)
    message = str(error.value)
    assert "suite customer_features" in message
    assert "expectation expect_column_values_to_be_between" in message
    assert "column monetary" in message and "2 unexpected" in message
    assert "'customer_key': 4" in message and "'customer_key': 8" in message
    assert [failure.column for failure in error.value.failures] == ["monetary"]


def test_duplicate_grain_blocks(gate: QualityGate):
    frame = _features()
    frame.loc[1, "customer_key"] = 1
    with pytest.raises(QualityGateFailed, match="expect_compound_columns_to_be_unique"):
        gate.validate("customer_features", frame, ID_COLUMNS)


def test_warning_is_reported_without_blocking(gate: QualityGate):
    frame = _features()
    frame.loc[0, "avg_order_value"] = 5_000_000.0
    result = gate.validate("customer_features", frame, ID_COLUMNS)
    assert result.blocking == []
    assert [(w.column, w.unexpected_count) for w in result.warnings] == [("avg_order_value", 1)]


def test_unknown_suite_is_a_clear_error(gate: QualityGate):
    with pytest.raises(FileNotFoundError, match="expectation suite 'no_such_suite' not found"):
        gate.validate("no_such_suite", _features(), ID_COLUMNS)

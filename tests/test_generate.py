"""The generator: deterministic, consistent with its own ground truth, and as hard as real data."""

import hashlib
import json
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import roc_auc_score

from crm.contracts import CONTRACTS
from crm.generate import DefectRates, GeneratorConfig, generate

CLEAN_BUT = DefectRates.none()


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _delivered(landing: Path, source: str) -> list[Path]:
    return sorted((landing / source).glob(f"dt=*/{CONTRACTS[source].file_name}"))


def test_same_arguments_give_byte_identical_files(tmp_path: Path):
    config = GeneratorConfig(customers=200, days=30)
    generate(config, tmp_path / "a" / "landing", tmp_path / "a" / "truth")
    generate(config, tmp_path / "b" / "landing", tmp_path / "b" / "truth")
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    # Every source delivers every day, empty days included.
    assert len(_digest(tmp_path / "a" / "landing")) == len(CONTRACTS) * 30
    other = GeneratorConfig(customers=200, days=30, seed=8)
    generate(other, tmp_path / "c" / "landing", tmp_path / "c" / "truth")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    home = tmp_path_factory.mktemp("generated")
    manifest = generate(GeneratorConfig(customers=4_000), home / "landing", home / "truth")
    return home, manifest


def test_churn_difficulty_is_like_real_retail_data(default_run):
    home, _ = default_run
    truth = pd.read_parquet(home / "truth" / "customers.parquet")
    bayes_auc = roc_auc_score(truth["churned"], truth["true_churn_probability"])
    assert 0.75 <= bayes_auc <= 0.88
    # The true probabilities are calibrated against the realised (simulated, undelivered) window.
    assert abs(truth["true_churn_probability"].mean() - truth["churned"].mean()) < 0.03
    by_segment = truth.groupby("segment")[["true_churn_probability", "churned"]].mean()
    assert (by_segment["true_churn_probability"] - by_segment["churned"]).abs().max() < 0.06
    assert by_segment.loc["champions", "churned"] < by_segment.loc["at_risk", "churned"]


def test_truth_covers_every_delivered_customer(default_run):
    home, manifest = default_run
    truth = pd.read_parquet(home / "truth" / "customers.parquet")
    assert set(truth.columns) >= {
        "customer_id",
        "person_id",
        "segment",
        "satisfaction",
        "true_satisfied_probability",
        "true_churn_probability",
        "churned",
        "future_spend",
    }
    assert truth["true_satisfied_probability"].between(0, 1).all()
    assert truth["duplicate_customer_id"].notna().sum() == manifest["defects"]["customers"]["duplicate_person"]
    assert json.loads((home / "truth" / "manifest.json").read_text()) == manifest


def test_the_truth_knows_what_customers_buy_next_and_what_it_is_worth(default_run):
    """The window's purchases are the products of the completed orders the truth counts, their spend is
    the truth's future spend, and the reference of expected spend is calibrated on it."""
    home, _ = default_run
    truth = pd.read_parquet(home / "truth" / "customers.parquet").set_index("customer_id")
    bought = pd.read_parquet(home / "truth" / "window_purchases.parquet")
    products = pd.read_parquet(home / "truth" / "products.parquet").set_index("product_id")
    assert set(bought["customer_id"]) == set(truth.index[truth["future_orders"] > 0])
    spend = (bought["quantity"] * bought["product_id"].map(products["price_eur"])).groupby(bought["customer_id"]).sum()
    assert spend.to_numpy() == pytest.approx(truth.loc[spend.index, "future_spend"].to_numpy(), abs=0.01)
    assert truth["true_expected_orders"].sum() == pytest.approx(truth["future_orders"].sum(), rel=0.05)
    assert truth["true_expected_spend"].sum() == pytest.approx(truth["future_spend"].sum(), rel=0.1)
    affinities = truth.filter(like="affinity_")
    assert affinities.sum(axis=1).to_numpy() == pytest.approx(1.0)
    # Tastes follow the segment: electronics is the occasional buyers' category, rare for champions.
    by_segment = affinities.groupby(truth["segment"]).mean()
    assert (
        by_segment.loc["occasional", "affinity_electronics"] > 3 * by_segment.loc["champions", "affinity_electronics"]
    )
    assert (products["companion_product_id"] != products.index).all()


def test_every_source_is_realistic_and_linked(default_run):
    home, manifest = default_run
    landing = home / "landing"
    rows = manifest["rows"]
    assert set(rows) == set(CONTRACTS)
    assert rows["orders"] > 10 * 4_000  # about 18 orders per customer over two years
    assert rows["order_items"] > rows["orders"]
    for source in ("tickets", "surveys", "campaigns", "marketing_events", "web_sessions"):
        assert rows[source] > 0, source
    event_types = set()
    for path in _delivered(landing, "marketing_events"):
        for line in path.read_text().splitlines():
            try:
                event_types.add(json.loads(line)["event_type"])
            except ValueError:
                pass  # a malformed line the manifest counts
    assert {"holdout", "send", "open", "click", "conversion", "unsubscribe"} <= event_types


def test_defects_in_files_match_the_manifest(tmp_path: Path):
    defects = replace(
        CLEAN_BUT,
        invalid_email=0.05,
        non_positive_amount=0.02,
        unknown_customer=0.02,
        malformed_line_per_file=0.2,
        schema_drift_batches=2,
    )
    manifest = generate(GeneratorConfig(customers=600, days=90, defects=defects), tmp_path / "l", tmp_path / "t")
    counts = manifest["defects"]
    landing = tmp_path / "l"
    orders = pd.concat(pd.read_parquet(p) for p in _delivered(landing, "orders"))
    # Counted per order: a returned order is delivered twice (its status changes).
    assert orders.loc[orders["amount"] <= 0, "order_id"].nunique() == counts["orders"]["non_positive_amount"] > 0
    assert (
        orders.loc[orders["customer_id"] >= 10_000_000_000, "order_id"].nunique()
        == counts["orders"]["unknown_customer"]
        > 0
    )
    customer_files = _delivered(landing, "customers")
    lines = [line for p in customer_files for line in p.read_text().splitlines()[1:]]
    malformed = [line for line in lines if line.count(",") < len(CONTRACTS["customers"].columns) - 1]
    assert len(malformed) == counts["customers"]["malformed_line"] > 0
    emails = pd.concat(pd.read_csv(p, dtype=str, on_bad_lines="skip") for p in customer_files)["email"]
    emails = emails.dropna()  # truncated lines parse with the trailing fields missing
    assert (~emails.str.contains("@")).sum() == counts["customers"]["invalid_email"] > 0
    drifted = [p for p in customer_files if "loyalty_tier" in p.read_text().splitlines()[0]]
    assert len(drifted) == counts["customers"]["schema_drift_extra_column"] == 2
    assert counts["orders"]["late_arriving"] == 0


def test_clean_data_has_no_defects(tmp_path: Path):
    manifest = generate(GeneratorConfig(customers=300, days=40, defects=CLEAN_BUT), tmp_path / "l", tmp_path / "t")
    assert all(count == 0 for kinds in manifest["defects"].values() for count in kinds.values())
    orders = pd.concat(pd.read_parquet(p) for p in _delivered(tmp_path / "l", "orders"))
    assert (orders["amount"] > 0).all()
    # An order id repeats only when a completed order is delivered again as returned.
    again = orders[orders["order_id"].duplicated(keep=False)]
    assert set(again.groupby("order_id")["status"].agg(tuple)) <= {("completed", "returned")}
    assert pq.read_schema(_delivered(tmp_path / "l", "orders")[0]).names == list(CONTRACTS["orders"].column_names)
    assert np.isin(orders["customer_id"], pd.read_parquet(tmp_path / "t" / "customers.parquet")["customer_id"]).all()


def test_a_shift_lowers_purchases_from_its_date_on_and_nothing_before(tmp_path: Path):
    """The shift option (a price rise: customers buy 40% as often from a date on) changes behaviour after
    the date only: the days before are byte-identical to the run without it, and the orders after fall."""
    base = GeneratorConfig(customers=600, days=120, defects=CLEAN_BUT)
    shifted = replace(base, shift_date=base.start_date + timedelta(days=60), shift_purchase_factor=0.4)
    generate(base, tmp_path / "base" / "landing", tmp_path / "base" / "truth")
    generate(shifted, tmp_path / "shifted" / "landing", tmp_path / "shifted" / "truth")

    def orders(run: str) -> pd.Series:
        files = _delivered(tmp_path / run / "landing", "orders")
        return pd.Series({path.parent.name: pq.read_metadata(path).num_rows for path in files})

    before, after = orders("base"), orders("shifted")
    cut = f"dt={shifted.shift_date.isoformat()}"
    assert (before[before.index < cut] == after[after.index < cut]).all()
    assert after[after.index >= cut].sum() < 0.6 * before[before.index >= cut].sum()
    # The truth's churn probabilities at the end follow the lower purchase rate.
    truth = {run: pd.read_parquet(tmp_path / run / "truth" / "customers.parquet") for run in ("base", "shifted")}
    assert truth["shifted"]["true_churn_probability"].mean() > truth["base"]["true_churn_probability"].mean()


def test_demo_data_goes_only_into_the_homes_own_landing_folder(tmp_path: Path, monkeypatch, capsys, caplog):
    """`crm run` generates demo data into the home's default landing folder, never into a folder the user
    named (CRM_LANDING_DIR): an empty one is refused in one line, and stays empty."""
    import logging

    from crm import cli, pipeline
    from crm.settings import Settings

    named = tmp_path / "exports"
    named.mkdir()
    monkeypatch.setenv("CRM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CRM_LANDING_DIR", str(named))
    assert cli.main(["run"]) == 1
    out = capsys.readouterr()
    assert f"CRM_LANDING_DIR={named} holds no deliveries" in out.out + out.err
    assert "Traceback" not in out.out + out.err
    assert not any(named.iterdir())
    # The home's own folder gets the demo data, and the log line says what, not the whole configuration.
    monkeypatch.delenv("CRM_LANDING_DIR")
    monkeypatch.setattr(
        "crm.generate.GeneratorConfig", lambda **config: GeneratorConfig(customers=40, days=20, **config)
    )
    with caplog.at_level(logging.INFO, logger="crm.pipeline"):
        assert pipeline.ensure_demo_data(Settings.from_env())
    (line,) = [record.getMessage() for record in caplog.records if "generated demo data" in record.message]
    assert "40 customers over 20 days" in line and "manifest.json" in line and "defects" not in line

"""Model quality against the generator's ground truth, which the pipeline itself never reads.

The generator writes, per simulated customer, the latent segment, the exact probability of
churning in the window after the last delivered day with the realised outcome, and the true
probability of being satisfied on a survey answer. Scores at that last day are compared with it:

- churn: ROC-AUC on the realised outcomes against the Bayes-optimal ROC-AUC that the true
  probabilities reach on the same outcomes, and the expected calibration error;
- satisfaction: there is no realised answer for every customer, so the ROC-AUC is taken in
  expectation over the answer each customer would give (each customer counts as satisfied with
  weight p and as not satisfied with weight 1 - p, p the true probability); the oracle is the
  true probability itself. A reference shows what the data allow: the posterior mean of each
  customer's satisfaction from all their survey answers, with the prior of their *true* latent
  segment (which no model sees); customers who never answered keep that prior;
- segmentation: the adjusted Rand index against the latent segments, over every scored customer
  and over the repeat buyers that the clustering sees;
- lifetime value: predicted revenue against the spend each buyer realised in the window (Spearman,
  normalised Gini, mean absolute error, total and decile calibration), beside a reference from the
  simulation's own parameters (expected completed orders from the state on the last day, times the
  customer's latent order value);
- recommendations: precision, recall and MAP at N of the latest recommendations against the products
  each customer bought in the window, over the customers who bought (a seeded sample at most
  RECOMMENDATION_SAMPLE), beside a reference that ranks products by the simulation's own chance that
  a line of the customer's picks them (their true category affinities and usual spend per line).

Truth rows reach scores through the warehouse's identity resolution (customer_id → customer_key).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.stats import norm, poisson
from sklearn.metrics import adjusted_rand_score, roc_auc_score

from crm import generate
from crm.generate import CSAT_NOISE, NPS_NOISE, PRODUCTS_TRUTH_FILE, WINDOW_PURCHASES_FILE
from ml import clv, recommend
from ml.metrics import expected_calibration_error

if TYPE_CHECKING:
    from crm.warehouse import Warehouse

# The targets of the models issue: ratios to the best achievable ROC-AUC, calibration, agreement.
TARGETS = {
    "churn_auc_ratio_min": 0.97,
    "churn_ece_max": 0.03,
    "satisfaction_auc_ratio_min": 0.95,
    "segmentation_ari_min": 0.6,
}
TRUTH_FILE = "customers.parquet"
RECOMMENDATION_SAMPLE = 20_000
IDENTITY_VIEW = "staging.int_customer_identity"


class TruthMismatch(ValueError):
    """The scores and the ground truth do not describe the same day or customers."""


def evaluate(warehouse: Warehouse, truth_dir: Path) -> dict[str, object]:
    """Every figure of the module docstring, with the targets and whether each is met."""
    truth = _truth_by_customer_key(warehouse, truth_dir)
    scores = {
        "churn": _latest(warehouse, "scores.churn", ["churn_probability"]),
        "satisfaction": _latest(warehouse, "scores.satisfaction", ["satisfied_probability"]),
        "segments": _latest(warehouse, "scores.segments", ["segment_id"]),
    }
    end_date = pd.read_json(truth_dir / "manifest.json", typ="series")["config"]["end_date"]
    for table, frame in scores.items():
        as_of = pd.Timestamp(frame["as_of_date"].iloc[0]).date().isoformat() if len(frame) else None
        if as_of != end_date:
            raise TruthMismatch(
                f"scores.{table}: latest as-of date is {as_of}, the ground truth describes "
                f"{end_date} (the generator's last day); score that day to compare"
            )
    report = {
        "customers": len(truth),
        "ambiguous_keys": int(truth.attrs["ambiguous_keys"]),
        "churn": churn_quality(truth.join(scores["churn"].set_index("customer_key"), how="inner")),
        "satisfaction": satisfaction_quality(
            truth.join(scores["satisfaction"].set_index("customer_key"), how="inner"),
            _survey_answers(warehouse, end_date),
        ),
        "segmentation": segmentation_quality(truth.join(scores["segments"].set_index("customer_key"), how="inner")),
        "clv": value_quality(
            truth, _latest(warehouse, "scores.clv", ["expected_revenue_eur", "horizon_days"]), end_date
        ),
        "recommendations": recommendation_quality(warehouse, truth, truth_dir, end_date),
        "targets": TARGETS,
    }
    report["targets_met"] = {
        "churn_auc_ratio": report["churn"]["auc_ratio"] >= TARGETS["churn_auc_ratio_min"],
        "churn_ece": report["churn"]["ece"] <= TARGETS["churn_ece_max"],
        "satisfaction_auc_ratio": report["satisfaction"]["auc_ratio"] >= TARGETS["satisfaction_auc_ratio_min"],
        "segmentation_ari": report["segmentation"]["ari"] >= TARGETS["segmentation_ari_min"],
    }
    return report


def churn_quality(frame: pd.DataFrame) -> dict[str, float]:
    outcome = frame["churned"].astype(int).to_numpy()
    model = float(roc_auc_score(outcome, frame["churn_probability"]))
    bayes = float(roc_auc_score(outcome, frame["true_churn_probability"]))
    return {
        "customers": len(frame),
        "churn_rate": round(float(outcome.mean()), 4),
        "roc_auc": round(model, 4),
        "bayes_roc_auc": round(bayes, 4),
        "auc_ratio": round(model / bayes, 4),
        "ece": round(expected_calibration_error(outcome, frame["churn_probability"].to_numpy()), 4),
        "bayes_ece": round(expected_calibration_error(outcome, frame["true_churn_probability"].to_numpy()), 4),
    }


def expected_auc(true_probability: np.ndarray, score: np.ndarray) -> float:
    """ROC-AUC of ``score`` in expectation over outcomes drawn with ``true_probability``."""
    p, s = np.asarray(true_probability, dtype=float), np.asarray(score, dtype=float)
    labels = np.concatenate([np.ones(len(p)), np.zeros(len(p))])
    return float(roc_auc_score(labels, np.concatenate([s, s]), sample_weight=np.concatenate([p, 1 - p])))


def satisfaction_quality(frame: pd.DataFrame, answers: pd.DataFrame) -> dict[str, float]:
    truth = frame["true_satisfied_probability"].to_numpy()
    model = expected_auc(truth, frame["satisfied_probability"].to_numpy())
    oracle = expected_auc(truth, truth)
    reference = expected_auc(truth, survey_posterior(frame, answers).to_numpy())
    return {
        "customers": len(frame),
        "satisfied_share": round(float(truth.mean()), 4),
        "answered_share": round(float(frame.index.isin(answers.index).mean()), 4),
        "roc_auc": round(model, 4),
        "oracle_roc_auc": round(oracle, 4),
        "auc_ratio": round(model / oracle, 4),
        "survey_reference_auc_ratio": round(reference / oracle, 4),
    }


def survey_posterior(frame: pd.DataFrame, answers: pd.DataFrame) -> pd.Series:
    """Posterior mean satisfaction from the survey answers (normal approximation of the generator's
    survey model), starting from the mean and variance of the customer's true segment."""
    by_segment = frame.groupby("segment")["satisfaction"]
    prior_mean, prior_precision = by_segment.transform("mean"), 1 / by_segment.transform("var")
    # Each answer reads satisfaction twice: NPS = 10 s + noise, CSAT = 1 + 4 s + noise.
    nps_precision, csat_precision = (10 / NPS_NOISE) ** 2, (4 / CSAT_NOISE) ** 2
    reading = (nps_precision * answers["nps"] / 10 + csat_precision * (answers["csat"] - 1) / 4) / (
        nps_precision + csat_precision
    )
    per_customer = reading.groupby(level=0).agg(["sum", "count"]).reindex(frame.index, fill_value=0)
    answer_precision = (nps_precision + csat_precision) * per_customer["count"]
    return (prior_mean * prior_precision + (nps_precision + csat_precision) * per_customer["sum"]) / (
        prior_precision + answer_precision
    )


def segmentation_quality(frame: pd.DataFrame) -> dict[str, object]:
    repeat = frame["segment_id"] >= 0  # negative ids are the fixed segments of customers with < 2 orders
    return {
        "customers": len(frame),
        "repeat_buyers": int(repeat.sum()),
        "ari": round(float(adjusted_rand_score(frame["segment"], frame["segment_id"])), 4),
        "ari_repeat_buyers": round(
            float(adjusted_rand_score(frame.loc[repeat, "segment"], frame.loc[repeat, "segment_id"])), 4
        ),
        "segments": int(frame["segment_id"].nunique()),
    }


def value_quality(truth: pd.DataFrame, scores: pd.DataFrame, end_date: str) -> dict[str, object]:
    """Predicted against realised spend in the window for the buyers scored at the truth's last day,
    beside the reference from the simulation's parameters on the same customers."""
    window = int(truth.attrs["window_days"])
    latest = scores[pd.to_datetime(scores["as_of_date"]).dt.date.astype(str) == end_date].dropna(
        subset=["expected_revenue_eur"]
    )
    if latest.empty:
        return {"skipped": f"no lifetime value scored at {end_date}"}
    horizons = sorted(latest["horizon_days"].unique().tolist())
    if horizons != [window]:
        return {"skipped": f"scores.clv predicts {horizons} days, the truth's window is {window} days"}
    frame = truth.join(latest.set_index("customer_key"), how="inner")
    realised = frame["future_spend"].to_numpy()
    model = clv.value_metrics(realised, frame["expected_revenue_eur"].to_numpy())
    reference = clv.value_metrics(realised, frame["true_expected_spend"].to_numpy())
    return {
        "customers": len(frame),
        "realised_spend_eur": round(float(realised.sum()), 2),
        **{name: round(value, 4) for name, value in model.items()},
        **{f"reference_{name}": round(value, 4) for name, value in reference.items()},
    }


def recommendation_quality(warehouse: Warehouse, truth: pd.DataFrame, truth_dir: Path, end_date: str) -> dict:
    """The latest recommendations against what each customer bought in the window (customers who
    bought, a seeded sample), beside the reference ranking by the simulation's purchase chances."""
    recommendations = warehouse.frame(
        """
        select customer_key, rank, product_id from scores.recommendations
        where as_of_date = cast(? as date) order by customer_key, rank""",
        [end_date],
    )
    if recommendations.empty:
        return {"skipped": f"no recommendations scored at {end_date}"}
    products = pd.read_parquet(truth_dir / PRODUCTS_TRUTH_FILE).sort_values("product_id")
    product_ids = products["product_id"].to_numpy()
    bought = pd.read_parquet(truth_dir / WINDOW_PURCHASES_FILE).merge(
        truth.reset_index()[["customer_id", "customer_key"]], on="customer_id"
    )
    buyers = np.intersect1d(bought["customer_key"].unique(), recommendations["customer_key"].unique())
    sample = np.sort(np.random.default_rng(0).permutation(buyers)[:RECOMMENDATION_SAMPLE])
    _, window = recommend.purchase_matrix(bought.rename(columns={"quantity": "purchases"}), product_ids, sample)
    top_n = int(recommendations["rank"].max())
    shown = recommendations[recommendations["customer_key"].isin(sample)]
    # Catalogue indices, a row per sampled customer (sorted keys), best first.
    position = np.searchsorted(product_ids, shown["product_id"].to_numpy())
    model_top = np.full((len(sample), top_n), -1)
    model_top[np.searchsorted(sample, shown["customer_key"].to_numpy()), shown["rank"].to_numpy() - 1] = position
    chances = true_line_product_chances(truth.loc[sample], products)
    reference_top = np.argsort(-chances, axis=1, kind="stable")[:, :top_n]
    model = recommend.ranking_metrics(model_top, window, len(product_ids))
    reference = recommend.ranking_metrics(reference_top, window, len(product_ids))
    return {
        "customers": len(sample),
        "buyers_in_window": len(buyers),
        **{name: round(value, 4) for name, value in model.items()},
        **{f"reference_{name}": round(value, 4) for name, value in reference.items()},
    }


def true_line_product_chances(customers: pd.DataFrame, products: pd.DataFrame) -> np.ndarray:
    """Per customer (rows with affinity_<category> and order_value), the chance that a line of theirs
    is each product (columns: products by id), from the generator's choice: a category by affinity,
    the category's product nearest the line's target price moved by a rounded normal number of
    neighbours, a further line the first line's companion with COMPANION_CHANCE. Line targets are
    integrated on a grid: lines per order 1 + Poisson, 16 quantiles of the lognormal spread."""
    price = products["price_eur"].to_numpy()
    category = products["category"].to_numpy()
    lines = np.arange(1, 7)
    lines_weight = lines * poisson.pmf(lines - 1, generate.ITEMS_PER_ORDER_EXTRA)  # a line's order has k lines
    quantiles = norm.ppf((np.arange(16) + 0.5) / 16)
    multipliers = (np.exp(generate.LINE_PRICE_SPREAD * quantiles)[None, :] / lines[:, None]).ravel()
    weights = np.repeat(lines_weight / lines_weight.sum(), len(quantiles)) / len(quantiles)
    offsets = np.arange(-4, 5)
    offset_weight = np.diff(norm.cdf((np.append(offsets, 5) - 0.5) / generate.PRICE_NEIGHBOUR_SPREAD))
    offset_weight /= offset_weight.sum()
    value = customers["order_value"].to_numpy()
    chances = np.zeros((len(customers), len(products)))
    rows = np.arange(len(customers))
    for name in generate.CATEGORIES:
        members = np.flatnonzero(category == name)
        if not len(members):
            continue
        members = members[np.argsort(price[members], kind="stable")]
        affinity = customers[f"affinity_{name}"].to_numpy()
        for multiplier, weight in zip(multipliers, weights, strict=True):
            nearest = np.searchsorted(price[members], value * multiplier)
            for offset, chance in zip(offsets, offset_weight, strict=True):
                chosen = members[np.clip(nearest + offset, 0, len(members) - 1)]
                chances[rows, chosen] += affinity * weight * chance
    companion = sparse.csr_matrix(
        (
            np.ones(len(products)),
            (np.arange(len(products)), np.searchsorted(products["product_id"], products["companion_product_id"])),
        ),
        shape=(len(products), len(products)),
    )
    further = generate.ITEMS_PER_ORDER_EXTRA / (1 + generate.ITEMS_PER_ORDER_EXTRA) * generate.COMPANION_CHANCE
    return (1 - further) * chances + further * (companion.T @ chances.T).T


def _truth_by_customer_key(warehouse: Warehouse, truth_dir: Path) -> pd.DataFrame:
    """One truth row per resolved customer; keys that merged several simulated people are left out."""
    truth = pd.read_parquet(truth_dir / TRUTH_FILE)
    identity = warehouse.frame(f"select customer_id, customer_key from {IDENTITY_VIEW}")
    truth = truth.merge(identity, on="customer_id", how="inner")
    people = truth.groupby("customer_key")["person_id"].transform("nunique")
    ambiguous = truth.loc[people > 1, "customer_key"].nunique()
    truth = truth[people == 1].drop_duplicates("customer_key").set_index("customer_key")
    truth.attrs["ambiguous_keys"] = ambiguous
    manifest = pd.read_json(truth_dir / "manifest.json", typ="series")
    truth.attrs["window_days"] = manifest["config"]["churn_window_days"]
    return truth


def _survey_answers(warehouse: Warehouse, as_of: str) -> pd.DataFrame:
    return warehouse.frame(
        """
        select customer_key, nps, csat from marts.fct_survey_responses
        where cast(responded_at as date) <= cast(? as date)""",
        [as_of],
    ).set_index("customer_key")


def _latest(warehouse: Warehouse, table: str, columns: list[str]) -> pd.DataFrame:
    return warehouse.frame(f"""
        select customer_key, as_of_date, {", ".join(columns)} from {table}
        where as_of_date = (select max(as_of_date) from {table})""")

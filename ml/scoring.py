"""Score every customer with the champion model and write the scores back to the warehouse."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import mlflow
import numpy as np
import pandas as pd

from crm.gates import customers_known_at
from crm.quality import QualityGate
from crm.score_tables import (
    CHURN_SCORES_TABLE,
    CLV_SCORES_TABLE,
    DRIVER_COLUMNS,
    PROSPECT_TIER,
    RECOMMENDATION_SCORES_TABLE,
    SATISFACTION_SCORES_TABLE,
    SCORE_TABLES,
    SEGMENT_SCORES_TABLE,
    VALUE_TIERS,
    ensure_score_tables,
)
from crm.settings import Settings
from crm.warehouse import open_warehouse
from ml import churn, clv, explain, recommend, registry, satisfaction, segmentation
from ml.blocks import in_blocks
from ml.features import (
    FEATURE_COLUMNS,
    ID_COLUMNS,
    load_catalogue,
    load_features_with_text,
    load_purchases,
)

log = logging.getLogger(__name__)


class NoChampion(LookupError):
    """No version of the model has been promoted yet (its training has not succeeded once)."""


@dataclass(frozen=True)
class ScoringReport:
    table: str
    as_of_date: date
    rows: int
    model_version: str
    # Seconds to compute the scores from the loaded model and features (the throughput measure;
    # loading the model and features, the explanations, the gate and the write are not in it).
    predict_s: float
    # Seconds to explain the scores (the churn drivers of customers at risk); 0 for the other models.
    explain_s: float = 0.0
    # Customers scored: the rows, but for recommendations (top N rows a customer).
    customers: int | None = None


@dataclass(frozen=True)
class ScoringInputs:
    """What every model scores from, read once per scoring step: the features (with the feedback text)
    of every customer known at the date, and how many customers are known then."""

    as_of_date: date
    features: pd.DataFrame
    known: int


def read_scoring_inputs(settings: Settings, as_of_date: date) -> ScoringInputs:
    with open_warehouse(settings, read_only=True) as warehouse:
        return ScoringInputs(
            as_of_date, load_features_with_text(warehouse, as_of_date), customers_known_at(warehouse, as_of_date)
        )


def score_churn(settings: Settings, inputs: ScoringInputs, gate: QualityGate) -> ScoringReport:
    """Score with ``crm_churn@champion``, with the drivers of customers at risk; gate the scores, then
    replace that date's rows."""
    champion, model = _champion(settings, churn.MODEL_NAME)
    features = inputs.features[FEATURE_COLUMNS]
    started = time.perf_counter()
    probability = in_blocks(features, lambda block: model.predict_proba(block)[:, 1])
    predicted = time.perf_counter()
    # Versions registered before explanations existed carry no driver candidates: no drivers then.
    candidates = json.loads(champion.tags.get("driver_features", "[]"))
    previous = _previous_drivers(settings, champion, inputs)
    carried = explain.carried_drivers(
        probability, previous["drivers_probability"].to_numpy(dtype=float), settings.churn_drivers_max_shift
    )
    drivers = explain.churn_drivers(model, features, probability, candidates, carried=carried)
    explain_s = time.perf_counter() - predicted
    explained = (probability >= explain.DRIVERS_FROM_PROBABILITY) & bool(candidates)
    drivers["drivers_as_of"] = pd.Series(pd.NaT, index=drivers.index, dtype="datetime64[us]").mask(
        explained, pd.Timestamp(inputs.as_of_date)
    )
    for column in [*DRIVER_COLUMNS, "drivers_as_of"]:
        drivers.loc[carried, column] = previous.loc[carried, column].to_numpy()
    log.info(
        "churn drivers at %s: %d customers at medium or high risk, %d explained, %d carried forward",
        inputs.as_of_date,
        int(explained.sum()),
        int((explained & ~carried).sum()),
        int(carried.sum()),
    )
    scores = inputs.features[ID_COLUMNS].assign(churn_probability=probability).join(drivers)
    return _write(
        settings, CHURN_SCORES_TABLE, "churn_scores", scores, inputs, champion, gate, {}, predicted - started, explain_s
    )


def _previous_drivers(settings: Settings, champion, inputs: ScoringInputs) -> pd.DataFrame:
    """Per customer (in the features' row order): the drivers stored at the latest scoring date before
    this one, the date they were computed and the probability then (NaN where there is nothing to
    carry: no earlier scores, another model version, or drivers older than the maximum age)."""
    columns = [*DRIVER_COLUMNS, "drivers_as_of", "drivers_probability"]
    oldest = inputs.as_of_date - timedelta(days=settings.churn_drivers_max_age_days)
    with open_warehouse(settings, read_only=True) as warehouse:
        has_drivers_dates = warehouse.table_exists(CHURN_SCORES_TABLE) and "drivers_as_of" in warehouse.columns(
            CHURN_SCORES_TABLE
        )
        stored = (
            warehouse.frame(
                f"""
                select previous.customer_key, {", ".join(f"previous.{column}" for column in DRIVER_COLUMNS)},
                    previous.drivers_as_of, computed.churn_probability as drivers_probability
                from {CHURN_SCORES_TABLE} as previous
                inner join {CHURN_SCORES_TABLE} as computed
                    on computed.customer_key = previous.customer_key
                    and computed.as_of_date = previous.drivers_as_of
                    and computed.model_version = previous.model_version
                where previous.as_of_date = (
                        select max(as_of_date) from {CHURN_SCORES_TABLE} where as_of_date < cast(? as date)
                    )
                    and previous.model_name = ? and previous.model_version = ?
                    and previous.drivers_as_of >= cast(? as date)""",
                [inputs.as_of_date, champion.name, str(champion.version), oldest],
            )
            if has_drivers_dates
            else pd.DataFrame(columns=["customer_key", *columns])
        )
    stored["drivers_as_of"] = pd.to_datetime(stored["drivers_as_of"]).astype("datetime64[us]")
    return inputs.features[["customer_key"]].merge(stored, on="customer_key", how="left")[columns]


def score_segments(settings: Settings, inputs: ScoringInputs, gate: QualityGate) -> ScoringReport:
    """Assign every customer its segment with ``crm_segmentation@champion``; gate, then replace that date's rows."""
    champion, model = _champion(settings, segmentation.MODEL_NAME)
    names = {int(segment): name for segment, name in json.loads(champion.tags["segment_names"]).items()}
    started = time.perf_counter()
    scores = inputs.features[ID_COLUMNS].assign(
        segment_id=in_blocks(inputs.features[segmentation.SEGMENT_INPUTS], model.predict)
    )
    scores["segment_name"] = scores["segment_id"].map(names)
    return _write(
        settings,
        SEGMENT_SCORES_TABLE,
        "segment_scores",
        scores,
        inputs,
        champion,
        gate,
        {"segment_ids": sorted(names)},
        time.perf_counter() - started,
    )


def score_satisfaction(settings: Settings, inputs: ScoringInputs, gate: QualityGate) -> ScoringReport:
    """Score every customer's probability of being satisfied with ``crm_satisfaction@champion``."""
    champion, model = _champion(settings, satisfaction.MODEL_NAME)
    started = time.perf_counter()
    probability = in_blocks(inputs.features[satisfaction.INPUT_COLUMNS], lambda block: model.predict_proba(block)[:, 1])
    scores = inputs.features[ID_COLUMNS].assign(satisfied_probability=probability)
    return _write(
        settings,
        SATISFACTION_SCORES_TABLE,
        "satisfaction_scores",
        scores,
        inputs,
        champion,
        gate,
        {},
        time.perf_counter() - started,
    )


def score_clv(settings: Settings, inputs: ScoringInputs, gate: QualityGate) -> ScoringReport:
    """Every customer's expected revenue in the horizon with ``crm_clv@champion`` (and, from the purchase
    model, expected orders and the probability of being alive) and value tier; gate, then replace that
    date's rows. A customer without a completed order yet is a prospect, with no value predicted."""
    champion, model = _champion(settings, clv.MODEL_NAME)
    features = inputs.features[FEATURE_COLUMNS]
    estimator = model.named_steps["model"]
    started = time.perf_counter()
    orders = alive = np.nan
    if hasattr(estimator, "expected_orders"):
        # The purchase model: its four inputs are derived once for revenue, orders and being alive.
        purchase_inputs = model[:-1].transform(features)
        revenue = estimator.predict(purchase_inputs)
        orders, alive = estimator.expected_orders(purchase_inputs), estimator.probability_alive(purchase_inputs)
    else:
        revenue = in_blocks(features, model.predict)
    # A prospect (no completed order yet) has no value predicted, whichever candidate is champion.
    revenue = np.where(features["frequency"].to_numpy() >= 1, revenue, np.nan)
    elapsed = time.perf_counter() - started
    scores = inputs.features[ID_COLUMNS].assign(
        expected_revenue_eur=revenue,
        expected_orders=orders,
        probability_alive=alive,
        value_tier=value_tiers(revenue),
        # What the predictions mean: the horizon the champion was trained for (a param of its run).
        horizon_days=int(registry.configure(settings).get_run(champion.run_id).data.params["clv_horizon_days"]),
    )
    return _write(
        settings,
        CLV_SCORES_TABLE,
        "clv_scores",
        scores,
        inputs,
        champion,
        gate,
        {"value_tiers": [tier for tier, _ in VALUE_TIERS] + [PROSPECT_TIER]},
        elapsed,
    )


def value_tiers(revenue: np.ndarray) -> np.ndarray:
    """Each customer's value tier: the buyers ranked by expected revenue into VALUE_TIERS (by cumulative
    share of buyers, ties in the same tier), everyone without a prediction a prospect."""
    revenue = np.asarray(revenue, dtype="float64")
    tiers = np.full(len(revenue), PROSPECT_TIER, dtype=object)
    buyers = ~np.isnan(revenue)
    if buyers.any():
        # The share of buyers with a higher expected revenue: 0 for the most valuable.
        ranks = pd.Series(revenue[buyers]).rank(method="max").to_numpy()
        above = (len(ranks) - ranks) / len(ranks)
        names = np.array([tier for tier, _ in VALUE_TIERS], dtype=object)
        tiers[buyers] = names[np.searchsorted([share for _, share in VALUE_TIERS], above, side="right")]
    return tiers


def score_recommendations(settings: Settings, inputs: ScoringInputs, gate: QualityGate) -> ScoringReport:
    """The champion's top products for every customer known at the date, from their purchases up to it,
    with the reason in words; gate, then replace that date's rows."""
    champion, model = _champion(settings, recommend.MODEL_NAME)
    with open_warehouse(settings, read_only=True) as warehouse:
        purchases = load_purchases(warehouse, None, inputs.as_of_date)
        catalogue = load_catalogue(warehouse)
    customers = inputs.features["customer_key"].to_numpy()
    started = time.perf_counter()
    _, matrix = recommend.purchase_matrix(purchases, model.product_ids_, customers)
    top = model.recommend(matrix).frame(customers, model)
    elapsed = time.perf_counter() - started
    top["reason"] = reason_texts(top, catalogue)
    top["as_of_date"] = pd.Timestamp(inputs.as_of_date)
    return _write(
        settings,
        RECOMMENDATION_SCORES_TABLE,
        "recommendation_scores",
        top,
        inputs,
        champion,
        gate,
        # Products the champion knows but the catalogue no longer lists are refused by the gate.
        {"top_n": int(model.top_n), "product_ids": catalogue["product_id"].tolist()},
        elapsed,
    )


def reason_texts(top: pd.DataFrame, catalogue: pd.DataFrame) -> pd.Categorical:
    """Why each product is recommended, in words a customer-facing team can reuse: a categorical, as the
    texts are few (one per product and category) and the rows many."""
    names = catalogue["product_name"].astype(str).tolist()
    categories = sorted(catalogue["category"].astype(str).unique())
    texts = [
        "bought before",
        "popular with all customers",
        *(f"bought together with {name}" for name in names),
        *(f"popular in your favourite category: {category}" for category in categories),
    ]
    position = pd.Index(catalogue["product_id"])
    named = position.get_indexer(top["reason_product_id"].fillna(-1).astype("int64"))
    category_of_product = pd.Index(categories).get_indexer(catalogue["category"].astype(str))
    category = category_of_product[position.get_indexer(top["product_id"])]
    kind = np.asarray(top["reason_kind"].cat.codes)
    codes = np.select(
        [kind == recommend.BOUGHT_BEFORE, kind == recommend.BOUGHT_TOGETHER, kind == recommend.POPULAR_IN_CATEGORY],
        [0, 2 + named, 2 + len(names) + category],
        1,
    )
    # Two products may share a name: one category per distinct text.
    distinct = pd.Index(texts).unique()
    return pd.Categorical.from_codes(distinct.get_indexer(texts)[codes], distinct)


SCORERS = {
    "churn": score_churn,
    "segments": score_segments,
    "satisfaction": score_satisfaction,
    "clv": score_clv,
    "recommendations": score_recommendations,
}


def _champion(settings: Settings, model_name: str):
    client = registry.configure(settings)
    champion = registry.champion_version(client, model_name)
    if champion is None:
        raise NoChampion(f"no {model_name} champion is registered yet: its training has not succeeded once")
    return champion, mlflow.sklearn.load_model(registry.model_uri(model_name))


def _write(
    settings: Settings,
    table: str,
    suite: str,
    scores: pd.DataFrame,
    inputs: ScoringInputs,
    champion,
    gate: QualityGate,
    parameters: dict[str, object],
    predict_s: float,
    explain_s: float = 0.0,
) -> ScoringReport:
    """Add provenance, gate the scores, then replace their as-of date's rows in one transaction."""
    scores["model_name"] = champion.name
    scores["model_version"] = str(champion.version)
    scores["run_id"] = champion.run_id
    scores["scored_at"] = pd.Timestamp(datetime.now(UTC).replace(tzinfo=None))
    scores = scores.reindex(columns=list(SCORE_TABLES[table]))
    gate.validate(suite, scores, ID_COLUMNS, parameters={"customers_known_at_as_of": inputs.known, **parameters})
    as_of_date = inputs.as_of_date
    with open_warehouse(settings) as warehouse:
        ensure_score_tables(warehouse)
        warehouse.replace_partition(table, scores, "as_of_date", as_of_date)
    log.info(
        "scored %d customers at %s with %s v%s into %s", len(scores), as_of_date, champion.name, champion.version, table
    )
    return ScoringReport(
        table,
        as_of_date,
        len(scores),
        str(champion.version),
        round(predict_s, 3),
        round(explain_s, 3),
        scores["customer_key"].nunique(),
    )

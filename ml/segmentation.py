"""Customer segmentation: K-means on standardised purchase behaviour, k chosen by silhouette.

Repeat buyers (two or more completed orders) are clustered on how often they buy (completed
orders per 30 days since their first order, log scale) and how much they spend per order (log
average order value), both standardised. Customers with less history show no behaviour to cluster
on: they get the fixed segments "Not yet purchased" and "One-time buyers". The clusters are named
from their profiles: each name has a profile it fits best, and names are matched to clusters one
to one so that the total fit is best.

One estimator, ``CustomerSegmentation``, holds the rules and the fitted Pipeline (ColumnTransformer,
then K-means), so training and scoring assign segments with the same code.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.cluster import KMeans
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.metrics import silhouette_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from crm.progress import progress

MODEL_NAME = "crm_segmentation"
# The columns of marts.customer_features the model reads.
SEGMENT_INPUTS = ["frequency", "days_since_first_order", "avg_order_value"]
# A campaign team works with a handful of segments; one or two would not be actionable.
K_RANGE = range(4, 9)
# Silhouette on a sample: its cost grows with the square of the rows.
SILHOUETTE_SAMPLE = 5_000
MIN_ORDERS_TO_CLUSTER = 2
NOT_YET_PURCHASED, ONE_TIME_BUYERS = -1, -2
FIXED_SEGMENTS = {NOT_YET_PURCHASED: "Not yet purchased", ONE_TIME_BUYERS: "One-time buyers"}


def _log_order_rate(frame: pd.DataFrame) -> np.ndarray:
    frequency = frame["frequency"].to_numpy(dtype=float)
    span = np.maximum(frame["days_since_first_order"].to_numpy(dtype=float), 30.0)
    return np.log(30.0 * frequency / span).reshape(-1, 1)


def _order_rate_name(transformer: FunctionTransformer, input_features: list[str]) -> list[str]:
    return ["log_orders_per_30d"]


def behaviour_features() -> ColumnTransformer:
    return ColumnTransformer(
        [
            (
                "order_rate",
                make_pipeline(
                    FunctionTransformer(_log_order_rate, feature_names_out=_order_rate_name), StandardScaler()
                ),
                ["frequency", "days_since_first_order"],
            ),
            (
                "order_value",
                make_pipeline(
                    SimpleImputer(strategy="median"),
                    FunctionTransformer(np.log, feature_names_out="one-to-one"),
                    StandardScaler(),
                ),
                ["avg_order_value"],
            ),
        ]
    )


class CustomerSegmentation(ClusterMixin, BaseEstimator):
    """Fixed segments for customers without repeat purchases, K-means with k by silhouette for the rest."""

    def __init__(self, k_range: tuple[int, ...] = tuple(K_RANGE), random_state: int = 0):
        self.k_range = k_range
        self.random_state = random_state

    def fit(self, X: pd.DataFrame, y: object = None) -> CustomerSegmentation:
        buyers = X[repeat_buyers(X)]
        features = behaviour_features()
        transformed = features.fit_transform(buyers)
        sample = np.random.default_rng(self.random_state).choice(
            len(buyers), min(SILHOUETTE_SAMPLE, len(buyers)), replace=False
        )
        self.silhouettes_, fitted = {}, {}
        for k in progress(self.k_range, "K-means over k", unit="k"):
            fitted[k] = KMeans(n_clusters=k, n_init=10, random_state=self.random_state).fit(transformed)
            self.silhouettes_[k] = float(silhouette_score(transformed[sample], fitted[k].labels_[sample]))
        self.k_ = max(self.silhouettes_, key=self.silhouettes_.get)
        # The chosen k's K-means is already fitted on these features: kept, not fitted again.
        self.pipeline_ = Pipeline([("features", features), ("model", fitted[self.k_])])
        clusters = profile(X, self.predict(X)).drop(index=list(FIXED_SEGMENTS), errors="ignore")
        self.segment_names_ = {**FIXED_SEGMENTS, **name_clusters(clusters)}
        return self

    def profiles(self, X: pd.DataFrame) -> pd.DataFrame:
        """The named profile of every segment on ``X`` (kept out of the fitted state: skops stores no frames)."""
        profiles = profile(X, self.predict(X))
        profiles.insert(0, "segment_name", [self.segment_names_[int(i)] for i in profiles.index])
        return profiles

    def silhouette(self, X: pd.DataFrame) -> float:
        """Silhouette of the repeat buyers' clusters in this model's feature space (comparable across versions
        on the same customers)."""
        buyers = X[repeat_buyers(X)]
        transformed = self.behaviour(buyers)
        labels = self.pipeline_.named_steps["model"].predict(transformed)
        sample = np.random.default_rng(self.random_state).choice(
            len(buyers), min(SILHOUETTE_SAMPLE, len(buyers)), replace=False
        )
        return float(silhouette_score(transformed[sample], labels[sample]))

    def behaviour(self, X: pd.DataFrame) -> np.ndarray:
        """The standardised 2-D behaviour space the clusters live in (for plots)."""
        return self.pipeline_.named_steps["features"].transform(X)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        frequency = X["frequency"].fillna(0).to_numpy()
        segments = np.where(frequency >= 1, ONE_TIME_BUYERS, NOT_YET_PURCHASED).astype(np.int64)
        buyers = repeat_buyers(X)
        if buyers.any():
            segments[buyers] = self.pipeline_.predict(X[buyers])
        return segments


def repeat_buyers(X: pd.DataFrame) -> np.ndarray:
    """Which customers have enough orders to be clustered."""
    return (X["frequency"].fillna(0) >= MIN_ORDERS_TO_CLUSTER).to_numpy()


def profile(X: pd.DataFrame, segments: np.ndarray) -> pd.DataFrame:
    """Per segment: size, share and the medians that describe it (aggregates only, no customer rows)."""
    frame = X[SEGMENT_INPUTS].assign(
        segment_id=segments,
        orders_per_30d=30.0 * X["frequency"].fillna(0) / np.maximum(X["days_since_first_order"].fillna(0), 30.0),
    )
    profiles = frame.groupby("segment_id").agg(
        customers=("segment_id", "size"),
        orders_per_30d=("orders_per_30d", "median"),
        avg_order_value=("avg_order_value", "median"),
        frequency=("frequency", "median"),
    )
    profiles.insert(1, "share", (profiles["customers"] / profiles["customers"].sum()).round(4))
    return profiles


# What each name looks like, as weights on the standardised cluster profile.
_NAME_PROFILES = {
    "Champions": {"orders_per_30d": 1.0, "avg_order_value": 1.0},
    "Loyal": {"orders_per_30d": 1.0, "avg_order_value": -0.2},
    "Big spenders": {"avg_order_value": 1.0, "orders_per_30d": -1.0},
    "Bargain hunters": {"avg_order_value": -1.0},
    "Occasional": {"orders_per_30d": -1.0},
    "Light buyers": {"orders_per_30d": -0.7, "avg_order_value": -0.7},
    "Regulars": {"orders_per_30d": 0.2},
    "Mid-range": {"avg_order_value": 0.1},
}


def name_clusters(profiles: pd.DataFrame) -> dict[int, str]:
    """One distinct name per cluster, matching profiles to names for the best total fit."""
    columns = ["orders_per_30d", "avg_order_value"]
    values = np.log(profiles[columns].astype(float))
    standardised = (values - values.mean()) / values.std(ddof=0).replace(0, 1)
    names = list(_NAME_PROFILES)
    fit_score = np.array(
        [
            [
                sum(weight * standardised.loc[cluster, column] for column, weight in _NAME_PROFILES[name].items())
                for name in names
            ]
            for cluster in profiles.index
        ]
    )
    rows, cols = linear_sum_assignment(-fit_score)
    return {int(profiles.index[row]): names[col] for row, col in zip(rows, cols, strict=True)}

"""Customer lifetime value: how many orders a customer will place and what they will spend next.

Two established probabilistic models, fitted by maximum likelihood with scipy:

- **BG/NBD** (Fader, Hardie & Lee, "Counting your customers the easy way", 2005) for the number of
  repeat orders: while alive a customer orders as a Poisson process (rate ~ Gamma(r, alpha) across
  customers) and after each order drops out with probability p (~ Beta(a, b)).
- **Gamma-Gamma** (Fader, Hardie & Lee, "RFM and CLV", 2005) for the value of an order: a customer's
  order values are Gamma(p, nu) with nu ~ Gamma(q, gamma) across customers, independent of how often
  they order.

Their inputs come from the point-in-time features (`customer_features`), so recency and frequency
have one definition: repeat orders x = frequency - 1, the age of the last order t_x =
days_since_first_order - recency_days, the customer's age T = days_since_first_order, the mean order
value m over the customer's `frequency` orders. A customer without a completed order is outside both
models: their predictions are missing (NaN), not zero, so that nobody reads "worth nothing" into
"not a buyer yet".

The estimator is a scikit-learn regressor (`predict` is the expected spend over the horizon) in a
Pipeline whose ColumnTransformer derives those inputs, as for the other models.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize, special, stats
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils.validation import check_is_fitted

from crm.progress import progress
from ml import churn
from ml.features import FEATURE_COLUMNS

MODEL_NAME = "crm_clv"
RFM_COLUMNS = ["frequency", "recency_days", "days_since_first_order", "avg_order_value"]
MODEL_INPUTS = ["repeat_orders", "last_order_age_days", "age_days", "mean_order_value"]


class ClvFitError(RuntimeError):
    """The likelihood could not be maximised (too few buyers, or no repeat buyer at all)."""


def model_inputs(rfm: pd.DataFrame | np.ndarray) -> np.ndarray:
    """The models' inputs from the RFM feature columns (in RFM_COLUMNS order): repeat orders, age of
    the last order and of the customer in days, mean order value; a row of NaN for a customer with no
    completed order."""
    values = np.asarray(rfm, dtype="float64")
    frequency, recency, first_order, mean_value = values.T
    buyer = (frequency >= 1) & ~np.isnan(recency) & ~np.isnan(first_order)
    inputs = np.full((len(values), 4), np.nan)
    inputs[buyer, 0] = frequency[buyer] - 1
    inputs[buyer, 1] = first_order[buyer] - recency[buyer]
    inputs[buyer, 2] = first_order[buyer]
    inputs[buyer, 3] = mean_value[buyer]
    return inputs


def model_input_names(transformer: object, names: object) -> np.ndarray:
    """The names of model_inputs' columns (a function, not a lambda: the fitted Pipeline is saved with skops)."""
    return np.array(MODEL_INPUTS, dtype=object)


def bgnbd_log_likelihood(x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Each customer's BG/NBD log-likelihood as a function of (r, alpha, a, b). The gamma and beta
    functions are evaluated once per distinct number of repeat orders (a few hundred values at most)."""
    counts, by_customer = np.unique(x, return_inverse=True)
    repeat = x > 0

    def log_likelihood(params: np.ndarray) -> np.ndarray:
        r, alpha, a, b = params
        per_count = special.gammaln(r + counts) - special.gammaln(r) - special.betaln(a, b)
        still_alive = (special.betaln(a, b + counts) + per_count)[by_customer] - (r + x) * np.log(alpha + T)
        # Dropped out right after the last order (only possible after a repeat order).
        with np.errstate(invalid="ignore", divide="ignore"):
            after_last = special.betaln(a + 1, b + counts - 1) + per_count
        dropped = np.full_like(x, -np.inf)
        dropped[repeat] = after_last[by_customer[repeat]] - (r + x[repeat]) * np.log(alpha + t_x[repeat])
        return r * np.log(alpha) + np.logaddexp(still_alive, dropped)

    return log_likelihood


def gamma_gamma_log_likelihood(n: np.ndarray, m: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Each customer's Gamma-Gamma log-likelihood as a function of (p, q, gamma), for the mean ``m`` of
    ``n`` order values (terms that do not depend on the parameters left out)."""
    counts, by_customer = np.unique(n, return_inverse=True)
    log_m, log_n = np.log(m), np.log(n)

    def log_likelihood(params: np.ndarray) -> np.ndarray:
        p, q, gamma = params
        per_count = special.gammaln(p * counts + q) - special.gammaln(p * counts)
        return (
            per_count[by_customer]
            - special.gammaln(q)
            + q * np.log(gamma)
            + p * n * (log_m + log_n)
            - (p * n + q) * np.log(gamma + n * m)
        )

    return log_likelihood


def _maximise(log_likelihood: Callable[[np.ndarray], np.ndarray], start: np.ndarray, what: str) -> np.ndarray:
    """The parameters (all positive, searched on the log scale) that maximise the mean log-likelihood."""

    def objective(log_params: np.ndarray) -> float:
        value = -np.mean(log_likelihood(np.exp(log_params)))
        return value if np.isfinite(value) else np.inf

    result = optimize.minimize(objective, np.log(start), method="L-BFGS-B")
    if not np.isfinite(result.fun):
        raise ClvFitError(f"{what}: the likelihood is not finite anywhere near the start ({result.message})")
    return np.exp(result.x)


class BetaGeoGammaGamma(RegressorMixin, BaseEstimator):
    """BG/NBD for repeat orders and Gamma-Gamma for order value; ``predict`` is the expected spend in
    the next ``horizon_days`` (NaN for a customer with no completed order).

    Input: the columns of MODEL_INPUTS (repeat orders, last-order age, age, mean order value), as
    `model_inputs` derives them. Fitted parameters: ``bgnbd_`` (r, alpha, a, b) and ``gamma_gamma_``
    (p, q, gamma)."""

    def __init__(self, horizon_days: int = 90):
        self.horizon_days = horizon_days

    def fit(self, X, y=None):
        inputs = np.asarray(X, dtype="float64")
        buyers = inputs[~np.isnan(inputs[:, 0])]
        x, t_x, T, m = buyers.T
        if not len(buyers) or not (x > 0).any():
            raise ClvFitError(f"{len(buyers)} buyers, {(x > 0).sum()} with a repeat order: nothing to fit")
        start = np.array([1.0, max(T.mean(), 1.0), 1.0, 1.0])
        self.bgnbd_ = _maximise(bgnbd_log_likelihood(x, t_x, T), start, "BG/NBD")
        valued = m > 0
        start = np.array([1.0, 2.0, max(m[valued].mean(), 1.0)])
        self.gamma_gamma_ = _maximise(gamma_gamma_log_likelihood(x[valued] + 1, m[valued]), start, "Gamma-Gamma")
        self.n_buyers_ = len(buyers)
        return self

    def expected_orders(self, X, horizon_days: float | None = None) -> np.ndarray:
        """Expected number of orders in the next ``horizon_days`` (default: the estimator's horizon)."""
        check_is_fitted(self)
        t = self.horizon_days if horizon_days is None else horizon_days
        x, t_x, T, _ = np.asarray(X, dtype="float64").T
        r, alpha, a, b = self.bgnbd_
        with np.errstate(invalid="ignore"):
            z = t / (alpha + T + t)
            hyper = special.hyp2f1(r + x, b + x, a + b + x - 1, z)
            numerator = (a + b + x - 1) / (a - 1) * (1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyper)
            return numerator / (1 + self._dropout_odds(x, t_x, T))

    def probability_alive(self, X) -> np.ndarray:
        """Probability that the customer has not dropped out, given their orders so far."""
        check_is_fitted(self)
        x, t_x, T, _ = np.asarray(X, dtype="float64").T
        with np.errstate(invalid="ignore"):
            return 1 / (1 + self._dropout_odds(x, t_x, T))

    def expected_order_value(self, X) -> np.ndarray:
        """Expected value of the customer's future orders: their own mean shrunk to the population's."""
        check_is_fitted(self)
        x, _, _, m = np.asarray(X, dtype="float64").T
        p, q, gamma = self.gamma_gamma_
        n = x + 1
        return (p * (gamma + n * m)) / (p * n + q - 1)

    def predict(self, X) -> np.ndarray:
        return self.expected_orders(X) * self.expected_order_value(X)

    def _dropout_odds(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        r, alpha, a, b = self.bgnbd_
        odds = np.zeros_like(x)
        repeat = x > 0
        odds[repeat] = a / (b + x[repeat] - 1) * ((alpha + T[repeat]) / (alpha + t_x[repeat])) ** (r + x[repeat])
        odds[np.isnan(x)] = np.nan
        return odds


def pipeline(horizon_days: int) -> Pipeline:
    """The CLV model over the feature columns: inputs derived by a ColumnTransformer, then the two models."""
    inputs = FunctionTransformer(model_inputs, feature_names_out=model_input_names)
    return Pipeline(
        [
            ("features", ColumnTransformer([("rfm", inputs, RFM_COLUMNS)])),
            ("model", BetaGeoGammaGamma(horizon_days=horizon_days)),
        ]
    )


class PastSpendRate(RegressorMixin, BaseEstimator):
    """The baseline without a model: the customer's spend per day since their first order, times the
    horizon (NaN without an order). Input: the RFM columns."""

    def __init__(self, horizon_days: int = 90):
        self.horizon_days = horizon_days

    def fit(self, X, y=None):
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def predict(self, X) -> np.ndarray:
        frequency, _, first_order, mean_value = np.asarray(X, dtype="float64").T
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = np.where(frequency >= 1, frequency * mean_value / np.maximum(first_order, 1), np.nan)
        return rate * self.horizon_days


def candidates(horizon_days: int, seed: int) -> dict[str, Pipeline]:
    """The lifetime-value candidates, each a Pipeline that takes FEATURE_COLUMNS (its ColumnTransformer
    picks the columns it reads), so scoring and the registered signature are the same for every one."""
    return {
        "bg_nbd_gamma_gamma": pipeline(horizon_days),
        # Spend is a skewed count-like amount: a Poisson loss keeps the predicted totals calibrated.
        "gradient_boosting": Pipeline(
            [
                ("features", churn.preprocessor()),
                (
                    "model",
                    HistGradientBoostingRegressor(
                        loss="poisson", max_iter=200, learning_rate=0.05, l2_regularization=1.0, random_state=seed
                    ),
                ),
            ]
        ),
        "past_spend_rate": Pipeline(
            [
                ("features", ColumnTransformer([("rfm", "passthrough", RFM_COLUMNS)])),
                ("model", PastSpendRate(horizon_days)),
            ]
        ),
    }


def value_metrics(realised: np.ndarray, predicted: np.ndarray, deciles: int = 10) -> dict[str, float]:
    """How well predicted spend matches realised spend, with the same names in every run: rank
    correlation, normalised Gini (1 = ranks customers by value perfectly, 0 = at random), mean absolute
    error, the ratio of the totals, and the calibration of totals by decile of the prediction (the sum
    of each decile's absolute gap between predicted and realised totals, over the realised total)."""
    realised, predicted = np.asarray(realised, dtype="float64"), np.asarray(predicted, dtype="float64")
    total = realised.sum()
    order = np.argsort(-predicted, kind="stable")
    gaps = sum(
        abs(predicted[part].sum() - realised[part].sum()) for part in np.array_split(order, deciles) if len(part)
    )
    return {
        "spearman": float(stats.spearmanr(predicted, realised).statistic),
        "gini": _gini(realised, predicted) / _gini(realised, realised),
        "mae": float(np.mean(np.abs(predicted - realised))),
        "total_ratio": float(predicted.sum() / total) if total else float("nan"),
        "decile_calibration_error": float(gaps / total) if total else float("nan"),
    }


def _gini(realised: np.ndarray, score: np.ndarray) -> float:
    """The Gini of ``realised`` ordered by ``score`` (highest first): how much of the total the top of
    the order holds beyond a random order."""
    ordered = realised[np.argsort(-score, kind="stable")]
    cumulative = np.cumsum(ordered) / ordered.sum()
    return float(np.mean(cumulative) - (len(ordered) + 1) / (2 * len(ordered)))


LABEL = "revenue_eur_in_horizon"
SELECTION_METRIC = "gini"
# Fewer repeat buyers than this leave the purchase process's four parameters to chance.
MIN_REPEAT_BUYERS = 50


def preflight_reasons(train: pd.DataFrame, validation: pd.DataFrame) -> list[str]:
    """Why the lifetime-value models cannot be trained on these examples (empty when they can)."""
    reasons = []
    repeat_buyers = int((train["frequency"] >= 2).sum())
    if repeat_buyers < MIN_REPEAT_BUYERS:
        reasons.append(
            f"training set has {repeat_buyers} customers with a repeat order; at least {MIN_REPEAT_BUYERS} are needed"
        )
    if not len(validation) or not validation[LABEL].sum() > 0:
        reasons.append(
            f"validation set has {len(validation)} buyers with an observed horizon and no revenue in it: "
            "the horizon must end within the delivered data (CRM_CLV_HORIZON_DAYS at most the churn window)"
        )
    return reasons


@dataclass
class FittedCandidate:
    name: str
    pipeline: Pipeline
    metrics: dict[str, float]
    validation_prediction: np.ndarray


def fit_candidates(
    train: pd.DataFrame, validation: pd.DataFrame, horizon_days: int, seed: int
) -> list[FittedCandidate]:
    """Fit every candidate on ``train`` (the probabilistic models and the baseline need no label); return
    them best first by the validation's normalised Gini of predicted against realised revenue."""
    fitted = []
    pipelines = candidates(horizon_days, seed)
    for name, candidate in progress(pipelines.items(), "training lifetime-value candidates", len(pipelines), "model"):
        candidate.fit(train[FEATURE_COLUMNS], train[LABEL])
        prediction = candidate.predict(validation[FEATURE_COLUMNS])
        fitted.append(FittedCandidate(name, candidate, value_metrics(validation[LABEL], prediction), prediction))
    return sorted(fitted, key=lambda candidate: candidate.metrics[SELECTION_METRIC], reverse=True)

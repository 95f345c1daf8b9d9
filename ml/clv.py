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

import numpy as np
import pandas as pd
from scipy import optimize, special
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils.validation import check_is_fitted

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
    inputs = FunctionTransformer(model_inputs, feature_names_out=lambda *_: np.array(MODEL_INPUTS))
    return Pipeline(
        [
            ("features", ColumnTransformer([("rfm", inputs, RFM_COLUMNS)])),
            ("model", BetaGeoGammaGamma(horizon_days=horizon_days)),
        ]
    )

"""Explanations: global permutation importance per model, and the top churn drivers of customers at risk.

A driver is a feature whose value, for this customer, raises the predicted churn probability the
most compared with a typical customer: the probability drops by that much when the feature alone
is set to the population median. Model-agnostic, so it works for every candidate Pipeline.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.inspection import permutation_importance
from sklearn.pipeline import Pipeline

from crm.score_tables import DRIVER_COLUMNS, TOP_DRIVERS
from ml.blocks import BLOCK_ROWS

IMPORTANCE_SAMPLE = 5_000
DRIVER_CANDIDATES = 8  # the most important features are the candidates for a customer's drivers
# Drivers are explained where a retention team acts: customer_360's medium and high churn risk bands.
# Below it every candidate would be predicted again for customers nobody contacts (most of the cost).
DRIVERS_FROM_PROBABILITY = 0.4
HIGH_RISK_FROM_PROBABILITY = 0.7  # customer_360's high band


def global_importance(pipeline: Pipeline, features: pd.DataFrame, label: pd.Series, seed: int) -> pd.DataFrame:
    """Drop in ROC-AUC when each feature is shuffled, on a sample of the validation set."""
    sample = features.sample(min(len(features), IMPORTANCE_SAMPLE), random_state=seed)
    result = permutation_importance(
        pipeline, sample, label.loc[sample.index], scoring="roc_auc", n_repeats=3, random_state=seed
    )
    return pd.DataFrame(
        {"feature": features.columns, "importance": result.importances_mean, "importance_std": result.importances_std}
    ).sort_values("importance", ascending=False, ignore_index=True)


def churn_drivers(
    pipeline: Pipeline,
    features: pd.DataFrame,
    probability: np.ndarray,
    candidates: list[str],
    from_probability: float = DRIVERS_FROM_PROBABILITY,
    block_rows: int = BLOCK_ROWS,
    carried: np.ndarray | None = None,
) -> pd.DataFrame:
    """Columns driver_1..driver_3 for the customers whose churn ``probability`` (the pipeline's own, in
    row order) is at least ``from_probability``; null for the others and for the ``carried`` rows (a
    boolean mask: their drivers come from an earlier date, see ``carried_drivers``).

    A customer's drivers are the candidate features that raise its churn probability most. Only features
    that do raise it count: a customer whose values all lower the risk has no drivers (null). The median
    a candidate is set to is the whole population's. The explained customers are transformed once, in
    blocks; for each candidate only those whose value differs from the median are predicted again, with
    the candidate's transformed columns set to the median's. That equals predicting the neutralised
    input, because the pipeline's transformers work column by column.
    """
    names = np.full((len(features), TOP_DRIVERS), None, dtype=object)
    explained = np.flatnonzero((probability >= from_probability) & (True if carried is None else ~carried))
    if candidates and explained.size:
        preprocess, model = pipeline[:-1], pipeline[-1]
        neutral = [_neutral_outputs(preprocess, features, column) for column in candidates]
        for start in range(0, explained.size, block_rows):
            rows = explained[start : start + block_rows]
            ranked = _ranked_drivers(preprocess, model, features.iloc[rows], probability[rows], candidates, neutral)
            names[rows, : ranked.shape[1]] = ranked
    return pd.DataFrame(names, columns=DRIVER_COLUMNS, index=features.index)


def carried_drivers(probability: np.ndarray, drivers_probability: np.ndarray, max_shift: float) -> np.ndarray:
    """Which customers keep the drivers computed at an earlier date, when their probability was
    ``drivers_probability`` (NaN: none were computed): those at medium or high risk that are still in
    the same risk band and whose probability moved by at most ``max_shift``. The others are explained
    again, so a customer whose risk changed never shows the reasons of another risk."""
    bands = [DRIVERS_FROM_PROBABILITY, HIGH_RISK_FROM_PROBABILITY]
    with np.errstate(invalid="ignore"):
        return (
            (probability >= DRIVERS_FROM_PROBABILITY)
            & ~np.isnan(drivers_probability)
            & (np.digitize(probability, bands) == np.digitize(drivers_probability, bands))
            & (np.abs(probability - drivers_probability) <= max_shift)
        )


def _ranked_drivers(
    preprocess: Pipeline,
    model,
    block: pd.DataFrame,
    base: np.ndarray,
    candidates: list[str],
    neutral: list[tuple[np.ndarray, np.ndarray]],
) -> np.ndarray:
    """The block's top candidates by how much each raises its probability ``base``; None where none does."""
    transformed = np.asarray(preprocess.transform(block), dtype=float)
    contributions = np.zeros((len(block), len(candidates)))
    for index, (outputs, values) in enumerate(neutral):
        differs = ~_same(transformed[:, outputs], values).all(axis=1)
        if differs.any():
            neutralised = transformed[differs]
            neutralised[:, outputs] = values
            contributions[differs, index] = base[differs] - model.predict_proba(neutralised)[:, 1]
    ranked = np.argsort(-contributions, axis=1, kind="stable")[:, :TOP_DRIVERS]
    names = np.asarray(candidates, dtype=object)[ranked]
    names[np.take_along_axis(contributions, ranked, axis=1) <= 0] = None
    return names


def _neutral_outputs(preprocess: Pipeline, features: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray]:
    """The transformed columns that depend on ``column`` and their values when it is set to its median.

    Found by transforming one customer's row three times with only ``column`` changed (its median,
    missing, and another value): the outputs that differ between the probes are the dependent ones.
    """
    median = features[column].median()
    probes = features.iloc[[0, 0, 0]].copy()
    probes[column] = [median, np.nan, (0.0 if pd.isna(median) else median) + 1.0]
    transformed = np.asarray(preprocess.transform(probes), dtype=float)
    outputs = np.flatnonzero(~_same(transformed, transformed[0]).all(axis=0))
    return outputs, transformed[0, outputs]


def _same(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Element-wise equality that counts two missing values as equal."""
    return (values == reference) | (np.isnan(values) & np.isnan(reference))

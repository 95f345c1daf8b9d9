"""Explanations: global permutation importance per model, and each customer's top churn drivers.

A driver is a feature whose value, for this customer, raises the predicted churn probability the
most compared with a typical customer: the probability drops by that much when the feature alone
is set to the population median. Model-agnostic, so it works for every candidate Pipeline.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.inspection import permutation_importance
from sklearn.pipeline import Pipeline

IMPORTANCE_SAMPLE = 5_000
DRIVER_CANDIDATES = 8  # the most important features are the candidates for a customer's drivers
TOP_DRIVERS = 3


def global_importance(pipeline: Pipeline, features: pd.DataFrame, label: pd.Series, seed: int) -> pd.DataFrame:
    """Drop in ROC-AUC when each feature is shuffled, on a sample of the validation set."""
    sample = features.sample(min(len(features), IMPORTANCE_SAMPLE), random_state=seed)
    result = permutation_importance(pipeline, sample, label.loc[sample.index], scoring="roc_auc", n_repeats=3,
                                    random_state=seed)
    return (pd.DataFrame({"feature": features.columns, "importance": result.importances_mean,
                          "importance_std": result.importances_std})
            .sort_values("importance", ascending=False, ignore_index=True))


def top_drivers(pipeline: Pipeline, features: pd.DataFrame, candidates: list[str]) -> pd.DataFrame:
    """Columns driver_1..driver_3: per customer, the candidate features that raise its churn probability most.

    Only features that do raise it count: a customer whose values all lower the risk has no drivers (null).
    """
    base = pipeline.predict_proba(features)[:, 1]
    contributions = np.empty((len(features), len(candidates)))
    neutralised = features.copy()  # one working copy: each column is set to its median, then restored
    for index, column in enumerate(candidates):
        neutralised[column] = features[column].median()
        contributions[:, index] = base - pipeline.predict_proba(neutralised)[:, 1]
        neutralised[column] = features[column]
    ranked = np.argsort(-contributions, axis=1, kind="stable")[:, :TOP_DRIVERS]
    names = np.asarray(candidates, dtype=object)[ranked]
    names[np.take_along_axis(contributions, ranked, axis=1) <= 0] = None
    return pd.DataFrame(names, columns=[f"driver_{rank + 1}" for rank in range(TOP_DRIVERS)], index=features.index)

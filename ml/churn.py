"""Churn model: scikit-learn Pipelines over the point-in-time features, trained with a time-based split.

Train on the as-of date two churn windows before the scoring date, validate on the date one
window before it (both with fully observed labels), score at the latest date.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from ml.features import NUMERIC_FEATURES, FEATURE_COLUMNS, MONEY_FEATURES
from ml.metrics import classification_metrics

MODEL_NAME = "crm_churn"
LABEL = "is_churned"


def _preprocessor() -> ColumnTransformer:
    # Missing recency or order value means "never ordered": imputed, with an indicator column.
    # keep_empty_features: a column that is all null (an optional source not delivered) stays, as 0.
    numeric = make_pipeline(SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
                           StandardScaler())
    money = make_pipeline(SimpleImputer(strategy="constant", fill_value=0.0),
                          FunctionTransformer(np.log1p, feature_names_out="one-to-one"), StandardScaler())
    return ColumnTransformer([("numeric", numeric, NUMERIC_FEATURES), ("money", money, MONEY_FEATURES)])


def candidates(seed: int) -> dict[str, Pipeline]:
    return {
        "logistic_regression": Pipeline([
            ("features", _preprocessor()),
            ("model", LogisticRegression(C=1.0, max_iter=1000)),
        ]),
        "gradient_boosting": Pipeline([
            ("features", _preprocessor()),
            ("model", HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, l2_regularization=1.0,
                                                     random_state=seed)),
        ]),
    }


@dataclass
class FittedCandidate:
    name: str
    pipeline: Pipeline
    metrics: dict[str, float]


def fit_candidates(train: pd.DataFrame, validation: pd.DataFrame, seed: int) -> list[FittedCandidate]:
    """Fit every candidate on ``train``; return them best first by validation ROC-AUC."""
    fitted = []
    for name, pipeline in candidates(seed).items():
        pipeline.fit(train[FEATURE_COLUMNS], train[LABEL])
        probability = pipeline.predict_proba(validation[FEATURE_COLUMNS])[:, 1]
        fitted.append(FittedCandidate(name, pipeline, classification_metrics(validation[LABEL], probability)))
    return sorted(fitted, key=lambda candidate: candidate.metrics["roc_auc"], reverse=True)

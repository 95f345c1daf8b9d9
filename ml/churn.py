"""Churn model: scikit-learn Pipelines over the point-in-time features, trained with a time-based split.

Train on the as-of date two churn windows before the scoring date, validate on the date one
window before it (both with fully observed labels), refit the selected candidate on both dates (the
freshest labels included), score at the latest date.
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

from crm.progress import progress
from ml.features import FEATURE_COLUMNS, MONEY_FEATURES, NUMERIC_FEATURES
from ml.metrics import classification_metrics

MODEL_NAME = "crm_churn"
LABEL = "is_churned"


def preprocessor() -> ColumnTransformer:
    """The feature columns as every supervised model on them reads them: imputed, money log-scaled, standardised."""
    # Missing recency or order value means "never ordered": imputed, with an indicator column.
    # keep_empty_features: a column that is all null (an optional source not delivered) stays, as 0.
    numeric = make_pipeline(
        SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True), StandardScaler()
    )
    money = make_pipeline(
        SimpleImputer(strategy="constant", fill_value=0.0),
        FunctionTransformer(np.log1p, feature_names_out="one-to-one"),
        StandardScaler(),
    )
    return ColumnTransformer([("numeric", numeric, NUMERIC_FEATURES), ("money", money, MONEY_FEATURES)])


def candidates(seed: int) -> dict[str, Pipeline]:
    return {
        "logistic_regression": Pipeline(
            [
                ("features", preprocessor()),
                ("model", LogisticRegression(C=1.0, max_iter=1000)),
            ]
        ),
        "gradient_boosting": Pipeline(
            [
                ("features", preprocessor()),
                (
                    "model",
                    HistGradientBoostingClassifier(
                        max_iter=200, learning_rate=0.05, l2_regularization=1.0, random_state=seed
                    ),
                ),
            ]
        ),
    }


@dataclass
class FittedCandidate:
    name: str
    pipeline: Pipeline
    metrics: dict[str, float]
    # Its predicted probabilities on the validation set, computed once: plots and the signature reuse them.
    validation_probability: np.ndarray


def fit_candidates(train: pd.DataFrame, validation: pd.DataFrame, seed: int) -> list[FittedCandidate]:
    return rank_candidates(candidates(seed), train, validation, FEATURE_COLUMNS, LABEL)


def rank_candidates(
    pipelines: dict[str, Pipeline], train: pd.DataFrame, validation: pd.DataFrame, inputs: list[str], label: str
) -> list[FittedCandidate]:
    """Fit every candidate on ``train``; return them best first by validation ROC-AUC."""
    fitted = []
    for name, pipeline in progress(pipelines.items(), f"training {label} candidates", len(pipelines), "model"):
        pipeline.fit(train[inputs], train[label])
        probability = pipeline.predict_proba(validation[inputs])[:, 1]
        fitted.append(
            FittedCandidate(name, pipeline, classification_metrics(validation[label], probability), probability)
        )
    return sorted(fitted, key=lambda candidate: candidate.metrics["roc_auc"], reverse=True)


# The simple rule a CRM team would use without a model: "no purchase in the last X days".
RULE_DAYS = (30, 45, 60, 90, 120, 180, 270, 365)


@dataclass(frozen=True)
class RecencyRule:
    days: int

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        """1 = churn: no completed order in the last ``days`` days (or none ever)."""
        recency = features["recency_days"].to_numpy(dtype=float)
        return np.where(np.isnan(recency) | (recency > self.days), 1.0, 0.0)


def best_recency_rule(train: pd.DataFrame) -> RecencyRule:
    """The rule's X that separates churners best on the training set (largest TPR - FPR)."""

    def youden(rule: RecencyRule) -> float:
        predicted, actual = rule.predict(train), train[LABEL].to_numpy()
        return predicted[actual == 1].mean() - predicted[actual == 0].mean()

    return max((RecencyRule(days) for days in RULE_DAYS), key=youden)


def recency_score(features: pd.DataFrame) -> np.ndarray:
    """Continuous recency as a churn score: the days since the last completed order, a customer who
    never ordered above everyone. A yes/no rule on recency is handicapped in ROC-AUC by being binary;
    this ranking is the stronger baseline on most purchase logs."""
    recency = features["recency_days"].to_numpy(dtype=float)
    return np.where(np.isnan(recency), np.nanmax(recency, initial=0.0) + 1.0, recency)


# Grade by how much ranking quality the model adds over the stronger of the two simple baselines, the
# best recency rule and continuous recency (ROC-AUC points).
GRADE_THRESHOLDS = (("A", 0.05), ("B", 0.01))


def grade(model_auc: float, rule_auc: float) -> str:
    uplift = model_auc - rule_auc
    return next((letter for letter, minimum in GRADE_THRESHOLDS if uplift >= minimum), "C")

"""Satisfaction model: the probability that a customer is satisfied (promoter NPS or CSAT of 4-5),
for every customer, including those who never answered a survey.

Trained on the customers who answered a survey in the window after an as-of date, from their
behaviour at that date and the words of their support tickets and survey comments (TF-IDF),
validated the same way one window later, the selected Pipeline refitted on both windows; it then
scores everyone at the latest date.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from ml.churn import FittedCandidate, rank_candidates
from ml.features import FEATURE_COLUMNS, MONEY_FEATURES, NUMERIC_FEATURES, TEXT_COLUMN

MODEL_NAME = "crm_satisfaction"
LABEL = "is_satisfied"
INPUT_COLUMNS = FEATURE_COLUMNS + [TEXT_COLUMN]
# Types a fitted TF-IDF vectorizer holds, for skops to load it.
TEXT_TRUSTED_TYPES = [
    "sklearn.feature_extraction.text.TfidfVectorizer",
    "sklearn.feature_extraction.text.TfidfTransformer",
    "builtins.str",
]


def _behaviour() -> list[tuple[str, Pipeline, list[str]]]:
    numeric = make_pipeline(
        SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True), StandardScaler()
    )
    money = make_pipeline(
        SimpleImputer(strategy="constant", fill_value=0.0),
        FunctionTransformer(np.log1p, feature_names_out="one-to-one"),
        StandardScaler(),
    )
    return [("numeric", numeric, NUMERIC_FEATURES), ("money", money, MONEY_FEATURES)]


def candidates(seed: int) -> dict[str, Pipeline]:
    text = TfidfVectorizer(min_df=3, max_features=2_000, ngram_range=(1, 2), sublinear_tf=True)
    return {
        "logistic_regression_text": Pipeline(
            [
                ("features", ColumnTransformer([*_behaviour(), ("text", text, TEXT_COLUMN)])),
                ("model", LogisticRegression(C=0.5, max_iter=2000)),
            ]
        ),
        # Trees on behaviour only: the text's share of the signal shows in the difference.
        "gradient_boosting": Pipeline(
            [
                ("features", ColumnTransformer(_behaviour())),
                (
                    "model",
                    HistGradientBoostingClassifier(
                        max_iter=200, learning_rate=0.05, l2_regularization=1.0, random_state=seed
                    ),
                ),
            ]
        ),
    }


def fit_candidates(train: pd.DataFrame, validation: pd.DataFrame, seed: int) -> list[FittedCandidate]:
    return rank_candidates(candidates(seed), train, validation, INPUT_COLUMNS, LABEL)

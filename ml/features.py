"""The one definition of model inputs: which mart columns feed the models and how they are read.

Training, validation and scoring all read `marts.customer_features` through these functions, so
no feature logic is duplicated between them; transformations live in each model's Pipeline.
"""

from __future__ import annotations

from datetime import date

import duckdb
import pandas as pd

FEATURES_TABLE = "marts.customer_features"
CHURN_LABELS_TABLE = "marts.customer_churn_labels"
ID_COLUMNS = ["customer_key", "as_of_date"]
# Money features are heavy-tailed: models log-transform them.
MONEY_FEATURES = ["monetary", "avg_order_value", "monetary_last_90d"]
NUMERIC_FEATURES = ["tenure_days", "recency_days", "days_since_first_order", "frequency", "orders_last_90d",
                  "orders_prev_90d", "cancelled_orders", "returned_orders", "tickets_last_90d", "open_tickets",
                  "avg_hours_to_resolve", "bad_ticket_experiences", "last_nps", "last_csat", "survey_responses",
                  "emails_sent_last_90d", "email_open_rate_last_90d", "email_click_rate_last_90d",
                  "has_unsubscribed", "sessions_last_30d", "sessions_last_90d", "pages_per_session_last_90d"]
FEATURE_COLUMNS = NUMERIC_FEATURES + MONEY_FEATURES


def load_features(con: duckdb.DuckDBPyConnection, as_of_date: date) -> pd.DataFrame:
    """Ids and features of every customer known at ``as_of_date``, ordered by customer."""
    columns = ", ".join(ID_COLUMNS + FEATURE_COLUMNS)
    frame = con.execute(
        f"select {columns} from {FEATURES_TABLE} where as_of_date = ? order by customer_key", [as_of_date]
    ).df()
    return _typed(frame)


def load_churn_examples(con: duckdb.DuckDBPyConnection, as_of_date: date) -> pd.DataFrame:
    """Features with their observed churn label at ``as_of_date`` (unobserved labels are left out)."""
    columns = ", ".join(f"features.{c}" for c in ID_COLUMNS + FEATURE_COLUMNS)
    frame = con.execute(f"""
        select {columns}, labels.is_churned
        from {FEATURES_TABLE} as features
        inner join {CHURN_LABELS_TABLE} as labels using (customer_key, as_of_date)
        where features.as_of_date = ? and labels.is_label_observed
        order by features.customer_key""", [as_of_date]).df()
    frame = _typed(frame)
    frame["is_churned"] = frame["is_churned"].astype(int)
    return frame


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    # Nullable integer columns become floats with NaN, which every scikit-learn estimator accepts.
    frame[FEATURE_COLUMNS] = frame[FEATURE_COLUMNS].astype("float64")
    frame["as_of_date"] = pd.to_datetime(frame["as_of_date"]).dt.date
    return frame

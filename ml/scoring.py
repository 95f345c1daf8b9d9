"""Score every customer with the champion model and write the scores back to the warehouse."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timezone

import duckdb
import mlflow
import pandas as pd

from crm.gates import customers_known_at
from crm.quality import QualityGate
from crm.settings import Settings
from crm.warehouse import connect, replace_as_of_date
from ml import churn, registry
from ml.features import FEATURE_COLUMNS, ID_COLUMNS, load_features

log = logging.getLogger(__name__)

CHURN_SCORES_TABLE = "scores.churn"
# Score tables exist before the first scoring run, so dbt can read them as sources (customer_360).
SCORE_TABLES = {
    CHURN_SCORES_TABLE: {"customer_key": "bigint", "as_of_date": "date", "churn_probability": "double",
                         "model_name": "varchar", "model_version": "varchar", "run_id": "varchar",
                         "scored_at": "timestamp"},
}


def ensure_score_tables(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("create schema if not exists scores")
    for table, columns in SCORE_TABLES.items():
        con.execute(f"create table if not exists {table} ({', '.join(f'{n} {t}' for n, t in columns.items())})")


@dataclass(frozen=True)
class ScoringReport:
    table: str
    as_of_date: date
    rows: int
    model_version: str


def score_churn(settings: Settings, as_of_date: date, gate: QualityGate) -> ScoringReport:
    """Score at ``as_of_date`` with ``crm_churn@champion``; gate the scores, then replace that date's rows."""
    client = registry.configure(settings)
    champion = registry.champion_version(client, churn.MODEL_NAME)
    if champion is None:
        raise LookupError(f"no {churn.MODEL_NAME} champion is registered: train before scoring")
    model = mlflow.sklearn.load_model(registry.model_uri(churn.MODEL_NAME))
    with connect(settings, read_only=True) as con:
        features = load_features(con, as_of_date)
        known = customers_known_at(con, as_of_date)
    scores = features[ID_COLUMNS].copy()
    scores["churn_probability"] = model.predict_proba(features[FEATURE_COLUMNS])[:, 1]
    scores["model_name"] = churn.MODEL_NAME
    scores["model_version"] = str(champion.version)
    scores["run_id"] = champion.run_id
    scores["scored_at"] = pd.Timestamp(datetime.now(timezone.utc).replace(tzinfo=None))
    gate.validate("churn_scores", scores, ID_COLUMNS, parameters={"customers_known_at_as_of": known})
    with connect(settings) as con:
        replace_as_of_date(con, CHURN_SCORES_TABLE, scores, as_of_date)
    log.info("scored %d customers at %s with %s v%s", len(scores), as_of_date, churn.MODEL_NAME, champion.version)
    return ScoringReport(CHURN_SCORES_TABLE, as_of_date, len(scores), str(champion.version))

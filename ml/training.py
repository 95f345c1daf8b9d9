"""Train, track and register the churn model in MLflow."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date

import mlflow
import pandas as pd
from mlflow.models import infer_signature

from crm.settings import Settings
from crm.warehouse import connect
from ml import churn, registry
from ml.features import FEATURE_COLUMNS, load_churn_examples
from ml.metrics import classification_metrics
from ml.preflight import TrainingSkipped, check_training_data

log = logging.getLogger(__name__)

SELECTION_METRIC = "roc_auc"


@dataclass(frozen=True)
class TrainingReport:
    model_name: str
    version: str
    run_id: str
    candidate: str
    metrics: dict[str, float]
    decision: registry.PromotionDecision


def train_churn(settings: Settings, train_date: date, validation_date: date, first_data_day: date) -> TrainingReport:
    """Train, track and register; raise TrainingSkipped when the preflight finds the data insufficient."""
    with connect(settings, read_only=True) as con:
        train = load_churn_examples(con, train_date)
        validation = load_churn_examples(con, validation_date)
    check = check_training_data(train, validation, churn.LABEL, first_data_day, train_date,
                                settings.churn_window_days)
    for note in check.notes:
        log.info("preflight: %s", note)
    if not check.passed:
        raise TrainingSkipped(f"{churn.MODEL_NAME} training skipped by the preflight; the current champion "
                              f"keeps serving: " + "; ".join(check.reasons))
    client = registry.configure(settings)
    experiment_id = registry.experiment_id(settings, client, churn.MODEL_NAME)
    fitted = churn.fit_candidates(train, validation, settings.random_seed)
    params = {
        "features": ",".join(FEATURE_COLUMNS),
        "train_as_of_date": train_date.isoformat(),
        "validation_as_of_date": validation_date.isoformat(),
        "churn_window_days": settings.churn_window_days,
        "train_rows": len(train),
        "validation_rows": len(validation),
    }
    best = fitted[0]
    run_ids = {}
    for candidate in fitted:
        with mlflow.start_run(experiment_id=experiment_id, run_name=candidate.name) as run:
            mlflow.log_params({**params, "candidate": candidate.name})
            mlflow.log_metrics(candidate.metrics)
            mlflow.set_tag("selected", str(candidate is best).lower())
            if candidate is best:
                _log_datasets(train, validation, train_date, validation_date)
                info = mlflow.sklearn.log_model(
                    candidate.pipeline,
                    name="model",
                    signature=infer_signature(validation[FEATURE_COLUMNS],
                                              candidate.pipeline.predict_proba(validation[FEATURE_COLUMNS])[:, 1]),
                    input_example=validation[FEATURE_COLUMNS].head(5),
                    registered_model_name=churn.MODEL_NAME,
                    pip_requirements=registry.PIP_REQUIREMENTS,
                    skops_trusted_types=registry.SKOPS_TRUSTED_TYPES,
                )
            run_ids[candidate.name] = run.info.run_id
    new_version = str(info.registered_model_version)
    current = registry.champion_version(client, churn.MODEL_NAME)
    champion_score = None
    if current is not None:
        champion = mlflow.sklearn.load_model(registry.model_uri(churn.MODEL_NAME))
        champion_probability = champion.predict_proba(validation[FEATURE_COLUMNS])[:, 1]
        champion_score = classification_metrics(validation[churn.LABEL], champion_probability)[SELECTION_METRIC]
    decision = registry.promote(
        client, churn.MODEL_NAME, new_version, run_ids[best.name], SELECTION_METRIC,
        best.metrics[SELECTION_METRIC], champion_score, current.version if current else None,
    )
    return TrainingReport(churn.MODEL_NAME, new_version, run_ids[best.name], best.name, best.metrics, decision)


def _log_datasets(train: pd.DataFrame, validation: pd.DataFrame, train_date: date, validation_date: date) -> None:
    for context, frame, as_of in (("training", train, train_date), ("validation", validation, validation_date)):
        dataset = mlflow.data.from_pandas(frame, name=f"customer_features@{as_of.isoformat()}", targets=churn.LABEL)
        mlflow.log_input(dataset, context=context)

"""Train, track and register the models in MLflow."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import date

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import infer_signature

from crm.settings import Settings
from crm.warehouse import connect
from ml import churn, registry, segmentation
from ml.features import FEATURE_COLUMNS, load_churn_examples, load_features
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


def train_segmentation(settings: Settings, fit_date: date) -> TrainingReport:
    """Fit the segmentation on the features at ``fit_date``, log it, register it and promote it when its
    silhouette on the same customers beats the champion's."""
    with connect(settings, read_only=True) as con:
        features = load_features(con, fit_date)
    inputs = features[segmentation.SEGMENT_INPUTS]
    model = segmentation.CustomerSegmentation(random_state=settings.random_seed).fit(inputs)
    metrics = {"silhouette": model.silhouettes_[model.k_], "k": float(model.k_),
               "repeat_buyer_share": float((inputs["frequency"].fillna(0) >= segmentation.MIN_ORDERS_TO_CLUSTER).mean()),
               **{f"silhouette_k{k}": score for k, score in model.silhouettes_.items()}}
    client = registry.configure(settings)
    experiment_id = registry.experiment_id(settings, client, segmentation.MODEL_NAME)
    with mlflow.start_run(experiment_id=experiment_id, run_name="kmeans") as run:
        mlflow.log_params({"features": ",".join(segmentation.SEGMENT_INPUTS), "fit_as_of_date": fit_date.isoformat(),
                           "k_range": f"{min(model.k_range)}-{max(model.k_range)}", "rows": len(inputs),
                           "min_orders_to_cluster": segmentation.MIN_ORDERS_TO_CLUSTER})
        mlflow.log_metrics(metrics)
        mlflow.log_input(mlflow.data.from_pandas(features[["as_of_date", *segmentation.SEGMENT_INPUTS]],
                                                 name=f"customer_features@{fit_date.isoformat()}"), context="training")
        mlflow.log_table(model.profiles(inputs).reset_index(), "segment_profiles.json")
        mlflow.log_figure(_segment_plot(model, inputs), "segment_projection.png")
        info = mlflow.sklearn.log_model(
            model, name="model", signature=infer_signature(inputs, model.predict(inputs)),
            input_example=inputs.head(5), registered_model_name=segmentation.MODEL_NAME,
            pip_requirements=registry.PIP_REQUIREMENTS,
            skops_trusted_types=registry.SKOPS_TRUSTED_TYPES + SEGMENTATION_TRUSTED_TYPES)
    version = str(info.registered_model_version)
    client.set_model_version_tag(segmentation.MODEL_NAME, version, "segment_names",
                                 json.dumps({str(k): v for k, v in model.segment_names_.items()}))
    current = registry.champion_version(client, segmentation.MODEL_NAME)
    champion_score = None
    if current is not None:
        champion_score = mlflow.sklearn.load_model(registry.model_uri(segmentation.MODEL_NAME)).silhouette(inputs)
    decision = registry.promote(client, segmentation.MODEL_NAME, version, run.info.run_id, "silhouette",
                                model.silhouette(inputs), champion_score, current.version if current else None)
    return TrainingReport(segmentation.MODEL_NAME, version, run.info.run_id, "kmeans", metrics, decision)


# The segmentation estimator and its feature functions, for skops to load them.
SEGMENTATION_TRUSTED_TYPES = [f"ml.segmentation.{name}" for name in
                              ("CustomerSegmentation", "_log_order_rate", "_order_rate_name")]


def _segment_plot(model: segmentation.CustomerSegmentation, inputs: pd.DataFrame):
    """The repeat buyers in the 2-D behaviour space the clusters live in, coloured by segment."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    buyers = inputs[inputs["frequency"].fillna(0) >= segmentation.MIN_ORDERS_TO_CLUSTER]
    buyers = buyers.sample(min(len(buyers), 5_000), random_state=0)
    points = model.pipeline_.named_steps["features"].transform(buyers)
    labels = model.predict(buyers)
    figure, axes = plt.subplots(figsize=(7, 5))
    for segment in np.unique(labels):
        chosen = labels == segment
        axes.scatter(points[chosen, 0], points[chosen, 1], s=4, alpha=0.5, label=model.segment_names_[int(segment)])
    axes.set_xlabel("orders per 30 days (log, standardised)")
    axes.set_ylabel("average order value (log, standardised)")
    axes.set_title(f"{segmentation.MODEL_NAME}: k = {model.k_}")
    axes.legend(markerscale=4)
    return figure

"""MLflow tracking and registry conventions: one experiment per model, aliases not stages.

A newly registered version gets the ``challenger`` alias; it becomes ``champion`` only when it
beats the current champion on the same validation data, or when there is no champion yet. The
decision and both scores are logged on the new version's run.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from crm.settings import Settings

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
# Explicit requirements skip MLflow's requirement inference, which costs seconds per logged model.
PIP_REQUIREMENTS = [f"{name}=={version(name)}" for name in ("scikit-learn", "numpy", "pandas", "scipy")]

# Models are saved with skops (no arbitrary pickle); these types occur in our fitted pipelines.
SKOPS_TRUSTED_TYPES = ["numpy.dtype", "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]


# MLflow's experiment settings: the classic model-training view (not the GenAI one) and a description.
EXPERIMENT_KIND_TAG, CLASSIC_TRAINING = "mlflow.experimentKind", "custom_model_development"
DESCRIPTION_TAG = "mlflow.note.content"
# What each registered model is, for an ML engineer in the registry or an experiment: what it
# predicts, its label, its inputs, where its scores go and how a version becomes champion. The
# figures of a version (its dates, rows, window) are in its own description and run.
MODEL_DESCRIPTIONS = {
    "crm_churn": (
        "Predicts the probability that a customer churns: places no order in the churn window after the "
        "scoring date (`churn_window_days` of each run). Label: `is_churned` of "
        "marts.customer_churn_labels, known once the window has closed. Inputs: the point-in-time "
        "features of marts.customer_features (the signature lists them). Scores: scores.churn with each "
        "customer's top drivers; marts.customer_360 bands them: high from {high}, medium from {medium}, "
        "else low. The candidates are graded by ROC-AUC at the validation date against the best recency "
        "rule; the selected one is refitted with the freshest labels and promoted when it beats the "
        "champion's method refitted on the same data."
    ),
    "crm_segmentation": (
        "Segments repeat buyers with k-means on how often they buy and how much they spend per order "
        "(k chosen by silhouette); customers with less history get the fixed segments 'Not yet "
        "purchased' and 'One-time buyers'. The segment names are each version's `segment_names` tag. "
        "Scores: scores.segments. Promoted when its silhouette beats the champion's on the same customers."
    ),
    "crm_satisfaction": (
        "Predicts the probability that a customer is satisfied: their first survey answer in the window "
        "after the scoring date is an NPS promoter or a CSAT of 4 or 5 (`is_satisfied` of "
        "marts.customer_satisfaction_labels). Inputs: the point-in-time features and the masked text of "
        "their recent tickets and survey comments. Scores: scores.satisfaction. Selected by ROC-AUC at "
        "the validation date, refitted with the freshest labels, promoted as churn is."
    ),
    "crm_clv": (
        "Predicts each customer's orders and revenue in EUR over the horizon after the scoring date "
        "(BG/NBD and Gamma-Gamma; `revenue_eur_in_horizon` of marts.customer_value_labels). Inputs: "
        "recency, frequency and order values from marts.customer_features. Scores: scores.clv with a "
        "value tier. Promoted when its Gini at the validation date beats the champion's."
    ),
    "crm_recommendations": (
        "Ranks the catalogue's products for each customer from what customers bought (implicit "
        "feedback). Graded by MAP at N on what customers bought in the window after the validation "
        "date; the selected method is refitted on every purchase up to the window's end. Scores: "
        "scores.recommendations. Promoted when it beats the champion's method refitted on the same history."
    ),
}


def model_description(model_name: str) -> str:
    """The registered model's description (MODEL_DESCRIPTIONS), with the figures defined elsewhere."""
    from crm.settings import dbt_project_vars

    return MODEL_DESCRIPTIONS.get(model_name, "").format(**dbt_project_vars()["churn_risk_bands"])


def configure(settings: Settings) -> MlflowClient:
    settings.mlflow_artifacts_dir.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_registry_uri(settings.mlflow_tracking_uri)
    return MlflowClient(settings.mlflow_tracking_uri, settings.mlflow_tracking_uri)


def experiment_id(settings: Settings, client: MlflowClient, model_name: str) -> str:
    """The model's experiment. With a local store its artifacts go under the configured artifact
    URL or folder (else MLflow would write ./mlruns); a tracking server decides for itself."""
    experiment = client.get_experiment_by_name(model_name)
    tags = {EXPERIMENT_KIND_TAG: CLASSIC_TRAINING, DESCRIPTION_TAG: model_description(model_name)}
    if experiment is not None:
        # Stores from before these tags get them on their next run; set ones are left as a user edited them.
        for key, value in tags.items():
            if key not in experiment.tags:
                client.set_experiment_tag(experiment.experiment_id, key, value)
        return experiment.experiment_id
    if settings.mlflow_tracking_uri.startswith(("http://", "https://")):
        return client.create_experiment(model_name, tags=tags)
    if settings.mlflow_artifacts_url:
        location = f"{settings.mlflow_artifacts_url}/{model_name}"
    else:
        location = (settings.mlflow_artifacts_dir / model_name).as_uri()
    return client.create_experiment(model_name, artifact_location=location, tags=tags)


# Each model's latest training attempt, on its experiment: when, and what came of it (a new version,
# or why it was skipped), for the run summary; the Airflow task's log has the details.
LAST_TRAINING_TAG = "crm.last_training"


def record_training(settings: Settings, client: MlflowClient, model_name: str, outcome: str) -> None:
    """Note ``outcome`` as the model's latest training attempt (on its experiment, created if need be)."""
    attempt = {"at": datetime.now(UTC).isoformat(timespec="seconds"), "outcome": outcome}
    client.set_experiment_tag(experiment_id(settings, client, model_name), LAST_TRAINING_TAG, json.dumps(attempt))


def training_attempts(client: MlflowClient) -> dict[str, dict[str, str]]:
    """Each model's latest training attempt (record_training), by registered name."""
    attempts = {}
    for model_name in sorted(MODEL_DESCRIPTIONS):
        experiment = client.get_experiment_by_name(model_name)
        if experiment is not None and LAST_TRAINING_TAG in experiment.tags:
            attempts[model_name] = json.loads(experiment.tags[LAST_TRAINING_TAG])
    return attempts


def champion_version(client: MlflowClient, model_name: str):
    try:
        return client.get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException:
        return None


def model_uri(model_name: str, alias: str = CHAMPION) -> str:
    return f"models:/{model_name}@{alias}"


@dataclass(frozen=True)
class PromotionDecision:
    model_name: str
    version: str
    promoted: bool
    challenger_score: float
    champion_version: str | None
    champion_score: float | None
    metric: str
    # How the champion was scored: as it is, or its method refitted on the challenger's training data.
    compared: str = "on the same validation data"

    def describe(self) -> str:
        if self.champion_version is None:
            return f"{self.model_name} v{self.version} is champion: no champion existed"
        tie = self.promoted and self.challenger_score == self.champion_score
        verb = "ties with" if tie else "replaces" if self.promoted else "does not beat"
        return (
            f"{self.model_name} v{self.version} ({self.metric} {self.challenger_score:.4f}) {verb} "
            f"champion v{self.champion_version} ({self.metric} {self.champion_score:.4f}) {self.compared}"
            + (" and serves: it was fitted on fresher labels" if tie else "")
        )


def promote(
    client: MlflowClient,
    model_name: str,
    new_version: str,
    run_id: str,
    metric: str,
    challenger_score: float,
    champion_score: float | None,
    current_champion: str | None,
    compared: str | None = None,
    fresher: bool = False,
) -> PromotionDecision:
    """Alias the new version challenger, and champion when it wins; log the decision on its run.

    ``compared`` says how the champion was scored when not as it is (its method refitted); with
    ``fresher`` (the new version learned from later labels than the champion), a tie promotes it: the
    same method scores the same, and the fresher fit serves."""
    client.set_registered_model_alias(model_name, CHALLENGER, new_version)
    promoted = (
        current_champion is None
        or champion_score is None
        or challenger_score > champion_score
        or (fresher and challenger_score == champion_score)
    )
    if promoted:
        client.set_registered_model_alias(model_name, CHAMPION, new_version)
    decision = PromotionDecision(
        model_name,
        new_version,
        promoted,
        challenger_score,
        current_champion,
        champion_score,
        metric,
        *([compared] if compared else []),
    )
    client.set_tag(run_id, "promotion_decision", "champion" if promoted else "challenger")
    client.set_tag(run_id, "promotion_reason", decision.describe())
    describe_versions(client, model_name, new_version, run_id, decision)
    client.log_metric(run_id, f"challenger_{metric}", challenger_score)
    if champion_score is not None:
        client.log_metric(run_id, f"previous_champion_{metric}", champion_score)
    log.info("promotion: %s", decision.describe())
    return decision


# A run's params that say what data a version learned from and was graded on.
DATA_WINDOW_PARAMS = (
    "data_window_start",
    "data_window_end",
    "train_as_of_date",
    "refit_as_of_dates",
    "validation_as_of_date",
    "fit_as_of_date",
    "history_until_date",
    "fit_until_date",
    "churn_window_days",
    "label_window_days",
    "clv_horizon_days",
    "evaluation_window_days",
    "train_rows",
    "validation_rows",
    "rows",
    "customers",
)


def describe_versions(
    client: MlflowClient, model_name: str, version: str, run_id: str, decision: PromotionDecision
) -> None:
    """Describe the new version and the registered model after a promotion decision."""
    describe_version(client, model_name, version, run_id, decision.describe())
    describe_model(client, model_name, version if decision.promoted else decision.champion_version, version)


def describe_version(client: MlflowClient, model_name: str, version: str, run_id: str, promotion: str) -> None:
    """A version's description: the data window its run learned from, and why it is or is not champion."""
    params = client.get_run(run_id).data.params
    window = ", ".join(f"{name} {params[name]}" for name in DATA_WINDOW_PARAMS if name in params)
    client.update_model_version(
        model_name, version, description=f"Data: {window or 'see its run'}. Promotion: {promotion.rstrip('.')}."
    )


def describe_model(client: MlflowClient, model_name: str, champion: str | None, challenger: str) -> None:
    """The registered model's description (what it is, which versions are champion and challenger) and
    tags naming them: the registry's list shows a model's tags, not every alias."""
    client.update_registered_model(
        model_name,
        description=model_description(model_name) + f"\n\nChampion: v{champion}; challenger: v{challenger}.",
    )
    client.set_registered_model_tag(model_name, CHAMPION, f"v{champion}")
    client.set_registered_model_tag(model_name, CHALLENGER, f"v{challenger}")


def registered_models_summary(client: MlflowClient) -> list[dict[str, object]]:
    """Every registered model with its latest version and aliases, for the run summary."""
    summary = []
    for model in client.search_registered_models():
        versions = client.search_model_versions(f"name = '{model.name}'")
        summary.append(
            {
                "name": model.name,
                "latest_version": max((int(v.version) for v in versions), default=None),
                "aliases": dict(sorted((alias, str(v)) for alias, v in (model.aliases or {}).items())),
            }
        )
    return sorted(summary, key=lambda item: str(item["name"]))

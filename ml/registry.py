"""MLflow tracking and registry conventions: one experiment per model, aliases not stages.

A newly registered version gets the ``challenger`` alias; it becomes ``champion`` only when it
beats the current champion on the same validation data, or when there is no champion yet. The
decision and both scores are logged on the new version's run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
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


def configure(settings: Settings) -> MlflowClient:
    settings.mlflow_artifacts_dir.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_registry_uri(settings.mlflow_tracking_uri)
    return MlflowClient(settings.mlflow_tracking_uri, settings.mlflow_tracking_uri)


def experiment_id(settings: Settings, client: MlflowClient, model_name: str) -> str:
    """The model's experiment. With a local store its artifacts go under the configured artifact
    URL or folder (else MLflow would write ./mlruns); a tracking server decides for itself."""
    experiment = client.get_experiment_by_name(model_name)
    if experiment is not None:
        return experiment.experiment_id
    if settings.mlflow_tracking_uri.startswith(("http://", "https://")):
        return client.create_experiment(model_name)
    if settings.mlflow_artifacts_url:
        return client.create_experiment(model_name, artifact_location=f"{settings.mlflow_artifacts_url}/{model_name}")
    location = (settings.mlflow_artifacts_dir / model_name).as_uri()
    return client.create_experiment(model_name, artifact_location=location)


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
    client.log_metric(run_id, f"challenger_{metric}", challenger_score)
    if champion_score is not None:
        client.log_metric(run_id, f"previous_champion_{metric}", champion_score)
    log.info("promotion: %s", decision.describe())
    return decision


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

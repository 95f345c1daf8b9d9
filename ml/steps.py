"""The model package's pipeline steps: train, preflight, score, monitor, evaluate against the
generator's truth, and the registered models for the run summary.

The `crm` command and crm.pipeline find them by their entry points (group ``crm.model_steps`` in
pyproject.toml), the DAGs through ml.tasks: the model package builds on the platform, never the
other way round.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import date

from crm.gates import record_gate_results
from crm.pipeline import MODELS, first_order_day, plan
from crm.quality import QualityGate
from crm.settings import Settings, hmac_pads
from crm.warehouse import open_warehouse
from ml import churn, clv, recommend, registry, satisfaction, segmentation
from ml.ground_truth import evaluate
from ml.preflight import TrainingSkipped
from ml.scoring import SCORERS, NoChampion, read_scoring_inputs
from ml.training import (
    preflight_check,
    train_churn,
    train_clv,
    train_recommendations,
    train_satisfaction,
    train_segmentation,
)

log = logging.getLogger(__name__)

# The models as the steps name them, and as the registry does.
REGISTERED_NAMES = {
    "churn": churn.MODEL_NAME,
    "segments": segmentation.MODEL_NAME,
    "satisfaction": satisfaction.MODEL_NAME,
    "clv": clv.MODEL_NAME,
    "recommendations": recommend.MODEL_NAME,
}


def train(settings: Settings, model: str = "churn") -> dict[str, object]:
    """Train, register and promote ``model`` (churn, segments, satisfaction, clv or recommendations).

    Churn, satisfaction and lifetime value train at the training date and validate at the validation
    date (churn and satisfaction then refit the selected candidate on both dates), and raise
    ml.preflight.TrainingSkipped when the data does not suffice; the segmentation fits
    at the validation date; recommendations learn from the purchases up to the validation date and
    are graded on the window after it.
    """
    as_of = plan(settings)
    try:
        if model == "segments":
            report = train_segmentation(settings, as_of.validation)
        elif model == "recommendations":
            report = train_recommendations(settings, as_of.validation)
        else:
            trainer = {"churn": train_churn, "satisfaction": train_satisfaction, "clv": train_clv}[model]
            report = trainer(settings, as_of.train, as_of.validation, first_order_day(settings))
    except TrainingSkipped as skipped:
        registry.record_training(settings, registry.configure(settings), REGISTERED_NAMES[model], f"skipped: {skipped}")
        raise
    outcome = f"v{report.version} registered: {report.decision.describe()}"
    registry.record_training(settings, registry.configure(settings), report.model_name, outcome)
    return {
        "model": report.model_name,
        "version": report.version,
        "candidate": report.candidate,
        "rows": report.rows,
        "metrics": report.metrics,
        "decision": report.decision.describe(),
    }


def preflight(settings: Settings) -> dict[str, dict[str, object]]:
    """The training preflight of the models that learn from outcomes (churn, satisfaction, lifetime value,
    recommendations) without training: per model whether it passes, the reasons when not, and notes.
    The segmentation needs no labels."""
    as_of = plan(settings)
    first_day = first_order_day(settings)
    results = {}
    for model in ("churn", "satisfaction", "clv", "recommendations"):
        check = preflight_check(settings, model, as_of.train, as_of.validation, first_day)
        results[model] = {"passed": check.passed, "reasons": check.reasons, "notes": check.notes}
    return results


def score(settings: Settings, models: tuple[str, ...] = MODELS, daily: bool = False) -> dict[str, dict[str, object]]:
    """Score every customer known at the scoring date with the champion of each of ``models`` (churn,
    segments, satisfaction, clv, recommendations), in one process: the features are read once, and the
    imports and the quality gate's context are paid once instead of once per model.

    ``daily`` (crm_daily) refreshes the recommendations only on CRM_RECOMMENDATIONS_WEEKDAY: the latest
    stay in scores.recommendations and the BI table. A model without a champion yet is skipped
    (``{"skipped": reason}``); raises ml.scoring.NoChampion when none of them has one. A blocking score
    gate raises before that model's rows are written (the models scored before it keep their new rows,
    each replaced in its own transaction).
    """
    as_of_date = plan(settings).scoring
    quality = QualityGate(settings, as_of_date)
    results: dict[str, dict[str, object]] = {}
    if "recommendations" in models and daily and not settings.recommendations_due(as_of_date):
        results["recommendations"] = {
            "skipped": f"crm_daily refreshes recommendations on {settings.recommendations_weekday}s "
            "(CRM_RECOMMENDATIONS_WEEKDAY); the latest stay published"
        }
        log.info("recommendations not scored at %s: %s", as_of_date, results["recommendations"]["skipped"])
    # Read once for every model left (nothing when none is: a scoring task of recommendations alone).
    inputs = read_scoring_inputs(settings, as_of_date) if set(models) - set(results) else None
    try:
        for model in models:
            if model in results:
                continue
            try:
                report = SCORERS[model](settings, inputs, quality)
            except NoChampion as missing:
                log.info("%s not scored: %s", model, missing)
                results[model] = {"skipped": str(missing)}
                continue
            results[model] = {**asdict(report), "as_of_date": report.as_of_date.isoformat()}
    finally:
        quality.build_data_docs()
        record_gate_results(settings, quality)
    results = {model: results[model] for model in models if model in results}
    if all("skipped" in result for result in results.values()):
        raise NoChampion("; ".join(result["skipped"] for result in results.values()))
    return results


def monitor(settings: Settings, since: date | None = None) -> dict[str, object]:
    """Backtests, drift and alerts of every scoring date from ``since`` on not monitored yet (ml.monitoring)."""
    from ml.monitoring import monitor as monitor_models

    return monitor_models(settings, since).as_dict()


def evaluate_against_truth(settings: Settings) -> dict[str, object]:
    """Model quality against the generator's ground truth (only for generated data; see ml.ground_truth)."""
    with open_warehouse(settings, read_only=True) as warehouse:
        # The identity view hashes the ids of erased kinds: the session needs the key's pads.
        warehouse.set_pii_pads(*hmac_pads(settings.pii_hash_key()))
        return evaluate(warehouse, settings.truth_dir)


def registered_models(settings: Settings) -> dict[str, object]:
    """Each registered model's champion and challenger, for the run summary."""
    return registry.registered_models_summary(registry.configure(settings))


def training_attempts(settings: Settings) -> dict[str, dict[str, str]]:
    """Each model's latest training attempt (a new version, or why it was skipped), for the run summary."""
    return registry.training_attempts(registry.configure(settings))

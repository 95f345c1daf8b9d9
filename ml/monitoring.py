"""Models that are watched: backtests of stored scores whose outcome window has closed, drift of the
inputs and of the scores against the data the scoring version trained on, and alerts.

Every scoring date is monitored once per scoring: the tables below keep, per model and scoring date,
what the scores of that date were (their ``scored_at``), so a run computes only what is missing or
was scored again since (``crm monitor --since DATE`` backfills; a rerun changes nothing). The
outcomes are the warehouse's labels (dbt's customer_churn_labels at the closed scoring dates), the
same definition training learns from.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException

from crm.landing import LOAD_LOG_TABLE
from crm.pipeline import build_outcomes
from crm.score_tables import (
    ALERTS_TABLE,
    BACKTESTS_TABLE,
    CALIBRATION_TABLE,
    CHURN_SCORES_TABLE,
    CLV_SCORES_TABLE,
    DRIFT_TABLE,
    MONITORING_TABLES,
    SATISFACTION_SCORES_TABLE,
    SCORE_FEATURE,
    ensure_tables,
)
from crm.settings import Settings
from crm.warehouse import Warehouse, open_warehouse
from ml import calibration, churn, clv, plots, registry, satisfaction
from ml.features import (
    CALENDAR_FEATURES,
    CHURN_LABELS_TABLE,
    FEATURE_COLUMNS,
    SATISFACTION_LABELS_TABLE,
    VALUE_LABELS_TABLE,
    input_example,
    load_features,
    load_features_with_text,
)
from ml.metrics import calibration_error_by_chance, classification_metrics

log = logging.getLogger(__name__)

PSI_BINS = 10
# A bin that one side leaves empty counts as this share: PSI stays finite and a rare new value still weighs.
PSI_FLOOR = 1e-4
# Where training logs a version's reference profile (reference_profile), in its run's artifacts.
REFERENCE_PROFILE = "monitoring/reference_profile.json"
DEGRADED_KINDS = ("score_drift", "backtest_degraded")
BACKTEST_METRICS = ("roc_auc", "pr_auc", "brier", "ece", "lift_top_decile", "positive_rate")
# Beside them: the ECE a calibrated model exceeds only by chance on as many customers (95th percentile).
ECE_BY_CHANCE = "ece_by_chance"
# Lifetime value's, as its training logs them (clv.value_metrics).
VALUE_BACKTEST_METRICS = ("spearman", "gini", "mae", "total_ratio", "decile_calibration_error")


@dataclass(frozen=True)
class MonitoredModel:
    """A scored model whose outcome the warehouse learns later."""

    model: str  # as pipeline.MODELS names it
    registered_name: str
    scores_table: str
    score_column: str
    labels_table: str  # its labels at an as-of date (dbt, tag:monitoring), observed once the window closed
    label: str
    window_column: str  # the labels' window length (days)
    model_inputs: list[str]  # what the model predicts from
    drift_inputs: list[str]  # the inputs checked for drift: the numeric ones
    read_inputs: Callable[[Warehouse, date], pd.DataFrame]  # model_inputs of every customer known at a date
    # "probability": a classifier's probability of a yes/no outcome (backtested on ROC-AUC and calibration,
    # recalibrated when its calibration drifts); "value": expected revenue in EUR of the buyers
    # (backtested on the normalised Gini and the totals, against the realised revenue).
    kind: str = "probability"

    @property
    def is_probability(self) -> bool:
        return self.kind == "probability"

    @property
    def quality_metric(self) -> str:
        """The backtest metric compared with the version's validation (its training's selection metric)."""
        return "roc_auc" if self.is_probability else clv.SELECTION_METRIC

    @property
    def backtest_metrics(self) -> tuple[str, ...]:
        return BACKTEST_METRICS if self.is_probability else VALUE_BACKTEST_METRICS

    def window_days(self, settings: Settings) -> int:
        return settings.churn_window_days if self.is_probability else settings.clv_horizon

    def metrics(self, outcome: np.ndarray, score: np.ndarray) -> dict[str, float]:
        return classification_metrics(outcome, score) if self.is_probability else clv.value_metrics(outcome, score)

    def predict(self, fitted, inputs: pd.DataFrame) -> np.ndarray:
        """The scores a fitted version gives, as the scoring step stores them (a prospect has no value)."""
        if self.is_probability:
            return fitted.predict_proba(inputs[self.model_inputs])[:, 1]
        return np.where(inputs["frequency"].to_numpy() >= 1, fitted.predict(inputs[self.model_inputs]), np.nan)


MONITORED = (
    MonitoredModel(
        "churn",
        churn.MODEL_NAME,
        CHURN_SCORES_TABLE,
        "churn_probability",
        CHURN_LABELS_TABLE,
        churn.LABEL,
        "churn_window_days",
        FEATURE_COLUMNS,
        FEATURE_COLUMNS,
        load_features,
    ),
    # The customers who answered a survey in the window after the date: was the first answer satisfied?
    MonitoredModel(
        "satisfaction",
        satisfaction.MODEL_NAME,
        SATISFACTION_SCORES_TABLE,
        "satisfied_probability",
        SATISFACTION_LABELS_TABLE,
        satisfaction.LABEL,
        "label_window_days",
        satisfaction.INPUT_COLUMNS,
        FEATURE_COLUMNS,
        load_features_with_text,
    ),
    # The buyers' expected revenue in the horizon after the date against what they spent in it.
    MonitoredModel(
        "clv",
        clv.MODEL_NAME,
        CLV_SCORES_TABLE,
        "expected_revenue_eur",
        VALUE_LABELS_TABLE,
        clv.LABEL,
        "clv_horizon_days",
        FEATURE_COLUMNS,
        FEATURE_COLUMNS,
        load_features,
        kind="value",
    ),
)


@dataclass
class MonitoringReport:
    """What a monitoring run computed, per model: the dates backtested and checked for drift, the alerts."""

    backtested: dict[str, list[str]] = field(default_factory=dict)
    drift_checked: dict[str, list[str]] = field(default_factory=dict)
    alerts: list[str] = field(default_factory=list)
    # The models whose scores drifted or whose backtest fell below their validation (DEGRADED_KINDS), or
    # whose calibration drifted beyond what recalibrating the champion mends: a challenger should be
    # trained. Input drift alone is a warning.
    degraded: list[str] = field(default_factory=list)
    # The monitoring report rewritten for each model (an HTML page with its plots).
    reports: dict[str, str] = field(default_factory=dict)
    # Per model whose backtest calibration crossed its limit: what recalibrating its champion did.
    recalibrated: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "backtested": self.backtested,
            "drift_checked": self.drift_checked,
            "alerts": self.alerts,
            "degraded": self.degraded,
            "reports": self.reports,
            "recalibrated": self.recalibrated,
        }


# Pure computations ---------------------------------------------------------------------------------


def distribution(values: np.ndarray, bins: int = PSI_BINS) -> dict[str, list[float]]:
    """A reference distribution: the inner edges of ``bins`` quantile bins of the known values (ties
    merge bins: a feature with few values gets a bin per value), and the share of the values in each
    bin, the last share being the missing values'. What a drift check needs of the training data."""
    values = np.asarray(values, dtype=float)
    known = values[~np.isnan(values)]
    edges = np.unique(np.quantile(known, np.linspace(0, 1, bins + 1)[1:-1])) if len(known) else np.array([])
    return {"edges": edges.tolist(), "shares": _shares(edges, values).tolist()}


def _shares(edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    missing = np.isnan(values)
    counts = np.bincount(np.searchsorted(edges, values[~missing], side="right"), minlength=len(edges) + 1)
    return np.append(counts, missing.sum()) / max(len(values), 1)


def psi_against(reference: dict[str, list[float]], current: np.ndarray) -> float:
    """Population stability index of ``current`` against a reference ``distribution``: the sum over
    its bins of (current share - reference share) * ln(current share / reference share), missing
    values a bin of their own (a source that stops delivering shows as drift). An empty bin counts as
    PSI_FLOOR, so the index stays finite."""
    expected = np.maximum(np.asarray(reference["shares"], dtype=float), PSI_FLOOR)
    actual = np.maximum(_shares(np.asarray(reference["edges"]), np.asarray(current, dtype=float)), PSI_FLOOR)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def reference_profile(model: MonitoredModel, features: pd.DataFrame, fitted, as_of_date: date) -> dict[str, object]:
    """What a version's drift is checked against: the distribution of each drift input of every customer
    known at its training date, and of its scores of them. Logged with the version (training) as
    REFERENCE_PROFILE, so drift needs neither the training data nor the warehouse it came from."""
    scores = model.predict(fitted, features)
    return {
        "reference_date": as_of_date.isoformat(),
        "customers": len(features),
        "distributions": {
            **{column: distribution(features[column].to_numpy(dtype=float)) for column in model.drift_inputs},
            SCORE_FEATURE: distribution(scores),
        },
    }


def log_reference_profile(settings: Settings, model_name: str, fitted, as_of_date: date) -> None:
    """Log the reference profile of ``fitted`` (the version being registered, of the model named
    ``model_name`` in pipeline.MODELS) at its training date into the active MLflow run."""
    model = next(monitored for monitored in MONITORED if monitored.model == model_name)
    with open_warehouse(settings, read_only=True) as warehouse:
        features = model.read_inputs(warehouse, as_of_date)
    mlflow.log_dict(reference_profile(model, features, fitted, as_of_date), REFERENCE_PROFILE)


def drift_table(profile: dict[str, object], current: pd.DataFrame) -> pd.DataFrame:
    """Per profiled column (the score included, as SCORE_FEATURE): PSI against the profile, and the
    shares of missing values now and in the reference."""
    distributions = profile["distributions"]
    return pd.DataFrame(
        [
            {
                "feature": column,
                "psi": psi_against(reference, current[column].to_numpy(dtype=float)),
                "missing_share": float(current[column].isna().mean()) if len(current) else np.nan,
                "reference_missing_share": float(reference["shares"][-1]),
            }
            for column, reference in distributions.items()
        ]
    )


def calibration_by_decile(outcome: np.ndarray, score: np.ndarray) -> pd.DataFrame:
    """The customers in ten equal-size groups by score (1 = lowest): mean score and realised rate."""
    order = np.argsort(np.asarray(score, dtype=float), kind="stable")
    groups = np.array_split(order, 10)
    score, outcome = np.asarray(score, dtype=float), np.asarray(outcome, dtype=float)
    return pd.DataFrame(
        [
            {
                "decile": decile,
                "customers": len(group),
                "mean_score": float(score[group].mean()),
                "realised_rate": float(outcome[group].mean()),
            }
            for decile, group in enumerate(groups, start=1)
            if len(group)
        ]
    )


# The monitoring run ---------------------------------------------------------------------------------


def monitor(settings: Settings, since: date | None = None) -> MonitoringReport:
    """Backtest and drift-check every stored scoring date from ``since`` on (all when None) that is not
    monitored yet or was scored again since; store the results and the alerts, and log them to each
    model's monitoring run in MLflow. Returns what it computed and the alerts it raised."""
    report = MonitoringReport()
    with open_warehouse(settings) as warehouse:
        ensure_tables(warehouse, MONITORING_TABLES)
        plans = {model.model: _plan(warehouse, model, settings, since) for model in MONITORED}
    to_label = sorted({day for plan in plans.values() for day in plan.backtest})
    if to_label:
        build_outcomes(settings, to_label)
    client = registry.configure(settings)
    for model in MONITORED:
        plan = plans[model.model]
        results = _compute(settings, client, model, plan)
        with open_warehouse(settings) as warehouse:
            for table, frames in results.items():
                for day, frame in frames.items():
                    _replace(warehouse, table, model, day, frame)
        report.backtested[model.model] = [day.isoformat() for day in sorted(results[BACKTESTS_TABLE])]
        report.drift_checked[model.model] = [day.isoformat() for day in sorted(results[DRIFT_TABLE])]
        for frame in results[ALERTS_TABLE].values():
            for message in frame["message"]:
                log.warning("monitoring alert: %s", message)
                report.alerts.append(message)
            if frame["kind"].isin(DEGRADED_KINDS).any() and model.model not in report.degraded:
                report.degraded.append(model.model)
        _log_to_mlflow(client, settings, model, results)
        outcome = recalibrate_champion(settings, client, model, results[BACKTESTS_TABLE], results[ALERTS_TABLE])
        if outcome is not None:
            log.warning("monitoring: %s", outcome.message)
            report.recalibrated[model.model] = outcome.message
            # Probabilities off that a calibrator cannot mend: a challenger should be trained.
            if not outcome.promoted and model.model not in report.degraded:
                report.degraded.append(model.model)
        if any(results[table] for table in (DRIFT_TABLE, BACKTESTS_TABLE)):
            path = write_report(settings, client, model)
            if path is not None:
                report.reports[model.model] = str(path)
    return report


@dataclass(frozen=True)
class _Plan:
    scored: pd.DataFrame  # scoring_date, model_version, run_id, scored_at (one row per date)
    drift: list[date]
    backtest: list[date]


def _plan(warehouse: Warehouse, model: MonitoredModel, settings: Settings, since: date | None) -> _Plan:
    """The scoring dates to check for drift (not checked since they were scored) and to backtest (the
    same, among those whose outcome window has closed)."""
    if not warehouse.table_exists(model.scores_table):
        return _Plan(pd.DataFrame(), [], [])
    scored = warehouse.frame(
        f"select as_of_date as scoring_date, min(model_version) as model_version, min(run_id) as run_id, "
        f"max(scored_at) as scored_at from {model.scores_table} "
        f"where as_of_date >= cast(? as date) group by as_of_date order by as_of_date",
        [since or date(1900, 1, 1)],
    )
    scored["scoring_date"] = pd.to_datetime(scored["scoring_date"]).dt.date
    horizon = warehouse.row(f"select max(partition_date) from {LOAD_LOG_TABLE} where source = 'orders'")[0]
    closed = {
        day
        for day in scored["scoring_date"]
        if horizon is not None and day + timedelta(model.window_days(settings)) <= horizon
    }

    def pending(table: str, candidates: set[date]) -> list[date]:
        done = warehouse.frame(
            f"select scoring_date, max(scored_at) as scored_at from {table} where model_name = ? group by scoring_date",
            [model.registered_name],
        )
        done_at = {
            pd.Timestamp(day).date(): pd.Timestamp(at)
            for day, at in zip(done["scoring_date"], done["scored_at"], strict=True)
        }
        return sorted(
            day
            for day, at in zip(scored["scoring_date"], scored["scored_at"], strict=True)
            if day in candidates and done_at.get(day) != pd.Timestamp(at)
        )

    return _Plan(scored, pending(DRIFT_TABLE, set(scored["scoring_date"])), pending(BACKTESTS_TABLE, closed))


@dataclass
class Reference:
    """What a version's scores are compared with: its reference profile (None when there is none) and
    its validation score on the model's quality metric (ROC-AUC, or Gini for lifetime value)."""

    profile: dict[str, object] | None
    validation_score: float | None

    @property
    def date(self) -> date | None:
        return date.fromisoformat(self.profile["reference_date"]) if self.profile else None


def _compute(settings: Settings, client, model: MonitoredModel, plan: _Plan) -> dict[str, dict[date, pd.DataFrame]]:
    """Per monitoring table, the rows of each scoring date computed (alerts for every date touched)."""
    results: dict[str, dict[date, pd.DataFrame]] = {table: {} for table in MONITORING_TABLES}
    days = sorted(set(plan.drift) | set(plan.backtest))
    if not days:
        return results
    computed_at = pd.Timestamp(datetime.now(UTC).replace(tzinfo=None))
    versions = plan.scored.set_index("scoring_date")
    references: dict[str, Reference] = {}
    with open_warehouse(settings, read_only=True) as warehouse:
        for day in days:
            version, run_id, scored_at = versions.loc[day, ["model_version", "run_id", "scored_at"]]
            meta = {
                "model_name": model.registered_name,
                "model_version": str(version),
                "run_id": run_id,
                "scoring_date": day,
            }
            when = {"scored_at": pd.Timestamp(scored_at), "computed_at": computed_at}
            scores = warehouse.frame(
                f"select customer_key, {model.score_column} as score from {model.scores_table} "
                "where as_of_date = cast(? as date)",
                [day],
            )
            if run_id not in references:
                references[run_id] = _reference(warehouse, client, model, str(version), run_id)
            reference = references[run_id]
            if day in plan.drift:
                drift = _drift(warehouse, model, reference, day, scores)
                if drift is not None:
                    results[DRIFT_TABLE][day] = drift.assign(
                        **meta, reference_date=reference.date, psi_limit=_psi_limits(settings, drift), **when
                    )
            if day in plan.backtest:
                backtest = _backtest(warehouse, model, settings, day, scores)
                if backtest is not None:
                    metrics, calibration = backtest
                    results[BACKTESTS_TABLE][day] = metrics.assign(**meta, **when)
                    results[CALIBRATION_TABLE][day] = calibration.assign(**meta, **when)
            drift = results[DRIFT_TABLE].get(day)
            if drift is None:
                drift = _stored(warehouse, DRIFT_TABLE, model, day)
            metrics = results[BACKTESTS_TABLE].get(day)
            if metrics is None:
                metrics = _stored(warehouse, BACKTESTS_TABLE, model, day)
            results[ALERTS_TABLE][day] = alerts_for(settings, model, day, drift, metrics, reference).assign(
                **meta, **when
            )
    return {
        table: {day: frame.reindex(columns=list(MONITORING_TABLES[table])) for day, frame in frames.items()}
        for table, frames in results.items()
    }


def _reference(warehouse: Warehouse, client, model: MonitoredModel, version: str, run_id: str) -> Reference:
    """The version's reference profile as its training logged it; for a version trained before profiles
    were logged, one computed from the features at its training date, where the warehouse has them."""
    run = _run(client, run_id)
    if run is None:
        log.warning(
            "%s v%s: its run %s is not in this MLflow store: no drift against it",
            model.registered_name,
            version,
            run_id,
        )
        return Reference(None, None)
    validation_score = run.data.metrics.get(model.quality_metric)
    try:
        return Reference(mlflow.artifacts.load_dict(f"runs:/{run_id}/{REFERENCE_PROFILE}"), validation_score)
    except (MlflowException, OSError):
        log.info("%s v%s logged no reference profile: computed from its training date", model.registered_name, version)
    train_date = run.data.params.get("train_as_of_date")
    features = model.read_inputs(warehouse, date.fromisoformat(train_date)) if train_date else pd.DataFrame()
    if features.empty:
        log.warning(
            "%s v%s: no reference profile and no features at its training date (%s): no drift against it",
            model.registered_name,
            version,
            train_date,
        )
        return Reference(None, validation_score)
    fitted = mlflow.sklearn.load_model(f"models:/{model.registered_name}/{version}")
    return Reference(reference_profile(model, features, fitted, date.fromisoformat(train_date)), validation_score)


def _run(client, run_id: str):
    """The MLflow run, or None when this store does not hold it (a warehouse scored with another store)."""
    try:
        return client.get_run(run_id)
    except MlflowException:
        return None


def _drift(
    warehouse: Warehouse, model: MonitoredModel, reference: Reference, day: date, scores: pd.DataFrame
) -> pd.DataFrame | None:
    if reference.profile is None:
        return None
    current = model.read_inputs(warehouse, day)
    if current.empty:
        log.warning("%s: no features stored at %s: no drift computed for it", model.registered_name, day)
        return None
    current = current.merge(scores.rename(columns={"score": SCORE_FEATURE}), on="customer_key", how="left")
    return drift_table(reference.profile, current)


def _outcomes(warehouse: Warehouse, model: MonitoredModel, settings: Settings, day: date) -> pd.DataFrame:
    """customer_key and outcome of every customer whose outcome in the window after ``day`` was observed."""
    return warehouse.frame(
        f"select customer_key, {model.label} as outcome from {model.labels_table} "
        f"where as_of_date = cast(? as date) and is_label_observed and {model.window_column} = ?",
        [day, model.window_days(settings)],
    )


def _backtest(
    warehouse: Warehouse, model: MonitoredModel, settings: Settings, day: date, scores: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    outcomes = _outcomes(warehouse, model, settings, day)
    joined = scores.merge(outcomes, on="customer_key", how="inner").dropna(subset=["score", "outcome"])
    outcome = joined["outcome"].to_numpy(dtype=float)
    if len(np.unique(outcome)) < 2:
        log.info("%s at %s: %d outcomes, all alike: no backtest", model.registered_name, day, len(outcome))
        return None
    score = joined["score"].to_numpy(dtype=float)
    metrics = model.metrics(outcome, score)
    names = list(model.backtest_metrics)
    if model.is_probability:
        metrics[ECE_BY_CHANCE] = calibration_error_by_chance(score, settings.random_seed)
        names.append(ECE_BY_CHANCE)
    frame = pd.DataFrame({"metric": names, "value": [metrics[name] for name in names], "customers": len(joined)})
    return frame, calibration_by_decile(outcome, score)


@dataclass(frozen=True)
class RecalibrationOutcome:
    message: str
    promoted: bool  # a recalibrated version is champion


def recalibrate_champion(
    settings: Settings,
    client,
    model: MonitoredModel,
    backtests: dict[date, pd.DataFrame],
    alerts: dict[date, pd.DataFrame],
) -> RecalibrationOutcome | None:
    """When the latest date just backtested was scored by the current champion and raised a
    calibration_drift alert (alerts_for decides), calibrate the champion on those outcomes (ml.calibration) and
    register the result as a new version, promoted when its error out of sample is lower; say what
    was done and whether a recalibrated version serves (None: nothing to do). A recalibrated
    version's reference profile is that date's: the data its probabilities were last fitted to."""
    if not backtests or not model.is_probability:
        return None
    day = max(backtests)
    frame = backtests[day]
    if "calibration_drift" not in set(alerts[day]["kind"]):
        return None
    name, scored_by = model.registered_name, str(frame["model_version"].iloc[0])
    champion = registry.champion_version(client, name)
    if champion is None or str(champion.version) != scored_by:
        return None  # a newer champion serves: its own backtests will tell
    with open_warehouse(settings, read_only=True) as warehouse:
        features = model.read_inputs(warehouse, day)
        labelled = features.merge(_outcomes(warehouse, model, settings, day), on="customer_key", how="inner")
    labelled = labelled.dropna(subset=["outcome"])
    fitted = mlflow.sklearn.load_model(f"models:/{name}/{scored_by}")
    result = calibration.recalibrate(
        fitted, labelled[model.model_inputs], labelled["outcome"].to_numpy(dtype=int), settings.random_seed
    )
    if not result.improves:
        return RecalibrationOutcome(
            f"{name} v{scored_by}: recalibrating it on the outcomes of {day} would not lower its calibration error "
            f"out of sample (ECE {result.ece_before:.3f} -> {result.ece_after:.3f}): it stays champion",
            promoted=False,
        )
    base_run = client.get_run(champion.run_id)
    experiment_id = registry.experiment_id(settings, client, name)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"recalibration v{scored_by}") as run:
        mlflow.log_params(
            {
                **base_run.data.params,
                "calibrated_version": scored_by,
                "calibration_as_of_date": day.isoformat(),
                "calibration_method": result.method,
                "calibration_customers": result.customers,
            }
        )
        # The version's validation metrics carry over (a monotone calibrator keeps its ranking, isotonic
        # regression up to ties: the backtests compare their ROC-AUC with it); the calibration errors
        # are this run's own.
        mlflow.log_metrics(
            {
                **base_run.data.metrics,
                "recalibration_ece_before": result.ece_before,
                "recalibration_ece_held_out": result.ece_after,
            }
        )
        mlflow.log_dict(reference_profile(model, features, result.pipeline, day), REFERENCE_PROFILE)
        info = mlflow.sklearn.log_model(
            result.pipeline,
            name="model",
            signature=mlflow.models.get_model_info(f"models:/{name}/{scored_by}").signature,
            input_example=input_example(labelled[model.model_inputs]),
            registered_model_name=name,
            pip_requirements=registry.PIP_REQUIREMENTS,
            skops_trusted_types=[
                *registry.SKOPS_TRUSTED_TYPES,
                *calibration.CALIBRATION_TRUSTED_TYPES,
                *satisfaction.TEXT_TRUSTED_TYPES,
            ],
        )
        version = str(info.registered_model_version)
        message = (
            f"{name} v{version}: v{scored_by} recalibrated on the outcomes of {day} (ECE {result.ece_before:.3f} -> "
            f"{result.ece_after:.3f} out of sample, {result.method}, {result.customers:,} customers), promoted champion"
        )
        mlflow.set_tags(
            {"calibration_of_run": champion.run_id, "promotion_decision": "champion", "promotion_reason": message}
        )
    for tag, value in champion.tags.items():  # what scoring reads of a version, the drivers' candidates
        client.set_model_version_tag(name, version, tag, value)
    client.set_model_version_tag(name, version, "calibration_of", scored_by)
    client.set_model_version_tag(name, version, "calibrated_on", day.isoformat())
    client.set_registered_model_alias(name, registry.CHALLENGER, version)
    client.set_registered_model_alias(name, registry.CHAMPION, version)
    registry.describe_version(client, name, version, run.info.run_id, message)
    registry.describe_model(client, name, version, version)
    return RecalibrationOutcome(message, promoted=True)


def _stored(warehouse: Warehouse, table: str, model: MonitoredModel, day: date) -> pd.DataFrame:
    return warehouse.frame(
        f"select * from {table} where model_name = ? and scoring_date = cast(? as date)", [model.registered_name, day]
    )


def alerts_for(
    settings: Settings,
    model: MonitoredModel,
    day: date,
    drift: pd.DataFrame,
    metrics: pd.DataFrame,
    reference: Reference,
) -> pd.DataFrame:
    """What crossed a limit at ``day``, from the drift and the backtest stored or just computed."""
    rows = []
    limit = settings.monitoring_psi_limit
    for feature, value in zip(drift.get("feature", []), drift.get("psi", []), strict=True):
        if value > limit and feature not in CALENDAR_FEATURES:
            kind = "score_drift" if feature == SCORE_FEATURE else "input_drift"
            subject = "the scores" if feature == SCORE_FEATURE else f"input {feature}"
            rows.append(
                (kind, feature, value, limit, f"{model.model} at {day}: {subject} drifted (PSI {value:.3f} > {limit})")
            )
    backtest = dict(zip(metrics.get("metric", []), metrics.get("value", []), strict=True))
    metric = model.quality_metric
    quality, ece, ece_limit = backtest.get(metric), backtest.get("ece"), calibration_limit(settings, backtest)
    if quality is not None and reference.validation_score is not None:
        floor = reference.validation_score - settings.monitoring_auc_margin
        if quality < floor:
            rows.append(
                (
                    "backtest_degraded",
                    metric,
                    quality,
                    floor,
                    f"{model.model} at {day}: backtest {metric} {quality:.3f} < {floor:.3f} (validation "
                    f"{reference.validation_score:.3f} - margin {settings.monitoring_auc_margin})",
                )
            )
    if ece is not None and ece > ece_limit:
        rows.append(
            (
                "calibration_drift",
                "ece",
                ece,
                ece_limit,
                f"{model.model} at {day}: backtest calibration error (ECE) {ece:.3f} > {ece_limit:.3f} (the larger "
                f"of {settings.monitoring_ece_limit} and what chance gives a calibrated model on as many outcomes)",
            )
        )
    return pd.DataFrame(rows, columns=["kind", "subject", "value", "limit_value", "message"])


def _psi_limits(settings: Settings, drift: pd.DataFrame) -> np.ndarray:
    """The limit each drift row is judged by: none for the calendar features (they grow in any world)."""
    return np.where(drift["feature"].isin(CALENDAR_FEATURES), np.nan, settings.monitoring_psi_limit)


def calibration_limit(settings: Settings, backtest: dict[str, float]) -> float:
    """The calibration error beyond which a backtest's probabilities are off: CRM_MONITORING_ECE_LIMIT, or
    what chance alone gives a calibrated model on that many outcomes when that is more (few outcomes)."""
    return max(settings.monitoring_ece_limit, backtest.get(ECE_BY_CHANCE, 0.0))


def _replace(warehouse: Warehouse, table: str, model: MonitoredModel, day: date, frame: pd.DataFrame) -> None:
    warehouse.replace_rows(table, frame, {"model_name": model.registered_name, "scoring_date": day})


def _log_to_mlflow(
    client, settings: Settings, model: MonitoredModel, results: dict[str, dict[date, pd.DataFrame]]
) -> None:
    """The backtest metrics and the drift of each date on the model's monitoring run, with the scoring
    date as step (days since 1970-01-01) and as time, so the MLflow UI charts them over scoring dates."""
    from mlflow.entities import Metric

    metrics = []
    for day, frame in results[BACKTESTS_TABLE].items():
        metrics += [
            Metric(f"backtest_{name}", float(value), _millis(day), _step(day))
            for name, value in zip(frame["metric"], frame["value"], strict=True)
        ]
    for day, frame in results[DRIFT_TABLE].items():
        inputs = frame[(frame["feature"] != SCORE_FEATURE) & ~frame["feature"].isin(CALENDAR_FEATURES)]
        score = frame.loc[frame["feature"] == SCORE_FEATURE, "psi"]
        metrics += [
            Metric("drift_max_input_psi", float(inputs["psi"].max()), _millis(day), _step(day)),
            Metric(
                "drift_inputs_over_limit",
                float((inputs["psi"] > settings.monitoring_psi_limit).sum()),
                _millis(day),
                _step(day),
            ),
            Metric("drift_score_psi", float(score.iloc[0]), _millis(day), _step(day)),
        ]
    if not metrics:
        return
    run_id = _monitoring_run(client, settings, model)
    for start in range(0, len(metrics), 1000):  # MLflow takes at most 1000 metrics a batch
        client.log_batch(run_id, metrics=metrics[start : start + 1000])


def _monitoring_run(client, settings: Settings, model: MonitoredModel) -> str:
    """The model's monitoring run (one per experiment, tagged ``crm.monitoring``), created on first use."""
    experiment_id = registry.experiment_id(settings, client, model.registered_name)
    found = client.search_runs([experiment_id], filter_string="tags.`crm.monitoring` = 'true'", max_results=1)
    if found:
        return found[0].info.run_id
    run = client.create_run(
        experiment_id,
        run_name=f"monitoring {model.registered_name}",
        tags={"crm.monitoring": "true", "mlflow.note.content": MONITORING_RUN_NOTE},
    )
    client.set_terminated(run.info.run_id)
    return run.info.run_id


MONITORING_RUN_NOTE = (
    "Backtests and drift of the scores over scoring dates (step: days since 1970-01-01). backtest_*: the "
    "scores of a date against what happened in the outcome window after it; drift_*: population stability "
    "index of the inputs and the scores against the scoring version's training date."
)


def _step(day: date) -> int:
    return (day - date(1970, 1, 1)).days


def _millis(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)


def write_report(settings: Settings, client, model: MonitoredModel) -> Path | None:
    """The model's monitoring page from everything stored: the backtests over scoring dates, the
    calibration by decile at each backtested date, the drift at the latest checked date and the alerts.
    Written to CRM_MONITORING_REPORTS_DIR/<model>.html (one self-contained file: the plots inline) and
    to the model's monitoring run in MLflow (``report/``, with the plots as images)."""
    name = model.registered_name
    with open_warehouse(settings, read_only=True) as warehouse:
        backtests = _dated(warehouse.frame(f"select * from {BACKTESTS_TABLE} where model_name = ?", [name]))
        calibration = _dated(warehouse.frame(f"select * from {CALIBRATION_TABLE} where model_name = ?", [name]))
        drift = _dated(
            warehouse.frame(
                f"select * from {DRIFT_TABLE} where model_name = ? and scoring_date = "
                f"(select max(scoring_date) from {DRIFT_TABLE} where model_name = ?)",
                [name, name],
            )
        )
        alerts = _dated(
            warehouse.frame(f"select scoring_date, kind, message from {ALERTS_TABLE} where model_name = ?", [name])
        )
    if backtests.empty and drift.empty:
        return None
    latest_run = (drift if not drift.empty else backtests)["run_id"].iloc[0]
    run = _run(client, latest_run)
    validation_score = run.data.metrics.get(model.quality_metric) if run is not None else None
    figures = plots.monitoring_plots(name, model.quality_metric, backtests, calibration, drift, validation_score)
    # Each plot is drawn once: its PNG goes inline into the page and, as a file, onto the run.
    images = {}
    for file_name, figure in figures.items():
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=90)
        images[file_name] = buffer.getvalue()
    plots.close(figures)
    page = _report_page(name, backtests, drift, alerts, images)
    with tempfile.TemporaryDirectory() as folder:
        for file_name, data in images.items():
            (Path(folder) / file_name).write_bytes(data)
        (Path(folder) / "monitoring.html").write_text(page)
        client.log_artifacts(_monitoring_run(client, settings, model), folder, "report")
    settings.monitoring_reports_dir.mkdir(parents=True, exist_ok=True)
    path = settings.monitoring_reports_dir / f"{name}.html"
    partial = path.with_suffix(".html.partial")
    partial.write_text(page)
    partial.replace(path)
    return path


def _dated(frame: pd.DataFrame) -> pd.DataFrame:
    if "scoring_date" in frame:
        frame["scoring_date"] = pd.to_datetime(frame["scoring_date"]).dt.date
    return frame


def _report_page(
    name: str, backtests: pd.DataFrame, drift: pd.DataFrame, alerts: pd.DataFrame, images: dict[str, bytes]
) -> str:
    metrics = (
        backtests.pivot_table(index="scoring_date", columns="metric", values="value").sort_index(ascending=False)
        if not backtests.empty
        else pd.DataFrame()
    )
    drifted = (
        drift.sort_values("psi", ascending=False)[
            ["feature", "psi", "psi_limit", "missing_share", "reference_missing_share"]
        ]
        if not drift.empty
        else pd.DataFrame()
    )
    sections = [
        f"<h1>{html.escape(name)}: monitoring</h1>",
        "<p>Backtests compare the scores of a date with what happened in the outcome window after it; drift "
        "compares each input and the score with the scoring version's training date (population stability "
        "index). Tables: monitoring.backtests, monitoring.calibration, monitoring.drift, monitoring.alerts.</p>",
        "<h2>Alerts</h2>",
        alerts.sort_values("scoring_date", ascending=False).to_html(index=False)
        if not alerts.empty
        else "<p>None.</p>",
        *[
            f"<h2>{html.escape(file_name[:-4].replace('_', ' '))}</h2>"
            f'<img src="data:image/png;base64,{base64.b64encode(data).decode()}">'
            for file_name, data in images.items()
        ],
        "<h2>Backtests by scoring date</h2>",
        metrics.round(4).to_html()
        if not metrics.empty
        else "<p>No scoring date whose outcome window has closed yet.</p>",
        "<h2>Drift at the latest checked date</h2>",
        drifted.round(4).to_html(index=False) if not drifted.empty else "<p>Not checked yet.</p>",
    ]
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>"
        f"{html.escape(name)} monitoring</title><style>body{{font-family:sans-serif;margin:2em}}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}</style></head><body>"
        + "\n".join(sections)
        + "</body></html>\n"
    )

"""Train, track and register the models in MLflow."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.data.pandas_dataset import PandasDataset
from mlflow.models import ModelSignature, infer_signature
from sklearn.base import clone
from sklearn.metrics import roc_auc_score

from crm.settings import Settings
from crm.warehouse import open_warehouse
from ml import churn, clv, explain, monitoring, plots, recommend, registry, satisfaction, segmentation
from ml.calibration import CALIBRATION_TRUSTED_TYPES, refitted_method
from ml.features import (
    FEATURE_COLUMNS,
    input_example,
    load_catalogue,
    load_churn_examples,
    load_features,
    load_purchases,
    load_satisfaction_examples,
    load_value_examples,
    require_features,
)
from ml.metrics import classification_metrics
from ml.preflight import PreflightResult, TrainingSkipped, TrainingUnchanged, check_training_data

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
    rows: int  # training plus validation examples


def train_churn(settings: Settings, train_date: date, validation_date: date, first_data_day: date) -> TrainingReport:
    """Train, track and register; raise TrainingSkipped when the preflight finds the data insufficient."""
    train, validation, params = _prepare_supervised("churn", settings, train_date, validation_date, first_data_day)
    client = registry.configure(settings)
    fingerprint = _fingerprint_unless_unchanged(settings, client, churn.MODEL_NAME, [train, validation], params)
    experiment_id = registry.experiment_id(settings, client, churn.MODEL_NAME)
    fitted = churn.fit_candidates(train, validation, settings.random_seed)
    best = fitted[0]
    # The baselines every candidate is graded against: the best "no purchase in the last X days" rule,
    # and the days since the last purchase as a continuous score.
    rule = churn.best_recency_rule(train)
    rule_prediction = rule.predict(validation)
    baseline = {
        f"baseline_{name}": value
        for name, value in classification_metrics(validation[churn.LABEL], rule_prediction).items()
        if name != "positive_rate"
    }
    baseline["baseline_recency_roc_auc"] = float(
        roc_auc_score(validation[churn.LABEL], churn.recency_score(validation))
    )
    # Graded against the stronger baseline: the rule's ROC-AUC is handicapped by being yes/no.
    stronger_baseline = max(baseline["baseline_roc_auc"], baseline["baseline_recency_roc_auc"])
    run_ids, graded, grades = {}, {}, {}
    for candidate in fitted:
        with mlflow.start_run(experiment_id=experiment_id, run_name=candidate.name) as run:
            mlflow.log_params({**params, "candidate": candidate.name, "baseline_rule_days": rule.days})
            uplift = candidate.metrics["roc_auc"] - stronger_baseline
            graded[candidate.name] = {**candidate.metrics, **baseline, "roc_auc_uplift_over_baseline": uplift}
            mlflow.log_metrics(graded[candidate.name])
            grades[candidate.name] = churn.grade(candidate.metrics["roc_auc"], stronger_baseline)
            mlflow.set_tags({"selected": str(candidate is best).lower(), "grade": grades[candidate.name]})
            run_ids[candidate.name] = run.info.run_id
    refit = _refit_and_register(
        settings,
        "churn",
        experiment_id,
        best,
        _Selection(
            run_ids[best.name],
            {**params, "baseline_rule_days": rule.days},
            graded[best.name],
            {"grade": grades[best.name]},
        ),
        train,
        validation,
        validation_date,
        lambda: _log_evaluation(
            churn.MODEL_NAME,
            best,
            validation[FEATURE_COLUMNS],
            validation[churn.LABEL],
            settings.random_seed,
            rule_prediction,
        ),
    )
    client.set_model_version_tag(
        churn.MODEL_NAME,
        refit.version,
        "driver_features",
        json.dumps(refit.evaluation["feature"].head(explain.DRIVER_CANDIDATES).tolist()),
    )
    decision = _promote_refit(client, "churn", refit, best, train, validation, validation_date, fingerprint)
    return TrainingReport(
        churn.MODEL_NAME,
        refit.version,
        refit.run_id,
        best.name,
        best.metrics,
        decision,
        len(train) + len(validation),
    )


# Per supervised model: registered name, label, input columns, and the name its runs give the label
# window (kept as first logged, so runs in each experiment stay comparable).
SUPERVISED = {
    "churn": (churn.MODEL_NAME, churn.LABEL, FEATURE_COLUMNS, "churn_window_days"),
    "satisfaction": (satisfaction.MODEL_NAME, satisfaction.LABEL, satisfaction.INPUT_COLUMNS, "label_window_days"),
}


def _prepare_supervised(
    model: str, settings: Settings, train_date: date, validation_date: date, first_data_day: date
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, object]]:
    """Training and validation examples that passed the preflight, and the params every run of the model logs.

    Raises TrainingSkipped with the reasons when the preflight fails.
    """
    name, label, inputs, window_param = SUPERVISED[model]
    train, validation = _examples(model, settings, train_date, validation_date)
    check = preflight_result(settings, model, train, validation, first_data_day, train_date)
    for note in check.notes:
        log.info("preflight %s: %s", name, note)
    if not check.passed:
        raise TrainingSkipped(
            f"{name} training skipped by the preflight; the current champion keeps serving: " + "; ".join(check.reasons)
        )
    available = len(train)
    train = training_sample(train, settings.training_max_rows, settings.random_seed)
    params = {
        "features": ",".join(inputs),
        "train_as_of_date": train_date.isoformat(),
        "validation_as_of_date": validation_date.isoformat(),
        window_param: settings.churn_window_days,
        # The delivered days a run learned from: history from the first day, labels to the end of the
        # validation window.
        "data_window_start": first_data_day.isoformat(),
        "data_window_end": (validation_date + timedelta(days=settings.churn_window_days)).isoformat(),
        "train_rows": len(train),
        "train_rows_available": available,
        "validation_rows": len(validation),
    }
    return train, validation, params


@dataclass(frozen=True)
class _Selection:
    """What the selected candidate's run logged: the refit's run repeats it, so the champion's run shows
    what it was selected on."""

    run_id: str
    params: dict[str, object]
    metrics: dict[str, float]
    tags: dict[str, str]


@dataclass(frozen=True)
class _Refit:
    run_id: str
    version: str
    evaluation: pd.DataFrame  # the selected candidate's feature importance on the validation set


def _refit_and_register(
    settings: Settings,
    model: str,
    experiment_id: str,
    best: churn.FittedCandidate,
    selection: _Selection,
    train: pd.DataFrame,
    validation: pd.DataFrame,
    validation_date: date,
    log_evaluation: Callable[[], pd.DataFrame],
    trusted_types: list[str] = (),
) -> _Refit:
    """Refit the selected candidate on the training and the validation examples, and register it in a
    run of its own.

    The candidates are fitted at the training date and compared at the validation date, the latest
    date whose labels have fully been observed (its window closes at the scoring date): selected out
    of sample. The chosen one is then fitted again with that freshest window added, which holds the
    base rate the scores will meet. Measured on the demo data at five training dates (backtests at the
    next closed date), the refit on both dates beat the selected fit on ROC-AUC, calibration error and
    Brier at every date for churn, and on each of the three at four of five for satisfaction; a refit
    on the validation date alone helped churn less and made satisfaction's calibration worse at four
    of five (half the examples). The run repeats the selected run's params (the dates and rows now the refit's), metrics
    and tags, so the champion's run shows what it was selected on, and holds the selection's plots,
    the datasets, the reference profile and the model."""
    name, label, inputs, _ = SUPERVISED[model]
    both = pd.concat([train, validation], ignore_index=True)
    fresh = training_sample(both, settings.training_max_rows, settings.random_seed)
    pipeline = clone(best.pipeline).fit(fresh[inputs], fresh[label])
    train_date = selection.params["train_as_of_date"]
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"{best.name} refit") as run:
        mlflow.log_params(
            {
                **selection.params,
                "candidate": best.name,
                # The freshest date it learned from; refit_as_of_dates has both.
                "train_as_of_date": validation_date.isoformat(),
                "refit_as_of_dates": f"{train_date},{validation_date.isoformat()}",
                "train_rows": len(fresh),
                "train_rows_available": len(both),
                "selected_on_run": selection.run_id,
                "selected_trained_as_of_date": train_date,
            }
        )
        mlflow.log_metrics(selection.metrics)
        mlflow.set_tags({**selection.tags, "refit_on_latest_labels": "true"})
        mlflow.log_input(dataset(fresh, f"customer_features@{train_date},{validation_date}", label), context="training")
        mlflow.log_input(dataset(validation, f"customer_features@{validation_date}", label), context="validation")
        evaluation = log_evaluation()
        monitoring.log_reference_profile(settings, model, pipeline, validation_date)
        info = mlflow.sklearn.log_model(
            pipeline,
            name="model",
            signature=signature(validation[inputs], best.validation_probability),
            input_example=input_example(validation[inputs]),
            registered_model_name=name,
            pip_requirements=registry.PIP_REQUIREMENTS,
            skops_trusted_types=registry.SKOPS_TRUSTED_TYPES + list(trusted_types) + CALIBRATION_TRUSTED_TYPES,
        )
    return _Refit(run.info.run_id, str(info.registered_model_version), evaluation)


def _promote_refit(
    client,
    model: str,
    refit: _Refit,
    best: churn.FittedCandidate,
    train: pd.DataFrame,
    validation: pd.DataFrame,
    validation_date: date,
    fingerprint: str,
) -> registry.PromotionDecision:
    """Promote the refit when the selected candidate scored more than the champion's method, refitted on
    the same training data, on the same validation data: both out of sample (the champion itself may
    have been fitted on the validation date). The same method ties: then the refit serves when it
    learned from later labels than the champion, and the champion stays when both saw the same."""
    name, label, inputs, _ = SUPERVISED[model]
    current = registry.champion_version(client, name)
    trained = client.get_run(current.run_id).data.params.get("train_as_of_date") if current else None
    return _promote_on_validation(
        client,
        name,
        refit.version,
        refit.run_id,
        SELECTION_METRIC,
        best.metrics[SELECTION_METRIC],
        lambda champion: _classification_score(
            refitted_method(champion, train[inputs], train[label]), validation[inputs], validation[label]
        ),
        fingerprint,
        compared="with its method refitted on the same training date",
        fresher=trained is None or trained < validation_date.isoformat(),
    )


def training_sample(examples: pd.DataFrame, max_rows: int, seed: int) -> pd.DataFrame:
    """At most ``max_rows`` examples drawn at random (reproducibly), in their original order."""
    if len(examples) <= max_rows:
        return examples
    return examples.sample(n=max_rows, random_state=seed).sort_index()


def _examples(
    model: str, settings: Settings, train_date: date, validation_date: date
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Labelled training and validation examples of a supervised model (churn or satisfaction)."""
    loader = {"churn": load_churn_examples, "satisfaction": load_satisfaction_examples}[model]
    with open_warehouse(settings, read_only=True) as warehouse:
        require_features(warehouse, train_date, validation_date)
        return loader(warehouse, train_date), loader(warehouse, validation_date)


def preflight_check(
    settings: Settings, model: str, train_date: date, validation_date: date, first_data_day: date
) -> PreflightResult:
    """The training preflight of ``model`` (churn, satisfaction, clv or recommendations) on the data it
    would train on."""
    if model == "clv":
        return PreflightResult(clv.preflight_reasons(*_value_examples(settings, train_date, validation_date)))
    if model == "recommendations":
        *_, history, window = _purchase_split(settings, validation_date)
        return PreflightResult(recommend.preflight_reasons(window, history))
    train, validation = _examples(model, settings, train_date, validation_date)
    return preflight_result(settings, model, train, validation, first_data_day, train_date)


def preflight_result(
    settings: Settings,
    model: str,
    train: pd.DataFrame,
    validation: pd.DataFrame,
    first_data_day: date,
    train_date: date,
) -> PreflightResult:
    """The preflight's result; when a set's churn labels are all one class, a reason more says why."""
    label = SUPERVISED[model][1]
    check = check_training_data(train, validation, label, first_data_day, train_date, settings.churn_window_days)
    one_class = any(len(frame) and frame[label].nunique() == 1 for frame in (train, validation))
    if model == "churn" and one_class:
        return PreflightResult([*check.reasons, _orders_diagnosis(settings)], check.notes)
    return check


def _orders_diagnosis(settings: Settings) -> str:
    """Where the orders went, for a churn label that is one class (everyone churned: no completed
    order left): the completed orders staging kept and the quarantine's main reasons for orders."""
    with open_warehouse(settings, read_only=True) as warehouse:
        completed = warehouse.row("select count(*) from staging.stg_shop__orders where status = 'completed'")[0]
        reasons = warehouse.rows(
            "select reason, count(*) from audit.rejected_rows where source = 'orders' "
            "group by reason order by count(*) desc, reason limit 3"
        )
    where = ", ".join(f"{count:,} {reason!r}" for reason, count in reasons) or "none"
    return (
        f"every label is one class: staging kept {completed:,} completed order(s); orders quarantined by "
        f"reason (audit.rejected_rows): {where}"
    )


def _promote_on_validation(
    client,
    model_name: str,
    version: str,
    run_id: str,
    metric: str,
    challenger_score: float,
    champion_score_of: Callable[[object], float],
    fingerprint: str,
    compared: str | None = None,
    fresher: bool = False,
) -> registry.PromotionDecision:
    """Record the new version's training fingerprint, score the current champion (loaded from the
    registry) with ``champion_score_of`` on the same validation data as the new version, then decide
    (``compared``, ``fresher``: see registry.promote)."""
    client.set_model_version_tag(model_name, version, FINGERPRINT_TAG, fingerprint)
    current = registry.champion_version(client, model_name)
    champion_score = None
    if current is not None:
        champion_score = champion_score_of(mlflow.sklearn.load_model(registry.model_uri(model_name)))
    return registry.promote(
        client,
        model_name,
        version,
        run_id,
        metric,
        challenger_score,
        champion_score,
        current.version if current else None,
        compared,
        fresher,
    )


def _classification_score(model, inputs: pd.DataFrame, label: pd.Series) -> float:
    """A classifier's SELECTION_METRIC on labelled examples."""
    return classification_metrics(label, model.predict_proba(inputs)[:, 1])[SELECTION_METRIC]


def _track_candidates(
    experiment_id: str,
    fitted: list,
    params: dict[str, object],
    log_best: Callable[[object], object] | None = None,
) -> tuple[dict[str, str], object]:
    """One MLflow run per fitted candidate (best first), each with the same params and metric names and
    a ``selected`` tag; ``log_best(candidate)`` logs and registers the best inside its run and returns
    the logged model's info (None: a refit is registered in a run of its own). Returns the run id per
    candidate and that info."""
    run_ids, info = {}, None
    for candidate in fitted:
        with mlflow.start_run(experiment_id=experiment_id, run_name=candidate.name) as run:
            mlflow.log_params({**params, "candidate": candidate.name})
            mlflow.log_metrics(candidate.metrics)
            mlflow.set_tag("selected", str(candidate is fitted[0]).lower())
            if candidate is fitted[0] and log_best is not None:
                info = log_best(candidate)
            run_ids[candidate.name] = run.info.run_id
    return run_ids, info


def _log_evaluation(
    model_name: str,
    candidate: churn.FittedCandidate,
    inputs: pd.DataFrame,
    label: pd.Series,
    seed: int,
    rule_prediction: np.ndarray | None = None,
) -> pd.DataFrame:
    """Plots and permutation importance of the selected candidate on the validation set; returns the importance."""
    figures = plots.classifier_plots(
        candidate.name, label.to_numpy(), candidate.validation_probability, rule_prediction
    )
    importance = explain.global_importance(candidate.pipeline, inputs, label, seed)
    figures["feature_importance.png"] = plots.importance_plot(importance, f"{model_name}: {candidate.name}")
    for name, figure in figures.items():
        mlflow.log_figure(figure, name)
    plots.close(figures)
    mlflow.log_table(importance, "feature_importance.json")
    return importance


def _log_datasets(
    train: pd.DataFrame, validation: pd.DataFrame, train_date: date, validation_date: date, label: str = churn.LABEL
) -> None:
    for context, frame, as_of in (("training", train, train_date), ("validation", validation, validation_date)):
        mlflow.log_input(dataset(frame, f"customer_features@{as_of.isoformat()}", label), context=context)


# MLflow infers a schema by looking at every value in Python: about 45 s of a churn training on a
# million customers. These rows give the same schema: the first rows and, per column, one row where
# it is missing (a column is required when no row misses it).
SCHEMA_SAMPLE_ROWS = 1_000


def schema_sample(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``frame`` that MLflow infers its schema from."""
    first_missing = [int(np.argmax(missing)) for missing in frame.isna().to_numpy().T if missing.any()]
    return frame.iloc[sorted(set(range(min(len(frame), SCHEMA_SAMPLE_ROWS))) | set(first_missing))]


def signature(inputs: pd.DataFrame, outputs: np.ndarray) -> ModelSignature:
    """The model signature of ``inputs`` (its schema from ``schema_sample``) and ``outputs``."""
    return infer_signature(schema_sample(inputs), outputs)


class SampledSchemaDataset(PandasDataset):
    """A pandas dataset whose schema is inferred from ``schema_sample`` of its rows."""

    @property
    def schema(self):
        return infer_signature(schema_sample(self.df)).inputs


def dataset(frame: pd.DataFrame, name: str, targets: str | None = None) -> SampledSchemaDataset:
    """The MLflow dataset of ``frame``, digested from all its rows (MLflow's own digest reads only the
    first 10,000, and inspects every value's type in Python)."""
    hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    digest = hashlib.md5(hashed.tobytes()).hexdigest()[:8]
    source = mlflow.data.from_pandas(frame, targets=targets, name=name, digest=digest).source  # the calling code
    return SampledSchemaDataset(frame, source, targets=targets, name=name, digest=digest)


def train_segmentation(settings: Settings, fit_date: date) -> TrainingReport:
    """Fit the segmentation on the features at ``fit_date``, log it, register it and promote it when its
    silhouette on the same customers beats the champion's."""
    with open_warehouse(settings, read_only=True) as warehouse:
        require_features(warehouse, fit_date)
        features = load_features(warehouse, fit_date)
    inputs = features[segmentation.SEGMENT_INPUTS]
    client = registry.configure(settings)
    fingerprint = _fingerprint_unless_unchanged(
        settings, client, segmentation.MODEL_NAME, [inputs], {"fit_as_of_date": fit_date.isoformat()}
    )
    model = segmentation.CustomerSegmentation(random_state=settings.random_seed).fit(inputs)
    repeat = segmentation.repeat_buyers(inputs)
    metrics = {
        "silhouette": model.silhouettes_[model.k_],
        "k": float(model.k_),
        "repeat_buyer_share": float(repeat.mean()),
        **{f"silhouette_k{k}": score for k, score in model.silhouettes_.items()},
    }
    experiment_id = registry.experiment_id(settings, client, segmentation.MODEL_NAME)
    with mlflow.start_run(experiment_id=experiment_id, run_name="kmeans") as run:
        mlflow.log_params(
            {
                "features": ",".join(segmentation.SEGMENT_INPUTS),
                "fit_as_of_date": fit_date.isoformat(),
                "k_range": f"{min(model.k_range)}-{max(model.k_range)}",
                "rows": len(inputs),
                "min_orders_to_cluster": segmentation.MIN_ORDERS_TO_CLUSTER,
            }
        )
        mlflow.log_metrics(metrics)
        mlflow.log_input(
            dataset(
                features[["as_of_date", *segmentation.SEGMENT_INPUTS]], f"customer_features@{fit_date.isoformat()}"
            ),
            context="training",
        )
        mlflow.log_table(model.profiles(inputs).reset_index(), "segment_profiles.json")
        buyers = inputs[repeat].sample(min(int(repeat.sum()), 5_000), random_state=0)
        figure = plots.segment_plot(
            model.behaviour(buyers),
            model.predict(buyers),
            model.segment_names_,
            f"{segmentation.MODEL_NAME}: k = {model.k_}",
        )
        mlflow.log_figure(figure, "segment_projection.png")
        plots.close([figure])
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=signature(inputs, model.predict(schema_sample(inputs))),
            input_example=inputs.head(5),
            registered_model_name=segmentation.MODEL_NAME,
            pip_requirements=registry.PIP_REQUIREMENTS,
            skops_trusted_types=registry.SKOPS_TRUSTED_TYPES + SEGMENTATION_TRUSTED_TYPES,
        )
    version = str(info.registered_model_version)
    client.set_model_version_tag(
        segmentation.MODEL_NAME,
        version,
        "segment_names",
        json.dumps({str(k): v for k, v in model.segment_names_.items()}),
    )
    decision = _promote_on_validation(
        client,
        segmentation.MODEL_NAME,
        version,
        run.info.run_id,
        "silhouette",
        model.silhouette(inputs),
        lambda champion: champion.silhouette(inputs),
        fingerprint,
    )
    return TrainingReport(segmentation.MODEL_NAME, version, run.info.run_id, "kmeans", metrics, decision, len(inputs))


# The segmentation estimator and its feature functions, for skops to load them.
SEGMENTATION_TRUSTED_TYPES = [
    f"ml.segmentation.{name}" for name in ("CustomerSegmentation", "_log_order_rate", "_order_rate_name")
]


def train_satisfaction(
    settings: Settings, train_date: date, validation_date: date, first_data_day: date
) -> TrainingReport:
    """Train on the survey answers after the training date, validate on those after the validation date,
    register the best candidate and promote it on ROC-AUC; raise TrainingSkipped when the preflight fails."""
    train, validation, params = _prepare_supervised(
        "satisfaction", settings, train_date, validation_date, first_data_day
    )
    client = registry.configure(settings)
    fingerprint = _fingerprint_unless_unchanged(settings, client, satisfaction.MODEL_NAME, [train, validation], params)
    experiment_id = registry.experiment_id(settings, client, satisfaction.MODEL_NAME)
    fitted = satisfaction.fit_candidates(train, validation, settings.random_seed)
    best = fitted[0]
    inputs, label = validation[satisfaction.INPUT_COLUMNS], validation[satisfaction.LABEL]
    run_ids, _ = _track_candidates(experiment_id, fitted, params)
    refit = _refit_and_register(
        settings,
        "satisfaction",
        experiment_id,
        best,
        _Selection(run_ids[best.name], params, best.metrics, {}),
        train,
        validation,
        validation_date,
        lambda: _log_evaluation(satisfaction.MODEL_NAME, best, inputs, label, settings.random_seed),
        satisfaction.TEXT_TRUSTED_TYPES,
    )
    decision = _promote_refit(client, "satisfaction", refit, best, train, validation, validation_date, fingerprint)
    return TrainingReport(
        satisfaction.MODEL_NAME,
        refit.version,
        refit.run_id,
        best.name,
        best.metrics,
        decision,
        len(train) + len(validation),
    )


def train_clv(settings: Settings, train_date: date, validation_date: date, first_data_day: date) -> TrainingReport:
    """Fit the lifetime-value candidates on the buyers at the training date (the gradient boosting on
    their revenue in the horizon after it), compare them on the buyers at the validation date, register
    the best and promote it on the normalised Gini; raise TrainingSkipped when the data does not suffice."""
    horizon = settings.clv_horizon
    train, validation = _value_examples(settings, train_date, validation_date)
    _skip_unless_passed(clv.MODEL_NAME, clv.preflight_reasons(train, validation))
    available = len(train)
    train = training_sample(train, settings.training_max_rows, settings.random_seed)
    params = {
        "features": ",".join(FEATURE_COLUMNS),
        "train_as_of_date": train_date.isoformat(),
        "validation_as_of_date": validation_date.isoformat(),
        "clv_horizon_days": horizon,
        "data_window_start": first_data_day.isoformat(),
        "data_window_end": (validation_date + timedelta(days=horizon)).isoformat(),
        "train_rows": len(train),
        "train_rows_available": available,
        "validation_rows": len(validation),
    }
    client = registry.configure(settings)
    fingerprint = _fingerprint_unless_unchanged(settings, client, clv.MODEL_NAME, [train, validation], params)
    experiment_id = registry.experiment_id(settings, client, clv.MODEL_NAME)
    fitted = clv.fit_candidates(train, validation, horizon, settings.random_seed)
    best = fitted[0]
    inputs = validation[FEATURE_COLUMNS]

    def log_best(candidate: clv.FittedCandidate):
        _log_datasets(train, validation, train_date, validation_date, clv.LABEL)
        monitoring.log_reference_profile(settings, "clv", candidate.pipeline, train_date)
        return mlflow.sklearn.log_model(
            candidate.pipeline,
            name="model",
            signature=signature(inputs, candidate.validation_prediction),
            input_example=inputs.head(5),
            registered_model_name=clv.MODEL_NAME,
            pip_requirements=registry.PIP_REQUIREMENTS,
            skops_trusted_types=registry.SKOPS_TRUSTED_TYPES + CLV_TRUSTED_TYPES,
        )

    run_ids, info = _track_candidates(experiment_id, fitted, params, log_best)
    version = str(info.registered_model_version)
    decision = _promote_on_validation(
        client,
        clv.MODEL_NAME,
        version,
        run_ids[best.name],
        clv.SELECTION_METRIC,
        best.metrics[clv.SELECTION_METRIC],
        lambda champion: clv.value_metrics(validation[clv.LABEL], champion.predict(inputs))[clv.SELECTION_METRIC],
        fingerprint,
    )
    return TrainingReport(
        clv.MODEL_NAME, version, run_ids[best.name], best.name, best.metrics, decision, len(train) + len(validation)
    )


# The lifetime-value pipelines' own parts, for skops to load them.
CLV_TRUSTED_TYPES = [
    "ml.clv.BetaGeoGammaGamma",
    "ml.clv.PastSpendRate",
    "ml.clv.model_inputs",
    "ml.clv.model_input_names",
]


def train_recommendations(settings: Settings, validation_date: date) -> TrainingReport:
    """Fit the recommendation candidates on the purchases up to the validation date, grade them on what
    each customer bought in the churn window after it, register the best method refitted on every
    purchase up to the end of that window, and promote it on MAP at N when the champion's method,
    refitted on the same history, grades lower; raise TrainingSkipped when the window has too few buyers."""
    window_end = validation_date + timedelta(days=settings.churn_window_days)
    top_n = settings.recommendations_top_n
    product_ids, categories, customers, history, window = _purchase_split(settings, validation_date)
    _skip_unless_passed(recommend.MODEL_NAME, recommend.preflight_reasons(window, history))
    with open_warehouse(settings, read_only=True) as warehouse:
        all_rows = load_purchases(warehouse, None, window_end)
    fitted = recommend.fit_candidates(history, window, product_ids, categories, top_n, settings.random_seed)
    best = fitted[0]
    _, everything = recommend.purchase_matrix(all_rows, product_ids)
    params = {
        "top_n": top_n,
        "history_until_date": validation_date.isoformat(),
        "evaluation_window_days": settings.churn_window_days,
        "fit_until_date": window_end.isoformat(),
        "customers": len(customers),
        "products": len(product_ids),
        "evaluated_customers": int((window.getnnz(axis=1) > 0).sum()),
    }
    client = registry.configure(settings)
    fingerprint = _fingerprint_unless_unchanged(settings, client, recommend.MODEL_NAME, [all_rows], params)
    experiment_id = registry.experiment_id(settings, client, recommend.MODEL_NAME)

    def log_best(candidate: recommend.FittedCandidate):
        # The registered model is the selected method fitted on every purchase up to the window's end.
        model = clone(candidate.model).fit(everything, product_ids, categories)
        example = all_rows.head(20)
        return mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(example, model.predict(example)),
            input_example=example,
            registered_model_name=recommend.MODEL_NAME,
            pip_requirements=registry.PIP_REQUIREMENTS,
            skops_trusted_types=registry.SKOPS_TRUSTED_TYPES + RECOMMENDATION_TRUSTED_TYPES,
        )

    run_ids, info = _track_candidates(experiment_id, fitted, params, log_best)
    version = str(info.registered_model_version)
    metric = recommend.selection_metric(top_n)
    decision = _promote_on_validation(
        client,
        recommend.MODEL_NAME,
        version,
        run_ids[best.name],
        metric,
        best.metrics[metric],
        lambda champion: recommend.validation_score(champion, history, window, product_ids, categories),
        fingerprint,
    )
    return TrainingReport(
        recommend.MODEL_NAME, version, run_ids[best.name], best.name, best.metrics, decision, history.shape[0]
    )


def _value_examples(settings: Settings, train_date: date, validation_date: date) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The buyers at the training and validation dates with their value in the horizon after each."""
    with open_warehouse(settings, read_only=True) as warehouse:
        require_features(warehouse, train_date, validation_date)
        return load_value_examples(warehouse, train_date), load_value_examples(warehouse, validation_date)


def _purchase_split(settings: Settings, validation_date: date):
    """The catalogue (product ids, categories), and the purchase matrices recommendations are graded on:
    each customer's purchases up to the validation date and in the churn window after it."""
    window_end = validation_date + timedelta(days=settings.churn_window_days)
    with open_warehouse(settings, read_only=True) as warehouse:
        catalogue = load_catalogue(warehouse)
        history_rows = load_purchases(warehouse, None, validation_date)
        window_rows = load_purchases(warehouse, validation_date, window_end)
    product_ids, categories = catalogue["product_id"].to_numpy(), catalogue["category"].to_numpy()
    customers, history = recommend.purchase_matrix(history_rows, product_ids)
    _, window = recommend.purchase_matrix(window_rows, product_ids, customers)
    return product_ids, categories, customers, history, window


# The version tag that records what a version learned from (training_fingerprint).
FINGERPRINT_TAG = "training_fingerprint"
# The model code a fingerprint covers: a change to any of it trains again on unchanged data.
MODEL_CODE = sorted(Path(__file__).parent.glob("*.py"))


def training_fingerprint(settings: Settings, frames: list[pd.DataFrame], params: dict[str, object]) -> str:
    """A digest of what a training learns from: the examples (values and columns), the run's params, the
    seed, and the model code."""
    digest = hashlib.sha256()
    digest.update(json.dumps({**params, "random_seed": settings.random_seed}, sort_keys=True, default=str).encode())
    for frame in frames:
        digest.update(json.dumps(list(map(str, frame.columns))).encode())
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    for path in MODEL_CODE:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _fingerprint_unless_unchanged(
    settings: Settings, client, model_name: str, frames: list[pd.DataFrame], params: dict[str, object]
) -> str:
    """The training's fingerprint; raise TrainingUnchanged when the model's latest version learned from
    the same (unless CRM_RETRAIN_UNCHANGED): the same data, settings and code give the same model again."""
    fingerprint = training_fingerprint(settings, frames, params)
    if settings.retrain_unchanged:
        return fingerprint
    versions = client.search_model_versions(f"name = '{model_name}'")
    latest = max(versions, key=lambda version: int(version.version), default=None)
    if latest is not None and latest.tags.get(FINGERPRINT_TAG) == fingerprint:
        champion = registry.champion_version(client, model_name)
        serving = f"champion v{champion.version} keeps serving" if champion else "no version is champion"
        raise TrainingUnchanged(
            f"{model_name} training skipped: the training data, settings and code are those v{latest.version} "
            f"learned from (fingerprint {fingerprint[:12]}); {serving}. CRM_RETRAIN_UNCHANGED=true trains anyway"
        )
    return fingerprint


def _skip_unless_passed(model_name: str, reasons: list[str]) -> None:
    if reasons:
        raise TrainingSkipped(
            f"{model_name} training skipped by the preflight; the current champion keeps serving: " + "; ".join(reasons)
        )


# The recommenders, for skops to load them.
RECOMMENDATION_TRUSTED_TYPES = [
    f"ml.recommend.{name}" for name in ("ItemSimilarity", "LatentFactors", "FavouriteCategory", "Popularity")
]

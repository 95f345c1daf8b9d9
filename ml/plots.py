"""Evaluation plots logged to MLflow as artifacts (rendered off-screen)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib import pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from sklearn.calibration import CalibrationDisplay  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay, PrecisionRecallDisplay, RocCurveDisplay  # noqa: E402


def classifier_plots(
    name: str, y_true: np.ndarray, probability: np.ndarray, baseline: np.ndarray | None = None
) -> dict[str, Figure]:
    """ROC (with the baseline rule's point), precision-recall, calibration and confusion matrix at 0.5."""
    figures = {}
    figure, axes = plt.subplots(figsize=(5, 5))
    RocCurveDisplay.from_predictions(y_true, probability, name=name, ax=axes)
    if baseline is not None:
        tpr, fpr = baseline[y_true == 1].mean(), baseline[y_true == 0].mean()
        axes.scatter([fpr], [tpr], color="black", zorder=3, label="best recency rule")
        axes.legend()
    figures["roc_curve.png"] = figure
    figure, axes = plt.subplots(figsize=(5, 5))
    PrecisionRecallDisplay.from_predictions(y_true, probability, name=name, ax=axes)
    figures["pr_curve.png"] = figure
    figure, axes = plt.subplots(figsize=(5, 5))
    CalibrationDisplay.from_predictions(y_true, probability, n_bins=10, strategy="quantile", name=name, ax=axes)
    figures["calibration_curve.png"] = figure
    figure, axes = plt.subplots(figsize=(5, 5))
    ConfusionMatrixDisplay.from_predictions(y_true, (probability >= 0.5).astype(int), ax=axes, colorbar=False)
    figures["confusion_matrix.png"] = figure
    return figures


def importance_plot(importance: pd.DataFrame, title: str) -> Figure:
    top = importance.head(15).iloc[::-1]
    figure, axes = plt.subplots(figsize=(7, 5))
    axes.barh(top["feature"], top["importance"], xerr=top["importance_std"])
    axes.set_xlabel("drop in validation ROC-AUC when shuffled")
    axes.set_title(title)
    figure.tight_layout()
    return figure


def close(figures: dict[str, Figure] | list[Figure]) -> None:
    for figure in figures.values() if isinstance(figures, dict) else figures:
        plt.close(figure)


def segment_plot(points: np.ndarray, segments: np.ndarray, names: dict[int, str], title: str) -> Figure:
    """Customers in the 2-D behaviour space the segmentation clusters in, coloured by segment."""
    figure, axes = plt.subplots(figsize=(7, 5))
    for segment in np.unique(segments):
        chosen = segments == segment
        axes.scatter(points[chosen, 0], points[chosen, 1], s=4, alpha=0.5, label=names[int(segment)])
    axes.set_xlabel("orders per 30 days (log, standardised)")
    axes.set_ylabel("average order value (log, standardised)")
    axes.set_title(title)
    axes.legend(markerscale=4)
    return figure


def monitoring_plots(
    model: str,
    quality_metric: str,
    backtests: pd.DataFrame,
    calibration: pd.DataFrame,
    drift: pd.DataFrame,
    validation_score: float | None,
) -> dict[str, Figure]:
    """A model's monitoring: its quality metric (ROC-AUC, or Gini for lifetime value) and calibration
    error of the backtests over scoring dates (with the scoring version's validation score), mean score
    against the realised outcome by decile at each backtested date, and the drift of each input and the
    score at the latest checked date."""
    figures = {}
    if not backtests.empty:
        figure, axes = plt.subplots(figsize=(7, 4))
        for metric in (quality_metric, "ece", "decile_calibration_error"):
            rows = backtests[backtests["metric"] == metric].sort_values("scoring_date")
            if not rows.empty:
                axes.plot(rows["scoring_date"], rows["value"], marker="o", label=f"backtest {metric}")
        if validation_score is not None:
            axes.axhline(validation_score, color="grey", linestyle="--", label=f"validation {quality_metric}")
        axes.set_xlabel("scoring date")
        axes.set_title(f"{model}: scores against what happened")
        axes.legend()
        figure.autofmt_xdate()
        figure.tight_layout()
        figures["backtests_over_dates.png"] = figure
    if not calibration.empty:
        figure, axes = plt.subplots(figsize=(5, 5))
        dates = sorted(calibration["scoring_date"].unique())
        for index, day in enumerate(dates):
            rows = calibration[calibration["scoring_date"] == day].sort_values("decile")
            latest = index == len(dates) - 1
            axes.plot(
                rows["mean_score"],
                rows["realised_rate"],
                marker="o" if latest else None,
                alpha=1.0 if latest else 0.3,
                label=str(day) if latest or len(dates) <= 6 else None,
            )
        # The diagonal: scores that match what happened (probabilities up to 1, revenue up to its largest).
        top = max(1.0, float(calibration[["mean_score", "realised_rate"]].to_numpy().max()))
        axes.plot([0, top], [0, top], color="grey", linestyle="--")
        axes.set_xlabel("mean score (decile)")
        axes.set_ylabel("realised outcome (rate, or revenue in EUR)")
        axes.set_title(f"{model}: calibration by scoring date")
        axes.legend()
        figures["calibration_by_date.png"] = figure
    if not drift.empty:
        rows = drift.sort_values("psi")
        figure, axes = plt.subplots(figsize=(7, max(3, 0.25 * len(rows))))
        axes.barh(
            rows["feature"],
            rows["psi"],
            # Grey: a calendar feature, shown and not judged (it grows in any world).
            color=[
                "tab:gray" if np.isnan(lim) else "tab:red" if v > lim else "tab:blue"
                for v, lim in zip(rows["psi"], rows["psi_limit"], strict=True)
            ],
        )
        axes.axvline(float(rows["psi_limit"].max()), color="grey", linestyle="--", label="limit")
        axes.set_xlabel("population stability index against the training date")
        axes.set_title(f"{model}: drift at {rows['scoring_date'].iloc[0]}")
        axes.legend()
        figure.tight_layout()
        figures["drift_by_feature.png"] = figure
    return figures

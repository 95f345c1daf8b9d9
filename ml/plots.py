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

"""Classification metrics with the same names in every run, so MLflow compares runs side by side."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score


def lift_at_top_decile(y_true: np.ndarray, probability: np.ndarray) -> float:
    """Positive rate among the 10% highest-scored customers, over the overall positive rate."""
    y_true = np.asarray(y_true)
    top = np.argsort(-np.asarray(probability), kind="stable")[: max(1, len(y_true) // 10)]
    base_rate = y_true.mean()
    return float(y_true[top].mean() / base_rate) if base_rate > 0 else float("nan")


def expected_calibration_error(y_true: np.ndarray, probability: np.ndarray, bins: int = 10) -> float:
    """Mean gap between predicted and observed rates over equal-size bins of the predictions, weighted by size."""
    order = np.argsort(np.asarray(probability), kind="stable")
    y_sorted, p_sorted = np.asarray(y_true, dtype=float)[order], np.asarray(probability, dtype=float)[order]
    gaps = [
        abs(y.mean() - p.mean()) * len(y)
        for y, p in zip(np.array_split(y_sorted, bins), np.array_split(p_sorted, bins), strict=True)
        if len(y)
    ]
    return float(sum(gaps) / len(y_sorted))


def classification_metrics(y_true: np.ndarray, probability: np.ndarray) -> dict[str, float]:
    return {
        "roc_auc": float(roc_auc_score(y_true, probability)),
        "pr_auc": float(average_precision_score(y_true, probability)),
        "brier": float(brier_score_loss(y_true, probability)),
        "ece": expected_calibration_error(y_true, probability),
        "lift_top_decile": lift_at_top_decile(y_true, probability),
        "positive_rate": float(np.mean(y_true)),
    }

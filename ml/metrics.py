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
    return _sorted_calibration_error(
        np.asarray(y_true, dtype=float)[order], np.asarray(probability, dtype=float)[order], bins
    )


def _sorted_calibration_error(y_sorted: np.ndarray, p_sorted: np.ndarray, bins: int) -> float:
    """ECE of outcomes and probabilities sorted by probability: each bin's gap between its sum of
    outcomes and of probabilities, over all rows (the gaps of the means weighted by bin size)."""
    starts = [int(part[0]) for part in np.array_split(np.arange(len(p_sorted)), bins) if len(part)]
    if not starts:
        return float("nan")
    gaps = np.abs(np.add.reduceat(y_sorted, starts) - np.add.reduceat(p_sorted, starts))
    return float(gaps.sum() / len(p_sorted))


def calibration_error_by_chance(
    probability: np.ndarray, seed: int, draws: int = 100, quantile: float = 0.95, bins: int = 10
) -> float:
    """The calibration error that a perfectly calibrated model with these probabilities exceeds only by
    chance (1 - ``quantile`` of the time): its ``quantile`` over ``draws`` sets of outcomes drawn from the
    probabilities themselves. On a few hundred outcomes chance alone gives several points of ECE."""
    p_sorted = np.sort(np.asarray(probability, dtype=float))
    rng = np.random.default_rng(seed)
    errors = [
        _sorted_calibration_error((rng.random(len(p_sorted)) < p_sorted).astype(float), p_sorted, bins)
        for _ in range(draws)
    ]
    return float(np.quantile(errors, quantile))


def classification_metrics(y_true: np.ndarray, probability: np.ndarray) -> dict[str, float]:
    return {
        "roc_auc": float(roc_auc_score(y_true, probability)),
        "pr_auc": float(average_precision_score(y_true, probability)),
        "brier": float(brier_score_loss(y_true, probability)),
        "ece": expected_calibration_error(y_true, probability),
        "lift_top_decile": lift_at_top_decile(y_true, probability),
        "positive_rate": float(np.mean(y_true)),
    }

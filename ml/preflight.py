"""Training preflight: does the data suffice to train? Checked before any model trains, as commercial
CRM predictors do; a failure skips training with the reasons, and the current champion keeps serving."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

import pandas as pd

from crm.pipeline import StepSkipped
from ml.features import FEATURE_COLUMNS

MIN_LABELS_PER_CLASS = 100
# A feature missing for more than this share of rows is broken. A feature missing for every row is
# an optional source that was not delivered: reported, not fatal (the model imputes it as constant).
MAX_MISSING_RATE = 0.99


class TrainingSkipped(StepSkipped):
    """The preflight failed: training is skipped and the current champion keeps serving."""


class TrainingUnchanged(TrainingSkipped):
    """The model's latest version learned from the same training data, settings and code: training again
    would register the same model, so it is skipped."""


@dataclass(frozen=True)
class PreflightResult:
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.reasons


def check_training_data(
    train: pd.DataFrame, validation: pd.DataFrame, label: str, first_data_day: date, train_date: date, window_days: int
) -> PreflightResult:
    reasons, notes = [], []
    for name, frame in (("training", train), ("validation", validation)):
        positives = int(frame[label].sum()) if len(frame) else 0
        negatives = len(frame) - positives
        if min(positives, negatives) < MIN_LABELS_PER_CLASS:
            reasons.append(
                f"{name} set has {positives} positive and {negatives} negative labels; at least "
                f"{MIN_LABELS_PER_CLASS} of each are needed"
            )
    history_needed = train_date - timedelta(days=window_days)
    if first_data_day > history_needed:
        reasons.append(
            f"history starts {first_data_day}, but training at {train_date} needs data from "
            f"{history_needed} (one {window_days}-day window of history before the training date)"
        )
    if len(train):
        missing = train[FEATURE_COLUMNS].isna().mean()
        for feature, rate in missing.items():
            if rate == 1.0:
                notes.append(f"feature {feature} is null for every row (its source was not delivered)")
            elif rate > MAX_MISSING_RATE:
                reasons.append(
                    f"feature {feature} is missing for {rate:.1%} of training rows (threshold {MAX_MISSING_RATE:.0%})"
                )
    return PreflightResult(reasons, notes)

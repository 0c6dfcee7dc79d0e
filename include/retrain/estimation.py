"""The champion's ROC AUC estimated from its own scores, before any label of the month exists.

Confidence-based performance estimation (the method of NannyML's CBPE): the champion's scores are
calibrated on labeled data it was validated on (isotonic regression), so each calibrated score is the
expected probability that the row is positive. Summed over the rows above every threshold, those give the
expected true and false positives, hence the expected ROC curve and its area. The estimate holds while the
relation between features and label stays as it was (covariate shift only); a concept change is exactly
what it cannot see, and what labels, when they arrive, reveal.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Calibration:
    """A monotone map from scores to probabilities: linear between the fitted points, flat outside them."""

    scores: tuple[float, ...]
    probabilities: tuple[float, ...]

    def apply(self, scores: np.ndarray) -> np.ndarray:
        return np.interp(np.asarray(scores, dtype=np.float64), self.scores, self.probabilities)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fit_calibration(scores: np.ndarray, labels: np.ndarray) -> Calibration:
    """Isotonic regression of the labels on the scores."""
    from sklearn.isotonic import IsotonicRegression

    isotonic = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip", increasing=True)
    isotonic.fit(np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=np.float64))
    return Calibration(tuple(isotonic.X_thresholds_.tolist()), tuple(isotonic.y_thresholds_.tolist()))


def expected_auc(scores: np.ndarray, probabilities: np.ndarray) -> float:
    """Area under the expected ROC curve: each row counts as positive with weight p and negative with 1 - p.

    Equal to `roc_auc_score` on every row taken twice, once per class, weighted by p and 1 - p; rows with
    tied scores share one point of the curve, as in roc_auc_score.
    """
    scores = np.asarray(scores, dtype=np.float64)
    p = np.clip(np.asarray(probabilities, dtype=np.float64), 0.0, 1.0)
    order = np.argsort(-scores, kind="stable")
    scores, p = scores[order], p[order]
    true_positives = np.cumsum(p)
    false_positives = np.cumsum(1.0 - p)
    # One point per distinct score: the last row of each run of ties.
    last = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    positives, negatives = true_positives[-1], false_positives[-1]
    if positives <= 0 or negatives <= 0:
        return float("nan")
    tpr = np.r_[0.0, true_positives[last] / positives]
    fpr = np.r_[0.0, false_positives[last] / negatives]
    return float(np.sum((fpr[1:] - fpr[:-1]) * (tpr[1:] + tpr[:-1]) / 2))


@dataclass(frozen=True)
class PerformanceEstimate:
    """The champion's AUC: estimated on the production month, as validated, and realized on the last
    labeled month by the version that estimated that month (so estimate and outcome stay comparable)."""

    champion_version: int
    estimated_auc: float
    validated_auc: float
    validated_month: str
    realized_auc: float | None
    realized_month: str | None
    realized_version: int | None
    production_rows_scored: int

    @property
    def estimated_drop(self) -> float:
        return self.validated_auc - self.estimated_auc

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "estimated_drop": self.estimated_drop}

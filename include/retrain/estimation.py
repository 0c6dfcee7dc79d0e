"""The champion's quality estimated from its own predictions, before any label of the month exists: the
ROC AUC of a classifier (one class against the rest for several), the RMSE or MAE of a regressor.

Confidence-based performance estimation (the method of NannyML's CBPE): the champion's scores are
calibrated on labeled data it was validated on, so each calibrated score is the expected probability that
the row is positive. Summed over the rows above every threshold, those give the
expected true and false positives, hence the expected ROC curve and its area. The estimate holds while the
relation between features and label stays as it was (covariate shift only); a concept change is exactly
what it cannot see, and what labels, when they arrive, reveal.

The expected area is taken on both the production month and the validation holdout, and only their
difference is trusted: the estimate is the validated AUC moved by it. A calibration curve that misses the
scores' true shape biases both areas alike, so the bias cancels instead of reaching the estimate.

A multiclass model's estimate is the same method one class against the rest. A regressor's is direct loss
estimation (`fit_loss_model`), anchored in the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

CALIBRATION_FOLDS = 5
LOG_ODDS_CLIP = 1e-6


@dataclass(frozen=True)
class Calibration:
    """A monotone map from scores to probabilities.

    "logistic" (Platt scaling on the score's log-odds): sigmoid(slope * logit(score) + intercept).
    "isotonic": linear between the fitted points, flat outside them.
    """

    method: str
    scores: tuple[float, ...] = ()
    probabilities: tuple[float, ...] = ()
    slope: float = 1.0
    intercept: float = 0.0
    out_of_fold_log_loss: dict[str, float] | None = None

    def apply(self, scores: np.ndarray) -> np.ndarray:
        scores = np.asarray(scores, dtype=np.float64)
        if self.method == "logistic":
            return _sigmoid(self.slope * _log_odds(scores) + self.intercept)
        return np.interp(scores, self.scores, self.probabilities)


def _log_odds(scores: np.ndarray) -> np.ndarray:
    clipped = np.clip(scores, LOG_ODDS_CLIP, 1 - LOG_ODDS_CLIP)
    return np.log(clipped) - np.log1p(-clipped)


def _sigmoid(values: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(0.5 * values))


def _isotonic(scores: np.ndarray, labels: np.ndarray) -> Calibration:
    from sklearn.isotonic import IsotonicRegression

    isotonic = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip", increasing=True)
    isotonic.fit(scores, labels)
    return Calibration("isotonic", tuple(isotonic.X_thresholds_.tolist()), tuple(isotonic.y_thresholds_.tolist()))


def _logistic(scores: np.ndarray, labels: np.ndarray) -> Calibration:
    from sklearn.linear_model import LogisticRegression

    # Unpenalised: two parameters need no shrinkage, and a penalty would pull the slope towards flat.
    fitted = LogisticRegression(C=np.inf).fit(_log_odds(scores)[:, None], labels)
    return Calibration("logistic", slope=float(fitted.coef_[0, 0]), intercept=float(fitted.intercept_[0]))


CALIBRATORS = {"logistic": _logistic, "isotonic": _isotonic}


def _log_loss(labels: np.ndarray, probabilities: np.ndarray) -> float:
    # Not sklearn's log_loss: it clips at machine epsilon, so one isotonic step of exactly 0 or 1 missing a
    # held-out row would cost ~36 and decide the choice alone; 1e-4 bounds any single row's penalty.
    p = np.clip(probabilities, 1e-4, 1 - 1e-4)
    return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log1p(-p)))


def fit_calibration(scores: np.ndarray, labels: np.ndarray, *, seed: int = 0) -> Calibration:
    """Platt scaling or isotonic regression, whichever predicts held-out labels better (out-of-fold log loss).

    Isotonic regression assumes nothing about the scores' shape, but with few positives its steps overfit:
    a stretch of scores with no positive gets probability 0, and the estimated AUC comes out too high
    (+0.03 with 90 positives in simulations). Platt scaling has two parameters and no such steps, and fits
    well when the scores' log-odds are about linear in the truth, as a boosted model's are. Cross-validation
    picks the one that holds on data it was not fitted on.
    """
    from sklearn.model_selection import StratifiedKFold

    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    folds = min(CALIBRATION_FOLDS, int(min(labels.sum(), len(labels) - labels.sum())))
    if folds < 2:
        return _logistic(scores, labels)
    losses = dict.fromkeys(CALIBRATORS, 0.0)
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(scores[:, None], labels):
        for name, fit in CALIBRATORS.items():
            losses[name] += _log_loss(labels[test], fit(scores[train], labels[train]).apply(scores[test])) / folds
    best = min(losses, key=losses.__getitem__)
    chosen = CALIBRATORS[best](scores, labels)
    return replace(chosen, out_of_fold_log_loss={name: round(loss, 6) for name, loss in losses.items()})


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
class ValidationProfile:
    """What estimating a champion's AUC needs from the holdout it was validated on. It depends on that
    holdout's scores only, so the run that validates a model computes it once, from scores it already has,
    and the estimates of the months after it read it instead of scoring the holdout again."""

    calibration: Calibration | None  # a binary model's; None for a multiclass one, calibrated per class
    validated_auc: float
    expected_auc_validation: float
    rows: int
    # A multiclass model's: one calibration per class of `classes` (None for a class its holdout lacks).
    class_calibrations: tuple[Calibration | None, ...] = ()
    classes: tuple[str, ...] = ()


@dataclass(frozen=True)
class LossProfile:
    """What estimating a regressor's error needs from the holdout it was validated on: its error there, the
    error its loss model expects there, and where that loss model is kept (a joblib file, by SHA-256)."""

    metric: str
    validated: float
    expected_validation: float
    rows: int
    model_file: str | None = None
    model_sha256: str | None = None


def multiclass_profile(
    probabilities: np.ndarray, labels: np.ndarray, classes: tuple[str, ...], *, validated_auc: float, seed: int
) -> ValidationProfile:
    """A multiclass model's per-class calibrations and expected weighted one-vs-rest AUC on its holdout."""
    calibrations = multiclass_calibrations(probabilities, labels, seed=seed)
    return ValidationProfile(
        calibration=None,
        validated_auc=validated_auc,
        expected_auc_validation=expected_ovr_auc(probabilities, calibrations),
        rows=len(labels),
        class_calibrations=tuple(calibrations),
        classes=classes,
    )


def validation_profile(scores: np.ndarray, labels: np.ndarray, *, seed: int) -> ValidationProfile:
    """A model's calibration and AUCs on the holdout it is validated on."""
    from sklearn.metrics import roc_auc_score

    calibration = fit_calibration(scores, labels, seed=seed)
    return ValidationProfile(
        calibration=calibration,
        validated_auc=float(roc_auc_score(labels, scores)),
        expected_auc_validation=expected_auc(scores, calibration.apply(scores)),
        rows=len(scores),
    )


def anchored_estimate(validated_auc: float, expected_on_production: float, expected_on_validation: float) -> float:
    """The validated AUC moved by the change in expected AUC from the validation holdout to production.

    The raw expected AUC on production is only as right as the calibration's shape: on a fraud-like
    month (3% positives, a model overfit on a 300-level category, its scores piled up near the base rate)
    Platt scaling fitted on 95 positives put it 0.047 below the realized AUC in each of seven months
    without change, and 0.037 below the holdout's own AUC. Anchored, the mean error was 0.009, and a
    `drift.max_estimated_auc_drop` of 0.03 no longer fires every month for nothing.
    """
    return float(np.clip(validated_auc + expected_on_production - expected_on_validation, 0.0, 1.0))


def expected_ovr_auc(probabilities: np.ndarray, calibrations: list[Calibration | None]) -> float:
    """The expected weighted one-vs-rest AUC of a multiclass model: each class's expected AUC against the
    rest (its column of probabilities, calibrated against "is this class"), weighted by the class's expected
    share of the rows, as roc_auc_score's multi_class="ovr", average="weighted" weights by the true share."""
    total = weight = 0.0
    for k, calibration in enumerate(calibrations):
        if calibration is None:
            continue
        expected = calibration.apply(probabilities[:, k])
        auc = expected_auc(probabilities[:, k], expected)
        if np.isnan(auc):
            continue
        total += auc * expected.mean()
        weight += expected.mean()
    return total / weight if weight else float("nan")


def multiclass_calibrations(probabilities: np.ndarray, labels: np.ndarray, *, seed: int) -> list[Calibration | None]:
    """One calibration per class, of its probability against "is this class"; None for a class the
    validation rows do not hold (or hold only), which has no AUC to estimate."""
    calibrations: list[Calibration | None] = []
    for k in range(probabilities.shape[1]):
        is_class = (labels == k).astype(np.float64)
        calibrations.append(
            fit_calibration(probabilities[:, k], is_class, seed=seed) if 0 < is_class.sum() < len(labels) else None
        )
    return calibrations


def fit_loss_model(
    validation: pd.DataFrame, predicted: np.ndarray, actual: np.ndarray, *, metric: str, seed: int
) -> object:
    """Direct loss estimation (NannyML's DLE): a model of the regressor's loss on each row (absolute error
    for MAE, squared error for RMSE) from the row's features and the regressor's own prediction, fitted on
    the month the regressor was validated on. On a production month its mean predicted loss is the
    expected error there, which holds while the relation between features and target stays as it was."""
    from retrain.config import ModelSpec, TrainingSpec
    from retrain.training import build_pipeline

    numeric = [c for c in validation.columns if validation[c].dtype.kind in "fiub"]
    categorical = [c for c in validation.columns if c not in numeric]
    spec = ModelSpec(
        name="loss",
        target=LOSS_TARGET,
        numeric_features=(*numeric, PREDICTION_COLUMN),
        categorical_features=tuple(categorical),
        task="regression",
    )
    loss = (predicted - actual) ** 2 if metric == "rmse" else np.abs(predicted - actual)
    model = build_pipeline(spec, TrainingSpec(seed=seed))
    model.fit(validation.assign(**{PREDICTION_COLUMN: predicted}), loss)
    return model


def expected_error(loss_model: object, rows: pd.DataFrame, predicted: np.ndarray, *, metric: str) -> float:
    """The expected RMSE or MAE on `rows` from the loss model's predicted losses (negative ones, which a
    boosted model can give near zero, count as zero)."""
    losses = np.clip(loss_model.predict(rows.assign(**{PREDICTION_COLUMN: predicted})), 0.0, None)  # type: ignore[attr-defined]
    mean = float(np.mean(losses))
    return float(np.sqrt(mean)) if metric == "rmse" else mean


def anchored_error(validated: float, expected_on_production: float, expected_on_validation: float) -> float:
    """The validated error moved by the change in expected error, as `anchored_estimate` does for an AUC:
    a loss model's bias is alike on both months and cancels."""
    return max(0.0, validated + expected_on_production - expected_on_validation)


PREDICTION_COLUMN = "__prediction__"
LOSS_TARGET = "__loss__"

"""Champion and challenger on the same holdout: split, metrics, and the paired bootstrap of the AUC lift."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

from retrain.errors import DataError
from retrain.records import ConfusionMatrix, Histogram, LiftInterval, Metrics, Residuals, RocCurve, SegmentCheck

if TYPE_CHECKING:
    import pandas as pd

    from retrain.config import PromotionSpec

BOOTSTRAP_CHUNK = 64  # resamples per block: bounds memory at ~64 x rows x 4 bytes per array
SMALL_INT_ROWS = 10_000_000
PROBABILITY_CLIP = 1e-15


def holdout_mask(
    frame: pd.DataFrame,
    target: str,
    fraction: float,
    *,
    seed: int,
    timestamp: str | None = None,
    task: str = "binary",
) -> np.ndarray:
    """Rows of the new labeled month held out from training, stratified by class for a classifier.

    With a timestamp column the latest rows of each class are held out (the model is always judged on
    data later than what it learned from); without one, a seeded random share of each class. A regressor's
    rows are one group.

    Every class keeps at least one row in the holdout, so that an AUC exists, and one in training when
    it has two or more. A month with a handful of positives is then judged too small to decide on
    (`promotion.min_holdout_per_class`), and the run still ends with a decision, not an error.
    """
    labels = frame[target].to_numpy()
    mask = np.zeros(len(frame), dtype=bool)
    rng = np.random.default_rng(seed)
    # Nanoseconds as integers (a missing time sorts first, as the oldest): never an array of Timestamps.
    moments = frame[timestamp].to_numpy(dtype="datetime64[ns]").view(np.int64) if timestamp else None
    if task == "regression":
        groups = [np.arange(len(frame))]
    elif task == "multiclass":
        import pandas as pd

        codes, _ = pd.factorize(frame[target], sort=True)
        groups = [np.flatnonzero(codes == code) for code in range(codes.max() + 1)]
    else:
        groups = []
        for label in (0, 1):
            rows = np.flatnonzero(labels == label)
            if not len(rows):
                raise DataError(f"holdout: target column {target} holds no row of class {label}")
            groups.append(rows)
    for rows in groups:
        if not len(rows):
            continue
        take = min(max(round(fraction * len(rows)), 1), max(len(rows) - 1, 1))
        if timestamp:
            order = np.argsort(moments[rows], kind="stable")
            mask[rows[order[-take:]]] = True
        else:
            mask[rng.choice(rows, size=take, replace=False)] = True
    return mask


def score_metrics(
    labels: np.ndarray,
    predictions: np.ndarray,
    *,
    task: str = "binary",
    metric: str = "roc_auc",
    classes: tuple[str, ...] | None = None,
) -> Metrics:
    """A model's metrics on a holdout: the promotion metric and the others its task has.

    `labels` are 0/1 for a binary model, positions in `classes` for a multiclass one, numbers for a
    regressor; `predictions` as `retrain.tasks.predict` shapes them.
    """
    from retrain.tasks import METRICS

    full = np.ones((1, len(labels)), dtype=np.int32)
    values = {
        name: float(ResampledMetric(name, labels, [predictions], task=task)(full)[0][0])
        for name, spec in METRICS.items()
        if task in spec.tasks and (task != "multiclass" or name != "roc_auc")
    }
    if task == "regression":
        return Metrics(
            auc=None,
            log_loss=None,
            brier=None,
            rows=len(labels),
            positives=None,
            metric=metric,
            value=values[metric],
            rmse=values["rmse"],
            mae=values["mae"],
        )
    labels = np.asarray(labels, dtype=int)
    if task == "binary":
        positives = int(labels.sum())
        auc = values["roc_auc"]
    else:
        # The rarest class's rows: what limits how well a multiclass holdout can judge.
        present = np.bincount(labels, minlength=len(classes or ()))
        positives = int(present[present > 0].min())
        auc = values["roc_auc_ovr_weighted"]
    return Metrics(
        auc=auc,
        log_loss=values["log_loss"],
        brier=values["brier"],
        rows=len(labels),
        positives=positives,
        metric=metric,
        value=values[metric],
        average_precision=values["average_precision"],
    )


def lift_histogram(samples: np.ndarray, bins: int = 40) -> Histogram:
    """The bootstrap lifts as a histogram, small enough to store beside the evaluation."""
    counts, edges = np.histogram(samples, bins=bins)
    return Histogram(edges=tuple(edges.tolist()), counts=tuple(counts.tolist()))


def roc_points(labels: np.ndarray, scores: np.ndarray, max_points: int = 200) -> RocCurve:
    """The ROC curve thinned to at most `max_points` points (first and last kept), and its AUC."""
    from sklearn.metrics import auc, roc_curve

    fpr, tpr, _ = roc_curve(labels, scores)
    keep = np.unique(np.linspace(0, len(fpr) - 1, min(max_points, len(fpr))).round().astype(int))
    # The area under the full curve: what roc_auc_score computes, without sorting the scores again.
    return RocCurve(fpr=tuple(fpr[keep].tolist()), tpr=tuple(tpr[keep].tolist()), auc=float(auc(fpr, tpr)))


def confusion_matrix(labels: np.ndarray, probabilities: np.ndarray, classes: tuple[str, ...]) -> ConfusionMatrix:
    """True class by predicted class (the most probable one), over the holdout."""
    predicted = np.argmax(probabilities, axis=1)
    k = len(classes)
    counts = np.bincount(np.asarray(labels, dtype=int) * k + predicted, minlength=k * k).reshape(k, k)
    return ConfusionMatrix(classes=classes, counts=tuple(tuple(int(c) for c in row) for row in counts))


RESIDUAL_POINTS = 500


def residuals(actual: np.ndarray, predicted: np.ndarray, *, seed: int, bins: int = 40) -> Residuals:
    """A regressor's residuals: every one in a histogram, a seeded sample of points for a scatter chart."""
    actual, predicted = np.asarray(actual, dtype=np.float64), np.asarray(predicted, dtype=np.float64)
    counts, edges = np.histogram(predicted - actual, bins=bins)
    sample = np.arange(len(actual))
    if len(actual) > RESIDUAL_POINTS:
        sample = np.sort(np.random.default_rng(seed).choice(len(actual), RESIDUAL_POINTS, replace=False))
    return Residuals(
        actual=tuple(actual[sample].tolist()),
        predicted=tuple(predicted[sample].tolist()),
        histogram=Histogram(edges=tuple(edges.tolist()), counts=tuple(counts.tolist())),
    )


def row_aucs(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """ROC AUC of each row of `scores` against the same labels, from average ranks (the Mann-Whitney
    statistic, ties counted as one half): equal to roc_auc_score row by row, without its per-call checks,
    which cost more than the arithmetic on a few thousand rows."""
    from scipy.stats import rankdata

    positives = np.asarray(labels).astype(bool)
    n_positive = int(positives.sum())
    n_negative = len(positives) - n_positive
    if not n_positive or not n_negative:
        raise ValueError("an AUC needs both classes among the labels")
    ranks = rankdata(np.atleast_2d(scores), axis=1)
    return (ranks[:, positives].sum(axis=1) - n_positive * (n_positive + 1) / 2) / (n_positive * n_negative)


class _RankedScores:
    """One model's scores arranged so a resample's AUC needs one cumulative sum over negatives.

    For each positive, `below` / `at_or_below` count negatives scoring strictly lower / lower or equal;
    with resample counts c, 2 * AUC numerator = sum over positives of c_i * (N[below_i] + N[at_or_below_i])
    where N is the running count of resampled negatives in score order. This is the Mann-Whitney AUC with
    ties counted as one half, identical to roc_auc_score on the resampled rows.
    """

    def __init__(self, scores: np.ndarray, positives: np.ndarray, negatives: np.ndarray) -> None:
        negative_scores = scores[negatives]
        order = np.argsort(negative_scores, kind="stable")
        sorted_negative = negative_scores[order]
        self.negatives_in_order = negatives[order]
        self.below = np.searchsorted(sorted_negative, scores[positives], side="left")
        self.at_or_below = np.searchsorted(sorted_negative, scores[positives], side="right")
        self.has_ties = bool(np.any(self.below != self.at_or_below))

    def twice_numerators(self, counts: np.ndarray, positive_counts: np.ndarray) -> np.ndarray:
        negative_counts = np.take(counts, self.negatives_in_order, axis=1)
        # int32 halves memory traffic; products stay below 2**31 while rows <= SMALL_INT_ROWS.
        dtype = np.int32 if counts.shape[1] <= SMALL_INT_ROWS else np.int64
        running = np.zeros((counts.shape[0], negative_counts.shape[1] + 1), dtype=dtype)
        np.cumsum(negative_counts, axis=1, out=running[:, 1:])
        paired = np.take(running, self.below, axis=1)
        if self.has_ties:
            paired += np.take(running, self.at_or_below, axis=1)
        else:
            paired *= 2
        return (positive_counts * paired).sum(axis=1, dtype=np.int64)


def resample_counts(rows: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """How often each row is drawn in each bootstrap resample, shape (resamples, rows)."""
    dtype = np.int32 if resamples * rows < 2**31 else np.int64
    draws = rng.integers(0, rows, size=(resamples, rows), dtype=dtype)
    draws += (np.arange(resamples, dtype=dtype) * rows)[:, None]
    return np.bincount(draws.ravel(), minlength=resamples * rows).astype(np.int32).reshape(resamples, rows)


class ResampledAUC:
    """AUCs of several models on the same bootstrap resamples, ranking each model's scores once."""

    def __init__(self, labels: np.ndarray, scores: list[np.ndarray]) -> None:
        labels = np.asarray(labels).astype(bool)
        self.positives, negatives = np.flatnonzero(labels), np.flatnonzero(~labels)
        self.models = [_RankedScores(np.asarray(s), self.positives, negatives) for s in scores]

    def __call__(self, counts: np.ndarray) -> list[np.ndarray]:
        """One array of AUCs per model, one AUC per row of `counts`; NaN where a resample has one class."""
        positive_counts = np.take(counts, self.positives, axis=1)
        total_positive = positive_counts.sum(axis=1, dtype=np.int64)
        total_negative = counts.sum(axis=1, dtype=np.int64) - total_positive
        with np.errstate(invalid="ignore", divide="ignore"):
            return [
                model.twice_numerators(counts, positive_counts) / (2.0 * total_positive * total_negative)
                for model in self.models
            ]


def _resampled_average_precision(positive: np.ndarray, scores: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Average precision of one model on each resample: sum over thresholds of the recall gained times the
    precision there, as average_precision_score computes it, with each row counted as often as it is drawn."""
    order = np.argsort(-scores, kind="stable")
    ordered = scores[order]
    last = np.r_[np.flatnonzero(np.diff(ordered)), len(ordered) - 1]  # one point per distinct score
    drawn = np.take(counts, order, axis=1)
    true_positives = np.cumsum(drawn * positive[order], axis=1, dtype=np.int64)[:, last]
    selected = np.cumsum(drawn, axis=1, dtype=np.int64)[:, last]
    gained = np.diff(true_positives, axis=1, prepend=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(selected > 0, true_positives / np.maximum(selected, 1), 0.0)
        return (gained * precision).sum(axis=1) / true_positives[:, -1]


class ResampledMetric:
    """One metric of several models on the same bootstrap resamples: `counts` (resamples x rows) says how
    often each row is drawn, and a row of ones is the holdout itself.

    Losses of single rows (log loss, Brier score, squared and absolute error) are averages weighted by the
    counts. A ROC AUC is the Mann-Whitney statistic of `ResampledAUC`; for several classes, one class
    against the rest, weighted by each class's share of the resample (or equally: `roc_auc_ovr`), as
    roc_auc_score's multi_class="ovr" computes it. A class absent from the holdout has no AUC and no weight.
    """

    def __init__(self, metric: str, labels: np.ndarray, predictions: list[np.ndarray], *, task: str) -> None:
        self.metric, self.task = metric, task
        self.labels = np.asarray(labels)
        self.predictions = [np.asarray(p, dtype=np.float64) for p in predictions]
        if metric in ("rmse", "mae", "log_loss", "brier"):
            self.losses = np.stack([self._row_losses(p) for p in self.predictions])
        elif metric == "roc_auc":
            self.aucs = ResampledAUC(self.labels, self.predictions)
        elif metric in ("roc_auc_ovr_weighted", "roc_auc_ovr"):
            self.classes = [
                k for k in range(self.predictions[0].shape[1]) if 0 < (self.labels == k).sum() < len(labels)
            ]
            self.per_class = [ResampledAUC(self.labels == k, [p[:, k] for p in self.predictions]) for k in self.classes]
        elif metric != "average_precision":
            raise ValueError(f"unknown metric {metric!r}")

    def _row_losses(self, predicted: np.ndarray) -> np.ndarray:
        labels = self.labels
        if self.metric in ("rmse", "mae"):
            error = predicted - labels.astype(np.float64)
            return error**2 if self.metric == "rmse" else np.abs(error)
        if self.task == "binary":
            truth = labels.astype(np.float64)
            if self.metric == "brier":
                return (predicted - truth) ** 2
            p = np.clip(predicted, PROBABILITY_CLIP, 1 - PROBABILITY_CLIP)
            return -(truth * np.log(p) + (1 - truth) * np.log1p(-p))
        rows = np.arange(len(labels))
        if self.metric == "brier":
            # The multiclass Brier score: squared distance to the one-hot label, summed over the classes.
            squared = predicted**2
            return squared.sum(axis=1) - 2 * predicted[rows, labels] + 1
        # Rows renormalised, as sklearn's log_loss does with probabilities that do not sum to one.
        total = predicted.sum(axis=1)
        chosen = predicted[rows, labels] / np.where(total > 0, total, 1)
        return -np.log(np.clip(chosen, PROBABILITY_CLIP, 1.0))

    def __call__(self, counts: np.ndarray) -> list[np.ndarray]:
        """One array per model, one value per row of `counts`; NaN where a resample cannot give one."""
        if hasattr(self, "losses"):
            drawn = counts.sum(axis=1, dtype=np.int64)
            means = (counts.astype(np.float64) @ self.losses.T) / drawn[:, None]
            values = np.sqrt(means) if self.metric == "rmse" else means
            return list(values.T)
        if self.metric == "roc_auc":
            return self.aucs(counts)
        if self.metric == "average_precision":
            return self._average_precision(counts)
        return self._one_vs_rest(counts)

    def _one_vs_rest(self, counts: np.ndarray) -> list[np.ndarray]:
        totals = np.zeros((len(self.predictions), counts.shape[0]))
        weights = np.zeros(counts.shape[0])
        for k, aucs in zip(self.classes, self.per_class, strict=True):
            share = (
                counts[:, self.labels == k].sum(axis=1, dtype=np.int64).astype(np.float64)
                if self.metric == "roc_auc_ovr_weighted"
                else np.ones(counts.shape[0])
            )
            per_model = aucs(counts)
            for model, auc in enumerate(per_model):
                # A resample that drew no row of class k has no AUC for it, and k no weight there.
                totals[model] += np.where(np.isnan(auc), 0.0, auc * share)
            weights += np.where(np.isnan(per_model[0]), 0.0, share)
        with np.errstate(invalid="ignore", divide="ignore"):
            return list(totals / weights)

    def _average_precision(self, counts: np.ndarray) -> list[np.ndarray]:
        if self.task == "binary":
            positive = self.labels.astype(bool)
            return [_resampled_average_precision(positive, p, counts) for p in self.predictions]
        present = [k for k in range(self.predictions[0].shape[1]) if (self.labels == k).any()]
        return [
            np.nanmean([_resampled_average_precision(self.labels == k, p[:, k], counts) for k in present], axis=0)
            for p in self.predictions
        ]


def paired_bootstrap_lift(
    labels: np.ndarray,
    champion_scores: np.ndarray,
    challenger_scores: np.ndarray,
    *,
    resamples: int,
    confidence: float,
    seed: int,
    metric: str = "roc_auc",
    task: str = "binary",
) -> LiftInterval:
    """Percentile interval of the challenger's improvement over the champion in `metric` (challenger minus
    champion, or champion minus challenger for an error metric, so that a positive lift is always better),
    both scored on the same resampled rows."""
    from retrain.tasks import METRICS

    direction = METRICS[metric]
    labels = np.asarray(labels)
    if metric == "roc_auc":
        labels = labels.astype(bool)
    values = ResampledMetric(metric, labels, [champion_scores, challenger_scores], task=task)

    def block_lifts(start: int) -> np.ndarray:
        # One generator per block, seeded by its position, so threads cannot change the draws.
        rng = np.random.default_rng([seed, start])
        champion, challenger = values(resample_counts(len(labels), min(BOOTSTRAP_CHUNK, resamples - start), rng))
        return direction.improvement(challenger, champion)

    # numpy releases the GIL in the heavy steps, so blocks overlap on several cores.
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        lifts = list(pool.map(block_lifts, range(0, resamples, BOOTSTRAP_CHUNK)))
    # A resample holding one class only has no AUC; it is dropped, as roc_auc_score would refuse it.
    lift_samples = np.concatenate(lifts)
    lift_samples = lift_samples[~np.isnan(lift_samples)]
    tail = (1 - confidence) / 2
    low, high = np.quantile(lift_samples, [tail, 1 - tail])
    champion, challenger = values(np.ones((1, len(labels)), dtype=np.int32))
    return LiftInterval(
        lift=float(direction.improvement(challenger[0], champion[0])),
        low=float(low),
        high=float(high),
        confidence=confidence,
        resamples=len(lift_samples),
        share_not_positive=float(np.mean(lift_samples <= 0)),
        samples=lift_samples,
    )


def no_skill(labels: np.ndarray, predictions: np.ndarray, *, task: str, metric: str) -> np.ndarray:
    """What a model that knows nothing of the features predicts on the holdout: every row alike, the class
    shares (or the mean, or for MAE the median) of the holdout itself. Its AUC is exactly 1/2."""
    labels = np.asarray(labels)
    if task == "regression":
        centre = np.median(labels) if metric == "mae" else np.mean(labels)
        return np.full(len(labels), float(centre))
    if task == "binary":
        return np.full(len(labels), float(np.mean(labels)))
    shares = np.bincount(labels.astype(int), minlength=predictions.shape[1]) / len(labels)
    return np.tile(shares, (len(labels), 1))


def chance_lift(
    labels: np.ndarray,
    scores: np.ndarray,
    *,
    resamples: int,
    confidence: float,
    seed: int,
    metric: str = "roc_auc",
    task: str = "binary",
) -> LiftInterval:
    """A first model's improvement over a model with no skill (for an AUC: AUC - 1/2), with its bootstrap
    interval. With no champion to beat, this is what stops a model judged on a handful of positives from
    becoming the first champion."""
    baseline = np.zeros(len(scores)) if metric == "roc_auc" else no_skill(labels, scores, task=task, metric=metric)
    return paired_bootstrap_lift(
        labels, baseline, scores, resamples=resamples, confidence=confidence, seed=seed, metric=metric, task=task
    )


MISSING_SEGMENT = "(missing)"


def segment_checks(
    segments: pd.DataFrame,
    labels: np.ndarray,
    champion: np.ndarray,
    challenger: np.ndarray,
    *,
    policy: PromotionSpec,
    task: str,
) -> tuple[SegmentCheck, ...]:
    """Champion and challenger in every segment of the holdout: each value of each column of `segments`
    (its rows line up with the labels), in the promotion metric. A segment with fewer than
    `min_segment_rows` rows, or (for a classifier) a single class, is skipped and says so; one where the
    challenger is worse by more than `max_segment_drop` fails. Largest segments first within a column."""
    metric = policy.judged_by
    limit = policy.max_segment_drop or 0.0
    labels = np.asarray(labels)
    checks = []
    for column in segments.columns:
        values = segments[column].astype(object).where(segments[column].notna(), MISSING_SEGMENT).astype(str)
        for value, count in values.value_counts().items():
            rows = np.flatnonzero((values == value).to_numpy())
            where = {"column": str(column), "value": str(value), "rows": int(count)}
            if count < policy.min_segment_rows:
                note = f"{count} rows, fewer than promotion.min_segment_rows={policy.min_segment_rows}"
                checks.append(SegmentCheck(**where, status="skipped", note=note))
                continue
            if task != "regression" and len(np.unique(labels[rows])) < 2:
                checks.append(SegmentCheck(**where, status="skipped", note="a single class: no metric to compare"))
                continue
            ones = np.ones((1, len(rows)), dtype=np.int32)
            subset = labels[rows].astype(bool) if metric.name == "roc_auc" else labels[rows]
            before, after = (
                float(v[0])
                for v in ResampledMetric(metric.name, subset, [champion[rows], challenger[rows]], task=task)(ones)
            )
            difference = metric.improvement(after, before)
            failed = -difference > limit
            note = (
                f"worse by {-difference:.4f}, more than promotion.max_segment_drop={limit:g}"
                if failed
                else "within promotion.max_segment_drop"
            )
            checks.append(
                SegmentCheck(
                    **where,
                    status="fail" if failed else "pass",
                    champion=before,
                    challenger=after,
                    difference=difference,
                    note=note,
                )
            )
    return tuple(checks)

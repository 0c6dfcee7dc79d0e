"""Champion and challenger on the same holdout: split, metrics, and the paired bootstrap of the AUC lift."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

from retrain.errors import DataError
from retrain.records import Histogram, LiftInterval, Metrics, RocCurve

if TYPE_CHECKING:
    import pandas as pd

BOOTSTRAP_CHUNK = 64  # resamples per block: bounds memory at ~64 x rows x 4 bytes per array
SMALL_INT_ROWS = 10_000_000


def holdout_mask(
    frame: pd.DataFrame, target: str, fraction: float, *, seed: int, timestamp: str | None = None
) -> np.ndarray:
    """Rows of the new labeled month held out from training, stratified by class.

    With a timestamp column the latest rows of each class are held out (the model is always judged on
    data later than what it learned from); without one, a seeded random share of each class.

    Every class keeps at least one row in the holdout, so that an AUC exists, and one in training when
    it has two or more. A month with a handful of positives is then judged too small to decide on
    (`promotion.min_holdout_per_class`), and the run still ends with a decision, not an error.
    """
    labels = frame[target].to_numpy()
    mask = np.zeros(len(frame), dtype=bool)
    rng = np.random.default_rng(seed)
    # Nanoseconds as integers (a missing time sorts first, as the oldest): never an array of Timestamps.
    moments = frame[timestamp].to_numpy(dtype="datetime64[ns]").view(np.int64) if timestamp else None
    for label in (0, 1):
        rows = np.flatnonzero(labels == label)
        if not len(rows):
            raise DataError(f"holdout: target column {target} holds no row of class {label}")
        take = min(max(round(fraction * len(rows)), 1), max(len(rows) - 1, 1))
        if timestamp:
            order = np.argsort(moments[rows], kind="stable")
            mask[rows[order[-take:]]] = True
        else:
            mask[rng.choice(rows, size=take, replace=False)] = True
    return mask


def score_metrics(labels: np.ndarray, scores: np.ndarray) -> Metrics:
    """ROC AUC (the primary metric), log loss and Brier score of positive-class probabilities."""
    from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

    labels = np.asarray(labels, dtype=int)
    return Metrics(
        auc=float(roc_auc_score(labels, scores)),
        log_loss=float(log_loss(labels, scores, labels=[0, 1])),
        brier=float(brier_score_loss(labels, scores)),
        rows=len(labels),
        positives=int(labels.sum()),
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


def paired_bootstrap_lift(
    labels: np.ndarray,
    champion_scores: np.ndarray,
    challenger_scores: np.ndarray,
    *,
    resamples: int,
    confidence: float,
    seed: int,
) -> LiftInterval:
    """Percentile interval of AUC(challenger) - AUC(champion), both scored on the same resampled rows."""
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels).astype(bool)
    aucs = ResampledAUC(labels, [champion_scores, challenger_scores])

    def block_lifts(start: int) -> np.ndarray:
        # One generator per block, seeded by its position, so threads cannot change the draws.
        rng = np.random.default_rng([seed, start])
        champion, challenger = aucs(resample_counts(len(labels), min(BOOTSTRAP_CHUNK, resamples - start), rng))
        return challenger - champion

    # numpy releases the GIL in the heavy steps, so blocks overlap on several cores.
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        lifts = list(pool.map(block_lifts, range(0, resamples, BOOTSTRAP_CHUNK)))
    # A resample holding one class only has no AUC; it is dropped, as roc_auc_score would refuse it.
    lift_samples = np.concatenate(lifts)
    lift_samples = lift_samples[~np.isnan(lift_samples)]
    tail = (1 - confidence) / 2
    low, high = np.quantile(lift_samples, [tail, 1 - tail])
    observed = roc_auc_score(labels, challenger_scores) - roc_auc_score(labels, champion_scores)
    return LiftInterval(
        lift=float(observed),
        low=float(low),
        high=float(high),
        confidence=confidence,
        resamples=len(lift_samples),
        share_not_positive=float(np.mean(lift_samples <= 0)),
        samples=lift_samples,
    )


def chance_lift(
    labels: np.ndarray, scores: np.ndarray, *, resamples: int, confidence: float, seed: int
) -> LiftInterval:
    """A first model's AUC over chance (AUC - 1/2), with its bootstrap interval: the lift over a model that
    scores every row alike, whose AUC is exactly 1/2 on every resample. With no champion to beat, this is
    what stops a model judged on a handful of positives from becoming the first champion."""
    return paired_bootstrap_lift(
        labels, np.zeros(len(scores)), scores, resamples=resamples, confidence=confidence, seed=seed
    )

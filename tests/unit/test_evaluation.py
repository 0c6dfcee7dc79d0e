from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

from retrain.errors import DataError
from retrain.evaluation import (
    ResampledAUC,
    chance_lift,
    holdout_mask,
    paired_bootstrap_lift,
    resample_counts,
    row_aucs,
    score_metrics,
)


def test_holdout_is_stratified_and_takes_the_latest_rows_of_each_class() -> None:
    frame = pd.DataFrame(
        {
            "y": [0, 1] * 50,
            "ts": pd.date_range("2025-01-01", periods=100, freq="h")[::-1],  # newest first
        }
    )
    mask = holdout_mask(frame, "y", 0.2, timestamp="ts", seed=0)
    assert mask.sum() == 20 and frame["y"][mask].sum() == 10
    assert set(np.flatnonzero(mask)) == set(range(20)), "the 20 newest rows, 10 of each class"


def test_random_holdout_is_stratified_and_seeded() -> None:
    frame = pd.DataFrame({"y": [1] * 30 + [0] * 70})
    first = holdout_mask(frame, "y", 0.3, seed=5)
    assert not (first == holdout_mask(frame, "y", 0.3, seed=6)).all(), "the seed chooses the rows"
    assert first.sum() == 30 and frame["y"][first].sum() == 9
    np.testing.assert_array_equal(first, holdout_mask(frame, "y", 0.3, seed=5))


def test_a_class_too_small_for_its_share_still_has_a_row_on_each_side_of_the_split() -> None:
    few = pd.DataFrame({"y": [0] * 20 + [1] * 3})
    mask = holdout_mask(few, "y", 0.1, seed=1)
    assert few["y"][mask].tolist().count(1) == 1, "0.1 x 3 rounds to 0, yet the holdout needs a positive"
    assert few["y"][~mask].tolist().count(1) == 2
    pair = pd.DataFrame({"y": [0] * 20 + [1] * 2})
    assert pair["y"][holdout_mask(pair, "y", 0.9, seed=1)].sum() == 1, "0.9 x 2 leaves one to train on"
    single = pd.DataFrame({"y": [0] * 20 + [1]})
    assert single["y"][holdout_mask(single, "y", 0.3, seed=0)].sum() == 1, "a lone positive goes to the holdout"
    three = pd.DataFrame({"y": [0] * 20 + [1] * 3})
    assert three["y"][holdout_mask(three, "y", 0.9, seed=1)].sum() == 2, "0.9 x 3 rounds to 3; one stays to train on"
    with pytest.raises(DataError, match="^holdout: target column y holds no row of class 1$"):
        holdout_mask(pd.DataFrame({"y": [0] * 20}), "y", 0.3, seed=0)


def test_a_row_without_a_time_is_the_oldest_and_rows_at_one_time_go_in_file_order() -> None:
    times = pd.to_datetime(["2025-01-01", None, "2025-01-03", "2025-01-02", None, "2025-01-04"] * 2, utc=True)
    frame = pd.DataFrame({"y": [0] * 6 + [1] * 6, "ts": times})
    mask = holdout_mask(frame, "y", 0.5, timestamp="ts", seed=0)
    assert np.flatnonzero(mask).tolist() == [2, 3, 5, 8, 9, 11], "the 3 latest of each class; no missing time"
    rng = np.random.default_rng(0)
    coarse = pd.DataFrame({"y": rng.integers(0, 2, 200), "ts": pd.to_datetime(rng.integers(0, 3, 200), unit="D")})
    held = holdout_mask(coarse, "y", 0.3, timestamp="ts", seed=0)
    for label in (0, 1):
        rows = [i for i in range(200) if coarse["y"][i] == label]
        latest = sorted(rows, key=lambda i: coarse["ts"][i])[-round(0.3 * len(rows)) :]  # a stable sort
        assert sorted(latest) == np.flatnonzero(held & (coarse["y"] == label).to_numpy()).tolist()


def test_metrics_match_scikit_learn() -> None:
    labels = np.array([0, 0, 1, 1, 1, 0])
    scores = np.array([0.1, 0.4, 0.35, 0.8, 0.9, 0.2])
    metrics = score_metrics(labels, scores)
    assert metrics.auc == pytest.approx(roc_auc_score(labels, scores))
    assert metrics.log_loss == pytest.approx(log_loss(labels, scores))
    assert metrics.brier == pytest.approx(brier_score_loss(labels, scores))
    assert (metrics.rows, metrics.positives) == (6, 3)


def test_every_resampled_auc_equals_roc_auc_score_on_the_resampled_rows() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    tied = np.round(labels * 0.5 + rng.normal(size=400), 1)  # many ties
    smooth = labels * 0.7 + rng.normal(size=400)
    counts = resample_counts(400, 20, np.random.default_rng(1))
    assert counts.shape == (20, 400) and (counts.sum(axis=1) == 400).all()
    tied_aucs, smooth_aucs = ResampledAUC(labels, [tied, smooth])(counts)
    for row in range(20):
        rows = np.repeat(np.arange(400), counts[row])
        assert tied_aucs[row] == pytest.approx(roc_auc_score(labels[rows], tied[rows]), abs=1e-12)
        assert smooth_aucs[row] == pytest.approx(roc_auc_score(labels[rows], smooth[rows]), abs=1e-12)


def test_row_aucs_equal_roc_auc_score_row_by_row_ties_included() -> None:
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 300)
    scores = np.vstack([np.round(labels * 0.4 + rng.normal(size=300), 1), labels + rng.normal(size=300), -labels])
    expected = [roc_auc_score(labels, row) for row in scores]
    np.testing.assert_allclose(row_aucs(labels, scores), expected, atol=1e-12)
    assert row_aucs(labels, scores[2])[0] == 0.0, "a perfectly inverted ranking"
    with pytest.raises(ValueError, match="^an AUC needs both classes among the labels$"):
        row_aucs(np.zeros(5), scores[:, :5])


def test_lift_interval_contains_the_observed_lift_and_is_reproducible() -> None:
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 3000)
    champion = labels * 0.5 + rng.normal(size=3000)
    challenger = labels * 0.9 + rng.normal(size=3000)
    lift = paired_bootstrap_lift(labels, champion, challenger, resamples=500, confidence=0.9, seed=4)
    observed = roc_auc_score(labels, challenger) - roc_auc_score(labels, champion)
    assert lift.lift == pytest.approx(observed, rel=1e-12)
    assert 0 < lift.low < observed < lift.high
    assert (lift.resamples, lift.share_not_positive, lift.confidence) == (500, 0.0, 0.9)
    assert len(lift.samples) == 500, "the bootstrap lifts stay for the report's histogram"
    assert (lift.low, lift.high) == tuple(np.quantile(lift.samples, [0.05, 0.95])), "the central 90% of them"
    assert paired_bootstrap_lift(labels, champion, challenger, resamples=500, confidence=0.9, seed=4) == lift
    other = paired_bootstrap_lift(labels, champion, challenger, resamples=500, confidence=0.9, seed=5)
    assert (other.low, other.high) != (lift.low, lift.high), "the seed chooses the resamples"


def test_identical_models_have_a_zero_lift_with_a_degenerate_interval() -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 500)
    scores = rng.random(500)
    lift = paired_bootstrap_lift(labels, scores, scores, resamples=200, confidence=0.95, seed=0)
    assert (lift.lift, lift.low, lift.high, lift.share_not_positive) == (0.0, 0.0, 0.0, 1.0)


def test_the_lift_over_chance_is_the_auc_less_one_half_with_its_interval() -> None:
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, 2000)
    useful = labels * 0.8 + rng.normal(size=2000)
    over = chance_lift(labels, useful, resamples=400, confidence=0.95, seed=1)
    assert over.lift == pytest.approx(roc_auc_score(labels, useful) - 0.5)
    assert 0 < over.low < over.lift < over.high
    noise = chance_lift(labels, rng.normal(size=2000), resamples=400, confidence=0.95, seed=1)
    assert noise.low < 0 < noise.high, "a model of noise is not significantly better than chance"
    perfect = chance_lift(labels, labels.astype(float), resamples=200, confidence=0.9, seed=0)
    assert (perfect.lift, perfect.low, perfect.high) == (0.5, 0.5, 0.5)


def test_an_roc_curve_known_answer_and_thinned_for_a_report() -> None:
    from retrain.evaluation import roc_points

    curve = roc_points(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    assert (curve.fpr, curve.tpr, curve.auc) == ((0.0, 0.0, 0.5, 0.5, 1.0), (0.0, 0.5, 0.5, 1.0, 1.0), 0.75)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 5000)
    scores = labels + rng.normal(size=5000)
    thinned = roc_points(labels, scores, max_points=50)
    assert len(thinned.fpr) == len(thinned.tpr) == 50
    assert (thinned.fpr[0], thinned.tpr[0], thinned.fpr[-1], thinned.tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert thinned.auc == pytest.approx(roc_auc_score(labels, scores), rel=1e-12), "the area of the whole curve"
    assert list(thinned.fpr) == sorted(thinned.fpr) and list(thinned.tpr) == sorted(thinned.tpr)
    assert len(roc_points(labels, scores).fpr) == 200


def test_the_bootstrap_lifts_as_a_histogram() -> None:
    from retrain.evaluation import lift_histogram

    histogram = lift_histogram(np.array([0.0, 1.0, 2.0, 3.0]), bins=2)
    assert (histogram.edges, histogram.counts) == ((0.0, 1.5, 3.0), (2, 2))
    lifts = np.random.default_rng(0).normal(0.01, 0.005, 1000)
    default = lift_histogram(lifts)
    assert len(default.edges) == 41 and sum(default.counts) == 1000
    assert (default.edges[0], default.edges[-1]) == (lifts.min(), lifts.max())


def test_the_lift_over_chance_is_the_paired_lift_over_a_model_scoring_every_row_alike() -> None:
    rng = np.random.default_rng(6)
    labels = rng.integers(0, 2, 1000)
    scores = labels * 0.5 + rng.normal(size=1000)
    over = chance_lift(labels, scores, resamples=300, confidence=0.8, seed=3)
    same = paired_bootstrap_lift(labels, np.zeros(1000), scores, resamples=300, confidence=0.8, seed=3)
    assert over == same and (over.resamples, over.confidence) == (300, 0.8)


def test_every_row_can_be_drawn_and_each_resample_draws_as_many_rows_as_there_are() -> None:
    counts = resample_counts(3, 2000, np.random.default_rng(0))
    assert counts.shape == (2000, 3) and (counts.sum(axis=1) == 3).all()
    assert (counts > 0).any(axis=0).all(), "the first row and the last are drawn too"
    assert counts.mean() == pytest.approx(1.0) and 0.2 < (counts == 0).mean() < 0.4, "(2/3)^3 of draws miss a row"

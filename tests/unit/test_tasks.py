"""Every promotion metric equals scikit-learn's, on the holdout and on each bootstrap resample, and points
the same way: a positive lift is always the challenger being better."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as sk

from retrain.errors import DataError
from retrain.evaluation import ResampledMetric, chance_lift, paired_bootstrap_lift, resample_counts, score_metrics
from retrain.tasks import METRICS, check_classes, label_codes, positive_column, predict

RNG = np.random.default_rng(0)
N = 400
BINARY = (RNG.random(N) < 0.3).astype(int)
BINARY_SCORES = np.clip(0.3 + 0.3 * (BINARY - 0.3) + RNG.normal(0, 0.2, N), 0.01, 0.99).round(2)  # ties
CLASSES = ("A", "B", "C")
CODES = RNG.choice(3, N, p=[0.5, 0.3, 0.2])
raw = RNG.normal(0, 1, (N, 3)) + 1.5 * np.eye(3)[CODES]
PROBABILITIES = np.exp(raw) / np.exp(raw).sum(axis=1, keepdims=True)
ACTUAL = RNG.normal(10, 3, N)
PREDICTED = ACTUAL + RNG.normal(0, 1, N)


def sklearn_value(metric: str, task: str, labels: np.ndarray, predictions: np.ndarray, weights=None) -> float:
    if metric == "roc_auc":
        return sk.roc_auc_score(labels, predictions, sample_weight=weights)
    if metric == "roc_auc_ovr_weighted":
        return sk.roc_auc_score(labels, predictions, multi_class="ovr", average="weighted", sample_weight=weights)
    if metric == "roc_auc_ovr":
        return sk.roc_auc_score(labels, predictions, multi_class="ovr", average="macro", sample_weight=weights)
    if metric == "average_precision":
        if task == "multiclass":
            onehot = np.eye(3)[labels]
            return sk.average_precision_score(onehot, predictions, average="macro", sample_weight=weights)
        return sk.average_precision_score(labels, predictions, sample_weight=weights)
    if metric == "log_loss":
        return sk.log_loss(labels, predictions, sample_weight=weights, labels=[0, 1] if task == "binary" else [0, 1, 2])
    if metric == "brier":
        if task == "multiclass":
            squared = ((predictions - np.eye(3)[labels]) ** 2).sum(axis=1)
            return np.average(squared, weights=weights)
        return sk.brier_score_loss(labels, predictions, sample_weight=weights)
    if metric == "rmse":
        return np.sqrt(sk.mean_squared_error(labels, predictions, sample_weight=weights))
    return sk.mean_absolute_error(labels, predictions, sample_weight=weights)


CASES = [
    *[(m, "binary", BINARY, BINARY_SCORES) for m in ("roc_auc", "average_precision", "log_loss", "brier")],
    *[
        (m, "multiclass", CODES, PROBABILITIES)
        for m in ("roc_auc_ovr_weighted", "roc_auc_ovr", "average_precision", "log_loss", "brier")
    ],
    *[(m, "regression", ACTUAL, PREDICTED) for m in ("rmse", "mae")],
]


@pytest.mark.parametrize(("metric", "task", "labels", "predictions"), CASES, ids=[f"{c[1]}-{c[0]}" for c in CASES])
def test_every_metric_equals_scikit_learns_on_the_holdout_and_on_each_resample(metric, task, labels, predictions):
    assert task in METRICS[metric].tasks
    values = ResampledMetric(metric, labels, [predictions], task=task)
    (whole,) = values(np.ones((1, N), dtype=np.int32))
    assert whole[0] == pytest.approx(sklearn_value(metric, task, labels, predictions), rel=1e-9)
    counts = resample_counts(N, 3, np.random.default_rng(1))
    (resampled,) = values(counts)
    for row, value in zip(counts, resampled, strict=True):
        assert value == pytest.approx(sklearn_value(metric, task, labels, predictions, weights=row), rel=1e-9)


@pytest.mark.parametrize("metric", ["rmse", "mae"])
def test_a_lower_error_is_a_positive_lift_and_no_skill_is_the_mean_or_median(metric: str) -> None:
    worse = PREDICTED + RNG.normal(0, 2, N)
    lift = paired_bootstrap_lift(
        ACTUAL, worse, PREDICTED, resamples=300, confidence=0.95, seed=0, metric=metric, task="regression"
    )
    errors = {
        name: sklearn_value(metric, "regression", ACTUAL, p) for name, p in (("worse", worse), ("better", PREDICTED))
    }
    assert lift.lift == pytest.approx(errors["worse"] - errors["better"], rel=1e-12) and lift.low > 0
    centre = np.median(ACTUAL) if metric == "mae" else np.mean(ACTUAL)
    over = chance_lift(ACTUAL, PREDICTED, resamples=300, confidence=0.95, seed=0, metric=metric, task="regression")
    no_skill = sklearn_value(metric, "regression", ACTUAL, np.full(N, centre))
    assert over.lift == pytest.approx(no_skill - errors["better"], rel=1e-12)


def test_a_first_multiclass_model_of_pure_noise_is_not_better_than_no_skill() -> None:
    noise = np.random.default_rng(5).dirichlet(np.ones(3), N)
    over = chance_lift(
        CODES, noise, resamples=300, confidence=0.95, seed=0, metric="roc_auc_ovr_weighted", task="multiclass"
    )
    assert over.low < 0 < over.high
    useful = chance_lift(
        CODES, PROBABILITIES, resamples=300, confidence=0.95, seed=0, metric="roc_auc_ovr_weighted", task="multiclass"
    )
    assert useful.low > 0.1


def test_metrics_of_each_task_hold_what_that_task_has() -> None:
    regression = score_metrics(ACTUAL, PREDICTED, task="regression", metric="mae")
    assert (regression.auc, regression.log_loss, regression.positives) == (None, None, None)
    assert regression.score == regression.mae and regression.shown().startswith("MAE ")
    multiclass = score_metrics(CODES, PROBABILITIES, task="multiclass", metric="log_loss", classes=CLASSES)
    assert multiclass.positives == int(np.bincount(CODES).min()), "the rarest class's rows"
    assert multiclass.score == multiclass.log_loss and multiclass.auc == pytest.approx(
        sk.roc_auc_score(CODES, PROBABILITIES, multi_class="ovr", average="weighted")
    )


def test_a_multiclass_models_columns_line_up_with_the_known_classes_by_label() -> None:
    from sklearn.linear_model import LogisticRegression

    frame = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]})
    model = LogisticRegression().fit(frame, [2, 2, 1, 1, 0, 0])  # integer classes, read as text labels
    aligned = predict(model, frame, ("x",), "multiclass", classes=("0", "1", "2", "3"))
    np.testing.assert_array_equal(aligned[:, :3], model.predict_proba(frame))
    assert (aligned[:, 3] == 0).all(), "a class the model does not know gets probability 0"
    np.testing.assert_array_equal(label_codes(np.array(["2", "0", 1.0], dtype=object), ("0", "1", "2")), [2, 0, 1])
    with pytest.raises(DataError, match=r"labels 'D' are not among the classes"):
        label_codes(np.array(["D"], dtype=object), ("0", "1", "2"))


def test_a_binary_models_positive_column_is_found_by_its_label() -> None:
    assert positive_column(("no", "yes"), "yes") == 1 and positive_column(("True", "False"), None) == 0
    with pytest.raises(DataError, match=r"are not two classes with the positive one 'churned'"):
        positive_column(("no", "yes"), "churned")
    with pytest.raises(DataError, match="model.task is binary, but the model has 3 classes"):
        check_classes(("a", "b", "c"), ("a", "b"), "binary", "m.joblib")


def test_segment_checks_judge_each_value_and_a_drop_of_exactly_the_limit_passes() -> None:
    from retrain.config import PromotionSpec
    from retrain.evaluation import segment_checks

    segments = pd.DataFrame({"region": ["a", "a", "a", "a", "b", None]})
    labels = np.zeros(6)
    champion = np.ones(6)
    challenger = np.array([0.5, 0.5, 0.5, 0.5, 2.0, 2.0])

    def checks(**policy):
        spec = PromotionSpec(metric="rmse", segments=("region",), **policy)
        return {
            c.value: c for c in segment_checks(segments, labels, champion, challenger, policy=spec, task="regression")
        }

    judged = checks(max_segment_drop=0.5, min_segment_rows=1)
    assert (judged["a"].status, judged["a"].difference, judged["a"].rows) == ("pass", 0.5, 4)
    assert (judged["b"].status, judged["b"].champion, judged["b"].challenger, judged["b"].difference) == (
        "fail",
        1.0,
        2.0,
        -1.0,
    )
    assert judged["(missing)"].status == "fail", "a missing value is a segment of its own"
    assert checks(max_segment_drop=1.0, min_segment_rows=1)["b"].status == "pass", "exactly the limit passes"
    skipped = checks(max_segment_drop=0.5, min_segment_rows=2)["b"]
    assert (skipped.status, skipped.note) == ("skipped", "1 rows, fewer than promotion.min_segment_rows=2")


def test_a_classifier_segment_with_one_class_is_skipped_not_passed() -> None:
    from retrain.config import PromotionSpec
    from retrain.evaluation import segment_checks

    segments = pd.DataFrame({"plan": ["x"] * 4 + ["y"] * 4})
    labels = np.array([0, 1, 0, 1, 1, 1, 1, 1])
    scores = np.array([0.1, 0.9, 0.2, 0.8, 0.5, 0.6, 0.7, 0.8])
    spec = PromotionSpec(segments=("plan",), max_segment_drop=0.0, min_segment_rows=1)
    checks = {
        c.value: c for c in segment_checks(segments, labels, scores, scores[::-1].copy(), policy=spec, task="binary")
    }
    assert (checks["y"].status, checks["y"].note) == ("skipped", "a single class: no metric to compare")
    assert checks["x"].champion == 1.0 and checks["x"].status in ("pass", "fail")

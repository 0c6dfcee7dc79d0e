from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from retrain.estimation import CALIBRATORS, anchored_estimate, expected_auc, fit_calibration


def test_expected_auc_is_the_roc_auc_of_every_row_counted_once_per_class() -> None:
    rng = np.random.default_rng(0)
    scores = rng.normal(size=5000).round(2)  # rounded: plenty of ties
    p = rng.uniform(size=5000)
    weighted = roc_auc_score(np.r_[np.ones(5000), np.zeros(5000)], np.r_[scores, scores], sample_weight=np.r_[p, 1 - p])
    assert expected_auc(scores, p) == pytest.approx(weighted, abs=1e-12)


def test_known_answers() -> None:
    # Perfectly separated expectations: every likely positive scores above every likely negative.
    assert expected_auc(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0.0, 0.0, 1.0, 1.0])) == 1.0
    # Scores that carry no information about the (calibrated) probability: AUC one half.
    assert expected_auc(np.array([0.5, 0.5, 0.5, 0.5]), np.array([0.1, 0.9, 0.3, 0.7])) == 0.5
    assert np.isnan(expected_auc(np.array([0.2, 0.4]), np.array([0.0, 0.0]))), "no expected positive"


def world(rng: np.random.Generator, rows: int, shift: float, spread: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Two features, the label's log-odds linear in them; `shift` and `spread` move the first feature only."""
    x1 = rng.normal(shift, spread, rows)
    x2 = rng.normal(0.0, 1.0, rows)
    p = 1 / (1 + np.exp(-(1.5 * x1 - 0.8 * x2 - 0.5)))
    return np.c_[x1, x2], (rng.random(rows) < p).astype(int)


def model_scores(features: np.ndarray) -> np.ndarray:
    """A fixed 'champion': right direction, wrong scale, so its raw scores are not probabilities."""
    return np.tanh(0.4 * features[:, 0] - 0.2 * features[:, 1])


@pytest.mark.parametrize(("shift", "spread"), [(0.0, 1.0), (-1.0, 1.0), (0.7, 1.0), (0.0, 0.4), (0.5, 1.8)])
def test_under_covariate_shift_the_estimate_matches_the_realized_auc(shift: float, spread: float) -> None:
    rng = np.random.default_rng(7)
    validation_x, validation_y = world(rng, 40_000, 0.0)
    calibration = fit_calibration(model_scores(validation_x), validation_y)
    production_x, production_y = world(rng, 200_000, shift, spread)
    scores = model_scores(production_x)
    estimate = expected_auc(scores, calibration.apply(scores))
    realized = roc_auc_score(production_y, scores)
    assert estimate == pytest.approx(realized, abs=0.01)
    if spread != 1.0:
        # A narrower or wider first feature changes the AUC the champion reaches; the estimate follows it.
        assert abs(realized - roc_auc_score(validation_y, model_scores(validation_x))) > 0.05


def test_a_concept_change_is_what_the_estimate_cannot_see() -> None:
    rng = np.random.default_rng(8)
    validation_x, validation_y = world(rng, 40_000, 0.0)
    calibration = fit_calibration(model_scores(validation_x), validation_y)
    production_x, _ = world(rng, 100_000, 0.0)
    flipped = (rng.random(100_000) < 1 / (1 + np.exp(-(-1.5 * production_x[:, 0])))).astype(int)
    scores = model_scores(production_x)
    assert expected_auc(scores, calibration.apply(scores)) > 0.8
    assert roc_auc_score(flipped, scores) < 0.3


def test_calibration_is_monotone_and_bounded() -> None:
    rng = np.random.default_rng(9)
    x, y = world(rng, 20_000, 0.0)
    calibration = fit_calibration(model_scores(x), y)
    grid = np.linspace(-2, 2, 101)
    mapped = calibration.apply(grid)
    assert np.all(np.diff(mapped) >= 0) and mapped.min() >= 0 and mapped.max() <= 1
    assert calibration.method == "isotonic", "tanh scores are not log-odds-linear: isotonic fits them better"
    assert set(calibration.out_of_fold_log_loss) == {"logistic", "isotonic"}


def rare_positive_world(rng: np.random.Generator, rows: int, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """About 5% positives and a weak signal, like fraud: the champion's scores are probabilities whose
    log-odds are linear in the truth's, as a boosted model's are."""
    x = rng.normal(shift, 1.0, rows)
    y = (rng.random(rows) < 1 / (1 + np.exp(-(0.6 * x - 3.2)))).astype(int)
    return 1 / (1 + np.exp(-(1.2 * x - 2.0))), y


def test_with_few_positives_platt_scaling_is_chosen_and_the_estimate_is_not_inflated() -> None:
    errors: dict[str, list[float]] = {"chosen": [], "isotonic only": []}
    methods = []
    for seed in range(40):
        rng = np.random.default_rng(seed)
        validation_scores, validation_labels = rare_positive_world(rng, 1800)  # about 90 positives
        production_scores, production_labels = rare_positive_world(rng, 20_000, shift=0.3 * (seed % 3))
        realized = roc_auc_score(production_labels, production_scores)
        calibration = fit_calibration(validation_scores, validation_labels)
        methods.append(calibration.method)
        isotonic_only = CALIBRATORS["isotonic"](validation_scores, validation_labels)
        for name, fitted in (("chosen", calibration), ("isotonic only", isotonic_only)):
            errors[name].append(expected_auc(production_scores, fitted.apply(production_scores)) - realized)
    assert methods.count("logistic") >= 30
    assert abs(np.mean(errors["chosen"])) < 0.015
    assert np.mean(errors["isotonic only"]) > 0.025, "isotonic steps overfit 90 positives and inflate the AUC"
    assert np.sqrt(np.mean(np.square(errors["chosen"]))) < np.sqrt(np.mean(np.square(errors["isotonic only"])))


def floor_piled_world(rng: np.random.Generator, rows: int, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """About 5% positives, and scores piled up just above a floor where the truth still varies, as an
    overfit boosted model's are: their log-odds are not linear in the truth's, so Platt scaling misfits."""
    x = rng.normal(shift, 1.0, rows)
    y = (rng.random(rows) < 1 / (1 + np.exp(-(1.2 * x - 3.2)))).astype(int)
    return 0.006 + 0.3 / (1 + np.exp(-3 * (x - 1.5))), y


def test_anchored_on_the_validated_auc_a_misfit_calibration_does_not_bias_the_estimate() -> None:
    errors: dict[str, list[float]] = {"expected AUC on production": [], "anchored": []}
    methods = []
    for seed in range(40):
        rng = np.random.default_rng(seed)
        validation_scores, validation_labels = floor_piled_world(rng, 1800)  # about 90 positives
        production_scores, production_labels = floor_piled_world(rng, 20_000)
        realized = roc_auc_score(production_labels, production_scores)
        calibration = fit_calibration(validation_scores, validation_labels)
        methods.append(calibration.method)
        on_production = expected_auc(production_scores, calibration.apply(production_scores))
        on_validation = expected_auc(validation_scores, calibration.apply(validation_scores))
        anchored = anchored_estimate(roc_auc_score(validation_labels, validation_scores), on_production, on_validation)
        errors["expected AUC on production"].append(on_production - realized)
        errors["anchored"].append(anchored - realized)
    assert methods.count("logistic") >= 30, "few positives: cross-validation picks Platt scaling, misfit or not"
    assert np.mean(errors["expected AUC on production"]) < -0.01, "the misfit flattens the expected ROC curve"
    assert abs(np.mean(errors["anchored"])) < 0.006
    rmse = {name: np.sqrt(np.mean(np.square(found))) for name, found in errors.items()}
    assert rmse["anchored"] < rmse["expected AUC on production"]


def test_anchored_estimate_known_answers() -> None:
    assert anchored_estimate(0.80, 0.70, 0.72) == pytest.approx(0.78)
    assert anchored_estimate(0.99, 0.90, 0.80) == 1.0, "clipped to an AUC"
    assert anchored_estimate(0.05, 0.10, 0.30) == 0.0


def test_calibration_with_too_few_positives_to_cross_validate_is_platt_scaling() -> None:
    calibration = fit_calibration(np.array([0.1, 0.2, 0.3, 0.4, 0.9]), np.array([0, 0, 0, 0, 1]))
    assert calibration.method == "logistic" and calibration.out_of_fold_log_loss is None
    assert calibration.apply(np.array([0.95]))[0] > calibration.apply(np.array([0.05]))[0]

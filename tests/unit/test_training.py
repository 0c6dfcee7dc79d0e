from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from retrain.config import ModelSpec, TrainingSpec
from retrain.errors import IntegrityError
from retrain.training import deserialize, predict_scores, serialize, train

MODEL = ModelSpec(name="m", target="y", numeric_features=("x", "noise"), categorical_features=("color",))


def labeled(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=rows)
    color = rng.choice(["red", "green", "blue"], rows)
    logit = 1.5 * x + np.where(color == "red", 1.0, -0.5)
    frame = pd.DataFrame(
        {
            "x": x,
            "noise": rng.normal(size=rows),
            "color": color.astype(object),
            "y": (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int),
        }
    )
    frame.loc[frame.index[::17], "x"] = np.nan
    frame.loc[frame.index[::23], "color"] = np.nan
    return frame


@pytest.mark.parametrize("estimator", ["hist_gradient_boosting", "gradient_boosting"])
def test_learns_the_signal_from_mixed_numeric_and_categorical_data(estimator: str) -> None:
    from sklearn.metrics import roc_auc_score

    spec = TrainingSpec(estimator=estimator, seed=1)
    model = train(labeled(3000, 0), MODEL, spec)
    test = labeled(2000, 1)
    assert roc_auc_score(test["y"], predict_scores(model, test, MODEL)) > 0.75


@pytest.mark.parametrize("estimator", ["hist_gradient_boosting", "gradient_boosting"])
def test_same_data_config_and_seed_give_identical_predictions(estimator: str) -> None:
    spec = TrainingSpec(estimator=estimator, seed=3)
    data, test = labeled(2000, 0), labeled(500, 1)
    first = predict_scores(train(data, MODEL, spec), test, MODEL)
    second = predict_scores(train(data, MODEL, spec), test, MODEL)
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("estimator", ["hist_gradient_boosting", "gradient_boosting"])
def test_unseen_categories_and_other_dtypes_at_predict_time_are_tolerated(estimator: str) -> None:
    model = train(labeled(1000, 0), MODEL, TrainingSpec(estimator=estimator))
    test = labeled(50, 1)
    test["color"] = ["purple"] * 25 + [None] * 25
    scores = predict_scores(model, test.drop(columns=["y"]), MODEL)
    assert scores.shape == (50,) and np.all((scores >= 0) & (scores <= 1))
    test["color"] = pd.Series([1, 2] * 25)  # integers where strings were seen: encoded as text
    assert predict_scores(model, test, MODEL).shape == (50,)


def test_a_model_file_is_loaded_only_when_its_checksum_matches() -> None:
    model = train(labeled(500, 0), MODEL, TrainingSpec())
    data, sha = serialize(model)
    restored = deserialize(data, sha, source="model.joblib")
    test = labeled(100, 2)
    np.testing.assert_array_equal(predict_scores(model, test, MODEL), predict_scores(restored, test, MODEL))
    with pytest.raises(IntegrityError, match="model.joblib: SHA-256 .* does not match"):
        deserialize(data[:-10], sha, source="model.joblib")
    tampered = bytearray(data)
    tampered[len(data) // 2] ^= 0xFF
    with pytest.raises(IntegrityError, match="refusing to load"):
        deserialize(bytes(tampered), sha, source="model.joblib")

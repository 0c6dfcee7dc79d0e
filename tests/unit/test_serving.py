"""What a mirrored classifier answers when served: the positive class's probability, or one column per class."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from retrain.serving import ProbabilityModel


def test_a_binary_model_serves_its_positive_class_probability() -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=300)})
    labels = np.where(frame["x"] + rng.normal(scale=0.5, size=300) > 0, "yes", "no")
    model = LogisticRegression().fit(frame, labels)
    served = ProbabilityModel(model, positive_column=list(model.classes_).index("yes"))
    np.testing.assert_array_equal(served.predict(frame), model.predict_proba(frame)[:, 1])
    assert list(served.classes_) == ["no", "yes"]
    np.testing.assert_array_equal(served.predict_proba(frame), model.predict_proba(frame))
    first = ProbabilityModel(model, positive_column=0)
    np.testing.assert_allclose(first.predict(frame) + served.predict(frame), 1.0, rtol=1e-12)


def test_a_multiclass_model_serves_a_column_per_class() -> None:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"x": rng.normal(size=300), "z": rng.normal(size=300)})
    labels = np.select([frame["x"] > 0.5, frame["z"] > 0], ["a", "b"], "c")
    model = LogisticRegression().fit(frame, labels)
    answered = ProbabilityModel(model).predict(frame)
    assert list(answered.columns) == ["a", "b", "c"]
    np.testing.assert_array_equal(answered.to_numpy(), model.predict_proba(frame))

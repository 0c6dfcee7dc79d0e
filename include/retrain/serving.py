"""What a mirrored classifier answers when it is served: probabilities, not classes.

MLflow's scikit-learn flavour serves a model's `predict`, which for a classifier gives the class each row
is likelier to be: a threshold at 0.5 nobody chose. `ProbabilityModel` wraps the champion so that
`predict` gives the positive class's probability (a binary model) or one column per class (a multiclass
one), while `predict_proba` and `classes_` stay the model's own. The registry keeps the bare model; only
the MLflow mirror wraps it.
"""

from __future__ import annotations

from typing import Any

from sklearn.base import BaseEstimator


class ProbabilityModel(BaseEstimator):
    def __init__(self, model: Any = None, positive_column: int = 1) -> None:
        self.model = model
        self.positive_column = positive_column

    @property
    def classes_(self) -> Any:
        return self.model.classes_

    def predict_proba(self, frame: Any) -> Any:
        return self.model.predict_proba(frame)

    def predict(self, frame: Any) -> Any:
        import pandas as pd

        probabilities = self.model.predict_proba(frame)
        if probabilities.shape[1] == 2:
            return probabilities[:, self.positive_column]
        return pd.DataFrame(probabilities, columns=[str(c) for c in self.model.classes_])

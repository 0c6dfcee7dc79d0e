"""What a model predicts (a binary class, one of several classes, a number) and the metrics it is judged on.

A model's predictions travel as one array whatever its task: the positive class's probability for a binary
model, one column of probabilities per class for a multiclass one (in the order of the labels the cycle
knows, so that champion and challenger line up), the predicted number for a regressor.

Multiclass labels are compared as text, as the snapshot reader delivers them: a model trained on the
integers 0, 1, 2 and a month whose labels read "0", "1", "2" agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from retrain.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

TASKS = ("binary", "multiclass", "regression")
CLASSIFIERS = ("binary", "multiclass")
PROBABILITY_CLIP = 1e-15  # log loss of a probability of exactly 0 is infinite; sklearn clips as well


@dataclass(frozen=True)
class Metric:
    """A promotion metric: its name in the config, how people read it, and which way is better."""

    name: str
    label: str
    tasks: tuple[str, ...]
    higher_is_better: bool

    def improvement(self, challenger: float, champion: float) -> float:
        """How much better `challenger` is, in the metric's units: positive is better, for error metrics too."""
        return challenger - champion if self.higher_is_better else champion - challenger

    @property
    def is_auc(self) -> bool:
        return self.name.startswith("roc_auc")


METRICS = {
    metric.name: metric
    for metric in (
        Metric("roc_auc", "AUC", ("binary",), True),
        Metric("roc_auc_ovr_weighted", "AUC (one-vs-rest, weighted)", ("multiclass",), True),
        Metric("roc_auc_ovr", "AUC (one-vs-rest, macro)", ("multiclass",), True),
        Metric("average_precision", "average precision", CLASSIFIERS, True),
        Metric("log_loss", "log loss", CLASSIFIERS, False),
        Metric("brier", "Brier score", CLASSIFIERS, False),
        Metric("rmse", "RMSE", ("regression",), False),
        Metric("mae", "MAE", ("regression",), False),
    )
}
DEFAULT_METRICS = {"binary": "roc_auc", "multiclass": "roc_auc_ovr_weighted", "regression": "rmse"}


def metric_label(name: str) -> str:
    """A metric's name for people; a name this version does not know, as written."""
    return METRICS[name].label if name in METRICS else name


def metric_for(task: str, name: str | None) -> Metric:
    return METRICS[name or DEFAULT_METRICS[task]]


def model_classes(model: object) -> tuple[str, ...] | None:
    """A fitted classifier's classes as text, or None for a model without `classes_`."""
    classes = getattr(model, "classes_", None)
    return None if classes is None else tuple(_label_text(c) for c in classes)


def _label_text(value: object) -> str:
    # 1.0 and 1 and "1" are the same label: floats holding whole numbers print as integers.
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, bool | np.bool_):
        return "1" if value else "0"
    return str(value)


def label_codes(labels: np.ndarray, classes: tuple[str, ...], *, where: str = "holdout") -> np.ndarray:
    """Multiclass labels (text) as positions in `classes`."""
    lookup = {label: code for code, label in enumerate(classes)}
    codes = np.fromiter((lookup.get(_label_text(v), -1) for v in labels), dtype=np.int64, count=len(labels))
    if (codes < 0).any():
        unknown = sorted({_label_text(v) for v, c in zip(labels, codes, strict=True) if c < 0})
        raise DataError(f"{where}: labels {', '.join(map(repr, unknown[:5]))} are not among the classes {classes}")
    return codes


def task_labels(
    values: np.ndarray, task: str, classes: tuple[str, ...] | None, *, where: str = "holdout"
) -> np.ndarray:
    """A target's values as the metrics take them: 0/1 integers, positions in `classes`, or floats."""
    if task == "multiclass":
        return label_codes(values, classes or (), where=where)
    if task == "binary":
        return np.asarray(values).astype(int)
    return np.asarray(values).astype(np.float64)


def positive_column(classes: tuple[str, ...], positive_label: str | None) -> int:
    """Which of a binary classifier's `predict_proba` columns is the positive class."""
    wanted = {positive_label} if positive_label is not None else {"1", "True", "true"}
    matches = [i for i, c in enumerate(classes) if c in wanted]
    if len(classes) != 2 or len(matches) != 1:
        shown = positive_label if positive_label is not None else "1 (or true)"
        raise DataError(f"the model's classes {list(classes)} are not two classes with the positive one {shown!r}")
    return matches[0]


def predict(
    model: object,
    frame: pd.DataFrame,
    features: tuple[str, ...],
    task: str,
    *,
    classes: tuple[str, ...] | None = None,
    positive_label: str | None = None,
) -> np.ndarray:
    """The model's predictions on `frame`, shaped for `task` (see the module's docstring). A multiclass
    model's columns are placed in the order of `classes`; a class it does not know gets probability 0."""
    rows = frame[list(features)]
    if task == "regression":
        return np.asarray(model.predict(rows), dtype=np.float64).reshape(-1)  # type: ignore[attr-defined]
    probabilities = np.asarray(model.predict_proba(rows), dtype=np.float64)  # type: ignore[attr-defined]
    own = model_classes(model) or tuple(str(i) for i in range(probabilities.shape[1]))
    if task == "binary":
        # Our own binary models learn 0/1; an adopted one may say "no"/"yes" with model.positive_label.
        label = positive_label if positive_label in own else None
        return probabilities[:, positive_column(own, label)]
    classes = classes or own
    aligned = np.zeros((len(rows), len(classes)))
    position = {c: i for i, c in enumerate(classes)}
    for column, label in enumerate(own):
        if label in position:
            aligned[:, position[label]] = probabilities[:, column]
    return aligned


def check_classes(model_classes_: tuple[str, ...] | None, seen: tuple[str, ...], task: str, where: str) -> None:
    """A classifier must know every class its labels hold: a class it cannot predict cannot be scored."""
    if task == "regression":
        return
    if model_classes_ is None:
        raise DataError(f"{where}: a {task} classifier must have classes_ (is it fitted, and a classifier?)")
    if task == "binary":
        if len(model_classes_) != 2:
            raise DataError(f"{where}: model.task is binary, but the model has {len(model_classes_)} classes")
        return
    unknown = sorted(set(seen) - set(model_classes_))
    if unknown:
        raise DataError(
            f"{where}: the labels hold class{'es' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
            f"that the model does not know (its classes: {', '.join(model_classes_)})"
        )

"""Challenger training: one scikit-learn Pipeline, preprocessing included, over the configured features.

Categorical features arrive as pandas categoricals and reach HistGradientBoosting as integer codes through
`CategoryCodes`, which maps each frame's few categories rather than its many rows.

`training.estimator` names a built-in estimator or a factory of the user's own, `package.module:factory`,
called with `[training.params]` as keyword arguments (see docs/configuration.md for its contract).
"""

from __future__ import annotations

import hashlib
import io
import logging
from typing import TYPE_CHECKING

import joblib
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder

from retrain.errors import ConfigError, DataError, IntegrityError
from retrain.records import Importances
from retrain.snapshots import as_category_strings
from retrain.tasks import METRICS, predict

if TYPE_CHECKING:
    from retrain.config import ModelSpec, TrainingSpec

log = logging.getLogger(__name__)

MISSING_CATEGORY = "__missing__"
# HistGradientBoosting takes at most 255 categories per feature: beyond that the rarest share one code.
MAX_CATEGORIES = 255


def _categories_as_strings(frame: pd.DataFrame) -> pd.DataFrame:
    """Whatever the caller passes (ints, bools, pandas strings), encoders see Python strings or NaN."""
    return frame.apply(as_category_strings)


def _category_step() -> FunctionTransformer:
    return FunctionTransformer(_categories_as_strings, feature_names_out="one-to-one")


def _as_text_categorical(column: pd.Series) -> pd.Series:
    """Any column as a pandas categorical whose categories are text (1 and "1" are the same category)."""
    if not isinstance(column.dtype, pd.CategoricalDtype):
        column = as_category_strings(column).astype("category")
    categories = column.cat.categories
    if len(categories) and not all(isinstance(c, str) for c in categories):
        column = column.cat.rename_categories([str(c) for c in categories])
    return column


class CategoryCodes(TransformerMixin, BaseEstimator):
    """Categories to integer codes, learned at fit: the categories sorted by name (as OrdinalEncoder
    orders them), missing and unseen ones NaN. A feature with more than `max_categories` keeps the most
    frequent `max_categories - 1` and gives the rest one shared last code."""

    def __init__(self, max_categories: int = MAX_CATEGORIES) -> None:
        self.max_categories = max_categories

    def fit(self, frame: pd.DataFrame, y: object = None) -> CategoryCodes:
        self.categories_: list[list[str]] = []
        self.infrequent_: list[list[str]] = []
        self.feature_names_in_ = np.asarray(frame.columns, dtype=object)
        for name in frame.columns:
            counts = _as_text_categorical(frame[name]).value_counts(sort=False)
            counts = counts[counts > 0]
            if len(counts) <= self.max_categories:
                kept, rare = sorted(counts.index), []
            else:
                ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
                cut = self.max_categories - 1
                kept, rare = sorted(n for n, _ in ranked[:cut]), sorted(n for n, _ in ranked[cut:])
                log.info("%s: %d categories, the %d rarest share one code", name, len(counts), len(rare))
            self.categories_.append(kept)
            self.infrequent_.append(rare)
        return self

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        out = np.empty((len(frame), len(self.categories_)), dtype=np.float64)
        for j, (name, kept, rare) in enumerate(zip(frame.columns, self.categories_, self.infrequent_, strict=True)):
            column = _as_text_categorical(frame[name])
            lookup = {category: code for code, category in enumerate(kept)}
            lookup.update(dict.fromkeys(rare, len(kept)))
            # One lookup per category, then one vectorised take over the rows' codes.
            per_category = np.array([lookup.get(c, np.nan) for c in column.cat.categories] + [np.nan])
            out[:, j] = per_category[column.cat.codes.to_numpy()]
        return out

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        return self.feature_names_in_


def build_pipeline(model: ModelSpec, training: TrainingSpec) -> Pipeline:
    """The untrained challenger. Unseen categories at predict time map to 'unknown', never an error."""
    if ":" in training.estimator:
        return make_estimator(training.estimator, training.params, model, seed=training.seed)
    numeric, categorical = list(model.numeric_features), list(model.categorical_features)
    regression = model.task == "regression"
    if training.estimator == "hist_gradient_boosting":
        categories: object = CategoryCodes()
        # HistGradientBoosting handles missing numeric values natively.
        numbers: object = "passthrough"
        boosting = HistGradientBoostingRegressor if regression else HistGradientBoostingClassifier
        estimator: object = boosting(
            categorical_features=[True] * len(categorical) + [False] * len(numeric),
            # scikit-learn stops early only above 10,000 rows; below, 100 rounds of 31 leaves overfit a small
            # window (next-month AUC 0.675 against 0.702 with early stopping, mean of five ~1,200-row windows
            # of a churn-like dataset). Above 10,000 rows this is scikit-learn's own default.
            early_stopping=True,
            random_state=training.seed,
        )
    else:
        categories = make_pipeline(
            _category_step(),
            SimpleImputer(strategy="constant", fill_value=MISSING_CATEGORY),
            OneHotEncoder(handle_unknown="ignore"),
        )
        numbers = SimpleImputer(strategy="median", keep_empty_features=True)
        boosting = GradientBoostingRegressor if regression else GradientBoostingClassifier
        estimator = boosting(n_estimators=200, learning_rate=0.05, random_state=training.seed)
    transformers = []
    if categorical:
        transformers.append(("categorical", categories, categorical))
    if numeric:
        transformers.append(("numeric", numbers, numeric))
    preprocess = ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=False)
    return Pipeline([("preprocess", preprocess), ("regressor" if regression else "classifier", estimator)])


def _import_factory(path: str) -> object:
    import importlib

    module_name, _, attribute = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # importing runs the module: any error there means it does not import
        raise ConfigError(f"training.estimator {path!r}: cannot import {module_name}: {error}") from None
    factory = getattr(module, attribute, None)
    if factory is None:
        raise ConfigError(f"training.estimator {path!r}: module {module_name} has no {attribute}")
    if not callable(factory):
        raise ConfigError(f"training.estimator {path!r}: {attribute} is not callable")
    return factory


def make_estimator(path: str, params: dict[str, object], model: ModelSpec, *, seed: int) -> object:
    """The factory's unfitted estimator. Besides `[training.params]`, the factory receives whichever of
    `seed`, `task`, `numeric_features` and `categorical_features` its signature names."""
    import inspect

    factory = _import_factory(path)
    context = {
        "seed": seed,
        "task": model.task,
        "numeric_features": list(model.numeric_features),
        "categorical_features": list(model.categorical_features),
    }
    try:
        accepted = inspect.signature(factory).parameters  # type: ignore[arg-type]
    except (TypeError, ValueError):
        accepted = {}
    extra = {k: v for k, v in context.items() if k in accepted and k not in params}
    try:
        return factory(**params, **extra)  # type: ignore[operator]
    except Exception as error:
        raise ConfigError(f"training.estimator {path!r}: calling it with training.params failed: {error}") from None


def check_factory(path: str, params: dict[str, object], task: str) -> None:
    """A factory that cannot give an unfitted estimator of the task's kind is a config error, found once."""
    from sklearn.base import is_classifier, is_regressor
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    from retrain.config import ModelSpec

    probe = ModelSpec(name="probe", target="__target__", numeric_features=("__probe__",), task=task)
    estimator = make_estimator(path, params, probe, seed=0)
    kind = type(estimator).__name__
    if not hasattr(estimator, "fit") or not hasattr(estimator, "get_params"):
        raise ConfigError(
            f"training.estimator {path!r} returned a {kind}, not a scikit-learn estimator (fit and get_params)"
        )
    if task == "regression":
        if is_classifier(estimator) or not hasattr(estimator, "predict"):
            raise ConfigError(f"training.estimator {path!r} returned a {kind}; model.task regression needs a regressor")
    elif is_regressor(estimator) or not hasattr(estimator, "predict_proba"):
        raise ConfigError(
            f"training.estimator {path!r} returned a {kind}; model.task {task} needs a classifier with predict_proba"
        )
    try:
        check_is_fitted(estimator)
    except (NotFittedError, TypeError):
        return  # unfitted, as it must be (or not an estimator check_is_fitted knows: fit will tell)
    raise ConfigError(f"training.estimator {path!r} returned a fitted {kind}; the factory must return it unfitted")


def stratified_sample(
    frame: pd.DataFrame, target: str, max_rows: int, seed: int, *, task: str = "binary"
) -> pd.DataFrame:
    """At most `max_rows` rows, each class keeping its share (a regressor's rows: a uniform sample), chosen
    with `seed`; rows keep their order."""
    if max_rows <= 0 or len(frame) <= max_rows:
        return frame
    labels = frame[target].to_numpy()
    rng = np.random.default_rng(seed)
    if task == "regression":
        groups = [np.arange(len(frame))]
    else:
        codes = pd.factorize(frame[target], sort=True)[0]
        groups = [np.flatnonzero(codes == code) for code in range(codes.max() + 1)]
    chosen = []
    for rows in groups:
        take = max(1, int(round(max_rows * len(rows) / len(frame))))
        chosen.append(rng.choice(rows, size=min(take, len(rows)), replace=False))
    keep = np.sort(np.concatenate(chosen))
    if task != "regression" and len(pd.unique(labels[keep])) < 2:
        raise DataError(f"training.max_rows={max_rows} leaves a single class in the training sample")
    return frame.iloc[keep].reset_index(drop=True)


def training_target(frame: pd.DataFrame, model: ModelSpec) -> pd.Series:
    """The target as the estimator learns it: 0/1 integers, text classes, or floats."""
    target = frame[model.target]
    if model.task == "binary":
        return target.astype(int)
    if model.task == "multiclass":
        return target.astype(str)
    return target.astype(np.float64)


def train(frame: pd.DataFrame, model: ModelSpec, training: TrainingSpec) -> Pipeline:
    """Fit a challenger on a labeled frame. Same data, config and seed give identical predictions."""
    pipeline = build_pipeline(model, training)
    features = frame[list(model.features)]
    log.info("training %s on %d rows x %d features", training.estimator, len(frame), features.shape[1])
    try:
        pipeline.fit(features, training_target(frame, model))
    except Exception as error:
        if ":" not in training.estimator:
            raise
        raise DataError(
            f"training.estimator {training.estimator!r} failed to fit: {type(error).__name__}: {error}"
        ) from error
    return pipeline


def predict_scores(
    pipeline: object, frame: pd.DataFrame, model: ModelSpec, classes: tuple[str, ...] | None = None
) -> np.ndarray:
    """The model's predictions: the positive class's probability, one column per class, or the number."""
    return predict(pipeline, frame, model.features, model.task, classes=classes, positive_label=model.positive_label)


IMPORTANCE_ROWS = 1000
IMPORTANCE_REPEATS = 3
IMPORTANCE_ROWS_PER_CALL = 100_000


def permutation_importances(
    pipeline: object,
    frame: pd.DataFrame,
    model: ModelSpec,
    seed: int,
    *,
    metric: str = "roc_auc",
    classes: tuple[str, ...] | None = None,
) -> Importances:
    """How much worse the model gets in `metric` when each feature is shuffled (mean and spread over a few
    shuffles), on a seeded sample of at most IMPORTANCE_ROWS rows: permutation importance as scikit-learn
    defines it, but every shuffled copy scored in one prediction (a prediction call costs more than its
    rows here)."""
    from retrain.evaluation import ResampledMetric, row_aucs
    from retrain.tasks import task_labels

    if len(frame) > IMPORTANCE_ROWS:
        frame = frame.sample(IMPORTANCE_ROWS, random_state=seed)
    raw = frame[model.target].to_numpy()
    if len(pd.unique(raw)) < 2:
        return Importances()
    labels = task_labels(raw, model.task, classes)
    features = frame[list(model.features)].reset_index(drop=True)
    rng = np.random.default_rng(seed)
    direction = METRICS[metric]

    def values(predictions: list[np.ndarray]) -> np.ndarray:
        if metric == "roc_auc":
            return row_aucs(labels, np.stack(predictions))
        ones = np.ones((1, len(labels)), dtype=np.int32)
        return np.array([v[0] for v in ResampledMetric(metric, labels, predictions, task=model.task)(ones)])

    baseline = values([predict_scores(pipeline, features, model, classes)])[0]
    scores = []
    # Scored in groups of copies: one prediction call per group, and memory bounded for a model of
    # hundreds of features (all copies at once would be features x repeats x rows x columns).
    per_call = max(1, IMPORTANCE_ROWS_PER_CALL // (len(features) * IMPORTANCE_REPEATS))
    for start in range(0, len(model.features), per_call):
        copies = []
        for name in model.features[start : start + per_call]:
            for _ in range(IMPORTANCE_REPEATS):
                shuffled = features.copy()
                # Shuffled as a Series, so a categorical column stays categorical (not Python strings).
                shuffled[name] = features[name].iloc[rng.permutation(len(features))].reset_index(drop=True)
                copies.append(shuffled)
        predicted = predict_scores(pipeline, pd.concat(copies, ignore_index=True), model, classes)
        scores.append(values(np.split(predicted, len(copies))))
    drops = direction.improvement(baseline, np.concatenate(scores)).reshape(len(model.features), IMPORTANCE_REPEATS)
    return Importances(
        features=model.features, means=tuple(drops.mean(axis=1).tolist()), stds=tuple(drops.std(axis=1).tolist())
    )


def serialize(pipeline: Pipeline) -> tuple[bytes, str]:
    """The model file's bytes and their SHA-256."""
    buffer = io.BytesIO()
    joblib.dump(pipeline, buffer, compress=3)
    data = buffer.getvalue()
    return data, hashlib.sha256(data).hexdigest()


def deserialize(data: bytes, expected_sha256: str, *, source: str) -> Pipeline:
    """Unpickle a model only once its bytes match the checksum recorded for it."""
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected_sha256:
        raise IntegrityError(
            f"{source}: SHA-256 {actual[:12]}... does not match the recorded {expected_sha256[:12]}...; "
            "the model file was modified or truncated, refusing to load it"
        )
    return joblib.load(io.BytesIO(data))

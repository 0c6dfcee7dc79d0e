"""Challenger training: one scikit-learn Pipeline, preprocessing included, over the configured features.

Categorical features arrive as pandas categoricals and reach HistGradientBoosting as integer codes through
`CategoryCodes`, which maps each frame's few categories rather than its many rows.
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
from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder

from retrain.errors import DataError, IntegrityError
from retrain.records import Importances
from retrain.snapshots import as_category_strings

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
    numeric, categorical = list(model.numeric_features), list(model.categorical_features)
    if training.estimator == "hist_gradient_boosting":
        categories: object = CategoryCodes()
        # HistGradientBoosting handles missing numeric values natively.
        numbers: object = "passthrough"
        estimator = HistGradientBoostingClassifier(
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
        estimator = GradientBoostingClassifier(n_estimators=200, learning_rate=0.05, random_state=training.seed)
    transformers = []
    if categorical:
        transformers.append(("categorical", categories, categorical))
    if numeric:
        transformers.append(("numeric", numbers, numeric))
    preprocess = ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=False)
    return Pipeline([("preprocess", preprocess), ("classifier", estimator)])


def stratified_sample(frame: pd.DataFrame, target: str, max_rows: int, seed: int) -> pd.DataFrame:
    """At most `max_rows` rows, each class keeping its share, chosen with `seed`; rows keep their order."""
    if max_rows <= 0 or len(frame) <= max_rows:
        return frame
    labels = frame[target].to_numpy()
    rng = np.random.default_rng(seed)
    chosen = []
    for label in (0, 1):
        rows = np.flatnonzero(labels == label)
        take = max(1, int(round(max_rows * len(rows) / len(frame))))
        chosen.append(rng.choice(rows, size=min(take, len(rows)), replace=False))
    keep = np.sort(np.concatenate(chosen))
    if len(np.unique(labels[keep])) < 2:
        raise DataError(f"training.max_rows={max_rows} leaves a single class in the training sample")
    return frame.iloc[keep].reset_index(drop=True)


def train(frame: pd.DataFrame, model: ModelSpec, training: TrainingSpec) -> Pipeline:
    """Fit a challenger on a labeled frame. Same data, config and seed give identical predictions."""
    pipeline = build_pipeline(model, training)
    features = frame[list(model.features)]
    target = frame[model.target].astype(int)
    log.info("training %s on %d rows x %d features", training.estimator, len(frame), features.shape[1])
    pipeline.fit(features, target)
    return pipeline


def predict_scores(pipeline: Pipeline, frame: pd.DataFrame, model: ModelSpec) -> np.ndarray:
    """Probability of the positive class."""
    return pipeline.predict_proba(frame[list(model.features)])[:, 1]


IMPORTANCE_ROWS = 1000
IMPORTANCE_REPEATS = 3
IMPORTANCE_ROWS_PER_CALL = 100_000


def permutation_importances(pipeline: Pipeline, frame: pd.DataFrame, model: ModelSpec, seed: int) -> Importances:
    """The AUC the model loses when each feature is shuffled (mean and spread over a few shuffles), on a
    seeded sample of at most IMPORTANCE_ROWS rows: permutation importance as scikit-learn defines it, but
    every shuffled copy scored in one prediction (a prediction call costs more than its rows here)."""
    from retrain.evaluation import row_aucs

    if len(frame) > IMPORTANCE_ROWS:
        frame = frame.sample(IMPORTANCE_ROWS, random_state=seed)
    labels = frame[model.target].to_numpy().astype(int)
    features = frame[list(model.features)].reset_index(drop=True)
    if len(np.unique(labels)) < 2:
        return Importances()
    rng = np.random.default_rng(seed)
    baseline = row_aucs(labels, predict_scores(pipeline, features, model)[None, :])[0]
    aucs = []
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
        scores = predict_scores(pipeline, pd.concat(copies, ignore_index=True), model).reshape(len(copies), -1)
        aucs.append(row_aucs(labels, scores))
    drops = (baseline - np.concatenate(aucs)).reshape(len(model.features), IMPORTANCE_REPEATS)
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

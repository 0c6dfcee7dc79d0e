"""Challenger training: one scikit-learn Pipeline, preprocessing included, over the configured features."""

from __future__ import annotations

import hashlib
import io
import logging
from typing import TYPE_CHECKING

import joblib
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, OrdinalEncoder

from retrain.errors import IntegrityError
from retrain.snapshots import as_category_strings

if TYPE_CHECKING:
    from retrain.config import ModelSpec, TrainingSpec

log = logging.getLogger(__name__)

MISSING_CATEGORY = "__missing__"


def _categories_as_strings(frame: pd.DataFrame) -> pd.DataFrame:
    """Whatever the caller passes (ints, bools, pandas strings), encoders see Python strings or NaN."""
    return frame.apply(as_category_strings)


def _category_step() -> FunctionTransformer:
    return FunctionTransformer(_categories_as_strings, feature_names_out="one-to-one")


def build_pipeline(model: ModelSpec, training: TrainingSpec) -> Pipeline:
    """The untrained challenger. Unseen categories at predict time map to 'unknown', never an error."""
    numeric, categorical = list(model.numeric_features), list(model.categorical_features)
    if training.estimator == "hist_gradient_boosting":
        categories = make_pipeline(
            _category_step(),
            OrdinalEncoder(
                handle_unknown="use_encoded_value",
                unknown_value=np.nan,
                encoded_missing_value=np.nan,
            ),
        )
        # HistGradientBoosting handles missing numeric values natively.
        numbers: object = "passthrough"
        estimator = HistGradientBoostingClassifier(
            categorical_features=[True] * len(categorical) + [False] * len(numeric),
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

"""An example estimator factory for `training.estimator = "package.module:factory"`: what a team's own
scikit-learn pipeline looks like to this project (docs/configuration.md, "Your own estimator")."""

from __future__ import annotations

from typing import Any


def scaled_logistic_regression(
    *,
    task: str,
    numeric_features: list[str],
    categorical_features: list[str],
    seed: int,
    C: float = 1.0,  # noqa: N803 (scikit-learn's name for it)
    max_iter: int = 1000,
) -> Any:
    """Median-imputed, standardised numbers and one-hot categories (missing as their own category, unseen
    ones ignored) into a logistic regression, or a ridge regression (alpha = 1 / C) for `regression`."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from retrain.training import MISSING_CATEGORY, _category_step

    transformers = []
    if numeric_features:
        numbers = make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler())
        transformers.append(("numeric", numbers, numeric_features))
    if categorical_features:
        categories = make_pipeline(
            _category_step(),
            SimpleImputer(strategy="constant", fill_value=MISSING_CATEGORY),
            OneHotEncoder(handle_unknown="ignore", min_frequency=5),
        )
        transformers.append(("categorical", categories, categorical_features))
    model = (
        Ridge(alpha=1.0 / C, random_state=seed)
        if task == "regression"
        else LogisticRegression(C=C, max_iter=max_iter, random_state=seed)
    )
    return Pipeline([("preprocess", ColumnTransformer(transformers, remainder="drop")), ("model", model)])

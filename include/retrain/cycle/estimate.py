"""The champion's quality before labels arrive, in a cycle: estimated on the production month, beside the
value it was validated with and the one it realized on the last labeled month (see `retrain.estimation`).

The calibration depends only on the validated model and its holdout, so the run that validates a model
writes it to its run folder (`validation.json`, named in the champion pointer), and the estimates of the
months after it read it instead of scoring the holdout again, while it still describes the same model on
the same rows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from retrain.cycle.frames import frame, holdout, known_classes, labels_of, schemas
from retrain.estimation import ValidationProfile
from retrain.records import PerformanceEstimate
from retrain.serial import project, to_bytes

if TYPE_CHECKING:
    import pandas as pd
    from sklearn.pipeline import Pipeline

    from retrain.config import Config
    from retrain.cycle.context import Cycle
    from retrain.records import Champion, Pulled, Snapshot
    from retrain.registry import Registry

log = logging.getLogger(__name__)

VALIDATION_FILE = "validation.json"  # the validated model's calibration, read by later estimates
VALIDATION_FORMAT = 1
ESTIMATE_MAX_ROWS = 50_000  # rows of a month scored for the estimate: the AUC's sampling error is ~0.003


@dataclass(frozen=True)
class HoldoutSettings:
    target: str
    positive_label: str | None
    fraction: float
    timestamp: str | None
    seed: int


@dataclass(frozen=True)
class ProfileIdentity:
    """What a stored profile must match to stand for a fresh one: the model, the holdout's rows, the seed."""

    format: int
    model_sha256: str | None
    month: str | None
    fingerprint: str | None
    holdout: HoldoutSettings | None


@dataclass(frozen=True)
class StoredProfile(ProfileIdentity):
    """`validation.json`: a validation profile and what it was computed from."""

    profile: ValidationProfile | None = None

    def identity(self) -> ProfileIdentity:
        return project(self, ProfileIdentity)


def profile_identity(config: Config, snapshot: Snapshot, model_sha256: str | None) -> ProfileIdentity:
    """The champion's SHA-256 is the one its pointer names, as the run read it, rather than a second read
    of the version's metadata; a state recorded without it gives None, which only means computing again."""
    return ProfileIdentity(
        format=VALIDATION_FORMAT,
        model_sha256=model_sha256,
        month=snapshot.month,
        fingerprint=snapshot.fingerprint,
        holdout=HoldoutSettings(
            target=config.model.target,
            positive_label=config.model.positive_label,
            fraction=config.training.holdout_fraction,
            timestamp=config.model.timestamp,
            seed=config.training.seed,
        ),
    )


def write_validation_profile(
    cycle: Cycle,
    pulled: Pulled,
    model_sha256: str | None,
    scores: np.ndarray,
    labels: np.ndarray,
    classes: tuple[str, ...] | None = None,
) -> str | None:
    """The profile of the model this run validates, from the holdout scores it has. Returns its store key.

    Only a binary model's profile is kept: a multiclass or regression model's estimate is fitted again from
    a sample of its validation holdout each month (a loss model is no JSON document)."""
    from retrain.estimation import validation_profile

    if cycle.config.model.task != "binary":
        return None
    profile = validation_profile(scores, labels, seed=cycle.config.training.seed)
    identity = profile_identity(cycle.config, pulled.holdout, model_sha256)
    cycle.folder.write(VALIDATION_FILE, to_bytes(StoredProfile(**vars(identity), profile=profile)))
    return cycle.folder.path(VALIDATION_FILE)


def sample_rows(rows: int, seed: int) -> np.ndarray:
    """Sorted positions of at most ESTIMATE_MAX_ROWS rows, chosen with `seed`."""
    if rows <= ESTIMATE_MAX_ROWS:
        return np.arange(rows)
    return np.sort(np.random.default_rng(seed).choice(rows, ESTIMATE_MAX_ROWS, replace=False))


def estimate_limit(config: Config) -> tuple[float | None, str]:
    """The estimate trigger in force and its key: a fall in AUC for classifiers, a rise in error for
    regressors."""
    if config.model.task == "regression":
        return config.drift.max_estimated_error_rise, "drift.max_estimated_error_rise"
    return config.drift.max_estimated_auc_drop, "drift.max_estimated_auc_drop"


def performance_drop(config: Config, performance: PerformanceEstimate | None) -> str | None:
    """The estimate trigger's reason when it fires (the estimated worsening is above the limit), else None."""
    limit, key = estimate_limit(config)
    if limit is None or performance is None:
        return None
    drop = performance.estimated_drop
    if drop <= limit:
        return None
    label = performance.label
    if performance.metric in ("rmse", "mae"):
        return (
            f"estimated {label} {performance.estimated_value:.4g} is {drop:.4g} above the champion's validated "
            f"{label} {performance.validated_value:.4g} ({key}={limit})"
        )
    return (
        f"estimated {label} {performance.estimated_value:.4f} is {drop:.4f} below the champion's validated "
        f"{label} {performance.validated_value:.4f} ({key}={limit})"
    )


def estimated_metric(config: Config) -> str:
    """What is estimated before labels: a classifier's ROC AUC, a regressor's promotion metric."""
    task = config.model.task
    if task == "regression":
        return config.promotion.judged_by.name
    return "roc_auc" if task == "binary" else "roc_auc_ovr_weighted"


def estimate_performance(cycle: Cycle, pulled: Pulled, production: pd.DataFrame) -> PerformanceEstimate | None:
    """The champion's quality estimated on the production month before labels, next to the value it was
    validated with, and the value realized on the last labeled month by the version that estimated it."""
    from retrain.evaluation import score_metrics
    from retrain.training import predict_scores

    champion, config, registry = pulled.champion, cycle.config, cycle.registry
    if champion is None or pulled.validation is None:
        return None
    version = champion.version
    model = registry.load_model(version)
    metric = estimated_metric(config)
    classes = known_classes(config, pulled.validation, *pulled.labeled, models=(model,))
    if config.model.task == "binary":
        estimate = _binary_estimate(cycle, champion, pulled.validation, model, production)
    else:
        estimate = _refitted_estimate(config, pulled.validation, model, production, metric, classes)
    latest = pulled.holdout
    estimated_by = _estimating_version(registry, latest.month or "", run_month=pulled.month) or version
    realized_model = model if estimated_by == version else registry.load_model(estimated_by)
    realized = frame(config, latest, schemas(config)[1])
    if len(realized) > ESTIMATE_MAX_ROWS:
        realized = realized.iloc[sample_rows(len(realized), config.training.seed)]
    realized_value = None
    if config.model.task == "regression" or realized[config.model.target].nunique() > 1:
        realized_classes = known_classes(config, latest, pulled.validation, models=(realized_model,))
        scored = score_metrics(
            labels_of(config, realized, realized_classes),
            predict_scores(realized_model, realized, config.model, realized_classes),
            task=config.model.task,
            metric=metric,
            classes=realized_classes,
        )
        realized_value = scored.auc if config.model.task != "regression" else scored.value
    return PerformanceEstimate(
        champion_version=version,
        estimated_value=estimate.estimated,
        validated_value=estimate.validated,
        validated_month=pulled.validation.month or "",
        expected_production=estimate.expected_production,
        expected_validation=estimate.expected_validation,
        realized_value=realized_value,
        realized_month=latest.month,
        realized_version=estimated_by if realized_value is not None else None,
        production_rows_scored=len(production),
        calibration=estimate.method,
        metric=metric,
    )


@dataclass(frozen=True)
class _Estimate:
    estimated: float
    validated: float
    expected_production: float
    expected_validation: float
    method: str


def _binary_estimate(
    cycle: Cycle, champion: Champion, validation: Snapshot, model: object, production: pd.DataFrame
) -> _Estimate:
    from retrain.estimation import anchored_estimate, expected_auc
    from retrain.training import predict_scores

    profile = _validation_profile(cycle, champion, validation, model)
    production_scores = predict_scores(model, production, cycle.config.model)
    expected_on_production = expected_auc(production_scores, profile.calibration.apply(production_scores))
    return _Estimate(
        estimated=anchored_estimate(profile.validated_auc, expected_on_production, profile.expected_auc_validation),
        validated=profile.validated_auc,
        expected_production=expected_on_production,
        expected_validation=profile.expected_auc_validation,
        method=profile.calibration.method,
    )


def _refitted_estimate(
    config: Config,
    validation: Snapshot,
    model: object,
    production: pd.DataFrame,
    metric: str,
    classes: tuple[str, ...] | None,
) -> _Estimate:
    """A multiclass model's AUC (one class against the rest, calibrated per class) or a regressor's error
    (direct loss estimation), fitted on a sample of its validation holdout."""
    from retrain import estimation
    from retrain.evaluation import score_metrics
    from retrain.training import predict_scores

    seed = config.training.seed
    rows = holdout(config, validation)
    if len(rows) > ESTIMATE_MAX_ROWS:
        rows = rows.iloc[sample_rows(len(rows), seed)].reset_index(drop=True)
    labels = labels_of(config, rows, classes)
    validated_predictions = predict_scores(model, rows, config.model, classes)
    production_predictions = predict_scores(model, production, config.model, classes)
    validated = score_metrics(labels, validated_predictions, task=config.model.task, metric=metric, classes=classes)
    if config.model.task == "multiclass":
        calibrations = estimation.multiclass_calibrations(validated_predictions, labels, seed=seed)
        on_validation = estimation.expected_ovr_auc(validated_predictions, calibrations)
        on_production = estimation.expected_ovr_auc(production_predictions, calibrations)
        value = validated.auc or 0.0
        return _Estimate(
            estimated=estimation.anchored_estimate(value, on_production, on_validation),
            validated=value,
            expected_production=on_production,
            expected_validation=on_validation,
            method="one-vs-rest calibration",
        )
    features = list(config.model.features)
    loss_model = estimation.fit_loss_model(rows[features], validated_predictions, labels, metric=metric, seed=seed)
    on_validation = estimation.expected_error(loss_model, rows[features], validated_predictions, metric=metric)
    on_production = estimation.expected_error(loss_model, production[features], production_predictions, metric=metric)
    value = validated.value or 0.0
    return _Estimate(
        estimated=estimation.anchored_error(value, on_production, on_validation),
        validated=value,
        expected_production=on_production,
        expected_validation=on_validation,
        method="direct loss estimation",
    )


def _validation_profile(cycle: Cycle, champion: Champion, validation: Snapshot, model: Pipeline) -> ValidationProfile:
    """The champion's profile on its validation holdout: the one the validating run wrote when it still
    describes this model on these same rows, else computed here from the holdout."""
    from retrain.estimation import validation_profile
    from retrain.training import predict_scores

    config = cycle.config
    key = champion.validation_profile
    stored = cycle.registry.read_optional(StoredProfile, key) if key else None
    fresh = profile_identity(config, validation, champion.model_sha256)
    if stored is not None and stored.profile is not None and stored.identity() == fresh:
        return stored.profile
    rows = holdout(config, validation)
    labels = rows[config.model.target].to_numpy().astype(int)
    return validation_profile(predict_scores(model, rows, config.model), labels, seed=config.training.seed)


def _estimating_version(registry: Registry, month: str, *, run_month: str) -> int | None:
    """The champion version that estimated `month` in that month's own run, if it ran and still exists."""
    if month == run_month:
        return None
    estimated = [
        (record.recorded_at, record.performance.champion_version)
        for record in registry.ledger_records(month)
        if record.performance is not None
    ]
    versions = [v for _, v in sorted(estimated)]
    return versions[-1] if versions and versions[-1] in registry.versions() else None

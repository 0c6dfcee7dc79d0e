"""The champion's quality before labels arrive, in a cycle: estimated on the production month, beside the
value it was validated with and the one it realized on the last labeled month (see `retrain.estimation`).

The calibration depends only on the validated model and its holdout, so the run that validates a model
writes it to its run folder (`validation.json`, named in the champion pointer), and the estimates of the
months after it read it instead of scoring the holdout again, while it still describes the same model on
the same rows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from retrain.cycle.frames import frame, holdout, known_classes, labels_of, schemas
from retrain.estimation import LossProfile, ValidationProfile
from retrain.records import PerformanceEstimate
from retrain.serial import project, to_bytes

if TYPE_CHECKING:
    import pandas as pd

    from retrain.config import Config
    from retrain.cycle.context import Cycle
    from retrain.records import Champion, Pulled, Snapshot
    from retrain.registry import Registry

log = logging.getLogger(__name__)

VALIDATION_FILE = "validation.json"  # the validated model's calibration, read by later estimates
VALIDATION_LOSS_FILE = "validation-loss.joblib"  # a validated regressor's loss model
VALIDATION_FORMAT = 1
PROFILE_MAX_ROWS = 50_000  # holdout rows a validated multiclass or regression model's profile is fitted on


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
    loss: LossProfile | None = field(default=None, metadata={"json_omit_none": True})

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
    rows: pd.DataFrame | None = None,
) -> str:
    """The profile of the model this run validates, from the holdout scores it has. Returns its store key.

    A regressor's loss model is fitted here, on a sample of at most PROFILE_MAX_ROWS of the holdout, and
    kept beside the profile as a joblib file: the months after it load it instead of fitting it again."""
    from retrain.training import serialize

    config = cycle.config
    identity = profile_identity(config, pulled.holdout, model_sha256)
    profile, fitted = _profile(config, scores, labels, classes, rows)
    loss = None
    if fitted is not None:
        data, sha256 = serialize(fitted.model)
        cycle.folder.write(VALIDATION_LOSS_FILE, data)
        loss = replace(fitted.profile, model_file=cycle.folder.path(VALIDATION_LOSS_FILE), model_sha256=sha256)
    cycle.folder.write(VALIDATION_FILE, to_bytes(StoredProfile(**vars(identity), profile=profile, loss=loss)))
    return cycle.folder.path(VALIDATION_FILE)


@dataclass(frozen=True)
class _FittedLoss:
    profile: LossProfile
    model: object


def _profile(
    config: Config,
    scores: np.ndarray,
    labels: np.ndarray,
    classes: tuple[str, ...] | None,
    rows: pd.DataFrame | None,
) -> tuple[ValidationProfile | None, _FittedLoss | None]:
    """A validated model's profile from its holdout predictions (and, for a regressor, the rows)."""
    from retrain import estimation
    from retrain.evaluation import score_metrics

    task, seed = config.model.task, config.training.seed
    if task == "binary":
        return estimation.validation_profile(scores, labels, seed=seed), None
    metric = estimated_metric(config)
    validated = score_metrics(labels, scores, task=task, metric=metric, classes=classes)
    sample = sample_rows(len(labels), seed, PROFILE_MAX_ROWS)
    if task == "multiclass":
        profile = estimation.multiclass_profile(
            scores[sample], labels[sample], classes or (), validated_auc=validated.auc or 0.0, seed=seed
        )
        return profile, None
    if rows is None:
        raise ValueError("a regressor's profile needs the holdout's rows")
    features = rows[list(config.model.features)].iloc[sample].reset_index(drop=True)
    loss_model = estimation.fit_loss_model(features, scores[sample], labels[sample], metric=metric, seed=seed)
    expected = estimation.expected_error(loss_model, features, scores[sample], metric=metric)
    return None, _FittedLoss(LossProfile(metric, validated.value or 0.0, expected, len(sample)), loss_model)


def sample_rows(rows: int, seed: int, limit: int) -> np.ndarray:
    """Sorted positions of at most `limit` rows, a uniform sample chosen with `seed`."""
    if rows <= limit:
        return np.arange(rows)
    return np.sort(np.random.default_rng(seed).choice(rows, limit, replace=False))


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
    from retrain.tasks import METRICS

    label = performance.label
    if METRICS[performance.metric].higher_is_better:
        return (
            f"estimated {label} {performance.estimated_value:.4f} is {drop:.4f} below the champion's validated "
            f"{label} {performance.validated_value:.4f} ({key}={limit})"
        )
    # An error metric (RMSE, MAE) is in the target's units, whatever their size.
    return (
        f"estimated {label} {performance.estimated_value:.4g} is {drop:.4g} above the champion's validated "
        f"{label} {performance.validated_value:.4g} ({key}={limit})"
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
    estimate = _estimate(cycle, champion, pulled.validation, model, production)
    latest = pulled.holdout
    estimated_by = _estimating_version(registry, latest.month or "", run_month=pulled.month) or version
    realized_model = model if estimated_by == version else registry.load_model(estimated_by)
    realized = frame(config, latest, schemas(config)[1])
    if len(realized) > config.drift.estimate_sample_rows:
        realized = realized.iloc[sample_rows(len(realized), config.training.seed, config.drift.estimate_sample_rows)]
    realized_value = None
    if config.model.task == "regression" or realized[config.model.target].nunique() > 1:
        classes = known_classes(config, latest, pulled.validation, models=(realized_model,))
        scored = score_metrics(
            labels_of(config, realized, classes),
            predict_scores(realized_model, realized, config.model, classes),
            task=config.model.task,
            metric=metric,
            classes=classes,
        )
        realized_value = scored.value
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


def _estimate(
    cycle: Cycle, champion: Champion, validation: Snapshot, model: object, production: pd.DataFrame
) -> _Estimate:
    """The champion's profile (stored, or computed again) applied to the production month."""
    from retrain import estimation
    from retrain.training import deserialize, predict_scores

    config = cycle.config
    profile, loss, loss_model = _validation_profile(cycle, champion, validation, model)
    if loss is not None:
        if loss_model is None:
            data = cycle.registry.store.read(loss.model_file or "")
            loss_model = deserialize(
                data, loss.model_sha256 or "", source=cycle.registry.store.uri_for(loss.model_file or "")
            )
        predictions = predict_scores(model, production, config.model)
        features = production[list(config.model.features)]
        on_production = estimation.expected_error(loss_model, features, predictions, metric=loss.metric)
        return _Estimate(
            estimated=estimation.anchored_error(loss.validated, on_production, loss.expected_validation),
            validated=loss.validated,
            expected_production=on_production,
            expected_validation=loss.expected_validation,
            method="direct loss estimation",
        )
    assert profile is not None
    if profile.calibration is None:
        predictions = predict_scores(model, production, config.model, profile.classes)
        on_production = estimation.expected_ovr_auc(predictions, list(profile.class_calibrations))
        method = "one-vs-rest calibration"
    else:
        predictions = predict_scores(model, production, config.model)
        on_production = estimation.expected_auc(predictions, profile.calibration.apply(predictions))
        method = profile.calibration.method
    return _Estimate(
        estimated=estimation.anchored_estimate(profile.validated_auc, on_production, profile.expected_auc_validation),
        validated=profile.validated_auc,
        expected_production=on_production,
        expected_validation=profile.expected_auc_validation,
        method=method,
    )


def _validation_profile(
    cycle: Cycle, champion: Champion, validation: Snapshot, model: object
) -> tuple[ValidationProfile | None, LossProfile | None, object | None]:
    """The champion's profile on its validation holdout: the one the validating run wrote when it still
    describes this model on these same rows, else computed here from the holdout (a regressor's loss
    model then comes fitted, not stored)."""
    from retrain.training import predict_scores

    config = cycle.config
    key = champion.validation_profile
    stored = cycle.registry.read_optional(StoredProfile, key) if key else None
    fresh = profile_identity(config, validation, champion.model_sha256)
    if stored is not None and stored.identity() == fresh and (stored.profile or stored.loss):
        return stored.profile, stored.loss, None
    rows = holdout(config, validation)
    classes = known_classes(config, validation, models=(model,))
    labels = labels_of(config, rows, classes)
    profile, fitted = _profile(config, predict_scores(model, rows, config.model, classes), labels, classes, rows)
    return profile, fitted.profile if fitted else None, fitted.model if fitted else None


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

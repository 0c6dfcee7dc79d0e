"""The champion's AUC before labels arrive, in a cycle: estimated on the production month, beside the AUC
it was validated with and the AUC it realized on the last labeled month (see `retrain.estimation`).

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

from retrain.cycle.frames import frame, holdout, schemas
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
    cycle: Cycle, pulled: Pulled, model_sha256: str | None, scores: np.ndarray, labels: np.ndarray
) -> str:
    """The profile of the model this run validates, from the holdout scores it has. Returns its store key."""
    from retrain.estimation import validation_profile

    profile = validation_profile(scores, labels, seed=cycle.config.training.seed)
    identity = profile_identity(cycle.config, pulled.holdout, model_sha256)
    cycle.folder.write(VALIDATION_FILE, to_bytes(StoredProfile(**vars(identity), profile=profile)))
    return cycle.folder.path(VALIDATION_FILE)


def sample_rows(rows: int, seed: int) -> np.ndarray:
    """Sorted positions of at most ESTIMATE_MAX_ROWS rows, chosen with `seed`."""
    if rows <= ESTIMATE_MAX_ROWS:
        return np.arange(rows)
    return np.sort(np.random.default_rng(seed).choice(rows, ESTIMATE_MAX_ROWS, replace=False))


def performance_drop(config: Config, performance: PerformanceEstimate | None) -> str | None:
    """The estimated-AUC trigger's reason when it fires (the drop is above the limit), else None."""
    limit = config.drift.max_estimated_auc_drop
    if limit is None or performance is None:
        return None
    drop = performance.estimated_drop
    if drop <= limit:
        return None
    return (
        f"estimated AUC {performance.estimated_auc:.4f} is {drop:.4f} below the champion's validated AUC "
        f"{performance.validated_auc:.4f} (drift.max_estimated_auc_drop={limit})"
    )


def estimate_performance(cycle: Cycle, pulled: Pulled, production: pd.DataFrame) -> PerformanceEstimate | None:
    """The champion's AUC estimated on the production month before labels, next to the AUC it was
    validated with, and the AUC realized on the last labeled month by the version that estimated it."""
    from sklearn.metrics import roc_auc_score

    from retrain.estimation import anchored_estimate, expected_auc
    from retrain.training import predict_scores

    champion, config, registry = pulled.champion, cycle.config, cycle.registry
    if champion is None or pulled.validation is None:
        return None
    version = champion.version
    model = registry.load_model(version)
    profile = _validation_profile(cycle, champion, pulled.validation, model)
    production_scores = predict_scores(model, production, config.model)
    expected_on_production = expected_auc(production_scores, profile.calibration.apply(production_scores))
    latest = pulled.holdout
    estimated_by = _estimating_version(registry, latest.month or "", run_month=pulled.month) or version
    realized_model = model if estimated_by == version else registry.load_model(estimated_by)
    realized = frame(config, latest, schemas(config)[1])
    if len(realized) > ESTIMATE_MAX_ROWS:
        realized = realized.iloc[sample_rows(len(realized), config.training.seed)]
    realized_labels = realized[config.model.target].to_numpy().astype(int)
    realized_auc = (
        float(roc_auc_score(realized_labels, predict_scores(realized_model, realized, config.model)))
        if 0 < realized_labels.sum() < len(realized_labels)
        else None
    )
    return PerformanceEstimate(
        champion_version=version,
        estimated_auc=anchored_estimate(profile.validated_auc, expected_on_production, profile.expected_auc_validation),
        validated_auc=profile.validated_auc,
        validated_month=pulled.validation.month or "",
        expected_auc_production=expected_on_production,
        expected_auc_validation=profile.expected_auc_validation,
        realized_auc=realized_auc,
        realized_month=latest.month,
        realized_version=estimated_by if realized_auc is not None else None,
        production_rows_scored=len(production),
        calibration=profile.calibration.method,
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

"""The promotion step: publish the challenger as an immutable version and move the champion to it by
compare-and-swap, or say why not."""

from __future__ import annotations

import platform
from dataclasses import replace
from importlib import metadata as package_metadata
from typing import TYPE_CHECKING

from retrain.cycle.train import CHALLENGER_FILE
from retrain.records import (
    FeatureLists,
    HeldOut,
    Lineage,
    Outcome,
    Promotion,
    TrainingRows,
    VersionMetadata,
)
from retrain.registry import utc_now

if TYPE_CHECKING:
    from retrain.cycle.context import Cycle
    from retrain.records import Approval, Champion, DriftCheck, Evaluation, Pulled, Run, Trained

LIBRARIES = ("retrain", "scikit-learn", "numpy", "pandas", "scipy", "pyarrow", "joblib")


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = package_metadata.version(name)
        except package_metadata.PackageNotFoundError:
            versions[name] = "unknown"
    return versions


def newer_champion(current: Champion | None, run: Run) -> Champion | None:
    """The champion as just read, when it already holds newer data than this run (a backfill over history)."""
    return current if current is not None and current.data_month > run.month else None


def superseded(reason: str, champion: Champion, run: Run) -> str:
    return (
        f"{reason}; not promoted: champion version {champion.version} holds newer data "
        f"({champion.data_month} > {run.month})"
    )


def version_metadata(
    cycle: Cycle,
    pulled: Pulled,
    drift: DriftCheck,
    trained: Trained,
    evaluation: Evaluation,
    approval: Approval | None = None,
) -> VersionMetadata:
    config, run = cycle.config, cycle.run
    return VersionMetadata(
        model=config.model.name,
        created_at=utc_now(),
        run_id=run.run_id,
        run_key=run.key,
        data_month=run.month,
        validated_month=evaluation.holdout_month,
        estimator=trained.estimator,
        target=config.model.target,
        positive_label=config.model.positive_label,
        task=config.model.task,
        features=FeatureLists(config.model.numeric_features, config.model.categorical_features),
        lineage=Lineage(
            training=pulled.labeled,
            holdout=HeldOut(**vars(pulled.holdout), share=config.training.holdout_fraction),
            production=pulled.production,
            reference=pulled.reference.snapshots,
        ),
        rows=TrainingRows(
            train=trained.train_rows,
            holdout=trained.holdout_rows,
            window=trained.window_rows,
            sampled=trained.train_rows < trained.window_rows,
            max_rows=trained.max_rows,
        ),
        thresholds=config.thresholds(),
        metrics=evaluation.metrics,
        drift=drift,
        decision=evaluation.decision,
        libraries=library_versions(),
        model_sha256=trained.model_sha256,
        approval=approval,
    )


def promote(
    cycle: Cycle,
    pulled: Pulled,
    drift: DriftCheck,
    trained: Trained,
    evaluation: Evaluation,
    approval: Approval | None = None,
) -> Promotion:
    """Publish the challenger as a version and move the champion to it, or say why not. `approval`, the
    reviewer's sign-off, is kept in the version's metadata.

    Beyond the evaluation's outcome: SUPERSEDED (the champion moved to newer data since the evaluation)
    and CONFLICT (another run moved the champion after this one read it).
    """
    registry, run = cycle.registry, cycle.run
    recorded = registry.ledger_record(run.month, run.key)
    if recorded is not None:
        return Promotion(recorded.outcome, recorded.version, recorded.champion_version, recorded.reason)
    current = registry.champion()
    newer = newer_champion(current, run)
    if newer is not None:
        return Promotion(Outcome.SUPERSEDED, None, newer.version, superseded(evaluation.reason, newer, run))
    version = registry.find_version_by_run(run.key)
    if version is None:
        model_bytes = cycle.folder.read(CHALLENGER_FILE)
        metadata = version_metadata(cycle, pulled, drift, trained, evaluation, approval)
        version = registry.publish_version(model_bytes, metadata)
    if current is not None and current.version == version:
        return mirrored(cycle, Promotion(evaluation.outcome, version, version, evaluation.reason))
    challenger = evaluation.metrics.challenger
    moved = registry.move_champion(
        version,
        data_month=run.month,
        expected_etag=pulled.champion.etag if pulled.champion else None,
        run_id=run.run_id,
        reason=evaluation.reason,
        validated_month=evaluation.holdout_month,
        validated_auc=challenger.auc if challenger else None,
        validation_profile=evaluation.validation_profile,
    )
    if not moved:
        winner = registry.champion()
        return Promotion(
            Outcome.CONFLICT,
            version,
            winner.version if winner else None,
            f"{evaluation.reason}; not promoted: the champion moved to version "
            f"{winner.version if winner else '?'} while this run was evaluating; version {version} "
            "stays in the registry unpromoted",
        )
    return mirrored(cycle, Promotion(evaluation.outcome, version, version, evaluation.reason))


def mirrored(cycle: Cycle, promotion: Promotion) -> Promotion:
    """The MLflow mirror follows the champion at once, before anything announces the move."""
    if cycle.config.mlflow.tracking_uri is None or not promotion.moved_champion:
        return promotion
    from retrain.mlflow_mirror import sync

    return replace(promotion, mlflow=sync(cycle.config, cycle.registry))

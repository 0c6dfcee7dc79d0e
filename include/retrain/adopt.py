"""Adopting a model already in production as the champion: checked, measured on a labeled month, then
published as an immutable version and made the champion by compare-and-swap, with a ledger record.

Loading a joblib or pickle file runs code from it: adopt only files you would run. From then on the
registry's SHA-256 check guards the adopted version as it guards every other.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrain.errors import ConfigError, DataError, RegistryError
from retrain.records import EvaluationMetrics, FeatureLists, LedgerRecord, Lineage, Outcome, ReferenceUse, run_key
from retrain.records.history import Origin, VersionMetadata
from retrain.serial import to_bytes

if TYPE_CHECKING:
    from retrain.config import Config
    from retrain.records import Metrics, Snapshot
    from retrain.registry import Registry

log = logging.getLogger(__name__)

MLFLOW_SCHEMES = ("models:/", "runs:/")


@dataclass(frozen=True)
class Adopted:
    """What `adopt` did: the version, the champion before it, and the model's measured metrics."""

    version: int
    champion_version_before: int | None
    month: str
    metrics: Metrics
    record: LedgerRecord


@dataclass(frozen=True)
class LoadedModel:
    model: object
    data: bytes
    source: str
    source_sha256: str | None


def load_model_file(source: str, config: Config) -> LoadedModel:
    """The model as an object and as the bytes the registry will keep: a file's own bytes, or an MLflow
    model's scikit-learn flavour serialised as joblib."""
    import joblib

    if source.startswith(MLFLOW_SCHEMES):
        return _load_from_mlflow(source, config)
    path = Path(source).expanduser()
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DataError(f"{source}: cannot read the model file: {error.strerror}") from None
    if not data:
        raise DataError(f"{source}: the model file is empty")
    try:
        model = joblib.load(path)
    except Exception as error:  # unpickling runs arbitrary code: any failure means it does not load
        raise DataError(
            f"{source}: not a joblib or pickle file that loads here: {type(error).__name__}: {error}"
        ) from None
    return LoadedModel(model, data, str(path.resolve()), hashlib.sha256(data).hexdigest())


def _load_from_mlflow(uri: str, config: Config) -> LoadedModel:
    from retrain.training import serialize

    if config.mlflow.tracking_uri is None:
        raise ConfigError(f"{config.source}: {uri} is an MLflow model URI; configure [mlflow] tracking_uri first")
    import mlflow
    import mlflow.sklearn

    mlflow.set_tracking_uri(config.mlflow.tracking_uri)
    mlflow.set_registry_uri(config.mlflow.tracking_uri)
    try:
        model = mlflow.sklearn.load_model(uri)
    except Exception as error:  # MLflow raises its own exceptions, and any from the server or unpickling
        raise DataError(
            f"{uri}: cannot load a scikit-learn model from MLflow: {type(error).__name__}: {error}"
        ) from None
    data, _ = serialize(model)
    return LoadedModel(model, data, uri, None)


def read_metadata_file(path: str | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise DataError(f"{path}: cannot read the metadata file: {error.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: the metadata file is not JSON: {error}") from None
    if not isinstance(document, dict):
        raise DataError(f"{path}: the metadata file must hold a JSON object")
    return document


def check_model(model: object, config: Config, *, source: str) -> None:
    """The model has the method its task needs and takes the config's feature columns."""
    task = config.model.task
    method = "predict" if task == "regression" else "predict_proba"
    from sklearn.base import is_classifier

    if not callable(getattr(model, method, None)):
        raise DataError(f"{source}: a {task} model needs {method}; this {type(model).__name__} has none")
    if task == "regression" and is_classifier(model):
        raise DataError(f"{source}: model.task is regression, but this {type(model).__name__} is a classifier")
    names = getattr(model, "feature_names_in_", None)
    if names is None:
        return  # a model fitted on an array: the measurement on the month tells whether the columns fit
    expected, given = set(config.model.features), {str(n) for n in names}
    missing, extra = sorted(given - expected), sorted(expected - given)
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"it needs {', '.join(missing)}, which the config does not list as features")
        if extra:
            parts.append(f"the config lists {', '.join(extra)}, which it was not fitted on")
        raise DataError(
            f"{source}: the model's columns do not match model features in {config.source}: {'; '.join(parts)}"
        )


def default_month(config: Config) -> str:
    """The last labeled month there is, up to the last complete month's labels."""
    from retrain.cycle.window import labeled_month_for
    from retrain.months import previous_complete_month
    from retrain.snapshots.layout import list_months

    last = labeled_month_for(config, previous_complete_month(datetime.now(UTC)))
    months = [m for m in list_months(config.data.labeled, config.storage, config.data.partitioning) if m <= last]
    if not months:
        raise DataError(f"{config.data.labeled}: no labeled month up to {last} to measure the model on")
    return months[-1]


def measure(model: object, config: Config, month: str, *, source: str) -> tuple[Metrics, Snapshot]:
    """The model's metrics on the whole labeled month, after the same validation a cycle does."""
    from retrain.cycle.frames import frame, known_classes, labels_of, schemas
    from retrain.cycle.pull import _scan
    from retrain.evaluation import score_metrics
    from retrain.tasks import check_classes, model_classes
    from retrain.training import predict_scores

    labeled_schema = schemas(config)[1]
    snapshot = _scan(config, config.data.labeled, month, labeled_schema)
    rows = frame(config, snapshot, labeled_schema, keep=False)
    task = config.model.task
    check_classes(model_classes(model), tuple(snapshot.classes), task, f"{source} on {snapshot.uri}")
    classes = known_classes(config, snapshot, models=(model,))
    try:
        predictions = predict_scores(model, rows, config.model, classes)
    except DataError:
        raise
    except Exception as error:  # the user's model failing on the month's frame is a finding, not a crash
        raise DataError(
            f"{source}: the model cannot predict on {snapshot.uri} ({month}) with the config's features: "
            f"{type(error).__name__}: {error}"
        ) from None
    labels = labels_of(config, rows, classes)
    metric = config.promotion.judged_by.name
    return score_metrics(labels, predictions, task=task, metric=metric, classes=classes), snapshot


def adopt(
    config: Config,
    registry: Registry,
    *,
    model_source: str,
    metadata_file: str | None = None,
    month: str | None = None,
    replace: bool = False,
) -> Adopted:
    """Make an existing model the champion. Everything is checked before anything is written; with a
    champion in place it refuses unless `replace`."""
    from retrain.cycle.promote import library_versions
    from retrain.registry import utc_now

    registry.check()
    current = registry.champion()
    if current is not None and not replace:
        raise RegistryError(
            f"{registry.uri}: version {current.version} is already the champion; adopt --replace to replace it"
        )
    supplied = read_metadata_file(metadata_file)
    loaded = load_model_file(model_source, config)
    check_model(loaded.model, config, source=loaded.source)
    month = month or default_month(config)
    metrics, snapshot = measure(loaded.model, config, month, source=loaded.source)
    adopted_at = utc_now()
    run_id = f"adopt__{adopted_at}"
    reason = f"adopted from {loaded.source}: {metrics.shown()} on all {metrics.rows:,} labeled rows of {month}"
    metadata = VersionMetadata(
        model=config.model.name,
        created_at=adopted_at,
        run_id=run_id,
        run_key=run_key(run_id),
        data_month=month,
        validated_month=month,
        estimator=type(loaded.model).__name__,
        target=config.model.target,
        positive_label=config.model.positive_label,
        task=config.model.task,
        features=FeatureLists(config.model.numeric_features, config.model.categorical_features),
        lineage=Lineage(training=(), production=None, reference=()),
        thresholds=config.thresholds(),
        metrics=EvaluationMetrics(challenger=metrics),
        libraries=library_versions(),
        model_sha256=hashlib.sha256(loaded.data).hexdigest(),
        origin=Origin(
            source=loaded.source,
            adopted_at=adopted_at,
            source_sha256=loaded.source_sha256,
            metadata=supplied,
            metadata_file=str(Path(metadata_file).resolve()) if metadata_file else None,
        ),
    )
    version = registry.publish_version(loaded.data, metadata)
    if not registry.move_champion(
        version,
        data_month=month,
        expected_etag=current.etag if current else None,
        run_id=run_id,
        reason=reason,
        validated_month=month,
        validated_auc=metrics.auc,
    ):
        raise RegistryError(
            f"{registry.uri}: the champion moved while adopting; version {version} stays unpromoted, adopt again"
        )
    record = LedgerRecord(
        kind="adopt",
        run_id=run_id,
        run_key=run_key(run_id),
        month=None,
        model=config.model.name,
        outcome=Outcome.ADOPTED,
        reason=reason,
        champion_version_before=current.version if current else None,
        champion_version=version,
        version=version,
        metrics=EvaluationMetrics(champion=metrics),
        thresholds=config.thresholds(),
        reference=ReferenceUse(mode="validated", moved_to=month, moved=True),
        recorded_at=adopted_at,
    )
    registry.store.create(f"ledger/operator/{record.run_key}-{uuid.uuid4().hex[:8]}.json", to_bytes(record))
    log.info("adopted %s as version %d of %s (%s)", loaded.source, version, config.model.name, snapshot.uri)
    return Adopted(version, current.version if current else None, month, metrics, record)

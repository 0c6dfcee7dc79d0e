"""The champion, mirrored to an MLflow Model Registry, where serving and review tools look for it.

The S3/local registry stays the source of truth; MLflow follows it. `sync` brings MLflow up to date with
the registry's current champion: the version is logged (scikit-learn flavour) and registered once, tagged
with its lineage, and the alias (`champion` by default) points at it. It is idempotent (a version already
mirrored, found by its `retrain.version` tag, is not logged again), so every cycle and `retrain registry
sync-mlflow` can call it; and it never raises: an unreachable MLflow is reported back, to be recorded in
the ledger, and the next sync catches up.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrain.records import MirrorState

if TYPE_CHECKING:
    from retrain.config import Config
    from retrain.registry import Registry

log = logging.getLogger(__name__)

VERSION_TAG = "retrain.version"


def sync(config: Config, registry: Registry) -> MirrorState | None:
    """Mirror the registry's champion to MLflow; None when no [mlflow] is configured."""
    spec = config.mlflow
    if spec.tracking_uri is None:
        return None
    try:
        return _sync(config, registry)
    except Exception as error:  # noqa: BLE001 - MLflow's failures are many; none may block a promotion
        message = f"{type(error).__name__}: {error}".splitlines()[0][:300]
        log.warning("MLflow at %s not brought up to date (the next cycle retries): %s", spec.tracking_uri, message)
        return MirrorState(synced=False, error=message, tracking_uri=spec.tracking_uri)


def _client(config: Config) -> Any:
    # A down MLflow must fail fast: MLflow's own default is several retries with backoff, minutes long.
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(max(1, int(config.mlflow.timeout_seconds)))
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(config.mlflow.max_retries)
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=config.mlflow.tracking_uri)


def _sync(config: Config, registry: Registry) -> MirrorState:
    from mlflow.exceptions import MlflowException

    spec = config.mlflow
    name = spec.registered_model or config.model.name
    client = _client(config)
    champion = registry.champion()
    try:
        client.get_registered_model(name)
    except MlflowException as error:
        if error.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        client.create_registered_model(name, tags={"managed_by": "retrain", "retrain.registry": registry.uri})
    if champion is None:
        return MirrorState(synced=True, registered_model=name, alias=spec.alias)
    version = _mirrored(client, name, champion.version) or _publish(config, registry, client, name, champion.version)
    try:
        aliased = client.get_model_version_by_alias(name, spec.alias).version
    except MlflowException:
        aliased = None
    if str(aliased) != str(version.version):
        client.set_registered_model_alias(name, spec.alias, version.version)
        log.info(
            "MLflow %s@%s -> version %s (registry version %d)", name, spec.alias, version.version, champion.version
        )
    return MirrorState(
        synced=True, registered_model=name, version=int(version.version), champion=champion.version, alias=spec.alias
    )


def _mirrored(client: Any, name: str, version: int) -> Any | None:
    """The MLflow model version that mirrors a registry version (found by its `retrain.version` tag)."""
    found = [v for v in client.search_model_versions(f"name = '{name}'") if v.tags.get(VERSION_TAG) == str(version)]
    return found[0] if found else None


def _publish(config: Config, registry: Registry, client: Any, name: str, version: int) -> Any:
    """Log a registry version's model (checked against its SHA-256) with its signature, input example,
    metrics, thresholds and run report, and register it with its lineage."""
    import mlflow
    import mlflow.sklearn

    model = registry.load_model(version)
    metadata = registry.metadata(version)
    lift = metadata.metrics.lift
    auc = metadata.auc
    measured = metadata.metrics.challenger
    tags = {
        "retrain.task": metadata.task,
        "retrain.metric": measured.metric if measured else "none",
        "retrain.score": f"{measured.score:.6f}" if measured and measured.score is not None else "none",
        VERSION_TAG: str(version),
        "retrain.data_month": metadata.data_month,
        "retrain.run_id": metadata.run_id,
        "retrain.auc": f"{auc if auc is not None else float('nan'):.6f}",
        "retrain.lift": f"{lift.lift:.6f}" if lift else "none",
        "retrain.lift_interval": f"[{lift.low:.6f}, {lift.high:.6f}]" if lift else "none",
        "retrain.drifted_features": ",".join(metadata.drift.drifted_features if metadata.drift else ()) or "none",
        "retrain.registry_uri": f"{registry.uri}/{metadata.model_file}",
        "retrain.sha256": metadata.model_sha256,
    }
    served = _served(model, metadata)
    example = _input_example(config, registry, metadata)
    signature = None
    if example is not None:
        from mlflow.models import infer_signature

        signature = infer_signature(example, served.predict(example))
    mlflow.set_tracking_uri(config.mlflow.tracking_uri)
    mlflow.set_experiment(config.mlflow.experiment or f"retrain/{config.model.name}")
    with mlflow.start_run(run_name=f"{config.model.name} v{version} ({metadata.data_month})") as run:
        mlflow.set_tags(tags)
        mlflow.log_metrics(_metrics(metadata))
        mlflow.log_params(_params(metadata))
        logged = mlflow.sklearn.log_model(
            served,
            name="model",
            signature=signature,
            input_example=example,
            skops_trusted_types=_own_types(served),
            pip_requirements=_requirements(),
            # The pipeline holds this package's own steps (CategoryCodes): the model carries their code, so
            # that it loads wherever MLflow serves it, with or without retrain installed.
            code_paths=[str(Path(__file__).parent)],
        )
        report = _stored_report(registry, metadata)
        if report is not None:
            mlflow.log_text(report, REPORT_ARTIFACT)
    registered = mlflow.register_model(logged.model_uri, name, tags=tags)
    reason = (
        metadata.decision.reason
        if metadata.decision
        else (metadata.origin and f"adopted from {metadata.origin.source}") or ""
    )
    client.update_model_version(name, registered.version, description=f"retrain version {version}: {reason}"[:500])
    log.info(
        "MLflow %s version %s mirrors registry version %d (run %s)", name, registered.version, version, run.info.run_id
    )
    return registered


REPORT_ARTIFACT = "report.html"


def attach_report(config: Config, version: int | None, report: str) -> None:
    """Attach a run's report to the MLflow run of the version it promoted (the report is written after the
    promotion, which mirrored the version already). Never raises."""
    from mlflow.exceptions import MlflowException

    if version is None or config.mlflow.tracking_uri is None:
        return
    name = config.mlflow.registered_model or config.model.name
    try:
        client = _client(config)
        mirrored = _mirrored(client, name, version)
        if mirrored is None or not mirrored.run_id:
            return
        run_id = mirrored.run_id
        if any(a.path == REPORT_ARTIFACT for a in client.list_artifacts(run_id)):
            return
        client.log_text(run_id, report, REPORT_ARTIFACT)
    except (MlflowException, OSError) as error:
        log.warning("the run report was not attached to MLflow's version of %d: %s", version, error)


def _served(model: Any, metadata: Any) -> Any:
    """A classifier answers probabilities when served (see retrain.serving)."""
    from retrain.serving import ProbabilityModel
    from retrain.tasks import model_classes, positive_column

    if metadata.task == "regression" or not hasattr(model, "predict_proba"):
        return model
    classes = model_classes(model) or ()
    column = positive_column(classes, metadata.positive_label) if len(classes) == 2 else 0
    return ProbabilityModel(model, column)


def _input_example(config: Config, registry: Registry, metadata: Any) -> Any:
    """The few training rows the training step kept, typed as the model takes them; None for a version
    whose run kept none (an adopted model, a registry older than the examples)."""
    import json

    import pandas as pd

    from retrain.cycle.train import INPUT_EXAMPLE_FILE
    from retrain.errors import NotFoundError

    if not metadata.run_key:
        return None
    try:
        data = registry.run_folder(metadata.data_month, metadata.run_key).read(INPUT_EXAMPLE_FILE)
    except NotFoundError:
        return None
    document = json.loads(data)
    example = pd.DataFrame(document["data"], columns=document["columns"])
    for column in config.model.numeric_features:
        example[column] = example[column].astype("float64")
    for column in config.model.categorical_features:
        example[column] = example[column].astype(object).where(example[column].notna(), None)
        example[column] = example[column].map(lambda v: v if v is None else str(v))
    return example


def _metrics(metadata: Any) -> dict[str, float]:
    """The version's holdout metrics (challenger_* its own, champion_* the model it beat) and its lift."""
    import math

    values: dict[str, float] = {}
    names = ("score", "auc", "average_precision", "log_loss", "brier", "rmse", "mae", "rows")
    for role in ("challenger", "champion"):
        measured = getattr(metadata.metrics, role)
        for name in names if measured else ():
            value = getattr(measured, name, None)
            if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                values[f"{role}_{name}"] = float(value)
    lift = metadata.metrics.lift
    if lift is not None:
        values.update(lift=lift.lift, lift_low=lift.low, lift_high=lift.high)
    return values


def _params(metadata: Any) -> dict[str, str]:
    """The thresholds the version was promoted under, as `section.key`, and what it was trained as."""
    import json

    from retrain.serial import to_jsonable

    params = {
        "task": metadata.task,
        "estimator": metadata.estimator or "default",
        "target": metadata.target or "",
        "data_month": metadata.data_month,
    }
    sections = to_jsonable(metadata.thresholds) if metadata.thresholds else {}
    for section, values in sections.items():
        for key, value in (values or {}).items():
            params[f"{section}.{key}"] = value if isinstance(value, str) else json.dumps(value)
    return params


def _stored_report(registry: Registry, metadata: Any) -> str | None:
    from retrain.cycle.record import REPORT_FILE
    from retrain.errors import NotFoundError

    if not metadata.run_key:
        return None
    try:
        return registry.run_folder(metadata.data_month, metadata.run_key).read(REPORT_FILE).decode()
    except NotFoundError:
        return None


# What loading the model needs. Left to infer them, MLflow loads the model in a subprocess (9 s on the build
# machine) and lists whatever that process had imported, pytest included.
MODEL_REQUIREMENTS = ("scikit-learn", "skops", "numpy", "pandas", "scipy", "pyarrow", "joblib")


def _requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in MODEL_REQUIREMENTS]


def _own_types(model: Any) -> list[str]:
    """The types skops does not trust by default in our pipeline (its own classes, such as CategoryCodes).
    They are ours: the model was built by this package and verified by its SHA-256 before it was loaded."""
    import skops.io

    return skops.io.get_untrusted_types(data=skops.io.dumps(model))

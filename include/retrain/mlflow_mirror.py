"""The champion, mirrored to an MLflow Model Registry, where serving and review tools look for it.

The S3/local registry stays the source of truth; MLflow follows it. `sync` brings MLflow up to date with
the registry's current champion: the version is logged (scikit-learn flavour) and registered once, tagged
with its lineage, and the alias (`champion` by default) points at it. It is idempotent (a version already
mirrored, found by its `retrain.version` tag, is not logged again), so every cycle and `retrain registry
sync-mlflow` can call it; and it never raises: an unreachable MLflow is reported back, to be recorded in
the ledger, and the next sync catches up.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
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
    mirrored = {version.tags.get(VERSION_TAG): version for version in client.search_model_versions(f"name = '{name}'")}
    # MLflow prints "View run ..." lines to stdout when a run ends: the CLI's stdout (--json) is not theirs.
    with contextlib.redirect_stdout(sys.stderr):
        version = mirrored.get(str(champion.version)) or _publish(config, registry, client, name, champion.version)
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


def _publish(config: Config, registry: Registry, client: Any, name: str, version: int) -> Any:
    """Log a registry version's model (checked against its SHA-256) and register it with its lineage."""
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
    mlflow.set_tracking_uri(config.mlflow.tracking_uri)
    mlflow.set_experiment(config.mlflow.experiment or f"retrain/{config.model.name}")
    with mlflow.start_run(run_name=f"{config.model.name} v{version} ({metadata.data_month})") as run:
        mlflow.set_tags(tags)
        logged = mlflow.sklearn.log_model(
            model,
            name="model",
            skops_trusted_types=_own_types(model),
            pip_requirements=_requirements(),
            # The pipeline holds this package's own steps (CategoryCodes): the model carries their code, so
            # that it loads wherever MLflow serves it, with or without retrain installed.
            code_paths=[str(Path(__file__).parent)],
        )
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

"""One retraining cycle as steps that take and return small JSON-serialisable dicts.

The Airflow DAG runs each step as its own task and passes these dicts through XCom; `run_cycle` runs them
in one process for the CLI. Heavy artifacts (drift report, challenger model, evaluation) are written to the
run's working folder in the registry and travel as URIs. Only `promote` and `record` touch the registry's
history, and both are safe to repeat for the same run id.
"""

from __future__ import annotations

import json
import logging
import platform
from dataclasses import dataclass
from importlib import metadata as package_metadata
from typing import Any

import numpy as np
import pandas as pd

from retrain.config import Config
from retrain.decision import Outcome, decide, gate_reason, needs_training
from retrain.drift import detect_drift
from retrain.errors import DataError
from retrain.evaluation import holdout_mask, paired_bootstrap_lift, score_metrics
from retrain.months import MONTH_PATTERN, shift_month
from retrain.registry import Registry, run_key, to_json, utc_now
from retrain.reports import render_run_report
from retrain.snapshots import Schema, list_months, month_folder, read_location, read_month, validate
from retrain.training import deserialize, predict_scores, serialize, train

log = logging.getLogger(__name__)

CONFLICT = "CONFLICT"
SUPERSEDED = "SUPERSEDED"
LIBRARIES = ("retrain", "scikit-learn", "numpy", "pandas", "scipy", "pyarrow", "joblib")


@dataclass(frozen=True)
class Run:
    """Who is running and for which month: the identity that makes every write idempotent."""

    run_id: str
    month: str
    force: bool = False
    dry_run: bool = False

    def __post_init__(self) -> None:
        if not MONTH_PATTERN.match(self.month):
            raise DataError(f"month must be YYYY-MM, got {self.month!r}")

    @property
    def key(self) -> str:
        return run_key(self.run_id)


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = package_metadata.version(name)
        except package_metadata.PackageNotFoundError:
            versions[name] = "unknown"
    return versions


# -- reading snapshots back, checked against what pull_snapshots saw --------------------------------------


def _read_checked(lineage: dict[str, Any], schema: Schema, config: Config) -> pd.DataFrame:
    """Re-read a pulled snapshot; refuse it if its content changed since it was pulled."""
    frame, snapshot = read_location(lineage["uri"], schema.columns, month=lineage["month"], spec=config.storage)
    where = f"month {lineage['month']} ({lineage['uri']})" if lineage["month"] else lineage["uri"]
    if snapshot.sha256 != lineage["sha256"]:
        raise DataError(f"{where}: snapshot changed since it was pulled (content hash differs); re-run the cycle")
    frame, _ = validate(frame, schema, where=where, max_null_rate=config.data.max_null_rate)
    return frame


def _holdout_mask(config: Config, current: pd.DataFrame) -> np.ndarray:
    return holdout_mask(
        current,
        config.model.target,
        config.training.holdout_fraction,
        timestamp=config.model.timestamp,
        seed=config.training.seed,
    )


def _labeled_frames(config: Config, pulled: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Training rows (the window, minus the holdout) and the holdout (a share of the run's own month)."""
    schema = Schema.for_model(config.model, labeled=True)
    frames = [_read_checked(lineage, schema, config) for lineage in pulled["labeled"]]
    current = frames[-1]
    mask = _holdout_mask(config, current)
    training = pd.concat([*frames[:-1], current[~mask]], ignore_index=True)
    return training, current[mask].reset_index(drop=True)


def _holdout(config: Config, pulled: dict[str, Any]) -> pd.DataFrame:
    """The same holdout as `_labeled_frames`, reading only the run's own month."""
    current = _read_checked(pulled["labeled"][-1], Schema.for_model(config.model, labeled=True), config)
    return current[_holdout_mask(config, current)].reset_index(drop=True)


# -- the steps -----------------------------------------------------------------------------------------


def pull_snapshots(config: Config, run: Run) -> dict[str, Any]:
    """Resolve and validate the month's reference, production and labeled snapshots.

    Reference: the champion's training data (from its lineage), else `data.reference_month` of the
    production dataset. Labeled: the training window ending at the run's month.
    """
    registry = Registry.for_config(config)
    features = Schema.for_model(config.model, labeled=False)
    labeled_schema = Schema.for_model(config.model, labeled=True)
    recorded = registry.ledger_record(run.month, run.key)
    champion = registry.champion()

    _, production = read_month(
        config.data.production, run.month, features, max_null_rate=config.data.max_null_rate, spec=config.storage
    )
    labeled_months = _training_window(config, run.month)
    labeled = [
        read_month(
            config.data.labeled, m, labeled_schema, max_null_rate=config.data.max_null_rate, spec=config.storage
        )[1]
        for m in labeled_months
    ]
    reference, reference_source = _reference_snapshots(config, registry, champion, features)
    return {
        "run_id": run.run_id,
        "run_key": run.key,
        "month": run.month,
        "champion": (
            {"version": champion.version, "data_month": champion.data_month, "etag": champion.etag}
            if champion
            else None
        ),
        "reference": reference,
        "reference_source": reference_source,
        "production": production.lineage(),
        "labeled": [snapshot.lineage() for snapshot in labeled],
        "recorded_outcome": recorded["outcome"] if recorded else None,
    }


def _training_window(config: Config, month: str) -> list[str]:
    """The window's labeled months that exist, oldest first; the run's own month must exist."""
    available = set(list_months(config.data.labeled, config.storage))
    wanted = [shift_month(month, -offset) for offset in range(config.training.window_months - 1, -1, -1)]
    if month not in available:
        raise DataError(
            f"month {month} ({month_folder(config.data.labeled, month)}): no labeled data files for this month"
        )
    first = min(available)
    window = [m for m in wanted if m >= first]
    gaps = [m for m in window if m not in available]
    if gaps:
        raise DataError(
            f"month {gaps[0]} ({month_folder(config.data.labeled, gaps[0])}): labeled month missing inside "
            f"the {config.training.window_months}-month training window ending {month}"
        )
    return window


def _reference_snapshots(
    config: Config, registry: Registry, champion: Any, features: Schema
) -> tuple[list[dict[str, Any]], str]:
    if champion is not None:
        training = registry.metadata(champion.version)["lineage"]["training"]
        try:
            snapshots = [
                read_location(item["uri"], features.columns, month=item["month"], spec=config.storage)[1]
                for item in training
            ]
        except DataError as error:
            log.warning(
                "champion v%d's training data is unreadable (%s); using data.reference_month", champion.version, error
            )
        else:
            return [s.lineage() for s in snapshots], f"training data of champion version {champion.version}"
    months = list_months(config.data.production, config.storage)
    month = config.data.reference_month or (months[0] if months else None)
    if month is None:
        raise DataError(f"{config.data.production}: no production months to use as the drift reference")
    _, snapshot = read_month(
        config.data.production, month, features, max_null_rate=config.data.max_null_rate, spec=config.storage
    )
    return [snapshot.lineage()], f"production month {month} (data.reference_month)"


def check_drift(config: Config, pulled: dict[str, Any], run: Run) -> dict[str, Any]:
    """Test every feature; the report goes to the run folder, the summary and the gate verdict return."""
    registry = Registry.for_config(config)
    schema = Schema.for_model(config.model, labeled=False)
    reference = pd.concat([_read_checked(item, schema, config) for item in pulled["reference"]], ignore_index=True)
    current = _read_checked(pulled["production"], schema, config)
    report = detect_drift(reference, current, schema, config.drift)
    report_uri = registry.write_run_file(run.month, run.key, "drift.json", to_json(report.to_dict()))
    has_champion = pulled["champion"] is not None
    return {
        **report.summary(),
        "report_uri": report_uri,
        "train": needs_training(drifted=report.drifted, force=run.force, has_champion=has_champion),
        "gate": gate_reason(
            drifted=report.drifted,
            force=run.force,
            has_champion=has_champion,
            drifted_features=report.drifted_features,
        ),
    }


def train_challenger(config: Config, pulled: dict[str, Any], run: Run) -> dict[str, Any]:
    """Fit the challenger on the training window and park it in the run folder."""
    training, holdout = _labeled_frames(config, pulled)
    pipeline = train(training, config.model, config.training)
    model_bytes, sha256 = serialize(pipeline)
    uri = Registry.for_config(config).write_run_file(run.month, run.key, "challenger.joblib", model_bytes)
    return {
        "model_uri": uri,
        "model_sha256": sha256,
        "estimator": config.training.estimator,
        "train_rows": len(training),
        "holdout_rows": len(holdout),
    }


def evaluate(
    config: Config, pulled: dict[str, Any], drift: dict[str, Any], trained: dict[str, Any], run: Run
) -> dict[str, Any]:
    """Score champion and challenger on the same holdout, bootstrap the lift, and decide."""
    registry = Registry.for_config(config)
    holdout = _holdout(config, pulled)
    labels = holdout[config.model.target].to_numpy().astype(int)
    challenger_model = deserialize(
        registry.read_run_file(run.month, run.key, "challenger.joblib"),
        trained["model_sha256"],
        source=trained["model_uri"],
    )
    challenger_scores = predict_scores(challenger_model, holdout, config.model)
    challenger = score_metrics(labels, challenger_scores)
    champion = lift = None
    if pulled["champion"] is not None:
        champion_scores = predict_scores(registry.load_model(pulled["champion"]["version"]), holdout, config.model)
        champion = score_metrics(labels, champion_scores)
        lift = paired_bootstrap_lift(
            labels,
            champion_scores,
            challenger_scores,
            resamples=config.promotion.bootstrap_resamples,
            confidence=config.promotion.confidence,
            seed=config.training.seed,
        )
    decision = decide(
        drifted=drift["drifted"],
        force=run.force,
        policy=config.promotion,
        challenger=challenger,
        champion=champion,
        lift=lift,
        drifted_features=drift["drifted_features"],
    )
    result = {
        "decision": decision.to_dict(),
        "metrics": {
            "challenger": challenger.to_dict(),
            "champion": champion.to_dict() if champion else None,
            "lift": lift.to_dict() if lift else None,
        },
    }
    result["evaluation_uri"] = registry.write_run_file(run.month, run.key, "evaluation.json", to_json(result))
    return result


def _version_metadata(
    config: Config,
    pulled: dict[str, Any],
    drift: dict[str, Any],
    trained: dict[str, Any],
    evaluation: dict[str, Any],
    run: Run,
) -> dict[str, Any]:
    holdout_source = dict(pulled["labeled"][-1], share=config.training.holdout_fraction)
    return {
        "model": config.model.name,
        "created_at": utc_now(),
        "run_id": run.run_id,
        "run_key": run.key,
        "data_month": run.month,
        "estimator": trained["estimator"],
        "target": config.model.target,
        "features": {
            "numeric": list(config.model.numeric_features),
            "categorical": list(config.model.categorical_features),
        },
        "lineage": {
            "training": pulled["labeled"],
            "holdout": holdout_source,
            "production": pulled["production"],
            "reference": pulled["reference"],
        },
        "rows": {"train": trained["train_rows"], "holdout": trained["holdout_rows"]},
        "thresholds": config.thresholds(),
        "metrics": evaluation["metrics"],
        "drift": {k: drift[k] for k in ("drifted", "share_drifted", "drifted_features", "n_features", "report_uri")},
        "decision": evaluation["decision"],
        "libraries": library_versions(),
        "model_sha256": trained["model_sha256"],
    }


def promote(
    config: Config,
    pulled: dict[str, Any],
    drift: dict[str, Any],
    trained: dict[str, Any],
    evaluation: dict[str, Any],
    run: Run,
) -> dict[str, Any]:
    """Publish the challenger as a version and move the champion to it, or say why not.

    Outcomes beyond the decision's own: SUPERSEDED (the champion already holds newer data, as when a
    backfill runs over history) and CONFLICT (another run moved the champion after this one read it).
    """
    registry = Registry.for_config(config)
    recorded = registry.ledger_record(run.month, run.key)
    if recorded is not None:
        return {key: recorded.get(key) for key in ("outcome", "version", "champion_version", "reason")}
    decision = evaluation["decision"]
    expected = pulled["champion"]
    current = registry.champion()
    if current is not None and current.data_month > run.month:
        return {
            "outcome": SUPERSEDED,
            "version": None,
            "champion_version": current.version,
            "reason": f"{decision['reason']}; not promoted: champion version {current.version} holds newer data "
            f"({current.data_month} > {run.month})",
        }
    version = registry.find_version_by_run(run.key)
    if version is None:
        model_bytes = registry.read_run_file(run.month, run.key, "challenger.joblib")
        version = registry.publish_version(
            model_bytes, _version_metadata(config, pulled, drift, trained, evaluation, run)
        )
    if current is not None and current.version == version:
        return {
            "outcome": decision["outcome"],
            "version": version,
            "champion_version": version,
            "reason": decision["reason"],
        }
    moved = registry.move_champion(
        version,
        data_month=run.month,
        expected_etag=expected["etag"] if expected else None,
        run_id=run.run_id,
        reason=decision["reason"],
    )
    if not moved:
        winner = registry.champion()
        return {
            "outcome": CONFLICT,
            "version": version,
            "champion_version": winner.version if winner else None,
            "reason": f"{decision['reason']}; not promoted: the champion moved to version "
            f"{winner.version if winner else '?'} while this run was evaluating; version {version} "
            "stays in the registry unpromoted",
        }
    return {
        "outcome": decision["outcome"],
        "version": version,
        "champion_version": version,
        "reason": decision["reason"],
    }


def record(
    config: Config,
    pulled: dict[str, Any],
    drift: dict[str, Any] | None,
    evaluation: dict[str, Any] | None,
    promotion: dict[str, Any] | None,
    run: Run,
) -> dict[str, Any]:
    """Append the run's ledger record, whatever happened; returns the record that stands."""
    registry = Registry.for_config(config)
    existing = registry.ledger_record(run.month, run.key)
    if existing is not None:
        return existing
    champion_before = pulled["champion"]["version"] if pulled["champion"] else None
    if promotion is not None:
        outcome, reason = promotion["outcome"], promotion["reason"]
        champion_after, version = promotion["champion_version"], promotion["version"]
    elif evaluation is not None:
        outcome, reason = evaluation["decision"]["outcome"], evaluation["decision"]["reason"]
        if run.dry_run:
            reason = f"{reason}; dry run: nothing promoted"
        champion_after, version = champion_before, None
    else:
        outcome, reason = str(Outcome.NO_DRIFT), drift["gate"] if drift else "no drift"
        champion_after, version = champion_before, None
    entry = {
        "kind": "cycle",
        "model": config.model.name,
        "run_id": run.run_id,
        "run_key": run.key,
        "month": run.month,
        "outcome": outcome,
        "decision": evaluation["decision"]["outcome"] if evaluation else str(Outcome.NO_DRIFT),
        "reason": reason,
        "dry_run": run.dry_run,
        "forced": run.force,
        "champion_version_before": champion_before,
        "champion_version": champion_after,
        "version": version,
        "drift": drift and {k: drift[k] for k in ("drifted", "share_drifted", "drifted_features", "report_uri")},
        "metrics": evaluation["metrics"] if evaluation else None,
        "thresholds": config.thresholds(),
        "snapshots": {
            "reference": pulled["reference_source"],
            "production": {k: pulled["production"][k] for k in ("uri", "rows", "sha256")},
            "labeled": [{k: s[k] for k in ("uri", "rows", "sha256")} for s in pulled["labeled"]],
        },
        "recorded_at": utc_now(),
    }
    entry["report_uri"] = registry.write_run_file(run.month, run.key, "report.html", render_run_report(entry).encode())
    return registry.append_ledger(entry)


def run_cycle(config: Config, run: Run) -> dict[str, Any]:
    """The whole loop in one process, for the CLI; the DAG runs the same steps as tasks."""
    pulled = pull_snapshots(config, run)
    if pulled["recorded_outcome"] is not None:
        log.info("run %s already recorded for %s; nothing to redo", run.run_id, run.month)
        return Registry.for_config(config).ledger_record(run.month, run.key)
    drift = check_drift(config, pulled, run)
    if not drift["train"]:
        return record(config, pulled, drift, None, None, run)
    trained = train_challenger(config, pulled, run)
    evaluation = evaluate(config, pulled, drift, trained, run)
    promotion = None
    if evaluation["decision"]["promotes"] and not run.dry_run:
        promotion = promote(config, pulled, drift, trained, evaluation, run)
    return record(config, pulled, drift, evaluation, promotion, run)


def summarize(entry: dict[str, Any]) -> dict[str, Any]:
    """The CLI's --json view of a ledger record."""
    metrics = entry.get("metrics") or {}
    return {
        "outcome": entry["outcome"],
        "month": entry["month"],
        "champion_version": entry["champion_version"],
        "version": entry.get("version"),
        "drift": entry.get("drift"),
        "metrics": metrics,
        "reason": entry["reason"],
        "dry_run": entry.get("dry_run", False),
        "run_id": entry["run_id"],
        "report_uri": entry.get("report_uri"),
    }


def dumps(document: Any) -> str:
    return json.dumps(document, indent=2, sort_keys=True, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)

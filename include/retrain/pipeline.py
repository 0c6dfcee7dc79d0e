"""One retraining cycle as steps that take and return small typed records.

The Airflow DAG runs each step as its own task and passes the records' JSON form through XCom; `run_cycle`
runs them in one process for the CLI. Heavy artifacts (drift report, challenger model, evaluation) are
written to the run's working folder in the registry and travel as URIs. Only `promote`, `keep` and
`record` touch the registry's history, and each is safe to repeat for the same run id.

Which months a run for month M uses:
- drift: production month M against the reference (`drift.reference`);
- training and evaluation: the labeled window ending at month M - `data.label_delay_months`, the holdout
  being a share of that last labeled month;
- the champion's estimated AUC: its scores on production month M, calibrated on the labeled holdout of the
  month it was last validated on; its realized AUC on the last labeled month.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import platform
from collections import OrderedDict
from dataclasses import dataclass
from importlib import metadata as package_metadata
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from retrain.config import Config
from retrain.decision import PROMOTING, Outcome, decide, drift_gate, too_few_to_judge
from retrain.errors import DataError
from retrain.months import MONTH_PATTERN, shift_month
from retrain.registry import Champion, Registry, run_key, to_json, utc_now
from retrain.snapshots import (
    NULL,
    Schema,
    Snapshot,
    SnapshotReader,
    combine_kinds,
    list_months,
    month_folder,
    month_readiness,
    release_unused_memory,
    scan_month,
)

if TYPE_CHECKING:
    import pandas as pd
    from sklearn.pipeline import Pipeline

    from retrain.estimation import ValidationProfile

log = logging.getLogger(__name__)

PULLED_FILE = "pulled.json"  # the state a run started from, in its run folder
VALIDATION_FILE = "validation.json"  # the validated model's calibration, read by later estimates
VALIDATION_FORMAT = 1
LIBRARIES = ("retrain", "scikit-learn", "numpy", "pandas", "scipy", "pyarrow", "joblib")
ESTIMATE_MAX_ROWS = 50_000  # rows of a month scored for the estimate: the AUC's sampling error is ~0.003


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


class StepRecord:
    """A step's result: frozen fields, and the JSON form that crosses a task boundary."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict[str, Any] | StepRecord | None) -> Any:
        if data is None or isinstance(data, cls):
            return data
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"{cls.__name__}: unexpected fields {sorted(unknown)}")
        return cls(**data)


@dataclass(frozen=True)
class Pulled(StepRecord):
    """The validated snapshots a run uses, and the registry state it started from."""

    run_id: str
    run_key: str
    month: str
    labeled_month: str
    champion: dict[str, Any] | None
    reference: dict[str, Any]
    production: dict[str, Any]
    labeled: list[dict[str, Any]]
    validation: dict[str, Any] | None
    recorded_outcome: str | None

    @property
    def training_months(self) -> list[str]:
        return [snapshot["month"] for snapshot in self.labeled]


@dataclass(frozen=True)
class DriftCheck(StepRecord):
    drifted: bool
    share_drifted: float
    drifted_features: list[str]
    n_features: int
    effects: dict[str, float | None]
    effect_floors: dict[str, float]
    report_uri: str
    train: bool
    triggers: list[str]
    gate: str
    performance: dict[str, Any] | None

    SUMMARY: ClassVar[tuple[str, ...]] = (
        "drifted",
        "share_drifted",
        "drifted_features",
        "effects",
        "effect_floors",
        "report_uri",
        "triggers",
    )

    def summary(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in self.SUMMARY}


@dataclass(frozen=True)
class Trained(StepRecord):
    model_uri: str
    model_sha256: str
    estimator: str
    train_rows: int
    holdout_rows: int
    window_rows: int
    max_rows: int | None


@dataclass(frozen=True)
class Evaluation(StepRecord):
    """The evidence, the pure decision on it, and the outcome this run will have given the registry."""

    decision: dict[str, Any]
    outcome: str
    reason: str
    metrics: dict[str, Any]
    holdout_month: str
    evaluation_uri: str
    # The store key of the validation profile this run wrote for the model it validates, if any.
    validation_profile: str | None = None

    @property
    def promotes(self) -> bool:
        return self.outcome in PROMOTING


@dataclass(frozen=True)
class Promotion(StepRecord):
    outcome: str
    version: int | None
    champion_version: int | None
    reason: str


@dataclass(frozen=True)
class Kept(StepRecord):
    """Whether keeping the champion moved its validated month (the drift reference) forward."""

    moved: bool
    validated_month: str | None
    note: str


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = package_metadata.version(name)
        except package_metadata.PackageNotFoundError:
            versions[name] = "unknown"
    return versions


def _schemas(config: Config) -> tuple[Schema, Schema]:
    return Schema.for_model(config.model, labeled=False), Schema.for_model(config.model, labeled=True)


def _reader(lineage: dict[str, Any], config: Config) -> SnapshotReader:
    return SnapshotReader.from_lineage(lineage, config.storage)


FRAME_CACHE_SIZE = 6
_frames: OrderedDict[tuple[Any, ...], pd.DataFrame] = OrderedDict()


def _frame(lineage: dict[str, Any], schema: Schema, config: Config, *, keep: bool = True) -> pd.DataFrame:
    """A validated snapshot as a frame, read once per process: the steps of one cycle share their labeled
    months. Keyed by the snapshot's fingerprint, so a changed snapshot is never served from here. With
    `keep=False` the frame is handed over and no longer kept (a month only training still needs)."""
    key = (lineage["uri"], lineage.get("fingerprint"), schema)
    if key in _frames:
        _frames.move_to_end(key)
        return _frames[key] if keep else _frames.pop(key)
    # pull_snapshots validated this snapshot and warned about its unlabeled rows; once per run is enough.
    frame = _reader(lineage, config).frame(
        schema,
        max_null_rate=config.data.max_null_rate,
        by_feature=config.data.max_null_rate_by_feature,
        announce=False,
    )[0]
    if not keep:
        return frame
    _frames[key] = frame
    while len(_frames) > FRAME_CACHE_SIZE:
        _frames.popitem(last=False)
    return frame


def release_frames() -> None:
    """Drop the frames kept for the steps of this process (the CLI does at the end of a cycle)."""
    _frames.clear()


def _holdout_mask(config: Config, current: pd.DataFrame) -> np.ndarray:
    from retrain.evaluation import holdout_mask

    return holdout_mask(
        current,
        config.model.target,
        config.training.holdout_fraction,
        timestamp=config.model.timestamp,
        seed=config.training.seed,
    )


def _holdout(config: Config, lineage: dict[str, Any]) -> pd.DataFrame:
    _, labeled = _schemas(config)
    month = _frame(lineage, labeled, config)
    return month[_holdout_mask(config, month)].reset_index(drop=True)


# -- which months -----------------------------------------------------------------------------------------


def labeled_month_for(config: Config, month: str) -> str:
    """The last month whose labels a run for `month` may use."""
    return shift_month(month, -config.data.label_delay_months)


def _training_window(config: Config, month: str) -> list[str]:
    """The labeled months to train on, oldest first: the window ending at the labeled month, from the
    first labeled month on; the labeled month itself and every month inside the window must exist."""
    root, delay = config.data.labeled, config.data.label_delay_months
    last = labeled_month_for(config, month)
    parts = config.data.partitioning
    available = set(list_months(root, config.storage, parts))
    delayed = f" (data.label_delay_months={delay}: the run for {month} uses labels up to {last})" if delay else ""
    if not available or min(available) > last:
        first = f"the first labeled month is {min(available)}" if available else "there are no labeled months yet"
        raise DataError(f"{root}: no labeled month up to {last} to train or evaluate on; {first}{delayed}")
    if last not in available:
        where = month_folder(root, last, parts)
        raise DataError(f"month {last} ({where}): no labeled data files for this month{delayed}")
    wanted = [shift_month(last, -offset) for offset in range(config.training.window_months - 1, -1, -1)]
    window = [m for m in wanted if m >= min(available)]
    gaps = [m for m in window if m not in available]
    if gaps:
        raise DataError(
            f"month {gaps[0]} ({month_folder(root, gaps[0], parts)}): labeled month missing inside the "
            f"{config.training.window_months}-month training window ending {last}"
        )
    return window


def missing_inputs(config: Config, month: str) -> list[str]:
    """What a run for `month` still waits for: the production partition, the last labeled partition,
    and their `data.success_marker` files when one is configured. Empty once everything has landed.

    A partition older than the first one present never lands (history starts somewhere): that is a
    DataError at once, not days of waiting, as when a backfill or a label delay reaches before the data.
    """
    marker = config.data.success_marker
    needs = [
        ("production", config.data.production, month),
        ("labeled", config.data.labeled, labeled_month_for(config, month)),
    ]
    firsts = {
        name: min(list_months(root, config.storage, config.data.partitioning), default=None) for name, root, _ in needs
    }
    for name, root, wanted in needs:
        if firsts[name] is not None and wanted < firsts[name]:
            raise DataError(_before_history(config, month, name, root, wanted, firsts))
    missing = []
    for name, root, wanted in needs:
        problem = month_readiness(
            root, wanted, marker=marker, spec=config.storage, partitioning=config.data.partitioning
        )
        if problem:
            missing.append(f"{name} {problem}")
    return missing


def _before_history(
    config: Config, month: str, name: str, root: str, wanted: str, firsts: dict[str, str | None]
) -> str:
    delay = config.data.label_delay_months
    uses = (
        f"; the run for {month} uses labels up to {wanted} (data.label_delay_months={delay})"
        if name == "labeled" and delay
        else ""
    )
    earliest = [firsts["production"], shift_month(firsts["labeled"], delay) if firsts["labeled"] else None]
    first_run = max(m for m in earliest if m is not None)
    return (
        f"{name} month {wanted} ({month_folder(root, wanted, config.data.partitioning)}): before the first "
        f"{name} month, {firsts[name]}, so it never lands{uses}; the first month a run can use is {first_run}"
    )


# -- the steps -----------------------------------------------------------------------------------------


def pull_snapshots(config: Config, run: Run) -> Pulled:
    """Resolve and validate every snapshot the run will use, streaming them, before anything is written.

    The registry is checked first, so a registry that cannot be used stops the run before any data step.
    """
    registry = Registry.for_config(config)
    registry.check()
    recorded = registry.ledger_record(run.month, run.key)
    champion = registry.champion()
    resumed = _resumed(registry, champion, run)
    if resumed is not None:
        return dataclasses.replace(resumed, recorded_outcome=recorded["outcome"] if recorded else None)
    features, labeled_schema = _schemas(config)

    def scan(root: str, month: str, schema: Schema) -> dict[str, Any]:
        return _scan(config, root, month, schema).lineage()

    production_snapshot, labeled_snapshots = _scan_inputs(config, run.month)
    production, labeled = production_snapshot.lineage(), [s.lineage() for s in labeled_snapshots]
    validation = None
    if champion is not None:
        reused = [s for s in labeled if s["month"] == champion.validated_month]
        validation = (
            reused[0] if reused else _optional_scan(scan, config.data.labeled, champion.validated_month, labeled_schema)
        )
    reference = _reference(config, registry, champion, features, production, scan)
    _check_kinds([*reference["snapshots"], production, *labeled, *([validation] if validation else [])])
    pulled = Pulled(
        run_id=run.run_id,
        run_key=run.key,
        month=run.month,
        labeled_month=labeled_month_for(config, run.month),
        champion=champion.state() if champion else None,
        reference=reference,
        production=production,
        labeled=labeled,
        validation=validation,
        recorded_outcome=recorded["outcome"] if recorded else None,
    )
    registry.write_run_file(run.month, run.key, PULLED_FILE, to_json(pulled.to_dict()))
    release_unused_memory()
    return pulled


def _scan(config: Config, root: str, month: str, schema: Schema) -> Snapshot:
    return scan_month(
        root,
        month,
        schema,
        max_null_rate=config.data.max_null_rate,
        by_feature=config.data.max_null_rate_by_feature,
        spec=config.storage,
        partitioning=config.data.partitioning,
    )


def _scan_inputs(config: Config, month: str) -> tuple[Snapshot, list[Snapshot]]:
    """A run's production month and its labeled window, each validated."""
    features, labeled_schema = _schemas(config)
    production = _scan(config, config.data.production, month, features)
    labeled = [_scan(config, config.data.labeled, m, labeled_schema) for m in _training_window(config, month)]
    return production, labeled


def check_inputs(config: Config, month: str) -> dict[str, Any]:
    """Validate what a run for `month` reads, its production month and labeled window, as pull_snapshots
    does, without the registry and writing nothing: a new dataset's first test. The first problem raises."""
    if not MONTH_PATTERN.match(month):
        raise DataError(f"month must be YYYY-MM, got {month!r}")
    production, labeled = _scan_inputs(config, month)
    _check_kinds([s.lineage() for s in (production, *labeled)])
    return {
        "month": month,
        "production": dataclasses.asdict(production),
        "labeled": [dataclasses.asdict(s) for s in labeled],
    }


def _resumed(registry: Registry, champion: Champion | None, run: Run) -> Pulled | None:
    """A run that already moved the champion pointer (and was then interrupted before its ledger record)
    resumes from the state it started from: pulled afresh, its own promotion would look like the champion
    it started from, and its own month like the drift reference."""
    if champion is None or run.run_id not in (
        champion.document.get("run_id"),
        champion.document.get("validated_run_id"),
    ):
        return None
    started = registry.read_run_json(run.month, run.key, PULLED_FILE)
    if started is None:
        return None
    log.info("run %s moved the champion before it was interrupted; resuming from its first pull", run.run_id)
    return Pulled.from_dict(started)


def _optional_scan(scan: Any, root: str, month: str, schema: Schema) -> dict[str, Any] | None:
    """A month that only improves the run (the champion's validation data): missing is a warning."""
    try:
        return scan(root, month, schema)
    except DataError as error:
        log.warning("no estimated AUC this run: the champion's validation month is unreadable (%s)", error)
        return None


def _check_kinds(snapshots: list[dict[str, Any]]) -> None:
    """A categorical column's values keep one type in every snapshot a run compares or trains on."""
    seen: dict[str, tuple[str, str]] = {}
    for snapshot in snapshots:
        where = f"month {snapshot['month']} ({snapshot['uri']})" if snapshot["month"] else snapshot["uri"]
        for column, kind in (snapshot.get("kinds") or {}).items():
            known, first = seen.get(column, (NULL, where))
            seen[column] = (combine_kinds(known, kind, column, first, where), first)


def _reference(
    config: Config,
    registry: Registry,
    champion: Champion | None,
    features: Schema,
    production: dict[str, Any],
    scan: Any,
) -> dict[str, Any]:
    """The drift reference for `drift.reference`, with where it came from in words."""
    mode = config.drift.reference
    if champion is not None and mode == "validated":
        month = champion.validated_month
        if month == production["month"]:
            return _reference_record(
                mode,
                [production],
                f"production month {month}, on which champion version {champion.version} was last validated",
            )
        try:
            snapshot = scan(config.data.production, month, features)
        except DataError as error:
            log.warning(
                "champion v%d's validation month is unreadable (%s); using the fixed reference", champion.version, error
            )
        else:
            return _reference_record(
                mode,
                [snapshot],
                f"production month {month}, on which champion version {champion.version} was last validated",
            )
    if champion is not None and mode == "training":
        training = registry.metadata(champion.version)["lineage"]["training"]
        try:
            snapshots = [scan(config.data.labeled, item["month"], features) for item in training]
        except DataError as error:
            log.warning(
                "champion v%d's training data is unreadable (%s); using the fixed reference", champion.version, error
            )
        else:
            months = ", ".join(s["month"] for s in snapshots)
            return _reference_record(
                mode, snapshots, f"labeled months {months}, champion version {champion.version}'s training data"
            )
    months = list_months(config.data.production, config.storage, config.data.partitioning)
    month = config.data.reference_month or (months[0] if months else None)
    if month is None:
        raise DataError(f"{config.data.production}: no production months to use as the drift reference")
    why = "data.reference_month" if config.data.reference_month else "the earliest production month"
    snapshot = production if month == production["month"] else scan(config.data.production, month, features)
    return _reference_record(
        "fixed" if champion is None or mode == "fixed" else mode, [snapshot], f"production month {month} ({why})"
    )


def _reference_record(mode: str, snapshots: list[dict[str, Any]], source: str) -> dict[str, Any]:
    return {"mode": mode, "source": source, "months": [s["month"] for s in snapshots], "snapshots": snapshots}


def check_drift(config: Config, pulled: Pulled, run: Run) -> DriftCheck:
    """Test every feature and estimate the champion's AUC; the gate says whether to train a challenger."""
    from retrain.drift import SnapshotColumns, detect_drift

    registry = Registry.for_config(config)
    features, _ = _schemas(config)
    references = [_reader(s, config) for s in pulled.reference["snapshots"]]
    rows = (sum(s["rows"] for s in pulled.reference["snapshots"]), pulled.production["rows"])
    # The estimate scores a sample of the production month: taken from the drift test's own reads.
    sample = _sample_rows(pulled.production["rows"], config.training.seed) if pulled.champion else None
    current = SnapshotColumns([_reader(pulled.production, config)], sample_rows=sample)
    report = detect_drift(SnapshotColumns(references), current, features, config.drift, rows=rows)
    report_uri = registry.write_run_file(run.month, run.key, "drift.json", to_json(report.to_dict()))
    performance = (
        estimate_performance(config, pulled, registry, current.sample_frame(features.features))
        if pulled.champion
        else None
    )
    release_unused_memory()
    gate = drift_gate(
        drifted=report.drifted,
        force=run.force,
        has_champion=pulled.champion is not None,
        drifted_features=report.drifted_features,
        performance_drop=performance_drop(config, performance),
    )
    return DriftCheck(
        **report.summary(),
        report_uri=report_uri,
        train=gate.train,
        triggers=list(gate.triggers),
        gate=gate.reason,
        performance=performance,
    )


def _sample_rows(rows: int, seed: int) -> np.ndarray:
    """Sorted positions of at most ESTIMATE_MAX_ROWS rows, chosen with `seed`."""
    if rows <= ESTIMATE_MAX_ROWS:
        return np.arange(rows)
    return np.sort(np.random.default_rng(seed).choice(rows, ESTIMATE_MAX_ROWS, replace=False))


def performance_drop(config: Config, performance: dict[str, Any] | None) -> str | None:
    """The estimated-AUC trigger's reason when it fires, else None."""
    limit = config.drift.max_estimated_auc_drop
    if limit is None or performance is None:
        return None
    drop = performance["validated_auc"] - performance["estimated_auc"]
    if drop <= limit:
        return None
    return (
        f"estimated AUC {performance['estimated_auc']:.4f} is {drop:.4f} below the champion's validated AUC "
        f"{performance['validated_auc']:.4f} (drift.max_estimated_auc_drop={limit})"
    )


def estimate_performance(
    config: Config, pulled: Pulled, registry: Registry, production: pd.DataFrame
) -> dict[str, Any] | None:
    """The champion's AUC estimated on the production month before labels, next to the AUC it was
    validated with, and the AUC realized on the last labeled month by the version that estimated it."""
    from sklearn.metrics import roc_auc_score

    from retrain.estimation import PerformanceEstimate, anchored_estimate, expected_auc
    from retrain.training import predict_scores

    if pulled.validation is None:
        return None
    _, labeled_schema = _schemas(config)
    version = pulled.champion["version"]
    model = registry.load_model(version)
    target = config.model.target
    profile = _validation_profile(config, pulled, registry, model)
    production_scores = predict_scores(model, production, config.model)
    expected_on_production = expected_auc(production_scores, profile.calibration.apply(production_scores))
    latest = pulled.labeled[-1]
    estimated_by = _estimating_version(registry, latest["month"], run_month=pulled.month) or version
    realized_model = model if estimated_by == version else registry.load_model(estimated_by)
    realized = _frame(latest, labeled_schema, config)
    if len(realized) > ESTIMATE_MAX_ROWS:
        realized = realized.iloc[_sample_rows(len(realized), config.training.seed)]
    realized_labels = realized[target].to_numpy().astype(int)
    realized_auc = (
        float(roc_auc_score(realized_labels, predict_scores(realized_model, realized, config.model)))
        if 0 < realized_labels.sum() < len(realized_labels)
        else None
    )
    return PerformanceEstimate(
        champion_version=version,
        estimated_auc=anchored_estimate(profile.validated_auc, expected_on_production, profile.expected_auc_validation),
        validated_auc=profile.validated_auc,
        validated_month=pulled.validation["month"],
        expected_auc_production=expected_on_production,
        expected_auc_validation=profile.expected_auc_validation,
        realized_auc=realized_auc,
        realized_month=latest["month"],
        realized_version=estimated_by if realized_auc is not None else None,
        production_rows_scored=len(production),
        calibration=profile.calibration.method,
    ).to_dict()


def _validation_profile(config: Config, pulled: Pulled, registry: Registry, model: Pipeline) -> ValidationProfile:
    """The champion's profile on its validation holdout: the one the validating run wrote when it still
    describes this model on these same rows, else computed here from the holdout."""
    from retrain.estimation import ValidationProfile, validation_profile
    from retrain.training import predict_scores

    key = pulled.champion.get("validation_profile")
    stored = registry.read_json_optional(key) if key else None
    expected = _profile_identity(config, pulled.validation, pulled.champion.get("model_sha256"))
    if stored is not None and {k: stored.get(k) for k in expected} == expected:
        try:
            return ValidationProfile.from_dict(stored["profile"])
        except (KeyError, TypeError, ValueError) as error:
            log.warning("%s: unreadable validation profile (%r); computing it again", key, error)
    holdout = _holdout(config, pulled.validation)
    labels = holdout[config.model.target].to_numpy().astype(int)
    return validation_profile(predict_scores(model, holdout, config.model), labels, seed=config.training.seed)


def _profile_identity(config: Config, lineage: dict[str, Any], model_sha256: str | None) -> dict[str, Any]:
    """What a stored profile must match to stand for a fresh one: the model, the holdout's rows, the seed.
    The champion's SHA-256 is the one its pointer names, as the run read it, rather than a second read of
    the version's metadata; a state recorded without it gives None, which only means computing again."""
    return {
        "format": VALIDATION_FORMAT,
        "model_sha256": model_sha256,
        "month": lineage["month"],
        "fingerprint": lineage.get("fingerprint"),
        "holdout": {
            "target": config.model.target,
            "positive_label": config.model.positive_label,
            "fraction": config.training.holdout_fraction,
            "timestamp": config.model.timestamp,
            "seed": config.training.seed,
        },
    }


def _estimating_version(registry: Registry, month: str, *, run_month: str) -> int | None:
    """The champion version that estimated `month` in that month's own run, if it ran and still exists."""
    if month == run_month:
        return None
    estimated = [
        (r.get("recorded_at", ""), (r.get("performance") or {}).get("champion_version"))
        for r in registry.ledger_records(month)
    ]
    versions = [v for _, v in sorted(estimated) if v is not None]
    return versions[-1] if versions and versions[-1] in registry.versions() else None


def train_challenger(config: Config, pulled: Pulled, run: Run) -> Trained:
    """Fit the challenger on the labeled window (minus the holdout) and park it in the run folder."""
    import pandas as pd

    from retrain.training import serialize, stratified_sample, train

    _, labeled_schema = _schemas(config)
    # The older months serve training only: they are not kept past it. The last one holds the holdout.
    frames = [_frame(lineage, labeled_schema, config, keep=False) for lineage in pulled.labeled[:-1]]
    current = _frame(pulled.labeled[-1], labeled_schema, config)
    mask = _holdout_mask(config, current)
    frames.append(current[~mask])
    window = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0].reset_index(drop=True)
    del frames
    target = config.model.target
    if window[target].nunique() < 2:
        months = ", ".join(lineage["month"] for lineage in pulled.labeled)
        raise DataError(
            f"{config.data.labeled}: labeled months {months} hold a single class of {target} once the holdout "
            f"of {pulled.labeled[-1]['month']} is set aside (its only row of the other class): nothing to train "
            "on; a longer training.window_months reaches months that hold both"
        )
    training = stratified_sample(window, target, config.training.max_rows or 0, config.training.seed)
    pipeline = train(training, config.model, config.training)
    model_bytes, sha256 = serialize(pipeline)
    uri = Registry.for_config(config).write_run_file(run.month, run.key, "challenger.joblib", model_bytes)
    return Trained(
        model_uri=uri,
        model_sha256=sha256,
        estimator=config.training.estimator,
        train_rows=len(training),
        holdout_rows=int(mask.sum()),
        window_rows=len(window),
        max_rows=config.training.max_rows,
    )


def evaluate(config: Config, pulled: Pulled, drift: DriftCheck, trained: Trained, run: Run) -> Evaluation:
    """Score champion and challenger on the same holdout, bootstrap the lift, and decide.

    The outcome is the decision unless the champion already holds newer data than this run (a backfill
    over history), when it is SUPERSEDED: the graph and the logs never say PROMOTED for a run that cannot.
    """
    from retrain.evaluation import chance_lift, lift_histogram, paired_bootstrap_lift, roc_points, score_metrics
    from retrain.training import deserialize, permutation_importances, predict_scores

    registry = Registry.for_config(config)
    holdout = _holdout(config, pulled.labeled[-1])
    labels = holdout[config.model.target].to_numpy().astype(int)
    challenger_model = deserialize(
        registry.read_run_file(run.month, run.key, "challenger.joblib"), trained.model_sha256, source=trained.model_uri
    )
    challenger_scores = predict_scores(challenger_model, holdout, config.model)
    challenger = score_metrics(labels, challenger_scores)
    details: dict[str, Any] = {
        "roc": {"challenger": roc_points(labels, challenger_scores)},
        "importances": permutation_importances(challenger_model, holdout, config.model, config.training.seed),
    }
    champion = lift = over_chance = None
    bootstrap = {
        "resamples": config.promotion.bootstrap_resamples,
        "confidence": config.promotion.confidence,
        "seed": config.training.seed,
    }
    if pulled.champion is None:
        over_chance = chance_lift(labels, challenger_scores, **bootstrap)
    else:
        champion_scores = predict_scores(registry.load_model(pulled.champion["version"]), holdout, config.model)
        champion = score_metrics(labels, champion_scores)
        details["roc"]["champion"] = roc_points(labels, champion_scores)
        lift = paired_bootstrap_lift(labels, champion_scores, challenger_scores, **bootstrap)
    decision = decide(
        drifted=drift.drifted,
        force=run.force,
        policy=config.promotion,
        challenger=challenger,
        champion=champion,
        lift=lift,
        drifted_features=drift.drifted_features,
        performance_drop=performance_drop(config, drift.performance),
        over_chance=over_chance,
    )
    outcome, reason = str(decision.outcome), decision.reason
    newer = _newer_champion(registry, run)
    if decision.promotes and newer is not None:
        outcome, reason = str(Outcome.SUPERSEDED), _superseded(reason, newer, run)
    result = Evaluation(
        decision=decision.to_dict(),
        outcome=outcome,
        reason=reason,
        metrics={
            "challenger": challenger.to_dict(),
            "champion": champion.to_dict() if champion else None,
            "lift": lift.to_dict() if lift else None,
            "over_chance": over_chance.to_dict() if over_chance else None,
        },
        holdout_month=pulled.labeled_month,
        evaluation_uri=registry.store.uri_for(f"{registry.run_prefix(run.month, run.key)}/evaluation.json"),
    )
    validated = None
    if not run.dry_run and result.promotes:
        validated = (trained.model_sha256, challenger_scores)
    elif not run.dry_run and champion is not None and _why_not_held_up(config, outcome, champion.to_dict()) is None:
        validated = (pulled.champion.get("model_sha256"), champion_scores)
    if validated is not None:
        profile_key = _write_validation_profile(config, registry, pulled, run, *validated, labels)
        result = dataclasses.replace(result, validation_profile=profile_key)
    if lift is not None:
        details["lift_histogram"] = lift_histogram(lift.samples)
    registry.write_run_file(run.month, run.key, "evaluation.json", to_json({**result.to_dict(), "details": details}))
    return result


def _write_validation_profile(
    config: Config, registry: Registry, pulled: Pulled, run: Run, model_sha256: str, scores: Any, labels: Any
) -> str:
    """The profile of the model this run validates, from the holdout scores it has: the estimates of the
    months after it start from this file instead of scoring the holdout again. Returns its store key."""
    from retrain.estimation import validation_profile

    profile = validation_profile(scores, labels, seed=config.training.seed)
    document = {**_profile_identity(config, pulled.labeled[-1], model_sha256), "profile": profile.to_dict()}
    registry.write_run_file(run.month, run.key, VALIDATION_FILE, to_json(document))
    return f"{registry.run_prefix(run.month, run.key)}/{VALIDATION_FILE}"


def _newer_champion(registry: Registry, run: Run) -> Champion | None:
    current = registry.champion()
    return current if current is not None and current.data_month > run.month else None


def _superseded(reason: str, champion: Champion, run: Run) -> str:
    return (
        f"{reason}; not promoted: champion version {champion.version} holds newer data "
        f"({champion.data_month} > {run.month})"
    )


def _version_metadata(
    config: Config, pulled: Pulled, drift: DriftCheck, trained: Trained, evaluation: Evaluation, run: Run
) -> dict[str, Any]:
    holdout_source = dict(pulled.labeled[-1], share=config.training.holdout_fraction)
    return {
        "model": config.model.name,
        "created_at": utc_now(),
        "run_id": run.run_id,
        "run_key": run.key,
        "data_month": run.month,
        "validated_month": evaluation.holdout_month,
        "estimator": trained.estimator,
        "target": config.model.target,
        "positive_label": config.model.positive_label,
        "features": {
            "numeric": list(config.model.numeric_features),
            "categorical": list(config.model.categorical_features),
        },
        "lineage": {
            "training": pulled.labeled,
            "holdout": holdout_source,
            "production": pulled.production,
            "reference": pulled.reference["snapshots"],
        },
        "rows": {
            "train": trained.train_rows,
            "holdout": trained.holdout_rows,
            "window": trained.window_rows,
            "sampled": trained.train_rows < trained.window_rows,
            "max_rows": trained.max_rows,
        },
        "thresholds": config.thresholds(),
        "metrics": evaluation.metrics,
        "drift": {**drift.summary(), "n_features": drift.n_features, "performance": drift.performance},
        "decision": evaluation.decision,
        "libraries": library_versions(),
        "model_sha256": trained.model_sha256,
    }


def promote(
    config: Config, pulled: Pulled, drift: DriftCheck, trained: Trained, evaluation: Evaluation, run: Run
) -> Promotion:
    """Publish the challenger as a version and move the champion to it, or say why not.

    Beyond the evaluation's outcome: SUPERSEDED (the champion moved to newer data since the evaluation)
    and CONFLICT (another run moved the champion after this one read it).
    """
    registry = Registry.for_config(config)
    recorded = registry.ledger_record(run.month, run.key)
    if recorded is not None:
        return Promotion(
            recorded["outcome"], recorded.get("version"), recorded.get("champion_version"), recorded["reason"]
        )
    newer = _newer_champion(registry, run)
    if newer is not None:
        return Promotion(str(Outcome.SUPERSEDED), None, newer.version, _superseded(evaluation.reason, newer, run))
    current = registry.champion()
    version = registry.find_version_by_run(run.key)
    if version is None:
        model_bytes = registry.read_run_file(run.month, run.key, "challenger.joblib")
        version = registry.publish_version(
            model_bytes, _version_metadata(config, pulled, drift, trained, evaluation, run)
        )
    if current is not None and current.version == version:
        return Promotion(evaluation.outcome, version, version, evaluation.reason)
    expected = pulled.champion
    moved = registry.move_champion(
        version,
        data_month=run.month,
        expected_etag=expected["etag"] if expected else None,
        run_id=run.run_id,
        reason=evaluation.reason,
        validated_month=evaluation.holdout_month,
        validated_auc=evaluation.metrics["challenger"]["auc"],
        validation_profile=evaluation.validation_profile,
    )
    if not moved:
        winner = registry.champion()
        return Promotion(
            str(Outcome.CONFLICT),
            version,
            winner.version if winner else None,
            f"{evaluation.reason}; not promoted: the champion moved to version "
            f"{winner.version if winner else '?'} while this run was evaluating; version {version} "
            "stays in the registry unpromoted",
        )
    return Promotion(evaluation.outcome, version, version, evaluation.reason)


def keep(config: Config, pulled: Pulled, evaluation: Evaluation, run: Run) -> Kept:
    """The champion stays. When this run showed it holding up on a newer month (KEPT_CHAMPION, its AUC at
    or above promotion.min_auc), that month becomes its validated month, the drift reference."""
    month = evaluation.holdout_month
    not_held_up = _why_not_held_up(config, evaluation.outcome, evaluation.metrics.get("champion"))
    if not_held_up is not None:
        return Kept(False, None, not_held_up)
    if run.dry_run:
        return Kept(False, None, "dry run: the validated month stays")
    registry = Registry.for_config(config)
    if registry.ledger_record(run.month, run.key) is not None:
        recorded = registry.ledger_record(run.month, run.key).get("reference") or {}
        return Kept(bool(recorded.get("moved")), recorded.get("moved_to"), "already recorded")
    current = registry.champion()
    if current is None or current.version != pulled.champion["version"]:
        return Kept(False, None, "the champion changed since this run read it")
    if current.validated_month >= month and current.document.get("validated_run_id") != run.run_id:
        return Kept(False, None, f"already validated on {current.validated_month}")
    auc = evaluation.metrics["champion"]["auc"]
    if not registry.revalidate(
        current, month=month, auc=auc, run_id=run.run_id, validation_profile=evaluation.validation_profile
    ):
        return Kept(False, None, "the champion pointer changed while this run revalidated it")
    return Kept(True, month, f"champion version {current.version} validated on {month}")


def _why_not_held_up(config: Config, outcome: str, champion_metrics: dict[str, Any] | None) -> str | None:
    """None when an evaluation showed the champion holding up on its holdout month (KEPT_CHAMPION, its AUC
    at or above promotion.min_auc, on enough rows of each class to judge), else why not."""
    if outcome != Outcome.KEPT_CHAMPION or champion_metrics is None:
        return f"{outcome}: the champion was not shown to hold up"
    if champion_metrics["auc"] < config.promotion.min_auc:
        return f"champion AUC {champion_metrics['auc']:.4f} is below min_auc={config.promotion.min_auc}"
    return too_few_to_judge(champion_metrics["rows"], champion_metrics["positives"], config.promotion)


def record(
    config: Config,
    pulled: Pulled,
    drift: DriftCheck | None,
    evaluation: Evaluation | None,
    promotion: Promotion | None,
    run: Run,
    kept: Kept | None = None,
) -> dict[str, Any]:
    """Append the run's ledger record, whatever happened; returns the record that stands."""
    from retrain.reports import render_run_report

    registry = Registry.for_config(config)
    existing = registry.ledger_record(run.month, run.key)
    if existing is not None:
        return existing
    champion_before = pulled.champion["version"] if pulled.champion else None
    if promotion is not None:
        outcome, reason = promotion.outcome, promotion.reason
        champion_after, version = promotion.champion_version, promotion.version
    elif evaluation is not None:
        outcome, reason = evaluation.outcome, evaluation.reason
        if run.dry_run:
            reason = f"{reason}; dry run: nothing promoted"
        champion_after, version = champion_before, None
    else:
        outcome, reason = str(Outcome.NO_DRIFT), drift.gate if drift else "no drift"
        champion_after, version = champion_before, None
    promoted = (
        promotion is not None and promotion.outcome in PROMOTING and promotion.version == promotion.champion_version
    )
    moved_to = evaluation.holdout_month if promoted else (kept.validated_month if kept and kept.moved else None)
    entry = {
        "kind": "cycle",
        "model": config.model.name,
        "run_id": run.run_id,
        "run_key": run.key,
        "month": run.month,
        "outcome": outcome,
        "decision": evaluation.decision["outcome"] if evaluation else str(Outcome.NO_DRIFT),
        "reason": reason,
        "dry_run": run.dry_run,
        "forced": run.force,
        "champion_version_before": champion_before,
        "champion_version": champion_after,
        "version": version,
        "drift": drift.summary() if drift else None,
        "performance": drift.performance if drift else None,
        "metrics": evaluation.metrics if evaluation else None,
        "thresholds": config.thresholds(),
        "months": {
            "production": run.month,
            "labels_up_to": pulled.labeled_month,
            "training": pulled.training_months,
            "holdout": pulled.labeled_month,
            "reference": pulled.reference["months"],
        },
        "reference": {
            "mode": pulled.reference["mode"],
            "source": pulled.reference["source"],
            "months": pulled.reference["months"],
            "moved": moved_to is not None,
            "moved_to": moved_to,
            "note": kept.note if kept else None,
        },
        "snapshots": {
            "reference": [{k: s[k] for k in ("uri", "rows", "fingerprint")} for s in pulled.reference["snapshots"]],
            "production": {k: pulled.production[k] for k in ("uri", "rows", "fingerprint")},
            "labeled": [{k: s[k] for k in ("uri", "rows", "fingerprint")} for s in pulled.labeled],
        },
        "recorded_at": utc_now(),
    }
    if config.mlflow.tracking_uri is not None:
        from retrain.mlflow_mirror import sync

        entry["mlflow"] = sync(config, registry)
    report = render_run_report(
        entry,
        registry.read_run_json(run.month, run.key, "drift.json"),
        registry.read_run_json(run.month, run.key, "evaluation.json") if evaluation else None,
    )
    entry["report_uri"] = registry.write_run_file(run.month, run.key, "report.html", report.encode())
    return registry.append_ledger(entry)


def run_cycle(config: Config, run: Run) -> dict[str, Any]:
    """The whole loop in one process, for the CLI; the DAG runs the same steps as tasks."""
    try:
        return _run_cycle(config, run)
    finally:
        release_frames()


def _run_cycle(config: Config, run: Run) -> dict[str, Any]:
    missing = missing_inputs(config, run.month)
    if missing:
        from retrain.errors import NotReadyError

        raise NotReadyError(f"data for {run.month} not ready: {'; '.join(missing)}")
    pulled = pull_snapshots(config, run)
    if pulled.recorded_outcome is not None:
        log.info("run %s already recorded for %s; nothing to redo", run.run_id, run.month)
        return Registry.for_config(config).ledger_record(run.month, run.key)
    drift = check_drift(config, pulled, run)
    if not drift.train:
        return record(config, pulled, drift, None, None, run)
    trained = train_challenger(config, pulled, run)
    evaluation = evaluate(config, pulled, drift, trained, run)
    if evaluation.promotes and not run.dry_run:
        return record(config, pulled, drift, evaluation, promote(config, pulled, drift, trained, evaluation, run), run)
    return record(config, pulled, drift, evaluation, None, run, keep(config, pulled, evaluation, run))


def summarize(entry: dict[str, Any]) -> dict[str, Any]:
    """The CLI's --json view of a ledger record."""
    return {
        "outcome": entry["outcome"],
        "month": entry["month"],
        "champion_version": entry["champion_version"],
        "version": entry.get("version"),
        "drift": entry.get("drift"),
        "performance": entry.get("performance"),
        "metrics": entry.get("metrics") or {},
        "months": entry.get("months"),
        "reference": entry.get("reference"),
        "reason": entry["reason"],
        "dry_run": entry.get("dry_run", False),
        "run_id": entry["run_id"],
        "report_uri": entry.get("report_uri"),
        "mlflow": entry.get("mlflow"),
    }


def dumps(document: Any) -> str:
    return json.dumps(document, indent=2, sort_keys=True, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)

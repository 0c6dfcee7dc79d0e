"""The records a cycle's steps hand each other (through XCom in Airflow), and the run they belong to."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from retrain.errors import DataError
from retrain.months import is_month
from retrain.records.data import Champion, Reference, Snapshot
from retrain.records.evidence import Decision, EvaluationMetrics, PerformanceEstimate
from retrain.records.outcome import Outcome
from retrain.serial import project


@dataclass(frozen=True)
class Run:
    """Who is running and for which month: the identity that makes every write idempotent."""

    run_id: str
    month: str
    force: bool = False
    dry_run: bool = False

    def __post_init__(self) -> None:
        if not is_month(self.month):
            raise DataError(f"month must be YYYY-MM, got {self.month!r}")

    @property
    def key(self) -> str:
        return run_key(self.run_id)


def run_key(run_id: str) -> str:
    """A storage-safe, collision-free key for an Airflow or CLI run id."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", run_id).strip("_")[:80]
    return f"{safe}-{hashlib.sha1(run_id.encode()).hexdigest()[:8]}"


@dataclass(frozen=True)
class Pulled:
    """The validated snapshots a run uses, and the registry state it started from."""

    run_id: str
    run_key: str
    month: str
    labeled_month: str
    champion: Champion | None
    reference: Reference
    production: Snapshot
    labeled: tuple[Snapshot, ...]
    validation: Snapshot | None
    recorded_outcome: Outcome | None

    @property
    def training_months(self) -> tuple[str, ...]:
        return tuple(snapshot.month or "" for snapshot in self.labeled)

    @property
    def holdout(self) -> Snapshot:
        """The last labeled month: a share of it is the holdout."""
        return self.labeled[-1]


@dataclass(frozen=True)
class DriftSummary:
    """The part of a drift check that the ledger keeps."""

    drifted: bool
    share_drifted: float
    drifted_features: tuple[str, ...]
    effects: dict[str, float | None] = field(default_factory=dict)
    # KS statistics and PSI have different scales: the floor in force makes them comparable.
    effect_floors: dict[str, float] = field(default_factory=dict)
    report_uri: str | None = None
    triggers: tuple[str, ...] = ()


@dataclass(frozen=True)
class DriftCheck(DriftSummary):
    """Every feature tested, the champion's estimated AUC, and the gate's verdict on training."""

    n_features: int = 0
    train: bool = False
    gate: str = ""
    performance: PerformanceEstimate | None = None

    def summary(self) -> DriftSummary:
        return project(self, DriftSummary)


@dataclass(frozen=True)
class Trained:
    model_uri: str
    model_sha256: str
    estimator: str
    train_rows: int
    holdout_rows: int
    window_rows: int
    max_rows: int | None


@dataclass(frozen=True)
class Evaluation:
    """The evidence, the pure decision on it, and the outcome this run will have given the registry."""

    decision: Decision
    outcome: Outcome
    reason: str
    metrics: EvaluationMetrics
    holdout_month: str
    evaluation_uri: str
    # The store key of the validation profile this run wrote for the model it validates, if any.
    validation_profile: str | None = None

    @property
    def promotes(self) -> bool:
        return self.outcome.promotes


@dataclass(frozen=True)
class MirrorState:
    """Where the MLflow mirror stands after a sync (retrain.mlflow_mirror)."""

    synced: bool
    error: str | None = None
    tracking_uri: str | None = None
    registered_model: str | None = None
    version: int | None = None
    champion: int | None = None
    alias: str | None = None


@dataclass(frozen=True)
class Promotion:
    outcome: Outcome
    version: int | None
    champion_version: int | None
    reason: str
    # The MLflow mirror, brought up to date as soon as the champion moved: before the promote task's
    # asset event, so that a DAG the event triggers reads the new @champion.
    mlflow: MirrorState | None = None

    @property
    def moved_champion(self) -> bool:
        return self.outcome.promotes and self.version is not None and self.version == self.champion_version


@dataclass(frozen=True)
class Kept:
    """Whether keeping the champion moved its validated month (the drift reference) forward."""

    moved: bool
    validated_month: str | None
    note: str

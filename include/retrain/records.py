"""The typed records a cycle's steps exchange and the registry keeps, and the one Outcome type.

Every field is typed down to its leaves: a step returns a `Pulled`, a `DriftCheck`, an `Evaluation`; the
ledger holds `LedgerRecord`s and each version a `VersionMetadata`. `retrain.serial` turns any of them into
the JSON that XCom and the registry carry, and back. The JSON keeps the names and shapes written before
these types existed, so registries written by earlier releases still read, and earlier releases can read
what this one writes.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar

from retrain.config import DriftSpec, PromotionSpec, TrainingSpec
from retrain.errors import DataError
from retrain.months import is_month


class Outcome(StrEnum):
    """How a run (or an operator's action) ended. Each outcome carries its tone, which reports and charts
    colour it by."""

    tone: str

    def __new__(cls, value: str, tone: str) -> Outcome:
        member = str.__new__(cls, value)
        member._value_ = value
        member.tone = tone
        return member

    NO_DRIFT = "NO_DRIFT", "quiet"
    BOOTSTRAPPED = "BOOTSTRAPPED", "promoted"
    PROMOTED = "PROMOTED", "promoted"
    KEPT_CHAMPION = "KEPT_CHAMPION", "kept"
    REJECTED = "REJECTED", "rejected"
    # Decided by the registry's state, not by the evidence: the champion holds newer data than the run
    # (a backfill over history), or another run moved it while this one evaluated.
    SUPERSEDED = "SUPERSEDED", "superseded"
    CONFLICT = "CONFLICT", "conflict"
    # An operator's action, never a cycle's.
    ROLLED_BACK = "ROLLED_BACK", "operator"

    @property
    def promotes(self) -> bool:
        return self in (Outcome.BOOTSTRAPPED, Outcome.PROMOTED)

    @classmethod
    def of_cycles(cls) -> tuple[Outcome, ...]:
        """The outcomes a cycle can end in."""
        return tuple(outcome for outcome in cls if outcome is not Outcome.ROLLED_BACK)


# -- data ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """What validation established about a snapshot: enough lineage to find, count and verify it again."""

    uri: str
    month: str | None
    files: tuple[str, ...] = ()
    rows: int = 0
    fingerprint: str | None = None
    null_rates: dict[str, float] = field(default_factory=dict)
    # A categorical column's value kind (text, integer, ...): must agree across the snapshots a run uses.
    kinds: dict[str, str] = field(default_factory=dict)
    classes: dict[str, int] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"month {self.month} ({self.uri})" if self.month else self.uri

    def summary(self) -> SnapshotSummary:
        return SnapshotSummary(self.uri, self.rows, self.fingerprint)


@dataclass(frozen=True)
class SnapshotSummary:
    uri: str
    rows: int
    fingerprint: str | None


@dataclass(frozen=True)
class HeldOut(Snapshot):
    """The labeled snapshot a holdout was taken from, and the share of it held out."""

    share: float | None = None


@dataclass(frozen=True)
class Reference:
    """What drift was tested against: the `drift.reference` mode in force and where it came from, in words."""

    mode: str
    source: str
    months: tuple[str, ...]
    snapshots: tuple[Snapshot, ...]


# -- the registry's champion ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChampionPointer:
    """`champion.json`, the registry's one mutable object.

    `validated_month` is the latest month whose labeled holdout showed this version holding up (the month
    it was promoted on, moved forward each time a cycle evaluated and kept it); `validated_auc` its AUC there.
    """

    version: int
    data_month: str
    model: str | None = None
    validated_month: str | None = None
    validated_auc: float | None = None
    validated_run_id: str | None = None
    # The store key of the calibration the validating run wrote (see retrain.estimation).
    validation_profile: str | None = None
    model_sha256: str | None = None
    previous_version: int | None = None
    run_id: str | None = None
    reason: str | None = None
    updated_at: str | None = None


@dataclass(frozen=True)
class Champion(ChampionPointer):
    """The champion pointer as read, with the ETag a compare-and-swap must present."""

    etag: str = ""

    def pointer(self) -> ChampionPointer:
        return ChampionPointer(**{name: getattr(self, name) for name in ChampionPointer.__dataclass_fields__})


# -- evidence ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Metrics:
    auc: float
    log_loss: float
    brier: float
    rows: int
    positives: int


@dataclass(frozen=True)
class LiftInterval:
    """Challenger AUC minus champion AUC (or a first model's AUC minus 1/2), with a percentile bootstrap
    interval. `samples`, the bootstrap lifts, stay in memory for the report's histogram."""

    lift: float
    low: float
    high: float
    confidence: float
    resamples: int
    share_not_positive: float
    samples: object = field(default=None, repr=False, compare=False, metadata={"json": False})


@dataclass(frozen=True)
class EvaluationMetrics:
    """Champion and challenger on the same holdout; `over_chance` judges a first model against chance."""

    challenger: Metrics | None = None
    champion: Metrics | None = None
    lift: LiftInterval | None = None
    over_chance: LiftInterval | None = None


@dataclass(frozen=True)
class PerformanceEstimate:
    """The champion's AUC: estimated on the production month, as validated, and realized on the last
    labeled month by the version that estimated it (so estimate and outcome stay comparable)."""

    JSON_PROPERTIES: ClassVar[tuple[str, ...]] = ("estimated_drop",)

    champion_version: int
    estimated_auc: float
    validated_auc: float
    validated_month: str
    # The calibrated expected AUC on each side; estimated_auc is validated_auc moved by their difference.
    expected_auc_production: float | None = None
    expected_auc_validation: float | None = None
    realized_auc: float | None = None
    realized_month: str | None = None
    realized_version: int | None = None
    production_rows_scored: int | None = None
    calibration: str | None = None

    @property
    def estimated_drop(self) -> float:
        return self.validated_auc - self.estimated_auc


@dataclass(frozen=True)
class Decision:
    """The promotion decision on the evidence, with its reason in words."""

    JSON_PROPERTIES: ClassVar[tuple[str, ...]] = ("promotes",)

    outcome: Outcome
    reason: str

    @property
    def promotes(self) -> bool:
        return self.outcome.promotes


@dataclass(frozen=True)
class Gate:
    """Whether to train a challenger, which triggers fired, and why, in words."""

    train: bool
    triggers: tuple[str, ...]
    reason: str


# -- the steps' records -------------------------------------------------------------------------------------------


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
        return DriftSummary(
            drifted=self.drifted,
            share_drifted=self.share_drifted,
            drifted_features=self.drifted_features,
            effects=self.effects,
            effect_floors=self.effect_floors,
            report_uri=self.report_uri,
            triggers=self.triggers,
        )


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
class RocCurve:
    fpr: tuple[float, ...]
    tpr: tuple[float, ...]
    auc: float


@dataclass(frozen=True)
class Importances:
    """The AUC the challenger loses when each feature is shuffled: mean and spread over a few shuffles."""

    features: tuple[str, ...] = ()
    means: tuple[float, ...] = ()
    stds: tuple[float, ...] = ()


@dataclass(frozen=True)
class Histogram:
    edges: tuple[float, ...]
    counts: tuple[int, ...]


@dataclass(frozen=True)
class EvaluationDetails:
    """What a report draws of an evaluation, kept beside it in the run folder (`evaluation.json`)."""

    roc: dict[str, RocCurve] = field(default_factory=dict)
    importances: Importances = field(default_factory=Importances)
    lift_histogram: Histogram | None = None


@dataclass(frozen=True)
class Promotion:
    outcome: Outcome
    version: int | None
    champion_version: int | None
    reason: str

    @property
    def moved_champion(self) -> bool:
        return self.outcome.promotes and self.version is not None and self.version == self.champion_version


@dataclass(frozen=True)
class Kept:
    """Whether keeping the champion moved its validated month (the drift reference) forward."""

    moved: bool
    validated_month: str | None
    note: str


# -- what the registry keeps ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Thresholds:
    """The thresholds in force, as recorded in every version's metadata and ledger record."""

    drift: DriftSpec
    promotion: PromotionSpec
    training: TrainingSpec


@dataclass(frozen=True)
class LedgerMonths:
    production: str
    labels_up_to: str
    training: tuple[str, ...]
    holdout: str
    reference: tuple[str, ...]


@dataclass(frozen=True)
class ReferenceUse:
    """The drift reference a run used, and whether the run moved it (to the month it validated the champion on)."""

    mode: str
    source: str | None = None
    months: tuple[str, ...] = ()
    moved: bool = False
    moved_to: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class LedgerSnapshots:
    reference: tuple[SnapshotSummary, ...] = ()
    production: SnapshotSummary | None = None
    labeled: tuple[SnapshotSummary, ...] = ()


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
class LedgerRecord:
    """One cycle's record (or an operator's, `kind` "rollback"): appended once, never rewritten."""

    run_id: str
    run_key: str
    month: str | None
    outcome: Outcome
    reason: str
    kind: str = "cycle"
    model: str | None = None
    # The evaluation's own decision, before the registry's state (SUPERSEDED, CONFLICT) had its say.
    decision: Outcome | None = None
    dry_run: bool = False
    forced: bool = False
    champion_version_before: int | None = None
    champion_version: int | None = None
    version: int | None = None
    drift: DriftSummary | None = None
    performance: PerformanceEstimate | None = None
    metrics: EvaluationMetrics | None = None
    thresholds: Thresholds | None = None
    months: LedgerMonths | None = None
    reference: ReferenceUse | None = None
    snapshots: LedgerSnapshots | None = None
    recorded_at: str = ""
    report_uri: str | None = None
    mlflow: MirrorState | None = None

    @property
    def is_cycle(self) -> bool:
        return self.kind == "cycle" and self.month is not None

    @property
    def moved_reference_to(self) -> str | None:
        return self.reference.moved_to if self.reference and self.reference.moved else None


@dataclass(frozen=True)
class FeatureLists:
    numeric: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()


@dataclass(frozen=True)
class Lineage:
    """The snapshots a version was trained, validated and drift-tested on."""

    training: tuple[Snapshot, ...] = ()
    holdout: HeldOut | None = None
    production: Snapshot | None = None
    reference: tuple[Snapshot, ...] = ()


@dataclass(frozen=True)
class TrainingRows:
    train: int
    holdout: int
    window: int
    sampled: bool = False
    max_rows: int | None = None


@dataclass(frozen=True)
class VersionMetadata:
    """A version's `metadata.json`: written once, after its model file, never modified."""

    data_month: str
    model_sha256: str
    model: str | None = None
    created_at: str = ""
    run_id: str = ""
    run_key: str = ""
    validated_month: str | None = None
    estimator: str | None = None
    target: str | None = None
    positive_label: str | None = None
    features: FeatureLists = field(default_factory=FeatureLists)
    lineage: Lineage = field(default_factory=Lineage)
    rows: TrainingRows | None = None
    thresholds: Thresholds | None = None
    metrics: EvaluationMetrics = field(default_factory=EvaluationMetrics)
    drift: DriftCheck | None = None
    decision: Decision | None = None
    libraries: dict[str, str] = field(default_factory=dict)
    # Set when the version is published: its number and its model file's key in the registry.
    version: int = 0
    model_file: str = ""

    @property
    def auc(self) -> float | None:
        """The AUC it was promoted with (the challenger's, on its holdout)."""
        return self.metrics.challenger.auc if self.metrics.challenger else None

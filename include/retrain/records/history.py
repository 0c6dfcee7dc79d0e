"""What the registry keeps of every cycle and version: ledger records and version metadata, written once
and never rewritten."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from retrain.config import DriftSpec, PromotionSpec, TrainingSpec
from retrain.records.data import HeldOut, Snapshot, SnapshotSummary
from retrain.records.evidence import Decision, EvaluationMetrics, PerformanceEstimate
from retrain.records.outcome import Outcome
from retrain.records.steps import DriftCheck, DriftSummary, MirrorState


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
class Approval:
    """A reviewer's answer to a promotion ([approval] required): `decision` approved, rejected or expired
    (nobody answered within approval.timeout_hours), who answered, when, and their comment."""

    decision: str
    at: str
    by: str | None = None
    comment: str | None = None
    requested_at: str | None = None

    def shown(self) -> str:
        if self.decision == "expired":
            return f"no reviewer answered by {self.at}"
        said = f": {self.comment}" if self.comment else ""
        return f"{self.decision} by {self.by or 'an unknown user'} at {self.at}{said}"


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
    approval: Approval | None = field(default=None, metadata={"json_omit_none": True})

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
class Origin:
    """Where an adopted version came from: the file or MLflow URI it was loaded from, that file's own
    SHA-256 as given, and the metadata that came with it (`--metadata`, kept as written)."""

    source: str
    adopted_at: str
    source_sha256: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    metadata_file: str | None = None


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
    # An adopted version's origin; the versions a cycle trained have none.
    origin: Origin | None = field(default=None, metadata={"json_omit_none": True})
    task: str = "binary"
    # Who signed the promotion off, with [approval] required.
    approval: Approval | None = field(default=None, metadata={"json_omit_none": True})

    @property
    def auc(self) -> float | None:
        """The AUC it was promoted with (the challenger's, on its holdout); None for a regressor."""
        return self.metrics.challenger.auc if self.metrics.challenger else None

    @property
    def score_shown(self) -> str:
        """The promotion metric it was promoted (or adopted) with, for people: "ROC AUC 0.8123"."""
        return self.metrics.challenger.shown() if self.metrics.challenger else "metric -"

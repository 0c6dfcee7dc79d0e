"""The typed records a cycle's steps exchange and the registry keeps, and the one Outcome type.

Every field is typed down to its leaves: a step returns a `Pulled`, a `DriftCheck`, an `Evaluation`; the
ledger holds `LedgerRecord`s and each version a `VersionMetadata`. `retrain.serial` turns any of them into
the JSON that XCom and the registry carry, and back. The JSON keeps the names and shapes written before
these types existed, so registries written by earlier releases still read, and earlier releases can read
what this one writes.

- `outcome`: the one list of outcomes;
- `data`: snapshots, the drift reference, the champion as read;
- `evidence`: metrics, intervals, the estimate before labels, the decision;
- `steps`: what each step of a cycle returns;
- `history`: what the registry keeps, ledger records and version metadata.
"""

from retrain.records.data import Champion, ChampionPointer, HeldOut, Reference, Snapshot, SnapshotSummary
from retrain.records.evidence import (
    ConfusionMatrix,
    Decision,
    EvaluationDetails,
    EvaluationMetrics,
    Gate,
    Histogram,
    Importances,
    LiftInterval,
    Metrics,
    PerformanceEstimate,
    Residuals,
    RocCurve,
    SegmentCheck,
)
from retrain.records.history import (
    Approval,
    FeatureLists,
    LedgerMonths,
    LedgerRecord,
    LedgerSnapshots,
    Lineage,
    MirrorState,
    ReferenceUse,
    Thresholds,
    TrainingRows,
    VersionMetadata,
)
from retrain.records.outcome import Outcome
from retrain.records.steps import DriftCheck, DriftSummary, Evaluation, Kept, Promotion, Pulled, Run, Trained, run_key

__all__ = [
    "Approval",
    "Champion",
    "ChampionPointer",
    "Decision",
    "DriftCheck",
    "DriftSummary",
    "Evaluation",
    "ConfusionMatrix",
    "EvaluationDetails",
    "EvaluationMetrics",
    "FeatureLists",
    "Gate",
    "HeldOut",
    "Histogram",
    "Residuals",
    "Importances",
    "Kept",
    "LedgerMonths",
    "LedgerRecord",
    "LedgerSnapshots",
    "LiftInterval",
    "Lineage",
    "Metrics",
    "MirrorState",
    "Outcome",
    "PerformanceEstimate",
    "Promotion",
    "Pulled",
    "Reference",
    "ReferenceUse",
    "RocCurve",
    "SegmentCheck",
    "Run",
    "Snapshot",
    "SnapshotSummary",
    "Thresholds",
    "Trained",
    "TrainingRows",
    "VersionMetadata",
    "run_key",
]

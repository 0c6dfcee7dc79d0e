"""The drift step: test every feature against the reference, estimate the champion's AUC, and open the
gate to training when a trigger fired."""

from __future__ import annotations

from typing import TYPE_CHECKING

from retrain.cycle.estimate import estimate_performance, performance_drop, sample_rows
from retrain.cycle.frames import reader, schemas
from retrain.decision import drift_gate
from retrain.records import DriftCheck
from retrain.serial import to_bytes
from retrain.snapshots import release_unused_memory

if TYPE_CHECKING:
    from retrain.cycle.context import Cycle
    from retrain.records import Pulled

DRIFT_FILE = "drift.json"


def check_drift(cycle: Cycle, pulled: Pulled) -> DriftCheck:
    """Test every feature and estimate the champion's AUC; the gate says whether to train a challenger."""
    from retrain.drift import SnapshotColumns, detect_drift

    config = cycle.config
    features, _ = schemas(config)
    snapshots = pulled.reference.snapshots
    rows = (sum(s.rows for s in snapshots), pulled.production.rows)
    # The estimate scores a uniform sample of the production month: taken from the drift test's own reads.
    sample = (
        sample_rows(pulled.production.rows, config.training.seed, config.drift.estimate_sample_rows)
        if pulled.champion
        else None
    )
    # A month or reference larger than drift.stream_above_rows is read batch by batch, both sides alike.
    batch_rows = config.drift.batch_rows if max(rows) > config.drift.stream_above_rows else None
    current = SnapshotColumns([reader(config, pulled.production)], sample_rows=sample, batch_rows=batch_rows)
    references = SnapshotColumns([reader(config, s) for s in snapshots], batch_rows=batch_rows)
    report = detect_drift(references, current, features, config.drift, rows=rows)
    report_uri = cycle.folder.write(DRIFT_FILE, to_bytes(report))
    performance = (
        estimate_performance(cycle, pulled, current.sample_frame(features.features)) if pulled.champion else None
    )
    release_unused_memory()
    gate = drift_gate(
        drifted=report.drifted,
        force=cycle.run.force,
        has_champion=pulled.champion is not None,
        drifted_features=report.drifted_features,
        performance_drop=performance_drop(config, performance),
    )
    return DriftCheck(
        drifted=report.drifted,
        share_drifted=report.share_drifted,
        drifted_features=tuple(report.drifted_features),
        effects={f.name: f.effect for f in report.features},
        effect_floors={f.name: f.effect_floor for f in report.features},
        report_uri=report_uri,
        triggers=gate.triggers,
        n_features=len(report.features),
        train=gate.train,
        gate=gate.reason,
        performance=performance,
    )

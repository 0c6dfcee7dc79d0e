"""The whole loop in one process, for the CLI; the DAG runs the same steps as tasks."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from retrain.cycle.approval import APPROVAL_FILE, PendingApproval, awaiting, needs_approval, request_approval
from retrain.cycle.context import Cycle
from retrain.cycle.drift import check_drift
from retrain.cycle.evaluate import evaluate
from retrain.cycle.frames import release_frames
from retrain.cycle.keep import keep
from retrain.cycle.promote import promote
from retrain.cycle.pull import pull_snapshots
from retrain.cycle.record import record
from retrain.cycle.train import train_challenger
from retrain.cycle.window import missing_inputs
from retrain.errors import NotReadyError

if TYPE_CHECKING:
    from retrain.config import Config
    from retrain.records import LedgerRecord, Run

log = logging.getLogger(__name__)


def run_cycle(config: Config, run: Run) -> LedgerRecord:
    """One cycle for `run.month`: the steps in the DAG's order, on one registry."""
    try:
        return _run_cycle(Cycle.open(config, run))
    finally:
        release_frames()


def _run_cycle(cycle: Cycle) -> LedgerRecord:
    month = cycle.run.month
    missing = missing_inputs(cycle.config, month)
    if missing:
        raise NotReadyError(f"data for {month} not ready: {'; '.join(missing)}")
    pending = cycle.folder.read_record(PendingApproval, APPROVAL_FILE)
    if pending is not None:
        # Evaluated already, and left for a reviewer: asking again changes nothing.
        return awaiting(cycle, pending)
    pulled = pull_snapshots(cycle)
    if pulled.recorded_outcome is not None:
        log.info("run %s already recorded for %s; nothing to redo", cycle.run.run_id, month)
        recorded = cycle.registry.ledger_record(month, cycle.run.key)
        if recorded is not None:
            return recorded
    drift = check_drift(cycle, pulled)
    if not drift.train:
        return record(cycle, pulled, drift, None, None)
    trained = train_challenger(cycle, pulled)
    evaluation = evaluate(cycle, pulled, drift, trained)
    if needs_approval(cycle.config, evaluation, dry_run=cycle.run.dry_run):
        return awaiting(cycle, request_approval(cycle, pulled, drift, trained, evaluation))
    if evaluation.promotes and not cycle.run.dry_run:
        return record(cycle, pulled, drift, evaluation, promote(cycle, pulled, drift, trained, evaluation))
    return record(cycle, pulled, drift, evaluation, None, keep(cycle, pulled, evaluation))

"""A reviewer's sign-off before a promotion ([approval] required). A run whose evaluation would promote
leaves the request in its run folder (`approval.json`: the records promote needs, so nothing is trained
again) and waits: in Airflow in a human-in-the-loop task, from the command line until
`retrain registry approve` or `reject` completes it through the same promote and record steps."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from retrain.errors import RegistryError
from retrain.records import Approval, DriftCheck, Evaluation, Kept, LedgerRecord, Outcome, Pulled, Trained
from retrain.registry import utc_now
from retrain.serial import to_bytes

if TYPE_CHECKING:
    from retrain.config import Config
    from retrain.cycle.context import Cycle

APPROVAL_FILE = "approval.json"


@dataclass(frozen=True)
class PendingApproval:
    """A promotion waiting for its reviewer, with everything needed to carry it out."""

    run_id: str
    month: str
    requested_at: str
    pulled: Pulled
    drift: DriftCheck
    trained: Trained
    evaluation: Evaluation
    forced: bool = False


def needs_approval(config: Config, evaluation: Evaluation, *, dry_run: bool) -> bool:
    return not dry_run and evaluation.promotes and config.approval.needed_for(str(evaluation.outcome))


def request_approval(
    cycle: Cycle, pulled: Pulled, drift: DriftCheck, trained: Trained, evaluation: Evaluation
) -> PendingApproval:
    """Leave the request in the run folder (once: a retried request keeps the first)."""
    pending = PendingApproval(
        run_id=cycle.run.run_id,
        month=cycle.run.month,
        requested_at=utc_now(),
        pulled=pulled,
        drift=drift,
        trained=trained,
        evaluation=evaluation,
        forced=cycle.run.force,
    )
    # Created once: a retried request finds the first one's file, and keeps its time.
    cycle.registry.store.create(cycle.folder.path(APPROVAL_FILE), to_bytes(pending))
    return cycle.folder.read_record(PendingApproval, APPROVAL_FILE) or pending


def awaiting(cycle: Cycle, pending: PendingApproval) -> LedgerRecord:
    """What the command line shows of a promotion left for a reviewer; not a ledger record: the ledger
    gets one when the reviewer answers."""
    evaluation, run = pending.evaluation, cycle.run
    champion = pending.pulled.champion.version if pending.pulled.champion else None
    command = (
        f"retrain registry approve --config {cycle.config.source} --month {run.month} --run-id {run.run_id} "
        "--by NAME (or reject)"
    )
    return LedgerRecord(
        run_id=run.run_id,
        run_key=run.key,
        month=run.month,
        model=cycle.config.model.name,
        outcome=Outcome.AWAITING_APPROVAL,
        decision=evaluation.decision.outcome,
        reason=f"{evaluation.reason}; awaiting approval: {command}",
        champion_version_before=champion,
        champion_version=champion,
        drift=pending.drift.summary(),
        performance=pending.drift.performance,
        metrics=evaluation.metrics,
        thresholds=cycle.config.thresholds(),
        recorded_at=pending.requested_at,
    )


def answer(config: Config, month: str, run_id: str, *, by: str, comment: str | None, approve: bool) -> LedgerRecord:
    """Complete a promotion left for a reviewer: approved, it is published and the champion moves by the
    same compare-and-swap as any promotion (SUPERSEDED if a newer month's champion is in place by now,
    CONFLICT if the champion moved since the run read it); rejected, the champion stays. Either way the
    run gets its one ledger record. Answering a run already recorded returns its record."""
    from retrain.cycle.context import Cycle
    from retrain.cycle.promote import promote
    from retrain.cycle.record import record
    from retrain.records import Run

    if not by.strip():
        raise RegistryError("a reviewer's answer needs their name (--by)")
    probe = Cycle.open(config, Run(run_id, month))
    recorded = probe.registry.ledger_record(month, probe.run.key)
    if recorded is not None:
        return recorded
    pending = probe.folder.read_record(PendingApproval, APPROVAL_FILE)
    if pending is None:
        raise RegistryError(f"{probe.registry.uri}: no promotion of run {run_id!r} for {month} awaits approval")
    # The same run and registry, forced as the run was (the ledger record says so).
    cycle = replace(probe, run=replace(probe.run, force=pending.forced))
    approval = Approval(
        decision="approved" if approve else "rejected",
        at=utc_now(),
        by=by.strip(),
        comment=(comment or "").strip() or None,
        requested_at=pending.requested_at,
    )
    if not approve:
        kept = Kept(False, None, f"rejected by {approval.by}")
        return record(cycle, pending.pulled, pending.drift, pending.evaluation, None, kept, approval=approval)
    promotion = promote(cycle, pending.pulled, pending.drift, pending.trained, pending.evaluation, approval=approval)
    return record(cycle, pending.pulled, pending.drift, pending.evaluation, promotion, None, approval=approval)


def reviewed(outcome: Outcome, reason: str, approval: Approval | None, config: Config) -> tuple[Outcome, str]:
    """A run's outcome and reason once its reviewer answered (or did not)."""
    if approval is None:
        return outcome, reason
    if approval.decision == "rejected":
        return Outcome.REJECTED_BY_REVIEWER, f"{reason}; not promoted: {approval.shown()}"
    if approval.decision == "expired":
        hours = config.approval.timeout_hours
        return Outcome.APPROVAL_EXPIRED, f"{reason}; not promoted: no reviewer answered within {hours:g} hours"
    return outcome, f"{reason}; {approval.shown()}"


def expired(requested_at: str | None = None) -> Approval:
    return Approval(decision="expired", at=utc_now(), requested_at=requested_at)

"""The last step, whatever the path: the run's ledger record, its report, and the MLflow mirror."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from retrain.cycle.drift import DRIFT_FILE
from retrain.cycle.evaluate import EVALUATION_FILE
from retrain.records import (
    EvaluationDetails,
    LedgerMonths,
    LedgerRecord,
    LedgerSnapshots,
    Outcome,
    ReferenceUse,
)
from retrain.registry import utc_now
from retrain.serial import from_jsonable, to_jsonable

if TYPE_CHECKING:
    from retrain.cycle.context import Cycle
    from retrain.drift import DriftReport
    from retrain.records import Approval, DriftCheck, Evaluation, Kept, Promotion, Pulled
    from retrain.registry import RunFolder

REPORT_FILE = "report.html"


def record(
    cycle: Cycle,
    pulled: Pulled,
    drift: DriftCheck | None,
    evaluation: Evaluation | None,
    promotion: Promotion | None,
    kept: Kept | None = None,
    approval: Approval | None = None,
) -> LedgerRecord:
    """Append the run's ledger record, whatever happened; returns the record that stands. `approval` is the
    reviewer's answer, with [approval] required: a rejected or expired one leaves the champion in place."""
    from retrain.cycle.approval import reviewed
    from retrain.reports import render_run_report

    config, registry, run = cycle.config, cycle.registry, cycle.run
    existing = registry.ledger_record(run.month, run.key)
    if existing is not None:
        return existing
    champion_before = pulled.champion.version if pulled.champion else None
    if promotion is not None:
        outcome, reason = reviewed(promotion.outcome, promotion.reason, approval, config)
        champion_after, version = promotion.champion_version, promotion.version
    elif evaluation is not None:
        outcome, reason = reviewed(evaluation.outcome, evaluation.reason, approval, config)
        if run.dry_run:
            reason = f"{reason}; dry run: nothing promoted"
        champion_after, version = champion_before, None
    else:
        outcome, reason = Outcome.NO_DRIFT, drift.gate if drift else "no drift"
        champion_after, version = champion_before, None
    if promotion is not None and promotion.moved_champion and evaluation is not None:
        moved_to: str | None = evaluation.holdout_month
    else:
        moved_to = kept.validated_month if kept and kept.moved else None
    entry = LedgerRecord(
        kind="cycle",
        model=config.model.name,
        run_id=run.run_id,
        run_key=run.key,
        month=run.month,
        outcome=outcome,
        decision=evaluation.decision.outcome if evaluation else Outcome.NO_DRIFT,
        reason=reason,
        dry_run=run.dry_run,
        forced=run.force,
        champion_version_before=champion_before,
        champion_version=champion_after,
        version=version,
        drift=drift.summary() if drift else None,
        performance=drift.performance if drift else None,
        metrics=evaluation.metrics if evaluation else None,
        thresholds=config.thresholds(),
        months=LedgerMonths(
            production=run.month,
            labels_up_to=pulled.labeled_month,
            training=pulled.training_months,
            holdout=pulled.labeled_month,
            reference=pulled.reference.months,
        ),
        reference=ReferenceUse(
            mode=pulled.reference.mode,
            source=pulled.reference.source,
            months=pulled.reference.months,
            moved=moved_to is not None,
            moved_to=moved_to,
            note=kept.note if kept else None,
        ),
        snapshots=LedgerSnapshots(
            reference=tuple(s.summary() for s in pulled.reference.snapshots),
            production=pulled.production.summary(),
            labeled=tuple(s.summary() for s in pulled.labeled),
        ),
        recorded_at=utc_now(),
        approval=approval,
    )
    if config.mlflow.tracking_uri is not None:
        from retrain.mlflow_mirror import sync

        # The promote step mirrored a move already; every other run catches MLflow up if it fell behind.
        mirror = promotion.mlflow if promotion is not None and promotion.mlflow is not None else None
        entry = replace(entry, mlflow=mirror or sync(config, registry))
    folder = cycle.folder
    report = render_run_report(
        entry, *stored_evidence(folder, evaluated=evaluation is not None), undrifted_charts=False
    )
    entry = replace(entry, report_uri=folder.write(REPORT_FILE, report.encode()))
    if entry.mlflow is not None and entry.mlflow.synced and promotion is not None and promotion.moved_champion:
        from retrain.mlflow_mirror import attach_report

        attach_report(config, promotion.version, report)
    return registry.append_ledger(entry)


def stored_evidence(
    folder: RunFolder, *, evaluated: bool = True
) -> tuple[DriftReport | None, EvaluationDetails | None]:
    """The drift report and the evaluation's details a run left in its folder, for its report."""
    from retrain.drift import DriftReport

    drift = folder.read_record(DriftReport, DRIFT_FILE)
    document = folder.read_document(EVALUATION_FILE) if evaluated else None
    details = document.get("details") if document else None
    return drift, from_jsonable(EvaluationDetails, details) if isinstance(details, dict) else None


def summary(entry: LedgerRecord) -> dict[str, object]:
    """The CLI's --json view of a ledger record, and what the DAG's last task returns."""
    document = to_jsonable(entry)
    keys = ("outcome", "month", "champion_version", "version", "drift", "performance", "months", "reference")
    view = {key: document[key] for key in keys}
    view.update(
        metrics=document["metrics"] or {},
        reason=entry.reason,
        dry_run=entry.dry_run,
        run_id=entry.run_id,
        report_uri=entry.report_uri,
        mlflow=document["mlflow"],
        approval=document.get("approval"),
    )
    return view

"""The reviewer's sign-off in the DAG ([approval] required): a human-in-the-loop task between evaluate and
promote. It waits without a worker slot (Airflow 3.3 parks it in `awaiting_input`), and branches to
promote on Approve, to keep_champion on Reject or when nobody answers within approval.timeout_hours. A run
whose evaluation does not promote passes straight through, without asking anyone."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.hitl import HITLBranchOperator, HITLOperator
from airflow.sdk import Param

if TYPE_CHECKING:
    from airflow.sdk import Context

    from retrain.config import ApprovalSpec

log = logging.getLogger(__name__)

APPROVE, REJECT = "Approve", "Reject"
APPROVAL_TASK = "approve_promotion"


class PromotionApproval(HITLBranchOperator):
    """Approve or reject the promotion the run's evaluation decided, with an optional comment."""

    def __init__(self, *, config_path: str, approval: ApprovalSpec, **kwargs: Any) -> None:
        # The DAG passes its own Params here too: the form asks only for the comment (the operator would
        # drop the DAG's anyway).
        kwargs.pop("params", None)
        super().__init__(
            task_id=APPROVAL_TASK,
            subject="Approve the promotion?",
            options=[APPROVE, REJECT],
            options_mapping={APPROVE: "promote", REJECT: "keep_champion"},
            params={
                "comment": Param(
                    "",
                    type=["null", "string"],
                    title="Comment",
                    description="Why: kept with your answer in the ledger and the version's metadata.",
                )
            },
            assigned_users=[{"id": user, "name": user} for user in approval.approvers] or None,
            response_timeout=timedelta(hours=approval.timeout_hours),
            **kwargs,
        )
        self.config_path = config_path

    def execute(self, context: Context) -> Any:
        from retrain.airflow.notifications import airflow_url, send
        from retrain.airflow.params import open_cycle
        from retrain.airflow.tasks import _records
        from retrain.cycle.approval import needs_approval
        from retrain.notify import approval_request, report_link

        cycle = open_cycle(context, self.config_path)
        drift, evaluation = _records(context, "drift", "evaluation")
        if not needs_approval(cycle.config, evaluation, dry_run=cycle.run.dry_run):
            log.info("%s: nothing to approve", evaluation.outcome)
            chosen = "promote" if evaluation.promotes and not cycle.run.dry_run else "keep_champion"
            return self.do_branch(context, chosen)
        config = cycle.config
        link = report_link(airflow_url(), context["dag"].dag_id, cycle.run.run_id)
        message = approval_request(
            config.model.name, cycle.run.month, evaluation, drift, link, config.approval.timeout_hours
        )
        self.subject = message.subject.removeprefix("[retrain] ")
        self.body = message.markdown
        if config.notify.enabled:
            send(config, cycle.registry, message, context, cycle.run.month, "approval")
        return super().execute(context)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        from retrain.airflow.tasks import _json
        from retrain.cycle.approval import expired
        from retrain.records import Approval

        if event.get("error_type") == "timeout":
            log.warning("no reviewer answered within the timeout: the champion stays")
            context["ti"].xcom_push(key="approval", value=_json(expired()))
            return self.do_branch(context, "keep_champion")
        answered = HITLOperator.execute_complete(self, context, event)
        chosen = answered["chosen_options"][0]
        user = answered.get("responded_by_user") or {}
        approval = Approval(
            decision="approved" if chosen == APPROVE else "rejected",
            at=answered["responded_at"].isoformat(),
            by=user.get("name") or user.get("id"),
            comment=((answered.get("params_input") or {}).get("comment") or "").strip() or None,
        )
        context["ti"].xcom_push(key="approval", value=_json(approval))
        log.info("the reviewer answered: %s", approval.shown())
        return self.do_branch(context, self.options_mapping[chosen])

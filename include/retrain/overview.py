"""The fleet at a glance: one row per model, read from its registry, with what a scheduler adds (the last
failed run, runs waiting for a reviewer), ordered so that the models needing a person come first.

A row costs its registry a champion read, one listing of the ledger and the records of the latest month
only, however long the ledger grows: the page stays fast with fifty models on S3.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from retrain.errors import RetrainError
from retrain.records import Outcome

if TYPE_CHECKING:
    from retrain.config import Config
    from retrain.records import LedgerRecord
    from retrain.registry import Registry

# What a person should look at, most urgent first; a row's first reason ranks it.
FAILED, REGISTRY_UNREADABLE, AWAITING_APPROVAL, NO_CHAMPION, LOOK_AT_OUTCOME, ESTIMATE_FELL, DRIFTED = range(7)
OUTCOMES_TO_LOOK_AT = (Outcome.CONFLICT, Outcome.REJECTED_BY_REVIEWER, Outcome.APPROVAL_EXPIRED)


@dataclass(frozen=True)
class RunFailure:
    """A DAG run that failed, as the scheduler's metadata DB knows it."""

    run_id: str
    ended_at: str
    tasks: tuple[str, ...] = ()
    # Whether no run of the model succeeded since: the model is not being retrained.
    current: bool = True


@dataclass(frozen=True)
class ModelStatus:
    model: str
    dag_id: str
    champion_version: int | None = None
    champion_month: str | None = None
    last_month: str | None = None
    last_outcome: str | None = None
    last_run_id: str | None = None
    metric: str | None = None
    estimated: float | None = None
    validated: float | None = None
    # How much worse the estimate is than validated, in the metric's units, and the drift section's limit.
    estimated_drop: float | None = None
    drop_limit: float | None = None
    drifted: tuple[str, ...] | None = None
    awaiting_approval: int = 0
    failure: RunFailure | None = None
    error: str | None = None
    attention: tuple[tuple[int, str], ...] = ()

    @property
    def rank(self) -> int:
        return min((severity for severity, _ in self.attention), default=99)

    @property
    def champion_age_months(self) -> int | None:
        """Months from the champion's training month to the last month processed."""
        if self.champion_month is None or self.last_month is None:
            return None
        (y0, m0), (y1, m1) = (map(int, m.split("-")) for m in (self.champion_month, self.last_month))
        return (y1 - y0) * 12 + (m1 - m0)


def model_status(config: Config, registry: Registry, dag_id: str) -> ModelStatus:
    """What the registry says of a model: its champion and its latest month's run."""
    status = ModelStatus(model=config.model.name, dag_id=dag_id)
    try:
        champion = registry.champion()
        records = registry.latest_cycle_records()
    except RetrainError as error:
        return replace(status, error=str(error).splitlines()[0][:300])
    if champion is not None:
        status = replace(status, champion_version=champion.version, champion_month=champion.data_month)
    if not records:
        return status
    last: LedgerRecord = records[-1]
    performance = last.performance
    status = replace(
        status,
        last_month=last.month,
        last_outcome=str(last.outcome),
        last_run_id=last.run_id,
        drifted=tuple(last.drift.drifted_features) if last.drift else None,
    )
    if performance is not None:
        status = replace(
            status,
            metric=performance.label,
            estimated=performance.estimated_value,
            validated=performance.validated_value,
            estimated_drop=performance.estimated_drop,
            drop_limit=(
                config.drift.max_estimated_error_rise
                if config.model.task == "regression"
                else config.drift.max_estimated_auc_drop
            ),
        )
    return status


def with_scheduler(status: ModelStatus, *, failure: RunFailure | None, awaiting_approval: int) -> ModelStatus:
    """Add what the scheduler knows, and say why the model needs a person, if it does."""
    status = replace(status, failure=failure, awaiting_approval=awaiting_approval)
    reasons: list[tuple[int, str]] = []
    if failure is not None and failure.current:
        where = f" in {', '.join(failure.tasks)}" if failure.tasks else ""
        reasons.append((FAILED, f"last run failed{where}"))
    if status.error:
        reasons.append((REGISTRY_UNREADABLE, "registry unreadable"))
    if awaiting_approval:
        reasons.append((AWAITING_APPROVAL, f"{awaiting_approval} promotion(s) awaiting approval"))
    if status.champion_version is None and not status.error:
        reasons.append((NO_CHAMPION, "no champion"))
    if status.last_outcome in OUTCOMES_TO_LOOK_AT:
        reasons.append((LOOK_AT_OUTCOME, f"last run ended {status.last_outcome}"))
    drop, limit = status.estimated_drop, status.drop_limit
    if drop is not None and limit is not None and drop > limit:
        worse = f"estimated {status.metric} {drop:.3f} worse than validated"
        reasons.append((ESTIMATE_FELL, worse))
    if status.drifted and status.last_outcome not in (Outcome.PROMOTED, Outcome.BOOTSTRAPPED):
        reasons.append((DRIFTED, "drifted and the champion was kept"))
    return replace(status, attention=tuple(sorted(reasons)))


def ordered(statuses: list[ModelStatus]) -> list[ModelStatus]:
    """Models needing a person first, the most urgent first; then by name."""
    return sorted(statuses, key=lambda s: (s.rank, s.model))

"""The step that keeps the champion: when this run showed it holding up on a newer month, that month
becomes its validated month, the drift reference of `drift.reference = "validated"`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from retrain.decision import too_few_to_judge
from retrain.records import Kept, Outcome

if TYPE_CHECKING:
    from retrain.config import Config
    from retrain.cycle.context import Cycle
    from retrain.records import Evaluation, Metrics, Pulled


def why_not_held_up(config: Config, outcome: Outcome, champion: Metrics | None) -> str | None:
    """None when an evaluation showed the champion holding up on its holdout month (KEPT_CHAMPION, its
    metric within the floor, on enough rows of each class to judge), else why not."""
    if outcome != Outcome.KEPT_CHAMPION or champion is None:
        return f"{outcome}: the champion was not shown to hold up"
    metric, floor = config.promotion.judged_by, config.promotion.worst_allowed
    score = champion.score
    if floor is not None and score is not None and metric.improvement(score, floor) < 0:
        side = "below" if metric.higher_is_better else "above"
        return f"champion {metric.label} {score:.4f} is {side} {config.promotion.floor_name}={floor}"
    return too_few_to_judge(champion.rows, champion.positives, config.promotion)


def keep(cycle: Cycle, pulled: Pulled, evaluation: Evaluation) -> Kept:
    """The champion stays. When this run showed it holding up on a newer month (KEPT_CHAMPION, its metric
    within the floor), that month becomes its validated month, the drift reference."""
    config, registry, run = cycle.config, cycle.registry, cycle.run
    month = evaluation.holdout_month
    champion_metrics = evaluation.metrics.champion
    not_held_up = why_not_held_up(config, evaluation.outcome, champion_metrics)
    if not_held_up is not None or champion_metrics is None:
        return Kept(False, None, not_held_up or "")
    if run.dry_run:
        return Kept(False, None, "dry run: the validated month stays")
    recorded = registry.ledger_record(run.month, run.key)
    if recorded is not None:
        reference = recorded.reference
        return Kept(bool(reference and reference.moved), reference.moved_to if reference else None, "already recorded")
    current = registry.champion()
    if current is None or pulled.champion is None or current.version != pulled.champion.version:
        return Kept(False, None, "the champion changed since this run read it")
    validated = current.validated_month or current.data_month
    if validated >= month and current.validated_run_id != run.run_id:
        return Kept(False, None, f"already validated on {validated}")
    if not registry.revalidate(
        current,
        month=month,
        auc=champion_metrics.auc,
        run_id=run.run_id,
        validation_profile=evaluation.validation_profile,
    ):
        return Kept(False, None, "the champion pointer changed while this run revalidated it")
    return Kept(True, month, f"champion version {current.version} validated on {month}")

"""The promotion decision: one pure function from evidence to a typed outcome with a readable reason."""

from __future__ import annotations

from typing import TYPE_CHECKING

from retrain.records import Decision, Gate, LiftInterval, Metrics, Outcome, SegmentCheck

if TYPE_CHECKING:
    from retrain.config import PromotionSpec

TIE_TOLERANCE = 1e-12


def too_few_to_judge(rows: int, positives: int | None, policy: PromotionSpec) -> str | None:
    """Why a holdout is too small to judge a model on, or None. The bootstrap cannot tell: with one
    positive in the holdout, every resample that holds it gives nearly the same AUC, so a lucky ranking
    of that one row looks certain (a model of pure noise became the first champion with AUC 0.69).

    `positives` is the rarest class's rows for a multiclass holdout, and None for a regressor's, which
    needs `min_holdout_per_class` rows in all."""
    if positives is None:
        if rows >= policy.min_holdout_per_class:
            return None
        return (
            f"the holdout has {rows} row{'' if rows == 1 else 's'}, fewer than promotion.min_holdout_per_class="
            f"{policy.min_holdout_per_class}: too few to judge a model on (a larger training.holdout_fraction "
            "holds out more)"
        )
    if min(positives, rows - positives) >= policy.min_holdout_per_class:
        return None
    negatives = rows - positives
    return (
        f"the holdout has {positives} positive{'' if positives == 1 else 's'} and "
        f"{negatives} negative{'' if negatives == 1 else 's'}, fewer than "
        f"promotion.min_holdout_per_class={policy.min_holdout_per_class} of a class: too few to judge a model on "
        "(a larger training.holdout_fraction holds out more)"
    )


def drift_gate(
    *,
    drifted: bool,
    force: bool,
    has_champion: bool,
    drifted_features: tuple[str, ...] | list[str] | None = None,
    performance_drop: str | None = None,
) -> Gate:
    """Train when features drifted, when the champion's estimated quality fell too far (`performance_drop`
    says how far), when forced, or when there is no model at all."""
    if not has_champion:
        return Gate(True, ("no_champion",), "no champion yet")
    triggers, reasons = [], []
    if drifted:
        triggers.append("drift")
        reasons.append(f"drift in {', '.join(drifted_features or [])}")
    if performance_drop:
        triggers.append("estimated_performance")
        reasons.append(performance_drop)
    if reasons:
        return Gate(True, tuple(triggers), " and ".join(reasons))
    if force:
        return Gate(True, ("forced",), "no drift, retraining forced")
    return Gate(False, (), "no feature drifted; retraining skipped")


def decide(
    *,
    drifted: bool,
    force: bool,
    policy: PromotionSpec,
    challenger: Metrics | None = None,
    champion: Metrics | None = None,
    lift: LiftInterval | None = None,
    has_champion: bool | None = None,
    drifted_features: tuple[str, ...] | list[str] | None = None,
    performance_drop: str | None = None,
    over_chance: LiftInterval | None = None,
    segments: tuple[SegmentCheck, ...] = (),
) -> Decision:
    """Decide whether the challenger replaces the champion.

    With no champion, `over_chance` (the challenger's AUC lift over chance) must be significant when
    lifts must be: a first model is judged against chance, as later ones are against the champion.

    `has_champion` defaults to whether champion metrics were given; pass it explicitly at the drift gate,
    before any model was scored.
    """
    has_champion = champion is not None if has_champion is None else has_champion
    opened = drift_gate(
        drifted=drifted,
        force=force,
        has_champion=has_champion,
        drifted_features=drifted_features,
        performance_drop=performance_drop,
    )
    gate = opened.reason
    if not opened.train:
        return Decision(Outcome.NO_DRIFT, gate)
    if challenger is None:
        raise ValueError("a challenger's metrics are needed past the drift gate")
    scarce = too_few_to_judge(challenger.rows, challenger.positives, policy)
    if scarce:
        return Decision(Outcome.REJECTED if champion is None else Outcome.KEPT_CHAMPION, f"{gate}; {scarce}")
    metric, floor = policy.judged_by, policy.worst_allowed
    label, score = metric.label, challenger.score
    if score is None:
        raise ValueError(f"the challenger's metrics hold no {metric.name}")
    floor_name = policy.floor_name
    if floor is not None and metric.improvement(score, floor) < 0:
        side = "below" if metric.higher_is_better else "above"
        return Decision(
            Outcome.REJECTED,
            f"{gate}; challenger {label} {score:.4f} is {side} the floor {floor_name}={floor}",
        )
    meets = "" if floor is None else f" {'>=' if metric.higher_is_better else '<='} {floor_name}={floor}"
    if champion is None:
        if over_chance is None:
            return Decision(Outcome.BOOTSTRAPPED, f"{gate}; first model, {label} {score:.4f}{meets}")
        if metric.name == "roc_auc":
            interval = (
                f"{over_chance.confidence:.0%} interval [{0.5 + over_chance.low:.4f}, {0.5 + over_chance.high:.4f}]"
            )
            chance, rows = "includes 0.5", f"{challenger.positives} positives of {challenger.rows} holdout rows"
            versus = "chance"
        else:
            interval = (
                f"lift over no skill {over_chance.lift:+.4f}, {over_chance.confidence:.0%} interval "
                f"[{over_chance.low:+.4f}, {over_chance.high:+.4f}]"
            )
            chance, rows = "includes 0", f"{challenger.rows} holdout rows"
            versus = "a model with no skill"
        if policy.require_significant_lift and over_chance.low <= 0:
            return Decision(
                Outcome.REJECTED,
                f"{gate}; first model, {label} {score:.4f} is not significantly better than {versus}: "
                f"{interval} {chance} ({rows})",
            )
        return Decision(Outcome.BOOTSTRAPPED, f"{gate}; first model, {label} {score:.4f} ({interval}){meets}")
    if lift is None:
        raise ValueError("the lift interval is needed to compare with a champion")
    better = "lift" if metric.higher_is_better else "improvement"
    shortfalls = []
    if abs(lift.lift) <= TIE_TOLERANCE:
        shortfalls.append(f"tie: both models have {label} {score:.4f}")
    elif lift.lift < policy.min_lift:
        shortfalls.append(f"{label} {better} {lift.lift:+.4f} is below min_lift={policy.min_lift}")
    if policy.require_significant_lift and lift.low <= 0:
        shortfalls.append(
            f"lift not significant: {lift.confidence:.0%} interval [{lift.low:+.4f}, {lift.high:+.4f}] includes 0"
        )
    # Calibration guardrails: a classifier's probabilities must not get worse while its ranking improves.
    if challenger.log_loss is not None and champion.log_loss is not None:
        log_loss_rise = challenger.log_loss - champion.log_loss
        if log_loss_rise > policy.max_log_loss_increase:
            shortfalls.append(
                f"log loss regressed by {log_loss_rise:.4f} (> max_log_loss_increase={policy.max_log_loss_increase})"
            )
    if challenger.brier is not None and champion.brier is not None:
        brier_rise = challenger.brier - champion.brier
        if brier_rise > policy.max_brier_increase:
            shortfalls.append(
                f"Brier score regressed by {brier_rise:.4f} (> max_brier_increase={policy.max_brier_increase})"
            )
    for segment in segments:
        if segment.status == "fail":
            shortfalls.append(
                f"segment {segment.column}={segment.value} ({segment.rows} rows): {label} {segment.champion:.4f} -> "
                f"{segment.challenger:.4f}, worse by {-(segment.difference or 0.0):.4f} "
                f"(> max_segment_drop={policy.max_segment_drop:g})"
            )
    if shortfalls:
        return Decision(Outcome.KEPT_CHAMPION, f"{gate}; " + "; ".join(shortfalls))
    return Decision(
        Outcome.PROMOTED,
        f"{gate}; {label} {champion.score:.4f} -> {score:.4f}, {better} {lift.lift:+.4f} "
        f"({lift.confidence:.0%} interval [{lift.low:+.4f}, {lift.high:+.4f}])",
    )

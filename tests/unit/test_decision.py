from __future__ import annotations

import pytest

from retrain.config import PromotionSpec
from retrain.decision import decide
from retrain.records import LiftInterval, Metrics, Outcome
from retrain.serial import to_jsonable

POLICY = PromotionSpec(min_auc=0.7, min_lift=0.01, max_log_loss_increase=0.02, max_brier_increase=0.01)


def metrics(auc: float, log_loss: float = 0.5, brier: float = 0.15, positives: int = 300) -> Metrics:
    return Metrics(auc=auc, log_loss=log_loss, brier=brier, rows=1000, positives=positives)


def lift(value: float, low: float, high: float) -> LiftInterval:
    return LiftInterval(lift=value, low=low, high=high, confidence=0.95, resamples=1000, share_not_positive=0.0)


@pytest.mark.parametrize(
    ("kwargs", "outcome", "reason"),
    [
        ({"drifted": False, "force": False, "has_champion": True}, Outcome.NO_DRIFT, "retraining skipped"),
        ({"drifted": False, "force": False, "challenger": metrics(0.8)}, Outcome.BOOTSTRAPPED, "first model"),
        ({"drifted": False, "force": False, "challenger": metrics(0.65)}, Outcome.REJECTED, "below the floor"),
        (
            {
                "drifted": True,
                "force": False,
                "challenger": metrics(0.69),
                "champion": metrics(0.6),
                "lift": lift(0.09, 0.05, 0.12),
            },
            Outcome.REJECTED,
            "min_auc=0.7",
        ),
        (
            {
                "drifted": True,
                "force": False,
                "challenger": metrics(0.82),
                "champion": metrics(0.8),
                "lift": lift(0.02, 0.01, 0.03),
            },
            Outcome.PROMOTED,
            "AUC 0.8000 -> 0.8200",
        ),
        (
            {
                "drifted": False,
                "force": True,
                "challenger": metrics(0.82),
                "champion": metrics(0.8),
                "lift": lift(0.02, 0.01, 0.03),
            },
            Outcome.PROMOTED,
            "retraining forced",
        ),
        (
            {
                "drifted": True,
                "force": False,
                "challenger": metrics(0.805),
                "champion": metrics(0.8),
                "lift": lift(0.005, 0.001, 0.009),
            },
            Outcome.KEPT_CHAMPION,
            "below min_lift=0.01",
        ),
        (
            {
                "drifted": True,
                "force": False,
                "challenger": metrics(0.82),
                "champion": metrics(0.8),
                "lift": lift(0.02, -0.004, 0.04),
            },
            Outcome.KEPT_CHAMPION,
            "lift not significant",
        ),
        (
            {
                "drifted": True,
                "force": False,
                "challenger": metrics(0.83, log_loss=0.56),
                "champion": metrics(0.8),
                "lift": lift(0.03, 0.02, 0.04),
            },
            Outcome.KEPT_CHAMPION,
            "log loss regressed by 0.0600",
        ),
        (
            {
                "drifted": True,
                "force": False,
                "challenger": metrics(0.83, brier=0.2),
                "champion": metrics(0.8),
                "lift": lift(0.03, 0.02, 0.04),
            },
            Outcome.KEPT_CHAMPION,
            "Brier score regressed",
        ),
        (
            {
                "drifted": True,
                "force": False,
                "challenger": metrics(0.8),
                "champion": metrics(0.8),
                "lift": lift(0.0, 0.0, 0.0),
            },
            Outcome.KEPT_CHAMPION,
            "tie",
        ),
    ],
    ids=[
        "no-drift",
        "bootstrap",
        "bootstrap-below-floor",
        "below-floor",
        "promoted",
        "forced",
        "small-lift",
        "not-significant",
        "log-loss-guardrail",
        "brier-guardrail",
        "tie",
    ],
)
def test_each_outcome(kwargs: dict, outcome: Outcome, reason: str) -> None:
    decision = decide(policy=POLICY, **kwargs)
    assert decision.outcome is outcome
    assert reason in decision.reason
    assert decision.promotes == (outcome in (Outcome.BOOTSTRAPPED, Outcome.PROMOTED))


def test_significance_can_be_waived() -> None:
    policy = PromotionSpec(min_auc=0.7, min_lift=0.01, require_significant_lift=False)
    decision = decide(
        drifted=True,
        force=False,
        policy=policy,
        challenger=metrics(0.82),
        champion=metrics(0.8),
        lift=lift(0.02, -0.004, 0.04),
    )
    assert decision.outcome is Outcome.PROMOTED


def test_all_shortfalls_are_named_in_the_reason() -> None:
    decision = decide(
        drifted=True,
        force=False,
        policy=POLICY,
        challenger=metrics(0.801, log_loss=0.6),
        champion=metrics(0.8),
        lift=lift(0.001, -0.01, 0.012),
        drifted_features=["age"],
    )
    assert decision.reason.startswith("drift in age; ")
    assert "below min_lift" in decision.reason and "not significant" in decision.reason
    assert "log loss regressed" in decision.reason
    assert to_jsonable(decision) == {"outcome": "KEPT_CHAMPION", "reason": decision.reason, "promotes": False}


@pytest.mark.parametrize(("positives", "champion"), [(19, None), (981, None), (5, metrics(0.7)), (1, None)])
def test_a_holdout_with_too_few_of_a_class_judges_no_model(positives: int, champion: Metrics | None) -> None:
    decision = decide(
        drifted=True,
        force=False,
        policy=POLICY,
        challenger=metrics(0.95, positives=positives),
        champion=champion,
        lift=lift(0.25, 0.2, 0.3),
    )
    assert decision.outcome is (Outcome.REJECTED if champion is None else Outcome.KEPT_CHAMPION)
    counted = "1 positive" if positives == 1 else f"{positives} positives"
    assert f"the holdout has {counted} and {1000 - positives} negatives" in decision.reason
    assert "min_holdout_per_class=20" in decision.reason
    assert decide(drifted=True, force=False, policy=POLICY, challenger=metrics(0.95, positives=20)).promotes


def test_a_first_model_must_beat_chance_significantly() -> None:
    lucky = decide(
        drifted=False, force=False, policy=POLICY, challenger=metrics(0.72), over_chance=lift(0.22, -0.01, 0.4)
    )
    assert lucky.outcome is Outcome.REJECTED
    assert "not significantly better than chance: 95% interval [0.4900, 0.9000] includes 0.5" in lucky.reason
    sure = decide(
        drifted=False, force=False, policy=POLICY, challenger=metrics(0.72), over_chance=lift(0.22, 0.15, 0.3)
    )
    assert sure.outcome is Outcome.BOOTSTRAPPED
    waived = PromotionSpec(min_auc=0.7, require_significant_lift=False)
    assert decide(
        drifted=False, force=False, policy=waived, challenger=metrics(0.72), over_chance=lift(0.22, -0.01, 0.4)
    ).promotes


# Every threshold at equality, on the side the configuration reference says wins. The numbers are exact in
# binary floating point, so equality here is equality in the code.
EXACT = PromotionSpec(min_auc=0.75, min_lift=0.125, max_log_loss_increase=0.25, max_brier_increase=0.125)


def against_champion(challenger: Metrics, champion: Metrics, interval: LiftInterval, policy: PromotionSpec = EXACT):
    return decide(drifted=True, force=False, policy=policy, challenger=challenger, champion=champion, lift=interval)


def test_a_challenger_exactly_at_min_auc_passes_the_floor_and_just_below_is_rejected() -> None:
    first = decide(drifted=False, force=False, policy=EXACT, challenger=metrics(0.75))
    assert first.outcome is Outcome.BOOTSTRAPPED and ">= min_auc=0.75" in first.reason
    below = decide(drifted=False, force=False, policy=EXACT, challenger=metrics(0.7499999))
    assert below.outcome is Outcome.REJECTED and "below the floor min_auc=0.75" in below.reason


def test_a_lift_exactly_at_min_lift_is_enough() -> None:
    assert against_champion(metrics(0.875), metrics(0.75), lift(0.125, 0.0625, 0.25)).outcome is Outcome.PROMOTED
    short = against_champion(metrics(0.875), metrics(0.75), lift(0.1249999, 0.0625, 0.25))
    assert short.outcome is Outcome.KEPT_CHAMPION and "AUC lift +0.1250 is below min_lift=0.125" in short.reason


def test_an_interval_reaching_down_to_exactly_zero_is_not_significant() -> None:
    touching = against_champion(metrics(0.875), metrics(0.75), lift(0.125, 0.0, 0.25))
    assert touching.outcome is Outcome.KEPT_CHAMPION and "includes 0" in touching.reason
    above = against_champion(metrics(0.875), metrics(0.75), lift(0.125, 1e-9, 0.25))
    assert above.outcome is Outcome.PROMOTED
    first = decide(
        drifted=False, force=False, policy=EXACT, challenger=metrics(0.875), over_chance=lift(0.375, 0.0, 0.5)
    )
    assert first.outcome is Outcome.REJECTED and "includes 0.5" in first.reason


def test_guardrails_allow_a_regression_of_exactly_their_limit() -> None:
    allowed = against_champion(
        metrics(0.875, log_loss=0.75, brier=0.25), metrics(0.75, log_loss=0.5, brier=0.125), lift(0.125, 0.0625, 0.25)
    )
    assert allowed.outcome is Outcome.PROMOTED, "log loss +0.25 and Brier +0.125: exactly the limits"
    worse = against_champion(
        metrics(0.875, log_loss=0.75, brier=0.25),
        metrics(0.75, log_loss=0.4999999, brier=0.1249999),
        lift(0.125, 0.0625, 0.25),
    )
    assert worse.outcome is Outcome.KEPT_CHAMPION
    assert "log loss regressed by 0.2500 (> max_log_loss_increase=0.25)" in worse.reason
    assert "Brier score regressed by 0.1250 (> max_brier_increase=0.125)" in worse.reason


def test_a_tie_is_a_lift_within_one_part_in_a_trillion() -> None:
    waived = PromotionSpec(min_auc=0.5, min_lift=0.0, require_significant_lift=False)
    tie = against_champion(metrics(0.75), metrics(0.75), lift(1e-12, -0.1, 0.1), waived)
    assert tie.outcome is Outcome.KEPT_CHAMPION and tie.reason.endswith("tie: both models have AUC 0.7500")
    assert (
        against_champion(metrics(0.75), metrics(0.75), lift(-1e-12, -0.1, 0.1), waived).outcome is Outcome.KEPT_CHAMPION
    )
    beyond = against_champion(metrics(0.75), metrics(0.75), lift(2e-12, -0.1, 0.1), waived)
    assert beyond.outcome is Outcome.PROMOTED, "a lift above the tie tolerance meets min_lift=0"


def test_a_holdout_with_exactly_min_holdout_per_class_of_each_is_judged() -> None:
    judged = decide(drifted=True, force=False, policy=POLICY, challenger=Metrics(0.9, 0.3, 0.1, 40, 20))
    assert judged.outcome is Outcome.BOOTSTRAPPED, "20 positives and 20 negatives"
    for rows, positives in ((40, 21), (39, 20)):
        short = decide(drifted=True, force=False, policy=POLICY, challenger=Metrics(0.9, 0.3, 0.1, rows, positives))
        assert short.outcome is Outcome.REJECTED and "min_holdout_per_class=20" in short.reason


def test_the_gate_names_every_trigger_and_trains_without_a_champion() -> None:
    from retrain.decision import drift_gate

    both = drift_gate(drifted=True, force=True, has_champion=True, drifted_features=["a", "b"], performance_drop="x")
    assert (both.train, both.triggers, both.reason) == (True, ("drift", "estimated_performance"), "drift in a, b and x")
    estimate = drift_gate(drifted=False, force=False, has_champion=True, performance_drop="estimated AUC fell")
    assert (estimate.train, estimate.triggers, estimate.reason) == (
        True,
        ("estimated_performance",),
        "estimated AUC fell",
    )
    forced = drift_gate(drifted=False, force=True, has_champion=True)
    assert (forced.train, forced.triggers, forced.reason) == (True, ("forced",), "no drift, retraining forced")
    first = drift_gate(drifted=False, force=False, has_champion=False)
    assert (first.train, first.triggers, first.reason) == (True, ("no_champion",), "no champion yet")
    quiet = drift_gate(drifted=False, force=False, has_champion=True)
    assert (quiet.train, quiet.triggers) == (False, ()) and quiet.reason == "no feature drifted; retraining skipped"


def test_every_shortfall_is_in_the_reason_in_order() -> None:
    decision = against_champion(
        metrics(0.8125, log_loss=0.75, brier=0.25), metrics(0.8, log_loss=0.25, brier=0.0625), lift(0.0625, -0.5, 0.5)
    )
    assert decision.reason == (
        "drift in ; AUC lift +0.0625 is below min_lift=0.125; lift not significant: 95% interval [-0.5000, +0.5000] "
        "includes 0; log loss regressed by 0.5000 (> max_log_loss_increase=0.25); Brier score regressed by 0.1875 "
        "(> max_brier_increase=0.125)"
    )


def test_a_decision_past_the_gate_needs_its_evidence() -> None:
    with pytest.raises(ValueError, match="^a challenger's metrics are needed past the drift gate$"):
        decide(drifted=True, force=False, policy=POLICY)
    with pytest.raises(ValueError, match="^the lift interval is needed to compare with a champion$"):
        decide(drifted=True, force=False, policy=POLICY, challenger=metrics(0.9), champion=metrics(0.8))


def test_a_drop_of_the_estimate_opens_the_gate_without_drift() -> None:
    decision = decide(
        drifted=False,
        force=False,
        policy=POLICY,
        challenger=metrics(0.82),
        champion=metrics(0.8),
        lift=lift(0.02, 0.01, 0.03),
        performance_drop="estimated AUC 0.7000 is 0.1000 below",
    )
    assert decision.outcome is Outcome.PROMOTED and decision.reason.startswith("estimated AUC 0.7000 is 0.1000 below; ")


def test_a_first_models_reason_gives_its_interval_against_chance() -> None:
    first = decide(
        drifted=False, force=False, policy=POLICY, challenger=metrics(0.8), over_chance=lift(0.3, 0.25, 0.35)
    )
    assert first.reason == "no champion yet; first model, AUC 0.8000 (95% interval [0.7500, 0.8500]) >= min_auc=0.7"


def test_a_holdout_short_of_one_class_says_how_short_in_words() -> None:
    short = decide(drifted=True, force=False, policy=POLICY, challenger=Metrics(0.9, 0.3, 0.1, 21, 20))
    assert short.reason == (
        "no champion yet; the holdout has 20 positives and 1 negative, fewer than "
        "promotion.min_holdout_per_class=20 of a class: too few to judge a model on (a larger "
        "training.holdout_fraction holds out more)"
    )
    two = decide(drifted=True, force=False, policy=POLICY, challenger=Metrics(0.9, 0.3, 0.1, 22, 20))
    assert "20 positives and 2 negatives, fewer than" in two.reason

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

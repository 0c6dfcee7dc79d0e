"""The evidence a decision rests on: metrics, the lift's interval, the estimate before labels, and the
decision itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from retrain.records.outcome import Outcome


@dataclass(frozen=True)
class Metrics:
    auc: float
    log_loss: float
    brier: float
    rows: int
    positives: int


@dataclass(frozen=True)
class LiftInterval:
    """Challenger AUC minus champion AUC (or a first model's AUC minus 1/2), with a percentile bootstrap
    interval. `samples`, the bootstrap lifts, stay in memory for the report's histogram."""

    lift: float
    low: float
    high: float
    confidence: float
    resamples: int
    share_not_positive: float
    samples: object = field(default=None, repr=False, compare=False, metadata={"json": False})


@dataclass(frozen=True)
class EvaluationMetrics:
    """Champion and challenger on the same holdout; `over_chance` judges a first model against chance."""

    challenger: Metrics | None = None
    champion: Metrics | None = None
    lift: LiftInterval | None = None
    over_chance: LiftInterval | None = None


@dataclass(frozen=True)
class PerformanceEstimate:
    """The champion's AUC: estimated on the production month, as validated, and realized on the last
    labeled month by the version that estimated it (so estimate and outcome stay comparable)."""

    JSON_PROPERTIES: ClassVar[tuple[str, ...]] = ("estimated_drop",)

    champion_version: int
    estimated_auc: float
    validated_auc: float
    validated_month: str
    # The calibrated expected AUC on each side; estimated_auc is validated_auc moved by their difference.
    expected_auc_production: float | None = None
    expected_auc_validation: float | None = None
    realized_auc: float | None = None
    realized_month: str | None = None
    realized_version: int | None = None
    production_rows_scored: int | None = None
    calibration: str | None = None

    @property
    def estimated_drop(self) -> float:
        return self.validated_auc - self.estimated_auc


@dataclass(frozen=True)
class Decision:
    """The promotion decision on the evidence, with its reason in words."""

    JSON_PROPERTIES: ClassVar[tuple[str, ...]] = ("promotes",)

    outcome: Outcome
    reason: str

    @property
    def promotes(self) -> bool:
        return self.outcome.promotes


@dataclass(frozen=True)
class Gate:
    """Whether to train a challenger, which triggers fired, and why, in words."""

    train: bool
    triggers: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class RocCurve:
    fpr: tuple[float, ...]
    tpr: tuple[float, ...]
    auc: float


@dataclass(frozen=True)
class Importances:
    """The AUC the challenger loses when each feature is shuffled: mean and spread over a few shuffles."""

    features: tuple[str, ...] = ()
    means: tuple[float, ...] = ()
    stds: tuple[float, ...] = ()


@dataclass(frozen=True)
class Histogram:
    edges: tuple[float, ...]
    counts: tuple[int, ...]


@dataclass(frozen=True)
class EvaluationDetails:
    """What a report draws of an evaluation, kept beside it in the run folder (`evaluation.json`)."""

    roc: dict[str, RocCurve] = field(default_factory=dict)
    importances: Importances = field(default_factory=Importances)
    lift_histogram: Histogram | None = None

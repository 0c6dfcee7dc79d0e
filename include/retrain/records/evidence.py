"""The evidence a decision rests on: metrics, the lift's interval, the estimate before labels, and the
decision itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from retrain.records.outcome import Outcome


@dataclass(frozen=True)
class Metrics:
    """A model on a holdout. `metric` names the promotion metric and `value` holds it; records written
    before models had a choice of metric have neither, and were judged on their AUC.

    `auc` is the ROC AUC of a binary model and the weighted one-vs-rest AUC of a multiclass one; `positives`
    the positive rows of a binary holdout and the rarest class's rows of a multiclass one. A regressor has
    neither, nor a log loss or Brier score, but an RMSE and a MAE."""

    JSON_PROPERTIES: ClassVar[tuple[str, ...]] = ("score",)

    auc: float | None
    log_loss: float | None
    brier: float | None
    rows: int
    positives: int | None
    metric: str = "roc_auc"
    value: float | None = None
    average_precision: float | None = None
    rmse: float | None = None
    mae: float | None = None

    @property
    def score(self) -> float | None:
        """The promotion metric's value."""
        return self.value if self.value is not None else self.auc

    @property
    def label(self) -> str:
        """The promotion metric's name for people: "AUC", "RMSE"."""
        from retrain.tasks import metric_label

        return metric_label(self.metric)

    def shown(self) -> str:
        """The promotion metric and its value for people: "AUC 0.8123"."""
        return f"{self.label} {self.score:.4f}" if self.score is not None else f"{self.label} -"


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
class SegmentCheck:
    """Champion and challenger on the holdout rows of one segment (`column` = `value`): `difference` is
    the challenger's improvement in the promotion metric (negative: worse), `status` pass, fail or skipped
    (too few rows, or a single class, to judge), and `note` why."""

    column: str
    value: str
    rows: int
    status: str
    champion: float | None = None
    challenger: float | None = None
    difference: float | None = None
    note: str = ""


@dataclass(frozen=True)
class EvaluationMetrics:
    """Champion and challenger on the same holdout; `over_chance` judges a first model against chance;
    `segments` compares them segment by segment (promotion.segments)."""

    challenger: Metrics | None = None
    champion: Metrics | None = None
    lift: LiftInterval | None = None
    over_chance: LiftInterval | None = None
    segments: tuple[SegmentCheck, ...] = ()


@dataclass(frozen=True)
class PerformanceEstimate:
    """The champion's quality in `metric`: estimated on the production month, as validated, and realized on
    the last labeled month by the version that estimated it (so estimate and outcome stay comparable).

    A classifier's estimate is its ROC AUC (weighted one-vs-rest for several classes), whatever its
    promotion metric; a regressor's is its promotion metric, RMSE or MAE. Records written before the other
    tasks existed name the fields `estimated_auc`, `validated_auc` and so on."""

    # The names these fields had when every model was a binary classifier, still written for readers of
    # older documents: the same values for an AUC estimate, null for a regressor's error.
    LEGACY_NAMES: ClassVar[dict[str, str]] = {
        "estimated_auc": "estimated_value",
        "validated_auc": "validated_value",
        "expected_auc_production": "expected_production",
        "expected_auc_validation": "expected_validation",
        "realized_auc": "realized_value",
    }
    JSON_PROPERTIES: ClassVar[tuple[str, ...]] = ("estimated_drop", *LEGACY_NAMES)

    champion_version: int
    estimated_value: float = field(metadata={"was": "estimated_auc"})
    validated_value: float = field(metadata={"was": "validated_auc"})
    validated_month: str
    # The expected value on each side; estimated_value is validated_value moved by their difference.
    expected_production: float | None = field(default=None, metadata={"was": "expected_auc_production"})
    expected_validation: float | None = field(default=None, metadata={"was": "expected_auc_validation"})
    realized_value: float | None = field(default=None, metadata={"was": "realized_auc"})
    realized_month: str | None = None
    realized_version: int | None = None
    production_rows_scored: int | None = None
    calibration: str | None = None
    metric: str = "roc_auc"

    def __getattr__(self, name: str) -> float | None:
        legacy = type(self).LEGACY_NAMES.get(name)
        if legacy is None:
            raise AttributeError(name)
        return getattr(self, legacy) if self.metric.startswith("roc_auc") else None

    @property
    def estimated_drop(self) -> float:
        """How much worse the champion is estimated to be than validated, in the metric's units (a rise
        of an error metric is a drop in quality)."""
        from retrain.tasks import METRICS

        return -METRICS[self.metric].improvement(self.estimated_value, self.validated_value)

    @property
    def label(self) -> str:
        from retrain.tasks import metric_label

        return metric_label(self.metric)


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
class ConfusionMatrix:
    """Holdout rows by true class (rows) and predicted class (columns): a multiclass model's mistakes."""

    classes: tuple[str, ...]
    counts: tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class Residuals:
    """A regressor on its holdout: a seeded sample of (actual, predicted) points and every residual's
    histogram (predicted minus actual)."""

    actual: tuple[float, ...]
    predicted: tuple[float, ...]
    histogram: Histogram


@dataclass(frozen=True)
class EvaluationDetails:
    """What a report draws of an evaluation, kept beside it in the run folder (`evaluation.json`): ROC
    curves of a binary model (or of each class against the rest, "challenger: <class>", of a multiclass
    one), confusion matrices of a multiclass model, residuals of a regressor."""

    roc: dict[str, RocCurve] = field(default_factory=dict)
    importances: Importances = field(default_factory=Importances)
    lift_histogram: Histogram | None = None
    metric: str = "roc_auc"
    confusion: dict[str, ConfusionMatrix] = field(default_factory=dict)
    residuals: dict[str, Residuals] = field(default_factory=dict)

"""The project's one configuration format: a TOML file loaded into a frozen dataclass tree.

Every key is checked once, at load time, and an error names the file and the key.
Relative dataset and registry paths are resolved against the config file's folder.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from retrain.errors import ConfigError
from retrain.months import DEFAULT_PARTITION, MONTH_PATTERN, PartitionError, Partitioning
from retrain.tasks import METRICS, TASKS, Metric, metric_for

if TYPE_CHECKING:
    from retrain.records import Thresholds

ESTIMATORS = ("hist_gradient_boosting", "gradient_boosting")
FACTORY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*$")
DEFAULT_MIN_AUC = 0.6
CORRECTIONS = ("bonferroni", "bh")
KS_METHODS = ("auto", "exact", "asymp")
REFERENCES = ("validated", "training", "fixed")
IDENTIFIER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _fraction(key: str, value: float, *, allow_zero: bool = False, allow_one: bool = False) -> None:
    low_ok = value >= 0 if allow_zero else value > 0
    high_ok = value <= 1 if allow_one else value < 1
    if not (low_ok and high_ok):
        low = "[0" if allow_zero else "(0"
        high = "1]" if allow_one else "1)"
        raise ConfigError(f"{key} must be in {low}, {high}, got {value}")


def _at_least(key: str, value: int, low: int) -> None:
    if value < low:
        raise ConfigError(f"{key} must be >= {low}, got {value}")


def _non_negative(key: str, value: float) -> None:
    if value < 0:
        raise ConfigError(f"{key} must be >= 0, got {value}")


def _one_of(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{key} must be one of {', '.join(choices)}, got {value!r}")


@dataclass(frozen=True)
class ModelSpec:
    SECTION: ClassVar[str] = "model"
    name: str
    target: str
    numeric_features: tuple[str, ...] = ()
    categorical_features: tuple[str, ...] = ()
    timestamp: str | None = None
    positive_label: str | None = None
    task: str = "binary"

    def __post_init__(self) -> None:
        _one_of("model.task", self.task, TASKS)
        if self.positive_label is not None and self.task != "binary":
            raise ConfigError(f"model.positive_label is for binary models; model.task is {self.task}")
        if not IDENTIFIER.match(self.name):
            raise ConfigError(f"model.name must be letters, digits, '_', '.', '-', got {self.name!r}")
        if not self.features:
            raise ConfigError("model: name at least one of numeric_features or categorical_features")
        if self.positive_label is not None and self.positive_label != self.positive_label.strip():
            raise ConfigError(
                f"model.positive_label {self.positive_label!r} has spaces around it; labels are compared trimmed"
            )
        seen: set[str] = set()
        for column in (*self.features, self.target, *([self.timestamp] if self.timestamp else [])):
            if column in seen:
                raise ConfigError(f"model: column {column!r} is listed twice")
            seen.add(column)

    @property
    def features(self) -> tuple[str, ...]:
        return (*self.numeric_features, *self.categorical_features)


@dataclass(frozen=True)
class DataSpec:
    SECTION: ClassVar[str] = "data"
    production: str
    labeled: str
    partition: str = DEFAULT_PARTITION
    reference_month: str | None = None
    max_null_rate: float = 0.5
    # A feature that is mostly missing by nature (a date of last complaint) gets its own limit, so that the
    # limit for the others stays tight; not hashed, as a dict is not hashable.
    max_null_rate_by_feature: dict[str, float] = field(default_factory=dict, hash=False)
    label_delay_months: int = 0
    success_marker: str | None = None
    wait_timeout_minutes: float = 4320.0
    wait_poke_seconds: float = 600.0

    def __post_init__(self) -> None:
        try:
            Partitioning(self.partition)
        except PartitionError as error:
            raise ConfigError(f"data.partition: {error}") from None
        if self.reference_month is not None and not MONTH_PATTERN.match(self.reference_month):
            raise ConfigError(f"data.reference_month must be YYYY-MM, got {self.reference_month!r}")
        _fraction("data.max_null_rate", self.max_null_rate, allow_one=True)
        for column, limit in self.max_null_rate_by_feature.items():
            _fraction(f"data.max_null_rate_by_feature.{column}", limit, allow_one=True)
        if self.label_delay_months < 0:
            raise ConfigError(f"data.label_delay_months must be >= 0, got {self.label_delay_months}")
        if self.success_marker is not None and ("/" in self.success_marker or self.success_marker in (".", "..")):
            raise ConfigError(f"data.success_marker must be a file name, got {self.success_marker!r}")
        if self.wait_timeout_minutes <= 0 or self.wait_poke_seconds <= 0:
            raise ConfigError("data.wait_timeout_minutes and data.wait_poke_seconds must be > 0")

    @property
    def partitioning(self) -> Partitioning:
        return Partitioning(self.partition)


@dataclass(frozen=True)
class RegistrySpec:
    SECTION: ClassVar[str] = "registry"
    root: str


SQL_PREFIX = "sql:"
SQL_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class DatabaseSpec:
    """Where `sql:` datasets live: a PostgreSQL database, read as Arrow through ADBC (retrain.snapshots.sql).
    The password never goes in the file: an Airflow connection holds it, or libpq's PGPASSWORD/.pgpass."""

    SECTION: ClassVar[str] = "database"
    conn_id: str | None = None
    url: str | None = None
    month_column: str = "month"
    updated_column: str | None = None
    readiness_query: str | None = None

    def __post_init__(self) -> None:
        if self.url is not None:
            if not self.url.startswith(("postgresql://", "postgres://")):
                raise ConfigError(f"database.url must be a postgresql:// URL, got {self.url.split('://')[0]}://...")
            if re.match(r"^postgres(ql)?://[^/@]*:[^/@]*@", self.url):
                raise ConfigError(
                    "database.url holds a password: keep it out of the file (an Airflow connection, "
                    "PGPASSWORD or ~/.pgpass)"
                )
        for key in ("month_column", "updated_column"):
            value = getattr(self, key)
            if value is not None and not SQL_IDENTIFIER.match(value):
                raise ConfigError(f"database.{key} must be a plain column name, got {value!r}")

    @property
    def configured(self) -> bool:
        return bool(self.url or self.conn_id)


@dataclass(frozen=True)
class StorageSpec:
    """How to reach S3. Credentials never come from the file: from an Airflow connection (`aws_conn_id`,
    the Amazon provider's format), else from boto3's standard chain."""

    SECTION: ClassVar[str] = "storage"
    aws_conn_id: str | None = None
    endpoint_url: str | None = None
    region: str | None = None
    max_attempts: int = 5
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    # The [database] section, for datasets that are `sql:` sources: set at load, never a key of [storage].
    database: DatabaseSpec | None = field(default=None, metadata={"internal": True})

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigError(f"storage.max_attempts must be >= 1, got {self.max_attempts}")
        if self.connect_timeout <= 0 or self.read_timeout <= 0:
            raise ConfigError("storage.connect_timeout and storage.read_timeout must be > 0")


@dataclass(frozen=True)
class DriftSpec:
    SECTION: ClassVar[str] = "drift"
    alpha: float = 0.05
    correction: str = "bonferroni"
    ks_method: str = "auto"
    min_ks_statistic: float = 0.1
    min_psi: float = 0.1
    max_null_rate_increase: float = 0.1
    max_null_rate_decrease: float = 0.1
    dataset_drift_share: float = 0.0
    reference: str = "validated"
    max_estimated_auc_drop: float | None = None
    max_estimated_error_rise: float | None = None
    # A sample (the month, or the reference) with more rows than this is tested batch by batch.
    stream_above_rows: int = 20_000_000
    batch_rows: int = 1_000_000
    estimate_sample_rows: int = 50_000

    def __post_init__(self) -> None:
        _at_least("drift.stream_above_rows", self.stream_above_rows, 0)
        _at_least("drift.batch_rows", self.batch_rows, 1_000)
        _at_least("drift.estimate_sample_rows", self.estimate_sample_rows, 1_000)
        if self.max_estimated_error_rise is not None:
            _non_negative("drift.max_estimated_error_rise", self.max_estimated_error_rise)
        _one_of("drift.reference", self.reference, REFERENCES)
        if self.max_estimated_auc_drop is not None:
            _fraction("drift.max_estimated_auc_drop", self.max_estimated_auc_drop, allow_zero=True)
        _fraction("drift.alpha", self.alpha)
        _one_of("drift.correction", self.correction, CORRECTIONS)
        _one_of("drift.ks_method", self.ks_method, KS_METHODS)
        _fraction("drift.min_ks_statistic", self.min_ks_statistic, allow_zero=True, allow_one=True)
        _non_negative("drift.min_psi", self.min_psi)
        _fraction("drift.max_null_rate_increase", self.max_null_rate_increase, allow_zero=True, allow_one=True)
        _fraction("drift.max_null_rate_decrease", self.max_null_rate_decrease, allow_zero=True, allow_one=True)
        _fraction("drift.dataset_drift_share", self.dataset_drift_share, allow_zero=True, allow_one=True)


@dataclass(frozen=True)
class TrainingSpec:
    SECTION: ClassVar[str] = "training"
    estimator: str = "hist_gradient_boosting"
    seed: int = 42
    window_months: int = 3
    holdout_fraction: float = 0.3
    # Training on more rows than this takes a stratified sample of this many (0: every row of the window).
    max_rows: int | None = 2_000_000
    # Keyword arguments of an estimator factory (`package.module:factory`); not hashed, as a dict is not.
    params: dict[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if ":" not in self.estimator:
            _one_of("training.estimator", self.estimator, ESTIMATORS)
            if self.params:
                raise ConfigError(
                    f"training.params are passed to an estimator factory; training.estimator "
                    f"{self.estimator!r} is a built-in one (write package.module:factory for your own)"
                )
        elif not FACTORY.match(self.estimator):
            raise ConfigError(
                f"training.estimator must be a built-in name or package.module:factory, got {self.estimator!r}"
            )
        if self.max_rows is not None and (self.max_rows < 0 or 0 < self.max_rows < 100):
            raise ConfigError(f"training.max_rows must be 0 (every row) or >= 100, got {self.max_rows}")
        if self.window_months < 1:
            raise ConfigError(f"training.window_months must be >= 1, got {self.window_months}")
        _fraction("training.holdout_fraction", self.holdout_fraction)


@dataclass(frozen=True)
class PromotionSpec:
    SECTION: ClassVar[str] = "promotion"
    # The metric and its floor; a config without them judges by the task's default metric (ROC AUC for a
    # binary model, whose floor is then min_auc, 0.6 unless given). Settled when the config loads.
    metric: str | None = None
    floor: float | None = None
    min_auc: float | None = None
    min_lift: float = 0.005
    require_significant_lift: bool = True
    confidence: float = 0.95
    bootstrap_resamples: int = 1000
    max_log_loss_increase: float = 0.02
    max_brier_increase: float = 0.01
    min_holdout_per_class: int = 20
    # Segment guardrails: in each segment (a value of one of these columns) with enough rows, the
    # challenger may be worse than the champion by at most max_segment_drop, in the metric's units.
    segments: tuple[str, ...] = ()
    max_segment_drop: float | None = None
    min_segment_rows: int = 200

    def __post_init__(self) -> None:
        if self.metric is not None and self.metric not in METRICS:
            raise ConfigError(f"promotion.metric must be one of {', '.join(METRICS)}, got {self.metric!r}")
        if self.min_auc is not None:
            _fraction("promotion.min_auc", self.min_auc, allow_zero=True, allow_one=True)
        if self.min_holdout_per_class < 1:
            raise ConfigError(f"promotion.min_holdout_per_class must be >= 1, got {self.min_holdout_per_class}")
        _non_negative("promotion.min_lift", self.min_lift)
        _fraction("promotion.confidence", self.confidence)
        if self.bootstrap_resamples < 100:
            raise ConfigError(f"promotion.bootstrap_resamples must be >= 100, got {self.bootstrap_resamples}")
        _non_negative("promotion.max_log_loss_increase", self.max_log_loss_increase)
        _non_negative("promotion.max_brier_increase", self.max_brier_increase)
        if self.segments and self.max_segment_drop is None:
            raise ConfigError(
                "promotion.segments needs promotion.max_segment_drop: how much worse, in the metric's units, the "
                "challenger may be in a segment"
            )
        if self.max_segment_drop is not None:
            _non_negative("promotion.max_segment_drop", self.max_segment_drop)
        if self.min_segment_rows < 1:
            raise ConfigError(f"promotion.min_segment_rows must be >= 1, got {self.min_segment_rows}")

    @property
    def judged_by(self) -> Metric:
        """The promotion metric (a spec built in code, not loaded, judges by ROC AUC)."""
        return METRICS[self.metric or "roc_auc"]

    @property
    def worst_allowed(self) -> float | None:
        """The floor in force: the worst value of the metric a model may be promoted with, if any."""
        if self.floor is not None:
            return self.floor
        if self.min_auc is not None:
            return self.min_auc
        return DEFAULT_MIN_AUC if self.judged_by.name == "roc_auc" else None

    @property
    def floor_name(self) -> str:
        """The key the floor in force was given as, in promotion: `floor`, or `min_auc` (or its default)."""
        return "floor" if self.floor is not None else "min_auc"


CRON_FIELD = re.compile(r"^[0-9*/,\-A-Za-z?LW#]+$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


@dataclass(frozen=True)
class NotifySpec:
    """Who hears of a run, through Airflow's notifiers: e-mail (SMTP provider) and Slack (incoming
    webhook). Off until a recipient or a webhook connection is named; failures are always sent."""

    SECTION: ClassVar[str] = "notify"
    outcomes: tuple[str, ...] = ("PROMOTED", "REJECTED", "CONFLICT", "SUPERSEDED")
    email_to: tuple[str, ...] = ()
    email_from: str | None = None
    email_conn_id: str = "smtp_default"
    slack_webhook_conn_id: str | None = None
    # A hung mail server or webhook must cost a run seconds: each channel gets one try of this long.
    timeout_seconds: float = 10.0

    def __post_init__(self) -> None:
        from retrain.records import Outcome  # records are built from these specs: imported once both exist

        known = Outcome.of_cycles()
        unknown = [o for o in self.outcomes if o not in known]
        if unknown:
            raise ConfigError(f"notify.outcomes: unknown outcome {unknown[0]!r} (known: {', '.join(known)})")
        if not 0 < self.timeout_seconds <= 300:
            raise ConfigError(f"notify.timeout_seconds must be > 0 and at most 300, got {self.timeout_seconds}")
        for address in (*self.email_to, *([self.email_from] if self.email_from else [])):
            if not EMAIL.match(address):
                raise ConfigError(f"notify: {address!r} is not an e-mail address")

    @property
    def enabled(self) -> bool:
        return bool(self.email_to or self.slack_webhook_conn_id)


@dataclass(frozen=True)
class MlflowSpec:
    """The MLflow Model Registry the champion is mirrored to (off until tracking_uri is set)."""

    SECTION: ClassVar[str] = "mlflow"
    tracking_uri: str | None = None
    registered_model: str | None = None
    alias: str = "champion"
    experiment: str | None = None
    timeout_seconds: float = 10.0
    max_retries: int = 2

    def __post_init__(self) -> None:
        if self.timeout_seconds <= 0:
            raise ConfigError(f"mlflow.timeout_seconds must be > 0, got {self.timeout_seconds}")
        if self.max_retries < 0:
            raise ConfigError(f"mlflow.max_retries must be >= 0, got {self.max_retries}")


APPROVABLE = ("PROMOTED", "BOOTSTRAPPED")


@dataclass(frozen=True)
class ApprovalSpec:
    """A named person signs off before the champion changes (off unless `required`)."""

    SECTION: ClassVar[str] = "approval"
    required: bool = False
    # Airflow user ids who may answer; empty: anyone with access to the DAG.
    approvers: tuple[str, ...] = ()
    timeout_hours: float = 72.0
    outcomes: tuple[str, ...] = ("PROMOTED",)

    def __post_init__(self) -> None:
        if self.timeout_hours <= 0:
            raise ConfigError(f"approval.timeout_hours must be > 0, got {self.timeout_hours}")
        wrong = [o for o in self.outcomes if o not in APPROVABLE]
        if wrong:
            raise ConfigError(f"approval.outcomes: {wrong[0]!r} is not a promotion (one of {', '.join(APPROVABLE)})")

    def needed_for(self, outcome: str) -> bool:
        return self.required and outcome in self.outcomes


@dataclass(frozen=True)
class AirflowSpec:
    """How the model's DAG is scheduled and labelled in Airflow."""

    SECTION: ClassVar[str] = "airflow"
    schedule: str = "0 0 1 * *"
    tags: tuple[str, ...] = ()
    owners: tuple[str, ...] = ("ml-platform",)
    # The DAG's start date. Airflow gives a run whose logical date is earlier no task at all (the run still
    # "succeeds"), so a backfill over history needs it early; with catchup off it costs nothing.
    start_month: str = "2000-01"

    def __post_init__(self) -> None:
        fields_ = self.schedule.split()
        if len(fields_) != 5 or not all(CRON_FIELD.match(f) for f in fields_):
            raise ConfigError(f"airflow.schedule must be a 5-field cron expression, got {self.schedule!r}")
        if not MONTH_PATTERN.match(self.start_month):
            raise ConfigError(f"airflow.start_month must be YYYY-MM, got {self.start_month!r}")
        if not self.owners:
            raise ConfigError("airflow.owners must name at least one owner")


@dataclass(frozen=True)
class Config:
    model: ModelSpec
    data: DataSpec
    registry: RegistrySpec
    storage: StorageSpec = field(default_factory=StorageSpec)
    database: DatabaseSpec = field(default_factory=DatabaseSpec)
    drift: DriftSpec = field(default_factory=DriftSpec)
    training: TrainingSpec = field(default_factory=TrainingSpec)
    promotion: PromotionSpec = field(default_factory=PromotionSpec)
    airflow: AirflowSpec = field(default_factory=AirflowSpec)
    notify: NotifySpec = field(default_factory=NotifySpec)
    mlflow: MlflowSpec = field(default_factory=MlflowSpec)
    approval: ApprovalSpec = field(default_factory=ApprovalSpec)
    source: str = "<memory>"

    def with_overrides(self, **overrides: Any) -> Config:
        """Apply per-run threshold overrides given as `section.key` or a bare unique key name."""
        sections: dict[str, dict[str, Any]] = {}
        for key, value in overrides.items():
            if value is None:
                continue
            section_name, _, name = key.rpartition(".")
            section_name = section_name or _section_owning(name)
            sections.setdefault(section_name, {})[name] = value
        replaced = {}
        for section_name, values in sections.items():
            section = getattr(self, section_name)
            replaced[section_name] = _build(type(section), {**dataclasses.asdict(section), **values}, "override")
        return dataclasses.replace(self, **replaced)

    def thresholds(self) -> Thresholds:
        """The thresholds in force, as recorded in every version's metadata and ledger record."""
        from retrain.records import Thresholds

        return Thresholds(drift=self.drift, promotion=self.promotion, training=self.training)


SECTIONS: dict[str, type] = {
    spec.SECTION: spec
    for spec in (
        ModelSpec,
        DataSpec,
        RegistrySpec,
        StorageSpec,
        DatabaseSpec,
        DriftSpec,
        TrainingSpec,
        PromotionSpec,
        AirflowSpec,
        NotifySpec,
        MlflowSpec,
        ApprovalSpec,
    )
}
REQUIRED_SECTIONS = ("model", "data", "registry")


def _section_owning(name: str) -> str:
    owners = [s for s, spec in SECTIONS.items() if name in {f.name for f in dataclasses.fields(spec)}]
    if len(owners) != 1:
        raise ConfigError(f"unknown override {name!r}: write it as section.key")
    return owners[0]


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check one TOML value against a field's type hint; ints are accepted where floats are expected."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        (inner,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return _coerce(value, inner, key)
    if origin is dict:
        _, item = typing.get_args(hint)
        if not isinstance(value, dict):
            kind = "name = value" if item is Any else "column = number"
            raise ConfigError(f"{key} must be a table of {kind}, got {value!r}")
        return {str(column): _coerce(number, item, f"{key}.{column}") for column, number in value.items()}
    if origin is tuple:
        if not isinstance(value, list | tuple) or not all(isinstance(item, str) and item for item in value):
            raise ConfigError(f"{key} must be a list of column names, got {value!r}")
        return tuple(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if isinstance(value, bool | int | float):
            # A label or a month written as a bare TOML number or boolean: say how to write it as text.
            shown = str(value).lower() if isinstance(value, bool) else str(value)
            raise ConfigError(f'{key} must be a non-empty string, got {value!r} (write "{shown}")')
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{key} must be a non-empty string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {hint!r} for {key}")


def _build(spec: type, values: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(spec)
    known = {f.name: f for f in dataclasses.fields(spec) if not f.metadata.get("internal")}
    section = spec.SECTION
    for key in values:
        if key not in known:
            raise ConfigError(f"{where}: unknown key {section}.{key} (known: {', '.join(sorted(known))})")
    kwargs = {}
    try:
        for name, spec_field in known.items():
            if name in values:
                kwargs[name] = _coerce(values[name], hints[name], f"{section}.{name}")
            elif spec_field.default is dataclasses.MISSING and spec_field.default_factory is dataclasses.MISSING:
                raise ConfigError(f"missing required key {section}.{name}")
        return spec(**kwargs)
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None


def _settle_task(
    model: ModelSpec, promotion: PromotionSpec, drift: DriftSpec, source: str
) -> tuple[PromotionSpec, DriftSpec]:
    """The metric and floor that fit the model's task, and the estimate triggers that do."""
    metric = metric_for(model.task, promotion.metric)
    if model.task not in metric.tasks:
        fitting = ", ".join(name for name, spec in METRICS.items() if model.task in spec.tasks)
        raise ConfigError(
            f"{source}: promotion.metric {metric.name!r} does not fit model.task {model.task!r} (use one of {fitting})"
        )
    floor, min_auc = promotion.floor, promotion.min_auc
    if min_auc is not None:
        if not metric.is_auc:
            raise ConfigError(
                f"{source}: promotion.min_auc is a floor on ROC AUC; promotion.metric is {metric.name}, "
                "so give its floor as promotion.floor"
            )
        if floor is not None and floor != min_auc:
            raise ConfigError(f"{source}: promotion.floor and promotion.min_auc disagree; keep one")
        floor = None
    elif floor is None and metric.name == "roc_auc":
        min_auc = DEFAULT_MIN_AUC
    if floor is not None and metric.is_auc:
        _fraction("promotion.floor", floor, allow_zero=True, allow_one=True)
    classifier = model.task != "regression"
    if drift.max_estimated_auc_drop is not None and not classifier:
        raise ConfigError(
            f"{source}: drift.max_estimated_auc_drop is for classifiers; a regression model's trigger is "
            "drift.max_estimated_error_rise"
        )
    if drift.max_estimated_error_rise is not None and classifier:
        raise ConfigError(
            f"{source}: drift.max_estimated_error_rise is for regression models; a classifier's trigger is "
            "drift.max_estimated_auc_drop"
        )
    return dataclasses.replace(promotion, metric=metric.name, floor=floor, min_auc=min_auc), drift


def _settle_estimator(model: ModelSpec, training: TrainingSpec, source: str) -> TrainingSpec:
    """An estimator factory is imported and called once when the config loads, so that a wrong path or a
    factory that returns the wrong kind of object fails here, naming the key, not in a month's training."""
    if ":" not in training.estimator:
        return training
    from retrain.training import check_factory

    try:
        check_factory(training.estimator, training.params, model.task)
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}") from None
    return training


def _resolve_location(location: str, base: Path) -> str:
    if "://" in location or location.startswith(SQL_PREFIX):
        return location
    path = Path(location).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def parse_config(document: dict[str, Any], *, source: str = "<memory>", base: Path | None = None) -> Config:
    """Build a Config from a parsed TOML document; `base` anchors relative paths."""
    for section in document:
        if section not in SECTIONS:
            raise ConfigError(f"{source}: unknown section [{section}] (known: {', '.join(SECTIONS)})")
        if not isinstance(document[section], dict):
            raise ConfigError(f"{source}: [{section}] must be a table")
    for section in REQUIRED_SECTIONS:
        if section not in document:
            raise ConfigError(f"{source}: missing section [{section}]")
    parts = {name: _build(spec, document.get(name, {}), source) for name, spec in SECTIONS.items()}
    if "mlflow" in document and parts["mlflow"].tracking_uri is None:
        raise ConfigError(f"{source}: [mlflow] needs mlflow.tracking_uri (leave the section out to mirror nothing)")
    model = parts["model"]
    for column in parts["promotion"].segments:
        role = {model.target: "target", model.timestamp: "timestamp"}.get(column)
        role = role or ("numeric feature" if column in model.numeric_features else None)
        if role:
            raise ConfigError(
                f"{source}: promotion.segments names {column!r}, the model's {role}; segments are categorical "
                "features or other columns of the labeled data"
            )
    unknown = sorted(set(parts["data"].max_null_rate_by_feature) - set(parts["model"].features))
    if unknown:
        raise ConfigError(
            f"{source}: data.max_null_rate_by_feature names {unknown[0]!r}, which is not a feature "
            f"(features: {', '.join(parts['model'].features)})"
        )
    parts["promotion"], parts["drift"] = _settle_task(parts["model"], parts["promotion"], parts["drift"], source)
    parts["training"] = _settle_estimator(parts["model"], parts["training"], source)
    base = base or Path.cwd()
    parts["data"] = dataclasses.replace(
        parts["data"],
        production=_resolve_location(parts["data"].production, base),
        labeled=_resolve_location(parts["data"].labeled, base),
    )
    parts["registry"] = RegistrySpec(root=_resolve_location(parts["registry"].root, base))
    sql_roles = [role for role in ("production", "labeled") if getattr(parts["data"], role).startswith(SQL_PREFIX)]
    if sql_roles and not parts["database"].configured:
        raise ConfigError(
            f"{source}: data.{sql_roles[0]} is a SQL source; [database] needs conn_id (an Airflow connection) "
            "or url (postgresql://user@host:port/db)"
        )
    if parts["registry"].root.startswith(SQL_PREFIX):
        raise ConfigError(f"{source}: registry.root must be a folder or s3:// prefix, not a SQL source")
    parts["storage"] = dataclasses.replace(parts["storage"], database=parts["database"])
    return Config(**parts, source=source)


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML config file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read config: {error.strerror}") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: invalid TOML: {error}") from None
    return parse_config(document, source=str(path), base=path.resolve().parent)

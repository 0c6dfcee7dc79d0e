"""A run's Params, the month it processes, and the check that its conf holds nothing else."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from airflow.sdk import Context, Param

if TYPE_CHECKING:
    from retrain.cycle import Cycle

MONTH_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])$"

PARAMS = {
    "month": Param(
        None,
        type=["null", "string"],
        pattern=MONTH_PATTERN,
        title="Month (YYYY-MM)",
        description="Month of data to process. Empty: the run's data interval, else the last complete month.",
    ),
    "force_retrain": Param(
        False,
        type="boolean",
        title="Force retraining",
        description="Train and evaluate a challenger even when no feature drifted.",
    ),
    "dry_run": Param(
        False,
        type="boolean",
        title="Dry run",
        description="Evaluate and record the decision, but never promote.",
    ),
    "alpha": Param(
        None,
        type=["null", "number"],
        exclusiveMinimum=0,
        exclusiveMaximum=1,
        title="Drift alpha",
        description="Override the drift significance level for this run (default from the config).",
    ),
    "min_lift": Param(
        None,
        type=["null", "number"],
        minimum=0,
        title="Minimum lift",
        description=(
            "Override the lift a challenger needs over the champion, in the model's promotion metric "
            "(AUC, RMSE, ...; positive is better): default from the config."
        ),
    ),
}

# Which config key each threshold Param overrides.
OVERRIDES = {"alpha": "drift.alpha", "min_lift": "promotion.min_lift"}


def run_month(context: Context) -> str:
    """The month this run processes (see `month_of`)."""
    dag_run = context.get("dag_run")
    return month_of(
        context["params"].get("month"),
        context.get("data_interval_start"),
        context.get("data_interval_end"),
        getattr(dag_run, "run_after", None),
    )


def month_of(month: str | None, start: datetime | None, end: datetime | None, run_after: datetime | None) -> str:
    """The month param, else the last month complete when the data interval ended (the interval's own month
    on a monthly schedule; on a weekly or quarterly one, never a month still in progress), else the last
    month complete when the run was created."""
    from retrain.months import previous_complete_month

    if month:
        return month
    if start is not None and end is not None and end > start:
        return previous_complete_month(end)
    return previous_complete_month(run_after or datetime.now(UTC))


def check_conf(context: Context) -> None:
    """A typo in a run's conf (`min_lft`) must not be silently ignored."""
    from retrain.errors import ConfigError

    conf = getattr(context.get("dag_run"), "conf", None) or {}
    unknown = sorted(set(conf) - set(PARAMS))
    if unknown:
        raise ConfigError(
            f"unknown key{'s' if len(unknown) > 1 else ''} in the run's conf: {', '.join(unknown)}; "
            f"accepted params: {', '.join(PARAMS)}"
        )


def open_cycle(context: Context, config_path: str) -> Cycle:
    """The config with this run's overrides, the run's identity, and the model's registry."""
    from retrain.config import load_config
    from retrain.cycle import Cycle
    from retrain.records import Run

    check_conf(context)
    params = context["params"]
    config = load_config(config_path).with_overrides(**{key: params.get(name) for name, key in OVERRIDES.items()})
    run = Run(
        run_id=context["dag_run"].run_id,
        month=run_month(context),
        force=bool(params.get("force_retrain")),
        dry_run=bool(params.get("dry_run")),
    )
    return Cycle.open(config, run)

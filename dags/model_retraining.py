"""
# Model retraining

Keeps the production classifier fresh. For one month of data it:

1. **pull_snapshots**: resolves and validates the month's snapshots (drift reference, production, labeled
   training window); bad data stops the run here with one message naming the file, month and column.
2. **check_drift**: tests every feature (KS for numeric, chi-square for categorical, corrected for the
   number of features, with effect-size floors). No drift and a champion already in place: the run is
   recorded as `NO_DRIFT` and ends. Drift, a forced retrain, or no champion yet: on to training.
3. **train_challenger**: fits the challenger on the labeled window, minus the month's holdout.
4. **evaluate**: scores champion and challenger on the same holdout (AUC, log loss, Brier, a paired
   bootstrap interval of the AUC lift) and decides: `BOOTSTRAPPED`, `PROMOTED`, `KEPT_CHAMPION`, `REJECTED`.
5. **promote** (publishes an immutable version and moves the champion pointer by compare-and-swap, then
   emits the `retrain_champion` asset) or **keep_champion**.
6. **record_decision**: appends the run's ledger record, whatever the path.

## Which month

- Scheduled runs process the month of their data interval (the whole previous month).
- Manual runs take the `month` param; without it, the data interval if the run has one, else the last
  complete month.
- Backfills: `airflow backfill create --dag-id model_retraining --from-date 2025-02-01 --to-date 2025-07-01`
  creates one run per month; runs go oldest first (`max_active_runs=1`). Re-running a month reuses its
  run id, so nothing is written twice, and a run for an older month never replaces a newer champion.

## Params

`month` (YYYY-MM), `force_retrain`, `dry_run` (decide and record, never promote), and threshold
overrides `alpha` (drift significance) and `min_lift` (AUC lift a challenger needs).

Configuration: the TOML file named by `RETRAIN_CONFIG` (default `config/retrain.toml`). Reports and the
ledger live in the registry: `retrain registry ledger --config <file>`.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import (
    Asset,
    CronDataIntervalTimetable,
    ExceptionRetryPolicy,
    Param,
    RetryAction,
    RetryRule,
    dag,
    get_current_context,
    task,
)

log = logging.getLogger(__name__)

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "config" / "retrain.toml"
MONTH_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])$"
CHAMPION = Asset(name="retrain_champion", uri="x-retrain://champion", group="model")

# Storage outages are worth waiting out; bad data or config is not: retrying cannot fix it.
RETRY_POLICY = ExceptionRetryPolicy(
    rules=[
        RetryRule(
            exception="retrain.errors.StorageError",
            action=RetryAction.RETRY,
            reason="storage unreachable; retrying with backoff",
        ),
        RetryRule(
            exception="retrain.errors.RetrainError",
            action=RetryAction.FAIL,
            reason="bad input or configuration; fix it and clear the task",
        ),
    ],
)


def _run_month(context: dict[str, Any]) -> str:
    """The month this run processes: the param, else the data interval, else the last complete month."""
    from retrain.months import month_of, previous_complete_month

    if context["params"].get("month"):
        return context["params"]["month"]
    start, end = context.get("data_interval_start"), context.get("data_interval_end")
    if start is not None and end is not None and end > start:
        return month_of(start)
    dag_run = context.get("dag_run")
    moment = getattr(dag_run, "run_after", None) or datetime.now(UTC)
    return previous_complete_month(moment)


def _engine(context: dict[str, Any]) -> tuple[Any, Any]:
    """The config with this run's overrides, and the run's identity."""
    from retrain.config import load_config
    from retrain.pipeline import Run

    params = context["params"]
    config = load_config(os.environ.get("RETRAIN_CONFIG", str(DEFAULT_CONFIG))).with_overrides(
        **{"drift.alpha": params.get("alpha"), "promotion.min_lift": params.get("min_lift")}
    )
    run = Run(
        run_id=context["dag_run"].run_id,
        month=_run_month(context),
        force=bool(params.get("force_retrain")),
        dry_run=bool(params.get("dry_run")),
    )
    return config, run


def _pulled(context: dict[str, Any], task_id: str, key: str = "return_value") -> Any:
    return context["ti"].xcom_pull(task_ids=task_id, key=key)


def log_failure(context: dict[str, Any]) -> None:
    """One paragraph an on-call engineer can act on."""
    try:
        month = _run_month(context)
    except Exception:  # noqa: BLE001 - a summary must never fail itself
        month = "unknown"
    ti = context.get("ti") or context.get("task_instance")
    log.error(
        "model_retraining failed: month %s, task %s (try %s), run %s: %s. The registry is unchanged by this "
        "task; fix the cause and clear the task to resume.",
        month,
        getattr(ti, "task_id", "?"),
        getattr(ti, "try_number", "?"),
        getattr(context.get("dag_run"), "run_id", "?"),
        context.get("exception"),
    )


@dag(
    dag_id="model_retraining",
    doc_md=__doc__,
    schedule=CronDataIntervalTimetable("0 0 1 * *", timezone="UTC"),
    start_date=datetime(2025, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    tags=["ml", "retraining", "drift"],
    default_args={
        "owner": "ml-platform",
        "retries": 3,
        "retry_delay": timedelta(seconds=30),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=10),
        "retry_policy": RETRY_POLICY,
        "on_failure_callback": log_failure,
    },
    params={
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
            maximum=1,
            title="Minimum AUC lift",
            description="Override the AUC lift a challenger needs over the champion (default from the config).",
        ),
    },
)
def model_retraining() -> None:
    @task
    def pull_snapshots() -> dict[str, Any]:
        from retrain.pipeline import pull_snapshots as pull

        config, run = _engine(get_current_context())
        return pull(config, run)

    @task.branch
    def check_drift() -> str:
        from retrain.pipeline import check_drift as check

        context = get_current_context()
        pulled = _pulled(context, "pull_snapshots")
        if pulled["recorded_outcome"] is not None:
            log.info("run already recorded as %s; going straight to its record", pulled["recorded_outcome"])
            return "record_decision"
        config, run = _engine(context)
        drift = check(config, pulled, run)
        context["ti"].xcom_push(key="drift", value=drift)
        log.info("drift gate: %s", drift["gate"])
        return "train_challenger" if drift["train"] else "record_decision"

    @task
    def train_challenger() -> dict[str, Any]:
        from retrain.pipeline import train_challenger as fit

        context = get_current_context()
        config, run = _engine(context)
        return fit(config, _pulled(context, "pull_snapshots"), run)

    @task.branch
    def evaluate() -> str:
        from retrain.pipeline import evaluate as score

        context = get_current_context()
        config, run = _engine(context)
        evaluation = score(
            config,
            _pulled(context, "pull_snapshots"),
            _pulled(context, "check_drift", "drift"),
            _pulled(context, "train_challenger"),
            run,
        )
        context["ti"].xcom_push(key="evaluation", value=evaluation)
        decision = evaluation["decision"]
        log.info("decision: %s (%s)", decision["outcome"], decision["reason"])
        return "promote" if decision["promotes"] and not run.dry_run else "keep_champion"

    @task(outlets=[CHAMPION])
    def promote() -> None:
        from airflow.sdk.exceptions import AirflowSkipException

        from retrain.pipeline import promote as publish

        context = get_current_context()
        config, run = _engine(context)
        promotion = publish(
            config,
            _pulled(context, "pull_snapshots"),
            _pulled(context, "check_drift", "drift"),
            _pulled(context, "train_challenger"),
            _pulled(context, "evaluate", "evaluation"),
            run,
        )
        context["ti"].xcom_push(key="promotion", value=promotion)
        if promotion["champion_version"] != promotion["version"]:
            # No asset event: downstream deployments must only hear of a champion that really moved.
            raise AirflowSkipException(f"{promotion['outcome']}: {promotion['reason']}")
        context["outlet_events"][CHAMPION].extra = {
            "version": promotion["version"],
            "month": run.month,
            "registry": config.registry.root,
            "model": config.model.name,
        }

    @task
    def keep_champion() -> str:
        evaluation = _pulled(get_current_context(), "evaluate", "evaluation")
        log.info("champion kept: %s", evaluation["decision"]["reason"])
        return evaluation["decision"]["outcome"]

    @task(trigger_rule="none_failed_min_one_success")
    def record_decision() -> dict[str, Any]:
        from retrain.pipeline import record, summarize

        context = get_current_context()
        config, run = _engine(context)
        entry = record(
            config,
            _pulled(context, "pull_snapshots"),
            _pulled(context, "check_drift", "drift"),
            _pulled(context, "evaluate", "evaluation"),
            _pulled(context, "promote", "promotion"),
            run,
        )
        log.info("%s %s: %s", run.month, entry["outcome"], entry["reason"])
        return summarize(entry)

    pulled = pull_snapshots()
    gate = check_drift()
    trained = train_challenger()
    decided = evaluate()
    promoted = promote()
    kept = keep_champion()
    recorded = record_decision()

    pulled >> gate >> [trained, recorded]
    trained >> decided >> [promoted, kept]
    [promoted, kept] >> recorded


model_retraining()

"""
# Model retraining: `{model}`

Keeps the `{model}` classifier fresh (config `{config}`). For one month of data it:

1. **wait_for_data**: waits, in reschedule mode (no worker slot held), until the month's production
   partition and its last labeled partition have landed (and their `data.success_marker` files, when
   configured). After `data.wait_timeout_minutes` the run fails with one message naming what is missing.
2. **pull_snapshots**: validates every snapshot the run uses (drift reference, production, labeled
   window); bad data stops the run here with one message naming the file, month and column.
3. **check_drift**: tests every feature against the reference (by default the production month on
   which the champion was last validated) and estimates the champion's AUC on the month before labels
   arrive. No trigger fired and a champion in place: recorded as `NO_DRIFT`. Drift, an estimated-AUC
   drop past `drift.max_estimated_auc_drop`, a forced retrain, or no champion yet: on to training.
4. **train_challenger** (pool `retrain_training`): fits the challenger on the labeled window.
5. **evaluate** (pool `retrain_training`): scores champion and challenger on the same holdout and decides:
   `BOOTSTRAPPED`, `PROMOTED`, `KEPT_CHAMPION`, `REJECTED`, or `SUPERSEDED` when the champion already holds
   newer data (a backfill over history).
6. **promote** (publishes an immutable version, moves the champion by compare-and-swap, emits the model's
   champion asset) or **keep_champion** (a kept champion's validated month, the drift reference, moves
   forward to the month it just held up on).
7. **record_decision**: appends the run's ledger record, whatever the path.

## Which month

- Scheduled runs process the last month complete when their data interval ends: on the default
  monthly cron, the interval itself (the whole previous month).
- Manual runs take the `month` param; without it, the data interval if the run has one, else the last
  complete month.
- Backfills: `airflow backfill create --dag-id {dag_id} --from-date 2025-02-01 --to-date 2025-07-01
  --max-active-runs 1` creates one run per month, oldest first. Re-running a month reuses its run id,
  so nothing is written twice, and a run for an older month never replaces a newer champion.

## Params

`month` (YYYY-MM), `force_retrain`, `dry_run` (decide and record, never promote), and threshold overrides
`alpha` (drift significance) and `min_lift` (AUC lift a challenger needs). Any other key in a run's conf
fails the run at its first task.

Reports and the ledger live in the registry: `retrain registry ledger --config {config}`.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import (
    DAG,
    Asset,
    CronDataIntervalTimetable,
    ExceptionRetryPolicy,
    Param,
    PokeReturnValue,
    RetryAction,
    RetryRule,
    get_current_context,
    task,
)

log = logging.getLogger(__name__)

MONTH_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])$"
TRAINING_POOL = "retrain_training"

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
        maximum=1,
        title="Minimum AUC lift",
        description="Override the AUC lift a challenger needs over the champion (default from the config).",
    ),
}


def _run_month(context: dict[str, Any]) -> str:
    """The month this run processes: the param, else the last month complete when the data interval ended
    (the interval's own month on a monthly schedule; on a weekly or quarterly one, never a month still in
    progress), else the last month complete when the run was created."""
    from retrain.months import previous_complete_month

    if context["params"].get("month"):
        return context["params"]["month"]
    start, end = context.get("data_interval_start"), context.get("data_interval_end")
    if start is not None and end is not None and end > start:
        return previous_complete_month(end)
    dag_run = context.get("dag_run")
    moment = getattr(dag_run, "run_after", None) or datetime.now(UTC)
    return previous_complete_month(moment)


def _check_conf(context: dict[str, Any]) -> None:
    """A typo in a run's conf (`min_lft`) must not be silently ignored."""
    from retrain.errors import ConfigError

    conf = getattr(context.get("dag_run"), "conf", None) or {}
    unknown = sorted(set(conf) - set(PARAMS))
    if unknown:
        raise ConfigError(
            f"unknown key{'s' if len(unknown) > 1 else ''} in the run's conf: {', '.join(unknown)}; "
            f"accepted params: {', '.join(PARAMS)}"
        )


def _engine(context: dict[str, Any], config_path: str) -> tuple[Any, Any]:
    """The config with this run's overrides, and the run's identity."""
    from retrain.config import load_config
    from retrain.pipeline import Run

    _check_conf(context)
    params = context["params"]
    config = load_config(config_path).with_overrides(
        **{"drift.alpha": params.get("alpha"), "promotion.min_lift": params.get("min_lift")}
    )
    run = Run(
        run_id=context["dag_run"].run_id,
        month=_run_month(context),
        force=bool(params.get("force_retrain")),
        dry_run=bool(params.get("dry_run")),
    )
    return config, run


# Each step's record, and the task and XCom key it travels under.
STEP_RECORDS = {
    "pulled": ("Pulled", "pull_snapshots", "return_value"),
    "drift": ("DriftCheck", "check_drift", "drift"),
    "trained": ("Trained", "train_challenger", "return_value"),
    "evaluation": ("Evaluation", "evaluate", "evaluation"),
    "promotion": ("Promotion", "promote", "promotion"),
    "kept": ("Kept", "keep_champion", "kept"),
}


def _records(context: dict[str, Any], *names: str) -> list[Any]:
    """The typed records of earlier steps, from XCom (None for a step that did not run)."""
    from retrain import pipeline

    records = []
    for name in names:
        kind, task_id, key = STEP_RECORDS[name]
        records.append(getattr(pipeline, kind).from_dict(context["ti"].xcom_pull(task_ids=task_id, key=key)))
    return records


def log_failure(context: dict[str, Any]) -> None:
    """One paragraph an on-call engineer can act on."""
    try:
        month = _run_month(context)
    except Exception:  # noqa: BLE001 - a summary must never fail itself
        month = "unknown"
    ti = context.get("ti") or context.get("task_instance")
    log.error(
        "%s failed: month %s, task %s (try %s), run %s: %s. The registry is unchanged by this task; fix the "
        "cause and clear the task to resume.",
        getattr(context.get("dag"), "dag_id", "retraining"),
        month,
        getattr(ti, "task_id", "?"),
        getattr(ti, "try_number", "?"),
        getattr(context.get("dag_run"), "run_id", "?"),
        context.get("exception"),
    )


def _airflow_url() -> str:
    from airflow.configuration import conf

    return conf.get("api", "base_url", fallback=None) or "http://localhost:8080"


def _notifiers(config: Any, message: Any) -> list[tuple[str, Any]]:
    """Airflow's own notifiers for the channels the model's [notify] names."""
    channels = []
    if config.notify.email_to:
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        email = SmtpNotifier(
            to=list(config.notify.email_to),
            from_email=config.notify.email_from,
            subject=message.subject,
            html_content=message.html,
            smtp_conn_id=config.notify.email_conn_id,
        )
        channels.append(("email", email))
    if config.notify.slack_webhook_conn_id:
        from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

        channels.append(
            (
                "slack",
                SlackWebhookNotifier(slack_webhook_conn_id=config.notify.slack_webhook_conn_id, text=message.text),
            )
        )
    return channels


def _send(config: Any, message: Any, context: dict[str, Any], month: str, kind: str) -> None:
    """Send a message on every channel, once per run and kind; a message that cannot go is logged, never raised
    (a notification must never fail or retry the run)."""
    from retrain.notify import claim
    from retrain.registry import Registry

    run_id = context["dag_run"].run_id
    registry = Registry.for_config(config)
    for channel, notifier in _notifiers(config, message):
        try:
            if not claim(registry, month, run_id, f"{kind}-{channel}"):
                log.info("the %s %s notification of this run was already sent", kind, channel)
                continue
            # notify(), not the notifier's __call__: the message is data, never rendered as a template.
            notifier.notify(context)
            log.info("%s notification sent by %s: %s", kind, channel, message.subject)
        except Exception as error:  # noqa: BLE001 - SMTP, HTTP, a missing connection: all only logged
            log.warning("%s notification by %s not sent: %s: %s", kind, channel, type(error).__name__, error)


def _waited_seconds(context: dict[str, Any]) -> float:
    first = context["ti"].get_first_reschedule_date(context)
    return 0.0 if first is None else (datetime.now(UTC) - first).total_seconds()


def build_dag(config_path: Path, config: Any) -> DAG:
    """The retraining DAG of one model config."""
    from retrain.fleet import dag_id as dag_id_for

    path = str(config_path)
    dag_id = dag_id_for(config.model.name)
    champion = Asset(name=f"retrain_champion__{config.model.name}", uri=f"x-retrain://{config.model.name}/champion")
    wait_timeout = config.data.wait_timeout_minutes * 60

    def notify_failure(context: dict[str, Any]) -> None:
        """After the last retry only (Airflow calls on_failure_callback then, and never on a retry)."""
        from retrain.config import load_config
        from retrain.notify import failure_message, run_link

        try:
            current = load_config(path)
            if not current.notify.enabled:
                return
            month = _run_month(context)
            ti = context.get("ti") or context.get("task_instance")
            link = run_link(_airflow_url(), dag_id, context["dag_run"].run_id)
            error = str(context.get("exception") or "unknown error").splitlines()[0][:500]
            _send(
                current, failure_message(current.model.name, month, ti.task_id, error, link), context, month, "failure"
            )
        except Exception as error:  # noqa: BLE001 - a failure report must never fail itself
            log.warning("failure notification not sent: %s: %s", type(error).__name__, error)

    with DAG(
        dag_id=dag_id,
        description=f"Drift-gated monthly retraining of {config.model.name}",
        doc_md=__doc__.format(model=config.model.name, config=path, dag_id=dag_id),
        schedule=CronDataIntervalTimetable(config.airflow.schedule, timezone="UTC"),
        start_date=datetime.strptime(config.airflow.start_month, "%Y-%m").replace(tzinfo=UTC),
        catchup=False,
        max_active_runs=1,
        tags=["ml", "retraining", "drift", *config.airflow.tags],
        default_args={
            "owner": ",".join(config.airflow.owners),
            "retries": 3,
            "retry_delay": timedelta(seconds=30),
            "retry_exponential_backoff": True,
            "max_retry_delay": timedelta(minutes=10),
            "retry_policy": RETRY_POLICY,
            "on_failure_callback": [log_failure, notify_failure],
        },
        params=PARAMS,
        auto_register=False,
    ) as dag:

        @task.sensor(
            mode="reschedule",
            poke_interval=config.data.wait_poke_seconds,
            # The task's own deadline (below) fires first, with a message naming what is missing.
            timeout=wait_timeout + config.data.wait_poke_seconds,
        )
        def wait_for_data() -> PokeReturnValue:
            from retrain.errors import NotReadyError
            from retrain.pipeline import missing_inputs

            context = get_current_context()
            config, run = _engine(context, path)
            missing = missing_inputs(config, run.month)
            if not missing:
                return PokeReturnValue(is_done=True, xcom_value=run.month)
            waited = _waited_seconds(context)
            if waited >= wait_timeout:
                raise NotReadyError(
                    f"data for {run.month} still missing after {waited / 60:.1f} min "
                    f"(data.wait_timeout_minutes={config.data.wait_timeout_minutes:g}): {'; '.join(missing)}"
                )
            log.info("waiting for %s", "; ".join(missing))
            return PokeReturnValue(is_done=False)

        @task
        def pull_snapshots() -> dict[str, Any]:
            from retrain.pipeline import pull_snapshots as pull

            config, run = _engine(get_current_context(), path)
            return pull(config, run).to_dict()

        @task.branch
        def check_drift() -> str:
            from retrain.pipeline import check_drift as check

            context = get_current_context()
            (pulled,) = _records(context, "pulled")
            if pulled.recorded_outcome is not None:
                log.info("run already recorded as %s; going straight to its record", pulled.recorded_outcome)
                return "record_decision"
            config, run = _engine(context, path)
            drift = check(config, pulled, run)
            context["ti"].xcom_push(key="drift", value=drift.to_dict())
            log.info("drift gate: %s", drift.gate)
            return "train_challenger" if drift.train else "record_decision"

        @task(pool=TRAINING_POOL)
        def train_challenger() -> dict[str, Any]:
            from retrain.pipeline import train_challenger as fit

            context = get_current_context()
            config, run = _engine(context, path)
            return fit(config, *_records(context, "pulled"), run).to_dict()

        @task.branch(pool=TRAINING_POOL)
        def evaluate() -> str:
            from retrain.pipeline import evaluate as score

            context = get_current_context()
            config, run = _engine(context, path)
            evaluation = score(config, *_records(context, "pulled", "drift", "trained"), run)
            context["ti"].xcom_push(key="evaluation", value=evaluation.to_dict())
            log.info("outcome: %s (%s)", evaluation.outcome, evaluation.reason)
            return "promote" if evaluation.promotes and not run.dry_run else "keep_champion"

        @task(outlets=[champion])
        def promote() -> None:
            from airflow.sdk.exceptions import AirflowSkipException

            from retrain.pipeline import promote as publish

            context = get_current_context()
            config, run = _engine(context, path)
            promotion = publish(config, *_records(context, "pulled", "drift", "trained", "evaluation"), run)
            context["ti"].xcom_push(key="promotion", value=promotion.to_dict())
            if promotion.champion_version != promotion.version:
                # No asset event: downstream deployments must only hear of a champion that really moved.
                raise AirflowSkipException(f"{promotion.outcome}: {promotion.reason}")
            context["outlet_events"][champion].extra = {
                "version": promotion.version,
                "month": run.month,
                "registry": config.registry.root,
                "model": config.model.name,
            }

        @task
        def keep_champion() -> str:
            from retrain.pipeline import keep

            context = get_current_context()
            config, run = _engine(context, path)
            pulled, evaluation = _records(context, "pulled", "evaluation")
            kept = keep(config, pulled, evaluation, run)
            context["ti"].xcom_push(key="kept", value=kept.to_dict())
            log.info("champion kept (%s): %s; %s", evaluation.outcome, evaluation.reason, kept.note)
            return evaluation.outcome

        @task(trigger_rule="none_failed_min_one_success")
        def record_decision() -> dict[str, Any]:
            from retrain.pipeline import record, summarize

            context = get_current_context()
            config, run = _engine(context, path)
            pulled, drift, evaluation, promotion, kept = _records(
                context, "pulled", "drift", "evaluation", "promotion", "kept"
            )
            entry = record(config, pulled, drift, evaluation, promotion, run, kept)
            log.info("%s %s: %s", run.month, entry["outcome"], entry["reason"])
            if config.notify.enabled and entry["outcome"] in config.notify.outcomes:
                from retrain.notify import decision_message, report_link

                link = report_link(_airflow_url(), dag_id, run.run_id)
                _send(config, decision_message(entry, link), context, run.month, "decision")
            return summarize(entry)

        ready = wait_for_data()
        pulled = pull_snapshots()
        gate = check_drift()
        trained = train_challenger()
        decided = evaluate()
        promoted = promote()
        kept = keep_champion()
        recorded = record_decision()

        ready >> pulled >> gate >> [trained, recorded]
        trained >> decided >> [promoted, kept]
        [promoted, kept] >> recorded
    return dag


def build_broken_dag(config_path: Path, error: Exception) -> DAG:
    """A config that does not load breaks only its own DAG: paused, its description the error, its one task
    failing with it. (Airflow marks every DAG of a file with an import error stale, so raising here would
    take the healthy models down too.)"""
    from retrain.fleet import dag_id as dag_id_for

    dag_id = dag_id_for(config_path.stem)
    message = f"{error}"
    with DAG(
        dag_id=dag_id,
        description=f"CONFIG ERROR: {message}"[:200],
        doc_md=f"# Broken model config\n\n`{config_path}` does not load:\n\n    {message}\n\nFix the file; "
        "the DAG comes back at the next parse.",
        schedule=None,
        start_date=datetime(2025, 1, 1, tzinfo=UTC),
        is_paused_upon_creation=True,
        tags=["retraining", "config-error"],
        auto_register=False,
    ) as dag:

        @task
        def config_error() -> None:
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(message)

        config_error()
    return dag


def build_dags() -> dict[str, DAG]:
    """One DAG per model config; reading the TOML files is the only work done at parse time."""
    from retrain.config import load_config
    from retrain.errors import ConfigError
    from retrain.fleet import config_files

    dags: dict[str, DAG] = {}
    owners: dict[str, Path] = {}
    for path in config_files():
        try:
            config = load_config(path)
            if config.model.name in owners:
                raise ConfigError(
                    f"{path}: model.name {config.model.name!r} is already used by {owners[config.model.name]}; "
                    "every model needs its own name (its DAG id and registry prefix)"
                )
        except ConfigError as error:
            log.error("model config %s does not load: %s", path, error)
            broken = build_broken_dag(path, error)
            dags.setdefault(broken.dag_id, broken)
            continue
        owners[config.model.name] = path
        dag = build_dag(path, config)
        dags[dag.dag_id] = dag
    return dags


globals().update(build_dags())

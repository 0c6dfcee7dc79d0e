"""The retraining DAG's tasks. Each reads its context, opens the run's cycle, calls one step of
`retrain.cycle`, and hands the step's record on through XCom as JSON."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import Asset, Context, PokeReturnValue, get_current_context, task

from retrain.airflow.params import open_cycle

log = logging.getLogger(__name__)

TRAINING_POOL = "retrain_training"


def champion_asset(model: str) -> Asset:
    """The asset a model's promote task updates when the champion really moves."""
    return Asset(name=f"retrain_champion__{model}", uri=f"x-retrain://{model}/champion")


def _record_types() -> dict[str, tuple[type, str, str]]:
    """Each step's record, and the task and XCom key it travels under."""
    from retrain.records import Approval, DriftCheck, Evaluation, Kept, Promotion, Pulled, Trained

    return {
        "approval": (Approval, "approve_promotion", "approval"),
        "pulled": (Pulled, "pull_snapshots", "return_value"),
        "drift": (DriftCheck, "check_drift", "drift"),
        "trained": (Trained, "train_challenger", "return_value"),
        "evaluation": (Evaluation, "evaluate", "evaluation"),
        "promotion": (Promotion, "promote", "promotion"),
        "kept": (Kept, "keep_champion", "kept"),
    }


def _records(context: Context, *names: str) -> list[Any]:
    """The typed records of earlier steps, from XCom (None for a step that did not run)."""
    from retrain.serial import from_jsonable

    kinds = _record_types()
    records = []
    for name in names:
        kind, task_id, key = kinds[name]
        document = context["ti"].xcom_pull(task_ids=task_id, key=key)
        records.append(None if document is None else from_jsonable(kind, document))
    return records


def _json(record: object) -> Any:
    from retrain.serial import to_jsonable

    return to_jsonable(record)


def _waited_seconds(context: Context) -> float:
    first = context["ti"].get_first_reschedule_date(context)
    return 0.0 if first is None else (datetime.now(UTC) - first).total_seconds()


@task.sensor(mode="reschedule")
def wait_for_data(config_path: str) -> PokeReturnValue:
    """Until the month's production partition and its last labeled partition have landed."""
    from retrain.cycle.window import missing_inputs
    from retrain.errors import NotReadyError

    context = get_current_context()
    cycle = open_cycle(context, config_path)
    month, data = cycle.run.month, cycle.config.data
    missing = missing_inputs(cycle.config, month)
    if not missing:
        return PokeReturnValue(is_done=True, xcom_value=month)
    waited = _waited_seconds(context)
    if waited >= data.wait_timeout_minutes * 60:
        raise NotReadyError(
            f"data for {month} still missing after {waited / 60:.1f} min "
            f"(data.wait_timeout_minutes={data.wait_timeout_minutes:g}): {'; '.join(missing)}"
        )
    log.info("waiting for %s", "; ".join(missing))
    return PokeReturnValue(is_done=False)


@task(multiple_outputs=False)
def pull_snapshots(config_path: str) -> Any:
    from retrain.cycle.pull import pull_snapshots as pull

    return _json(pull(open_cycle(get_current_context(), config_path)))


@task.branch
def check_drift(config_path: str) -> str:
    from retrain.cycle.drift import check_drift as check

    context = get_current_context()
    (pulled,) = _records(context, "pulled")
    if pulled.recorded_outcome is not None:
        log.info("run already recorded as %s; going straight to its record", pulled.recorded_outcome)
        return "record_decision"
    drift = check(open_cycle(context, config_path), pulled)
    context["ti"].xcom_push(key="drift", value=_json(drift))
    log.info("drift gate: %s", drift.gate)
    return "train_challenger" if drift.train else "record_decision"


@task(pool=TRAINING_POOL, multiple_outputs=False)
def train_challenger(config_path: str) -> Any:
    from retrain.cycle.train import train_challenger as fit

    context = get_current_context()
    return _json(fit(open_cycle(context, config_path), *_records(context, "pulled")))


@task.branch(pool=TRAINING_POOL)
def evaluate(config_path: str) -> str:
    from retrain.cycle.evaluate import evaluate as score

    context = get_current_context()
    cycle = open_cycle(context, config_path)
    evaluation = score(cycle, *_records(context, "pulled", "drift", "trained"))
    context["ti"].xcom_push(key="evaluation", value=_json(evaluation))
    log.info("outcome: %s (%s)", evaluation.outcome, evaluation.reason)
    if cycle.config.approval.required:
        return "approve_promotion"  # which asks a reviewer only when this evaluation needs one
    return "promote" if evaluation.promotes and not cycle.run.dry_run else "keep_champion"


@task
def promote(config_path: str) -> None:
    """Publishes the challenger; the model's champion asset is updated only when the champion moved."""
    from airflow.sdk.exceptions import AirflowSkipException

    from retrain.cycle.promote import promote as publish

    context = get_current_context()
    cycle = open_cycle(context, config_path)
    promotion = publish(cycle, *_records(context, "pulled", "drift", "trained", "evaluation", "approval"))
    context["ti"].xcom_push(key="promotion", value=_json(promotion))
    if not promotion.moved_champion:
        # No asset event: downstream deployments must only hear of a champion that really moved.
        raise AirflowSkipException(f"{promotion.outcome}: {promotion.reason}")
    config = cycle.config
    context["outlet_events"][champion_asset(config.model.name)].extra = {
        "version": promotion.version,
        "month": cycle.run.month,
        "registry": config.registry.root,
        "model": config.model.name,
    }


@task
def keep_champion(config_path: str) -> str:
    from retrain.cycle.keep import keep

    context = get_current_context()
    pulled, evaluation = _records(context, "pulled", "evaluation")
    kept = keep(open_cycle(context, config_path), pulled, evaluation)
    context["ti"].xcom_push(key="kept", value=_json(kept))
    log.info("champion kept (%s): %s; %s", evaluation.outcome, evaluation.reason, kept.note)
    return str(evaluation.outcome)


@task(trigger_rule="none_failed_min_one_success", multiple_outputs=False)
def record_decision(config_path: str) -> Any:
    """Appends the run's ledger record, whatever the path, and announces the decision."""
    from retrain.airflow.notifications import airflow_url, send
    from retrain.cycle.record import record, summary
    from retrain.notify import decision_message, report_link

    context = get_current_context()
    cycle = open_cycle(context, config_path)
    entry = record(cycle, *_records(context, "pulled", "drift", "evaluation", "promotion", "kept", "approval"))
    log.info("%s %s: %s", cycle.run.month, entry.outcome, entry.reason)
    config = cycle.config
    if config.notify.enabled and entry.outcome in config.notify.outcomes:
        link = report_link(airflow_url(), context["dag"].dag_id, cycle.run.run_id)
        send(config, cycle.registry, decision_message(entry, link), context, cycle.run.month, "decision")
    return summary(entry)

"""Who hears of a run: the decision and a failure, through Airflow's own notifiers (the SMTP provider's
e-mail, the Slack provider's webhook), on the channels a model's `[notify]` names. A message is the
engine's (`retrain.notify`); this module only delivers it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from retrain.airflow.params import run_month

if TYPE_CHECKING:
    from airflow.sdk import Context

    from retrain.config import Config
    from retrain.notify import Message
    from retrain.registry import Registry

log = logging.getLogger(__name__)


def airflow_url() -> str:
    from airflow.configuration import conf

    return conf.get("api", "base_url", fallback=None) or "http://localhost:8080"


def notifiers(config: Config, message: Message) -> list[tuple[str, Any]]:
    """Airflow's own notifiers for the channels the model's [notify] names."""
    channels: list[tuple[str, Any]] = []
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

        slack = SlackWebhookNotifier(slack_webhook_conn_id=config.notify.slack_webhook_conn_id, text=message.slack)
        channels.append(("slack", slack))
    return channels


def send(config: Config, registry: Registry, message: Message, context: Context, month: str, kind: str) -> None:
    """Send a message on every channel, once per run and kind; a message that cannot go is logged, never
    raised (a notification must never fail or retry the run)."""
    from retrain.notify import claim

    run_id = context["dag_run"].run_id
    for channel, notifier in notifiers(config, message):
        try:
            if not claim(registry, month, run_id, f"{kind}-{channel}"):
                log.info("the %s %s notification of this run was already sent", kind, channel)
                continue
            # notify(), not the notifier's __call__: the message is data, never rendered as a template.
            notifier.notify(context)
            log.info("%s notification sent by %s: %s", kind, channel, message.subject)
        except Exception as error:  # noqa: BLE001 - SMTP, HTTP, a missing connection: all only logged
            log.warning("%s notification by %s not sent: %s: %s", kind, channel, type(error).__name__, error)


def log_failure(context: Context) -> None:
    """One paragraph an on-call engineer can act on."""
    try:
        month = run_month(context)
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


def failure_notifier(config_path: str, dag_id: str) -> Callable[[Context], None]:
    """The failure callback of a model's tasks. Airflow calls on_failure_callback after the last retry
    only, never on a retry."""

    def notify_failure(context: Context) -> None:
        from retrain.config import load_config
        from retrain.notify import failure_message, run_link
        from retrain.registry import Registry

        try:
            config = load_config(config_path)
            if not config.notify.enabled:
                return
            month = run_month(context)
            ti = context.get("ti") or context.get("task_instance")
            link = run_link(airflow_url(), dag_id, context["dag_run"].run_id)
            error = str(context.get("exception") or "unknown error").splitlines()[0][:500]
            message = failure_message(config.model.name, month, ti.task_id, error, link)
            send(config, Registry.for_config(config), message, context, month, "failure")
        except Exception as error:  # noqa: BLE001 - a failure report must never fail itself
            log.warning("failure notification not sent: %s: %s", type(error).__name__, error)

    return notify_failure

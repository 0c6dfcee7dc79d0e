"""Who hears of a run: the decision and a failure, through Airflow's own notifiers (the SMTP provider's
e-mail, the Slack provider's webhook), on the channels a model's `[notify]` names. A message is the
engine's (`retrain.notify`); this module only delivers it."""

from __future__ import annotations

import logging
import math
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


def mail_notifier(config: Config, message: Message) -> Any:
    """The SMTP provider's hook, delivering a plain-text part beside the HTML one, with one try bounded by
    notify.timeout_seconds: the provider's defaults (a 30 s timeout, 5 retries) let a hung server hold a
    task for minutes. The connection's extras (disable_ssl, disable_tls, ssl_context, from_email) keep the
    provider's meaning."""
    from email.mime.text import MIMEText

    from airflow.providers.smtp.hooks.smtp import SmtpHook
    from airflow.sdk import BaseNotifier

    timeout = config.notify.timeout_seconds

    class BoundedSmtpHook(SmtpHook):
        @property
        def timeout(self) -> float:  # type: ignore[override]
            return timeout

        @property
        def smtp_retry_limit(self) -> int:
            return 0

        def _build_mime_message(self, *args: Any, **kwargs: Any) -> Any:
            mime, recipients = super()._build_mime_message(*args, **kwargs)
            # multipart/alternative: clients show the last part they can, so the plain text comes first.
            mime.set_payload([MIMEText(message.text, "plain", "utf-8"), *mime.get_payload()])
            return mime, recipients

    class MailNotifier(BaseNotifier):
        template_fields = ()

        def notify(self, context: Context) -> None:
            with BoundedSmtpHook(smtp_conn_id=config.notify.email_conn_id) as hook:
                hook.send_email_smtp(
                    to=list(config.notify.email_to),
                    from_email=config.notify.email_from,
                    subject=message.subject,
                    html_content=message.html,
                    mime_subtype="alternative",
                )

    return MailNotifier()


def notifiers(config: Config, message: Message) -> list[tuple[str, Any]]:
    """Airflow's own notifiers for the channels the model's [notify] names."""
    channels: list[tuple[str, Any]] = []
    if config.notify.email_to:
        channels.append(("email", mail_notifier(config, message)))
    if config.notify.slack_webhook_conn_id:
        from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

        slack = SlackWebhookNotifier(
            slack_webhook_conn_id=config.notify.slack_webhook_conn_id,
            text=message.slack,
            timeout=max(1, math.ceil(config.notify.timeout_seconds)),
            retry_handlers=[],  # one try: slack_sdk's default handler retries a refused connection
        )
        channels.append(("slack", slack))
    return channels


def send(config: Config, registry: Registry, message: Message, context: Context, month: str, kind: str) -> None:
    """Send a message on every channel that has not sent it in this run; a channel is marked as sent only
    after it was, so the next try or re-run sends what failed. A message that cannot go is logged, never
    raised (a notification must never fail or retry the run)."""
    from retrain.notify import already_sent, mark_sent

    run_id = context["dag_run"].run_id
    for channel, notifier in notifiers(config, message):
        marker = f"{kind}-{channel}"
        try:
            if already_sent(registry, month, run_id, marker):
                log.info("the %s %s notification of this run was already sent", kind, channel)
                continue
            # notify(), not the notifier's __call__: the message is data, never rendered as a template.
            notifier.notify(context)
        except Exception as error:  # noqa: BLE001 - SMTP, HTTP, a missing connection: all only logged
            log.warning("%s notification by %s not sent: %s: %s", kind, channel, type(error).__name__, error)
            continue
        log.info("%s notification sent by %s: %s", kind, channel, message.subject)
        try:
            mark_sent(registry, month, run_id, marker)
        except Exception as error:  # noqa: BLE001 - sent is sent; a lost mark can only repeat it
            log.warning("%s notification by %s sent but not marked: %s", kind, channel, error)


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


FAILURE_XCOM = "retrain_failure"


def _error_line(context: Context) -> str:
    """The failure's first line, as every report of it shows it."""
    return str(context.get("exception") or "unknown error").splitlines()[0][:500]


def remember_failure(context: Context) -> None:
    """Keep the failure as the failed task's XCom, where the run's report tab finds it (a cleared task's
    next try starts without it)."""
    from retrain.notify import TaskFailure
    from retrain.serial import to_jsonable

    ti = context.get("ti") or context.get("task_instance")
    try:
        failure = TaskFailure(task=ti.task_id, try_number=int(ti.try_number or 1), error=_error_line(context))
        ti.xcom_push(key=FAILURE_XCOM, value=to_jsonable(failure))
    except Exception as problem:  # noqa: BLE001 - the report tab then names the task without its error
        log.warning("the failure was not kept for the run's report tab: %s", problem)


def failure_notifier(config_path: str, dag_id: str) -> Callable[[Context], None]:
    """The failure callback of a model's tasks: keeps the failure for the run's report tab, and announces
    it once per failed task. Airflow calls on_failure_callback after the last retry only, never on a
    retry."""

    def notify_failure(context: Context) -> None:
        from retrain.config import load_config
        from retrain.notify import failure_message, task_log_link
        from retrain.registry import Registry

        remember_failure(context)
        try:
            config = load_config(config_path)
            if not config.notify.enabled:
                return
            month = run_month(context)
            ti = context.get("ti") or context.get("task_instance")
            link = task_log_link(airflow_url(), dag_id, context["dag_run"].run_id, ti.task_id)
            message = failure_message(config.model.name, month, ti.task_id, _error_line(context), link)
            send(config, Registry.for_config(config), message, context, month, f"failure-{ti.task_id}")
        except Exception as error:  # noqa: BLE001 - a failure report must never fail itself
            log.warning("failure not announced: %s: %s", type(error).__name__, error)

    return notify_failure

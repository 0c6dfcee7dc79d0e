"""What a run tells people: the message of a decision or of a failure, as plain text and HTML.

The engine only writes the words; Airflow's notifiers (the SMTP and Slack providers') deliver them, from
the DAG. A channel is marked as sent in the run folder only once it was sent: a message that could not go
is sent by the next try or re-run, and one that went is not repeated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from typing import TYPE_CHECKING
from urllib.parse import quote

from retrain.records import run_key
from retrain.registry import utc_now

if TYPE_CHECKING:
    from retrain.records import DriftCheck, Evaluation, LedgerRecord, SegmentCheck
    from retrain.registry import Registry


@dataclass(frozen=True)
class Message:
    """One message in the forms its channels need: plain text, HTML for e-mail, Slack's markup."""

    subject: str
    text: str
    html: str
    # Markdown, for a human-in-the-loop request's body in the Airflow UI.
    markdown: str = ""

    @property
    def slack(self) -> str:
        """The text as Slack must receive it: '&', '<' and '>' escaped, so that text from the data (a reason
        naming a value such as `<!channel>`) can neither ping a channel nor become a link."""
        return self.text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def run_link(base_url: str, dag_id: str, run_id: str) -> str:
    """The run's page in the Airflow UI."""
    return f"{base_url.rstrip('/')}/dags/{quote(dag_id)}/runs/{quote(run_id, safe='')}"


def task_log_link(base_url: str, dag_id: str, run_id: str, task_id: str) -> str:
    """A task's page in the Airflow UI, which opens on its log."""
    return f"{run_link(base_url, dag_id, run_id)}/tasks/{quote(task_id, safe='')}"


def report_link(base_url: str, dag_id: str, run_id: str) -> str:
    """The run's report tab in the Airflow UI."""
    return f"{run_link(base_url, dag_id, run_id)}/plugin/retrain-report"


def decision_message(entry: LedgerRecord, link: str) -> Message:
    """A run's decision: model, month, outcome, reason, the metric's lift with its interval, what drifted."""
    lift = entry.metrics.lift if entry.metrics else None
    metric = entry.thresholds.promotion.judged_by.label if entry.thresholds else "AUC"
    model, month = entry.model or "", entry.month or ""
    lines = [
        ("model", model),
        ("month", month),
        ("outcome", entry.outcome + (" (dry run)" if entry.dry_run else "")),
        ("reason", entry.reason),
        (
            f"{metric} lift",
            f"{lift.lift:+.4f} ({lift.confidence:.0%} interval [{lift.low:+.4f}, {lift.high:+.4f}])"
            if lift
            else "not evaluated",
        ),
        ("drifted features", ", ".join(entry.drift.drifted_features if entry.drift else ()) or "none"),
        ("champion", f"version {entry.champion_version or 'none'}"),
    ]
    if entry.approval is not None:
        lines.append(("review", entry.approval.shown()))
    if entry.performance is not None:
        lines.append((f"estimated champion {entry.performance.label}", f"{entry.performance.estimated_value:.4f}"))
    lines.append(("report", link))
    subject = f"[retrain] {model} {month}: {entry.outcome}"
    return _message(subject, lines, link)


def segment_table(segments: tuple[SegmentCheck, ...]) -> str:
    """The per-segment comparison as fixed-width text (Markdown renders it as a code block)."""
    if not segments:
        return ""
    header = f"{'segment':<28} {'rows':>7} {'champion':>9} {'challenger':>10} {'difference':>10}  result"
    lines = [header]
    for s in segments:
        values = [f"{v:.4f}" if v is not None else "-" for v in (s.champion, s.challenger)]
        difference = f"{s.difference:+.4f}" if s.difference is not None else "-"
        name = f"{s.column}={s.value}"[:28]
        lines.append(f"{name:<28} {s.rows:>7} {values[0]:>9} {values[1]:>10} {difference:>10}  {s.status}")
    return "\n".join(lines)


def approval_request(
    model: str, month: str, evaluation: Evaluation, drift: DriftCheck | None, link: str, timeout_hours: float
) -> Message:
    """What a reviewer needs to decide: the metric and its lift with the interval, what drifted, each
    segment, and where the whole report is."""
    metrics = evaluation.metrics
    challenger, champion, lift = metrics.challenger, metrics.champion, metrics.lift or metrics.over_chance
    metric = challenger.label if challenger else "metric"
    scores = (
        f"{champion.score:.4f} -> {challenger.score:.4f}"
        if champion and challenger and champion.score is not None
        else f"{challenger.score:.4f} (first model)"
        if challenger and challenger.score is not None
        else "-"
    )
    lines = [
        ("model", model),
        ("month", month),
        ("decision", f"{evaluation.outcome}, waiting for a reviewer (up to {timeout_hours:g} hours)"),
        ("reason", evaluation.reason),
        (metric, scores),
        (
            f"{metric} lift",
            f"{lift.lift:+.4f} ({lift.confidence:.0%} interval [{lift.low:+.4f}, {lift.high:+.4f}])" if lift else "-",
        ),
        ("drifted features", ", ".join(drift.drifted_features if drift else ()) or "none"),
        ("report", link),
    ]
    message = _message(f"[retrain] {model} {month}: approve promotion?", lines, link)
    table = segment_table(metrics.segments)
    markdown = "\n".join(f"- **{name}**: {value}" for name, value in lines)
    if not table:
        return Message(message.subject, message.text, message.html, markdown)
    return Message(
        subject=message.subject,
        text=f"{message.text}\n\nsegments:\n{table}",
        html=f"{message.html}<pre>{escape(table)}</pre>",
        markdown=f"{markdown}\n\n**Segments**\n\n```\n{table}\n```",
    )


def failure_message(model: str, month: str, task: str, error: str, log_link: str) -> Message:
    """A task that failed after its last retry: where, why, and its log."""
    lines = [("model", model), ("month", month), ("failed task", task), ("error", error), ("log", log_link)]
    return _message(f"[retrain] {model} {month}: FAILED in {task}", lines, log_link, "Open the log of the failed task")


def _message(
    subject: str, lines: list[tuple[str, str]], link: str, link_text: str = "Open the run in Airflow"
) -> Message:
    text = "\n".join(f"{name}: {value}" for name, value in lines)
    rows = "".join(
        f"<tr><th align='left'>{escape(name)}</th><td>{escape(str(value))}</td></tr>"
        for name, value in lines
        if name not in ("report", "run", "log")
    )
    html = f"<p>{escape(subject)}</p><table>{rows}</table><p><a href='{escape(link)}'>{escape(link_text)}</a></p>"
    return Message(subject=subject, text=text, html=html)


@dataclass(frozen=True)
class TaskFailure:
    """A task that failed after its last retry, as its run's report tab shows it (kept in Airflow's
    metadata DB as the failed task's XCom, never in the registry: a failed run writes nothing there)."""

    task: str
    try_number: int
    error: str
    at: str = field(default_factory=utc_now)


def _sent_marker(channel: str) -> str:
    return f"notified-{channel}.json"


def already_sent(registry: Registry, month: str, run_id: str, channel: str) -> bool:
    """Whether this run already sent on this channel (a kind of message and a medium, 'decision-email')."""
    return registry.run_folder(month, run_key(run_id)).written(_sent_marker(channel))


def mark_sent(registry: Registry, month: str, run_id: str, channel: str) -> None:
    """Record a message as sent, only after it was: one that failed is sent again by the next try."""
    registry.run_folder(month, run_key(run_id)).claim(_sent_marker(channel))

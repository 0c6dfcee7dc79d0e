"""What a run tells people: the message of a decision or of a failure, as plain text and HTML.

The engine only writes the words; Airflow's notifiers (the SMTP and Slack providers') deliver them, from
the DAG. A run claims each channel once in its run folder before sending, so a message goes out at most
once per run, whatever retries and re-runs follow.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import TYPE_CHECKING
from urllib.parse import quote

from retrain.records import run_key

if TYPE_CHECKING:
    from retrain.records import LedgerRecord
    from retrain.registry import Registry


@dataclass(frozen=True)
class Message:
    """One message in the forms its channels need: plain text, HTML for e-mail, Slack's markup."""

    subject: str
    text: str
    html: str

    @property
    def slack(self) -> str:
        """The text as Slack must receive it: '&', '<' and '>' escaped, so that text from the data (a reason
        naming a value such as `<!channel>`) can neither ping a channel nor become a link."""
        return self.text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def run_link(base_url: str, dag_id: str, run_id: str) -> str:
    """The run's page in the Airflow UI."""
    return f"{base_url.rstrip('/')}/dags/{quote(dag_id)}/runs/{quote(run_id, safe='')}"


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
    if entry.performance is not None:
        lines.append((f"estimated champion {entry.performance.label}", f"{entry.performance.estimated_value:.4f}"))
    lines.append(("report", link))
    subject = f"[retrain] {model} {month}: {entry.outcome}"
    return _message(subject, lines, link)


def failure_message(model: str, month: str, task: str, error: str, link: str) -> Message:
    """A run that failed after its last retry: where, and why."""
    lines = [("model", model), ("month", month), ("failed task", task), ("error", error), ("run", link)]
    return _message(f"[retrain] {model} {month}: FAILED in {task}", lines, link)


def _message(subject: str, lines: list[tuple[str, str]], link: str) -> Message:
    text = "\n".join(f"{name}: {value}" for name, value in lines)
    rows = "".join(
        f"<tr><th align='left'>{escape(name)}</th><td>{escape(str(value))}</td></tr>"
        for name, value in lines
        if name not in ("report", "run")
    )
    html = f"<p>{escape(subject)}</p><table>{rows}</table><p><a href='{escape(link)}'>Open the run in Airflow</a></p>"
    return Message(subject=subject, text=text, html=html)


def claim(registry: Registry, month: str, run_id: str, channel: str) -> bool:
    """True for the first claim of a channel by a run; False for every later one."""
    return registry.run_folder(month, run_key(run_id)).claim(f"notified-{channel}.json")

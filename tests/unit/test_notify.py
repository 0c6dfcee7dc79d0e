"""What a run tells people: every fact of a decision or a failure in its message, links that reach the run,
hostile text escaped in the HTML and kept whole in the text, and each channel claimed once per run."""

from __future__ import annotations

from html import escape
from pathlib import Path

import pytest

from retrain.notify import (
    already_sent,
    decision_message,
    failure_message,
    mark_sent,
    report_link,
    run_link,
    task_log_link,
)
from retrain.records import (
    DriftSummary,
    EvaluationMetrics,
    LedgerRecord,
    LiftInterval,
    Metrics,
    Outcome,
    PerformanceEstimate,
    run_key,
)
from retrain.registry import Registry
from retrain.storage import open_store

HOSTILE = '<img src=x onerror="alert(1)">'
LINK = "https://airflow.example.com/dags/retrain__churn/runs/manual__1/plugin/retrain-report"


def entry(**fields: object) -> LedgerRecord:
    base = {
        "run_id": "manual__1",
        "run_key": "k",
        "month": "2025-04",
        "model": "churn",
        "outcome": Outcome.PROMOTED,
        "reason": f"drift in plan; {HOSTILE}",
        "champion_version": 3,
        "metrics": EvaluationMetrics(
            challenger=Metrics(0.8, 0.4, 0.1, 100, 40),
            lift=LiftInterval(lift=0.0312, low=0.0104, high=0.05, confidence=0.9, resamples=1000, share_not_positive=0),
        ),
        "drift": DriftSummary(drifted=True, share_drifted=0.5, drifted_features=("plan", "region")),
        "performance": PerformanceEstimate(
            champion_version=2, estimated_value=0.7123, validated_value=0.75, validated_month="2025-01"
        ),
    }
    return LedgerRecord(**{**base, **fields})


def lines_of(text: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in text.splitlines())


def test_a_decision_message_carries_every_fact_a_reader_acts_on() -> None:
    message = decision_message(entry(), LINK)
    assert message.subject == "[retrain] churn 2025-04: PROMOTED"
    assert lines_of(message.text) == {
        "model": "churn",
        "month": "2025-04",
        "outcome": "PROMOTED",
        "reason": f"drift in plan; {HOSTILE}",
        "AUC lift": "+0.0312 (90% interval [+0.0104, +0.0500])",
        "drifted features": "plan, region",
        "champion": "version 3",
        "estimated champion AUC": "0.7123",
        "report": LINK,
    }


def test_an_unevaluated_dry_run_says_so_and_leaves_out_what_it_does_not_have() -> None:
    quiet = entry(
        outcome=Outcome.NO_DRIFT,
        dry_run=True,
        metrics=None,
        drift=DriftSummary(False, 0.0, ()),
        performance=None,
        champion_version=None,
        model=None,
    )
    message = decision_message(quiet, LINK)
    fields = lines_of(message.text)
    assert fields["outcome"] == "NO_DRIFT (dry run)" and fields["AUC lift"] == "not evaluated"
    assert fields["drifted features"] == "none" and fields["champion"] == "version none"
    assert "estimated champion AUC" not in fields and message.subject == "[retrain]  2025-04: NO_DRIFT"
    assert lines_of(decision_message(entry(drift=None), LINK).text)["drifted features"] == "none"


def test_text_from_the_data_cannot_ping_a_slack_channel_or_become_a_link() -> None:
    message = decision_message(entry(reason="drift in plan (row 3: '<!channel>' & <https://evil.example|click>)"), LINK)
    assert "<!channel>" in message.text, "the plain text keeps it whole"
    assert "'&lt;!channel&gt;' &amp; &lt;https://evil.example|click&gt;" in message.slack
    assert "<" not in message.slack and ">" not in message.slack
    assert message.slack.endswith(f"report: {LINK}"), "Slack links the bare address itself"


def test_hostile_text_is_escaped_in_the_html_and_whole_in_the_text() -> None:
    for message in (
        decision_message(entry(), LINK),
        failure_message("churn", "2025-04", "pull_snapshots", f"missing column {HOSTILE}", LINK),
    ):
        assert HOSTILE in message.text
        assert HOSTILE not in message.html and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in message.html
        assert f"<a href='{LINK}'>Open " in message.html
        assert f"<td>{LINK}</td>" not in message.html, "the link is the button, not a row"
        assert message.html.startswith(f"<p>{escape(message.subject)}</p><table><tr><th align='left'>model</th>")
        assert message.html.count("</tr><tr>") == message.html.count("<tr>") - 1, "nothing between the rows"
    quoted = decision_message(entry(), "https://a.example/?x='><script>")
    assert "<script>" not in quoted.html and "href='https://a.example/?x=&#x27;&gt;&lt;script&gt;'" in quoted.html


def test_links_reach_the_run_and_its_report_tab_whatever_its_id() -> None:
    link = run_link("https://airflow.example.com/", "retrain__churn", "manual__2025-05-01T00:00:00+00:00")
    assert link == "https://airflow.example.com/dags/retrain__churn/runs/manual__2025-05-01T00%3A00%3A00%2B00%3A00"
    behind_a_proxy = run_link("https://example.com/AX/", "retrain__churn", "X/1")
    assert behind_a_proxy == "https://example.com/AX/dags/retrain__churn/runs/X%2F1"
    assert (
        report_link("http://h", "retrain__churn", "a/b")
        == "http://h/dags/retrain__churn/runs/a%2Fb/plugin/retrain-report"
    )


def test_a_channel_is_marked_sent_only_when_told_and_once_per_run(tmp_path: Path) -> None:
    registry = Registry(open_store(str(tmp_path / "registry")), "churn")
    assert not already_sent(registry, "2025-01", "run-1", "decision-email"), "nothing is sent before it is sent"
    mark_sent(registry, "2025-01", "run-1", "decision-email")
    mark_sent(registry, "2025-01", "run-1", "decision-email")
    assert already_sent(registry, "2025-01", "run-1", "decision-email"), "a retry or a re-run sends nothing twice"
    assert not already_sent(registry, "2025-01", "run-1", "decision-slack"), "each channel on its own"
    assert not already_sent(registry, "2025-01", "run-2", "decision-email"), "each run on its own"
    mark_sent(registry, "2025-02", "run-1", "failure-pull_snapshots-email")
    marked = sorted(registry.store.list("runs/"))
    assert marked == [
        f"runs/2025-01/{run_key('run-1')}/notified-decision-email.json",
        f"runs/2025-02/{run_key('run-1')}/notified-failure-pull_snapshots-email.json",
    ], "in the run's own folder, where a re-run of the same run id finds it"


def test_a_failure_message_names_the_task_and_links_to_its_log() -> None:
    log = task_log_link("https://airflow.example.com/", "retrain__churn", "scheduled__2025-04", "pull_snapshots")
    assert log == "https://airflow.example.com/dags/retrain__churn/runs/scheduled__2025-04/tasks/pull_snapshots"
    message = failure_message("churn", "2025-04", "pull_snapshots", "missing column plan", log)
    assert message.subject == "[retrain] churn 2025-04: FAILED in pull_snapshots"
    assert lines_of(message.text) == {
        "model": "churn",
        "month": "2025-04",
        "failed task": "pull_snapshots",
        "error": "missing column plan",
        "log": log,
    }
    assert f"<a href='{log}'>Open the log of the failed task</a>" in message.html


@pytest.mark.parametrize("outcome", list(Outcome.of_cycles()))
def test_every_outcome_makes_a_message(outcome: Outcome) -> None:
    assert decision_message(entry(outcome=outcome), LINK).subject.endswith(f": {outcome}")


def test_an_operators_record_has_no_month_to_announce_and_says_nothing_of_none() -> None:
    message = decision_message(entry(month=None, kind="rollback", outcome=Outcome.ROLLED_BACK, metrics=None), LINK)
    assert lines_of(message.text)["month"] == "" and "None" not in message.subject

"""Notifications through Airflow's notifiers, to real endpoints on 127.0.0.1: an SMTP server (aiosmtpd) and
an HTTP server standing in for Slack's incoming webhook. dag.test() runs on SQLite, the data on the S3
server process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from retrain.config import load_config
from retrain.registry import Registry
from tests.conftest import s3_client, upload_tree, write_config
from tests.dags.conftest import parse_dag
from tests.support.local_servers import SmtpServer, WebhookServer, closed_port

pytestmark = pytest.mark.slow

NOTIFY = """
[notify]
email_to = ["ml-oncall@example.com", "owner@example.com"]
email_from = "retrain@example.com"
email_conn_id = "retrain_smtp"
slack_webhook_conn_id = "retrain_slack"
"""


@pytest.fixture
def endpoints(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[SmtpServer, WebhookServer]]:
    """Both endpoints, and the Airflow connections that reach them (from the environment)."""
    with SmtpServer() as smtp, WebhookServer() as webhook:
        connect(monkeypatch, smtp.port, webhook.url)
        yield smtp, webhook


def connect(monkeypatch: pytest.MonkeyPatch, smtp_port: int, webhook_url: str) -> None:
    smtp = {
        "conn_type": "smtp",
        "host": "127.0.0.1",
        "port": smtp_port,
        "extra": {"disable_ssl": True, "disable_tls": True, "timeout": 5, "retry_limit": 1},
    }
    monkeypatch.setenv("AIRFLOW_CONN_RETRAIN_SMTP", json.dumps(smtp))
    monkeypatch.setenv("AIRFLOW_CONN_RETRAIN_SLACK", json.dumps({"conn_type": "slackwebhook", "password": webhook_url}))
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example.com")


@pytest.fixture
def notifying_config(
    s3_bucket: str, s3_env: str, demo_source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    upload_tree(s3_env, demo_source / "production", s3_bucket, "data/production")
    upload_tree(s3_env, demo_source / "labeled", s3_bucket, "data/labeled")
    path = write_config(
        tmp_path / "retrain.toml",
        production=f"s3://{s3_bucket}/data/production",
        labeled=f"s3://{s3_bucket}/data/labeled",
        registry=f"s3://{s3_bucket}/registry",
        extra=NOTIFY,
    )
    monkeypatch.setenv("RETRAIN_CONFIG", str(path))
    return path


def run(**conf: Any) -> tuple[str, dict[str, str], str]:
    dag_run = parse_dag().test(run_conf=conf, logical_date=None)
    return str(dag_run.state), {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}, dag_run.run_id


def test_a_promotion_is_announced_once_by_mail_and_on_slack(
    airflow_db: Path, notifying_config: Path, endpoints: tuple[SmtpServer, WebhookServer]
) -> None:
    smtp, webhook = endpoints
    assert run(month="2025-01")[0] == "success"
    assert smtp.messages == [] and webhook.posts == [], "BOOTSTRAPPED is not among the default outcomes"

    state, _, run_id = run(month="2025-07")
    assert state == "success"
    (mail,) = smtp.messages
    assert mail["Subject"] == "[retrain] churn 2025-07: PROMOTED"
    assert mail["To"] == "ml-oncall@example.com, owner@example.com" and mail["From"] == "retrain@example.com"
    body = mail.get_body(preferencelist=("html",)).get_content()
    for expected in ("PROMOTED", "2025-07", "churn", "tenure_months", "95% interval", "AUC lift"):
        assert expected in body
    (post,) = webhook.posts
    text = post["body"]["text"]
    assert post["path"] == "/services/T000/B000/retrain"
    assert "outcome: PROMOTED" in text and "drifted features: tenure_months, usage_gb" in text
    assert "AUC lift: +0." in text and "95% interval [" in text
    link = f"https://airflow.example.com/dags/retrain__churn/runs/{run_id.replace(':', '%3A').replace('+', '%2B')}"
    assert f"report: {link}/plugin/retrain-report" in text, "a link to the run's report page in Airflow"


def test_a_failure_is_reported_once_after_the_last_try(
    airflow_db: Path, notifying_config: Path, endpoints: tuple[SmtpServer, WebhookServer], s3_env: str
) -> None:
    smtp, webhook = endpoints
    bucket = load_config(notifying_config).registry.root.split("/")[2]
    s3_client(s3_env).put_object(Bucket=bucket, Key="data/production/month=2025-02/part-0000.parquet", Body=b"junk")
    state, tasks, _ = run(month="2025-02")
    assert state == "failed" and tasks["pull_snapshots"] == "failed"
    (mail,) = smtp.messages
    assert mail["Subject"] == "[retrain] churn 2025-02: FAILED in pull_snapshots"
    assert "unreadable or corrupt Parquet file" in mail.get_body(preferencelist=("html",)).get_content()
    (post,) = webhook.posts
    assert "failed task: pull_snapshots" in post["body"]["text"]


def test_unreachable_endpoints_leave_the_run_green(
    airflow_db: Path, notifying_config: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    connect(monkeypatch, closed_port(), f"http://127.0.0.1:{closed_port()}/services/x")
    assert run(month="2025-01")[0] == "success"
    with caplog.at_level("WARNING"):
        state, tasks, _ = run(month="2025-07")
    assert state == "success" and tasks["record_decision"] == "success" and tasks["promote"] == "success"
    assert "decision notification by email not sent" in caplog.text
    assert "decision notification by slack not sent" in caplog.text
    assert Registry.for_config(load_config(notifying_config)).champion().version == 2


def test_failures_are_announced_only_after_the_last_retry() -> None:
    from tests.dags.conftest import parse_dag as parse

    for task in parse().tasks:
        callbacks = (
            task.on_failure_callback if isinstance(task.on_failure_callback, list) else [task.on_failure_callback]
        )
        assert [c.__name__ for c in callbacks] == ["log_failure", "notify_failure"]
        assert not task.on_retry_callback, "never one message per retry"


def test_a_message_sent_again_by_a_retried_or_rerun_task_goes_out_once(
    airflow_db: Path, endpoints: tuple[SmtpServer, WebhookServer], tmp_path: Path
) -> None:
    """The Airflow layer claims each channel before it sends, so a retried record_decision or a cleared and
    re-run one says nothing twice; another run of the month is heard again."""
    from types import SimpleNamespace

    from retrain.airflow.notifications import send
    from retrain.notify import Message

    smtp, webhook = endpoints
    path = write_config(
        tmp_path / "retrain.toml", production="p", labeled="l", registry=str(tmp_path / "registry"), extra=NOTIFY
    )
    config = load_config(path)
    registry = Registry.for_config(config)
    message = Message(subject="[retrain] churn 2025-07: PROMOTED", text="outcome: PROMOTED", html="<p>PROMOTED</p>")
    first = {"dag_run": SimpleNamespace(run_id="manual__1")}
    for _ in range(2):
        send(config, registry, message, first, "2025-07", "decision")
    assert len(smtp.messages) == 1 and len(webhook.posts) == 1
    send(config, registry, message, first, "2025-07", "failure")
    send(config, registry, message, {"dag_run": SimpleNamespace(run_id="manual__2")}, "2025-07", "decision")
    assert len(smtp.messages) == 3 and len(webhook.posts) == 3, "another kind, another run: each heard once"

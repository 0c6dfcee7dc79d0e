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
from tests.conftest import ROOT, s3_client, upload_tree, write_config
from tests.dags.conftest import parse_dag
from tests.support.local_servers import SilentServer, SmtpServer, WebhookServer, closed_port, self_signed_certificate

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
    assert mail.get_content_type() == "multipart/alternative"
    text = mail.get_body(preferencelist=("plain",)).get_content()
    assert "outcome: PROMOTED" in text and "report: https://airflow.example.com/dags/retrain__churn/runs/" in text
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
    state, tasks, run_id = run(month="2025-02")
    assert state == "failed" and tasks["pull_snapshots"] == "failed"
    (mail,) = smtp.messages
    assert mail["Subject"] == "[retrain] churn 2025-02: FAILED in pull_snapshots"
    assert "unreadable or corrupt Parquet file" in mail.get_body(preferencelist=("html",)).get_content()
    quoted = run_id.replace(":", "%3A").replace("+", "%2B")
    log = f"https://airflow.example.com/dags/retrain__churn/runs/{quoted}/tasks/pull_snapshots"
    assert f"log: {log}" in mail.get_body(preferencelist=("plain",)).get_content()
    (post,) = webhook.posts
    assert "failed task: pull_snapshots" in post["body"]["text"] and f"log: {log}" in post["body"]["text"]
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        kept = session.execute(
            select(XComModel.task_id, XComModel.value).where(
                XComModel.run_id == run_id, XComModel.key == "retrain_failure"
            )
        ).all()
    ((task, value),) = kept
    failure = json.loads(value) if isinstance(value, str) else value
    assert task == "pull_snapshots" and "unreadable or corrupt Parquet file" in failure["error"]


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


class Instance:
    """A task instance as a callback sees it: its id, its try, and the XComs it pushes."""

    def __init__(self, task_id: str) -> None:
        self.task_id, self.try_number, self.pushed = task_id, 3, {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


def context_of(run_id: str, task_id: str = "record_decision") -> dict[str, Any]:
    from types import SimpleNamespace

    return {
        "dag_run": SimpleNamespace(run_id=run_id, run_after=None),
        "ti": Instance(task_id),
        "params": {"month": "2025-07"},
        "exception": ValueError(f"{task_id} broke\nTraceback ..."),
    }


def test_a_message_is_marked_sent_only_once_it_went_and_then_never_again(
    airflow_db: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A message that could not go is sent by the next try or re-run; one that went is never repeated;
    another run is heard again."""
    from retrain.airflow.notifications import send
    from retrain.notify import Message

    path = write_config(
        tmp_path / "retrain.toml", production="p", labeled="l", registry=str(tmp_path / "registry"), extra=NOTIFY
    )
    config = load_config(path)
    registry = Registry.for_config(config)
    message = Message(subject="[retrain] churn 2025-07: PROMOTED", text="outcome: PROMOTED", html="<p>PROMOTED</p>")
    connect(monkeypatch, closed_port(), f"http://127.0.0.1:{closed_port()}/services/x")
    send(config, registry, message, context_of("manual__1"), "2025-07", "decision")
    assert registry.store.list("runs/") == [], "nothing went, so nothing is marked"
    with SmtpServer() as smtp, WebhookServer() as webhook:
        connect(monkeypatch, smtp.port, webhook.url)
        for _ in range(2):
            send(config, registry, message, context_of("manual__1"), "2025-07", "decision")
        assert len(smtp.messages) == 1 and len(webhook.posts) == 1, "sent once the connection is fixed, then never"
        send(config, registry, message, context_of("manual__2"), "2025-07", "decision")
        assert len(smtp.messages) == 2 and len(webhook.posts) == 2, "another run is heard on its own"


def test_each_failed_task_is_announced_once(
    airflow_db: Path, endpoints: tuple[SmtpServer, WebhookServer], tmp_path: Path
) -> None:
    from retrain.airflow.notifications import failure_notifier

    smtp, webhook = endpoints
    path = write_config(
        tmp_path / "retrain.toml", production="p", labeled="l", registry=str(tmp_path / "registry"), extra=NOTIFY
    )
    notify_failure = failure_notifier(str(path), "retrain__churn")
    contexts = [context_of("manual__1", task) for task in ("train_challenger", "train_challenger", "record_decision")]
    for context in contexts:
        notify_failure(context)
    assert [m["Subject"] for m in smtp.messages] == [
        "[retrain] churn 2025-07: FAILED in train_challenger",
        "[retrain] churn 2025-07: FAILED in record_decision",
    ], "a second task's failure is heard; the same task's is not repeated"
    assert len(webhook.posts) == 2
    assert "error: record_decision broke\nlog: " in smtp.messages[1].get_body(preferencelist=("plain",)).get_content()
    kept = [c["ti"].pushed["retrain_failure"] for c in contexts]
    assert [(f["task"], f["try_number"], f["error"]) for f in kept] == [
        ("train_challenger", 3, "train_challenger broke"),
        ("train_challenger", 3, "train_challenger broke"),
        ("record_decision", 3, "record_decision broke"),
    ], "each kept for the run's report tab as the failed task's XCom"
    names = [k.rsplit("/", 1)[1] for k in Registry.for_config(load_config(path)).store.list("runs/")]
    assert sorted(names) == [
        f"notified-failure-{t}-{c}.json" for t in ("record_decision", "train_challenger") for c in ("email", "slack")
    ]


def test_a_hung_server_costs_one_short_timeout(
    airflow_db: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A server that accepts and never answers: the provider's defaults (30 s, 5 retries) held a task for
    3.5 minutes; notify.timeout_seconds bounds each channel to one try."""
    import time

    from retrain.airflow.notifications import send
    from retrain.notify import Message

    path = write_config(
        tmp_path / "retrain.toml",
        production="p",
        labeled="l",
        registry=str(tmp_path / "registry"),
        extra=NOTIFY + "timeout_seconds = 1\n",
    )
    config = load_config(path)
    message = Message(subject="s", text="t", html="<p>t</p>")
    with SilentServer() as smtp, SilentServer() as webhook:
        monkeypatch.setenv(
            "AIRFLOW_CONN_RETRAIN_SMTP",
            json.dumps({"conn_type": "smtp", "host": "127.0.0.1", "port": smtp.port, "extra": {"disable_ssl": True}}),
        )
        monkeypatch.setenv(
            "AIRFLOW_CONN_RETRAIN_SLACK",
            json.dumps({"conn_type": "slackwebhook", "password": f"http://127.0.0.1:{webhook.port}/services/x"}),
        )
        started = time.monotonic()
        with caplog.at_level("WARNING"):
            send(config, Registry.for_config(config), message, context_of("manual__1"), "2025-07", "decision")
        elapsed = time.monotonic() - started
    assert elapsed < 6, f"two channels of one 1 s try each took {elapsed:.1f} s"
    assert "decision notification by email not sent" in caplog.text
    assert "decision notification by slack not sent" in caplog.text


def test_the_documented_smtp_connection_sends_through_starttls(
    airflow_db: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The connection docs/operations.md gives for port 587, against a server that requires STARTTLS and
    whose certificate the system trusts (here through SSL_CERT_FILE)."""
    import re
    import ssl

    from retrain.airflow.notifications import send
    from retrain.notify import Message

    documented = (ROOT / "docs" / "operations.md").read_text()
    extra = json.loads(
        re.search(r"airflow connections add smtp_default .*?--conn-extra '([^']+)'", documented, re.S)[1]
    )
    cert, key = self_signed_certificate(tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    path = write_config(
        tmp_path / "retrain.toml",
        production="p",
        labeled="l",
        registry=str(tmp_path / "registry"),
        extra='[notify]\nemail_to = ["ml-oncall@example.com"]\nemail_from = "retrain@example.com"\n'
        'email_conn_id = "retrain_smtp"\n',
    )
    config = load_config(path)
    with SmtpServer(tls_context=tls) as smtp:
        conn = {"conn_type": "smtp", "host": "127.0.0.1", "port": smtp.port, "extra": extra}
        monkeypatch.setenv("AIRFLOW_CONN_RETRAIN_SMTP", json.dumps(conn))
        message = Message(subject="[retrain] churn 2025-07: PROMOTED", text="outcome: PROMOTED", html="<p>x</p>")
        send(config, Registry.for_config(config), message, context_of("manual__1"), "2025-07", "decision")
        (mail,) = smtp.messages
    assert mail["Subject"] == "[retrain] churn 2025-07: PROMOTED"

"""A reviewer signs off in Airflow itself: the DAG of a model with `[approval] required` waits in a
human-in-the-loop task (no worker slot held), and the answer comes through the REST API the UI uses (the
task instance's hitlDetails). A real api-server, scheduler and dag-processor on the local PostgreSQL;
dag.test() never answers a human-in-the-loop task."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from retrain.config import load_config
from retrain.records import Outcome, Run
from retrain.registry import Registry
from tests.integration.test_reports_ui import browser as browser  # noqa: PLC0414 - the fixture, shared
from tests.integration.test_review import adopted, config_file, make_world
from tests.support.airflow_stack import POSTGRES_SERVICE, AirflowStack, require
from tests.support.local_servers import WebhookServer

pytestmark = pytest.mark.slow

DAG_ID = "retrain__churn"
TIMEOUT_HOURS = 0.012  # 43 s: long enough to answer (and screenshot), short enough to wait out in the test


@pytest.fixture
def world(tmp_path: Path) -> Path:
    return make_world(tmp_path)


@pytest.fixture
def stack(world: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AirflowStack, Path, WebhookServer]]:
    require(POSTGRES_SERVICE, "a real scheduler and api-server keep their state in PostgreSQL")
    models = world / "models"
    models.mkdir()
    approval = (
        f'[approval]\nrequired = true\napprovers = ["admin"]\ntimeout_hours = {TIMEOUT_HOURS}\n\n'
        '[notify]\noutcomes = ["PROMOTED"]\nslack_webhook_conn_id = "retrain_slack"\n'
    )
    text = config_file(world, extra=approval).read_text()
    for name in ("production", "labeled", "registry"):
        text = text.replace(f'"{name}"', f'"{world / name}"')
    (models / "churn.toml").write_text(text)
    adopted(world, models / "churn.toml")
    home = tmp_path_factory.mktemp("airflow-approval")
    with WebhookServer() as webhook:
        env = {
            "RETRAIN_CONFIG_DIR": str(models),
            # Only the runs the test triggers: a scheduled one would wait for this month's data.
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            "AIRFLOW_CONN_RETRAIN_SLACK": json.dumps({"conn_type": "slackwebhook", "password": webhook.url}),
            # The scheduler's sweep of human-in-the-loop deadlines, every 2 s instead of 15.
            "AIRFLOW__SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL": "2",
        }
        with AirflowStack(home, extra_env=env) as airflow:
            airflow.wait_until(lambda: airflow.dag_is_parsed(DAG_ID), timeout=180, what="the DAG to be parsed")
            yield airflow, models / "churn.toml", webhook


def task_state(airflow: AirflowStack, run_id: str, task_id: str) -> str | None:
    status, instance = airflow.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}")
    return instance.get("state") if status == 200 else None


def wait_for_review(airflow: AirflowStack, run_id: str) -> dict:
    airflow.wait_until(
        lambda: task_state(airflow, run_id, "approve_promotion") == "awaiting_input",
        timeout=300,
        what=f"{run_id} to wait for its reviewer",
    )
    status, details = airflow.api(
        "GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/approve_promotion/-1/hitlDetails"
    )
    assert status == 200, details
    return details


def respond(airflow: AirflowStack, run_id: str, option: str, comment: str) -> None:
    # A reviewer reads before answering. An answer within the second the task paused reaches Airflow 3.3
    # before its scheduler has handled the paused process's exit, which it then takes for a failure of the
    # resumed task and retries it, asking again (seen here at 0.2 s).
    time.sleep(5)
    status, answered = airflow.api(
        "PATCH",
        f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/approve_promotion/-1/hitlDetails",
        {"chosen_options": [option], "params_input": {"comment": comment}},
    )
    assert status == 200, answered


def ledger_entry(config_path: Path, run_id: str):
    config = load_config(config_path)
    return Registry.for_config(config).ledger_record("2025-02", Run(run_id, "2025-02").key)


def screenshot_the_request(airflow: AirflowStack, browser, run_id: str, path: Path) -> None:  # noqa: ANN001
    """The request as a reviewer sees it in the UI: the task's Required Actions, in a real browser."""
    from urllib.parse import quote

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.ui import WebDriverWait

    base = f"http://127.0.0.1:{airflow.api_port}"
    wait = WebDriverWait(browser, 60)
    browser.get(f"{base}/")
    wait.until(seen.presence_of_element_located((By.NAME, "username"))).send_keys("admin")
    browser.find_element(By.NAME, "password").send_keys(airflow.admin_password)
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait.until(lambda driver: "/auth/login" not in driver.current_url)
    browser.get(f"{base}/dags/{DAG_ID}/runs/{quote(run_id, safe='')}/tasks/approve_promotion/required_actions")
    wait.until(lambda driver: "approve promotion?" in driver.find_element(By.TAG_NAME, "body").text)
    text = browser.find_element(By.TAG_NAME, "body").text
    assert "Approve" in text and "Reject" in text and "AUC lift" in text
    browser.save_screenshot(str(path))


def test_reject_timeout_and_approve_through_the_rest_api(stack, browser, tmp_path: Path) -> None:  # noqa: ANN001
    airflow, config_path, webhook = stack
    registry = Registry.for_config(load_config(config_path))
    conf = {"month": "2025-02", "force_retrain": True}

    rejected_run = airflow.trigger(DAG_ID, conf)
    details = wait_for_review(airflow, rejected_run)
    assert details["subject"] == "churn 2025-02: approve promotion?"
    assert details["options"] == ["Approve", "Reject"] and [u["id"] for u in details["assigned_users"]] == ["admin"]
    body = details["body"]
    assert "**AUC lift**: +" in body and "**drifted features**" in body and "retrain-report" in body
    (post,) = webhook.posts
    assert "decision: PROMOTED, waiting for a reviewer" in post["body"]["text"], "sent on the model's notifiers"
    respond(airflow, rejected_run, "Reject", "the south needs a look")
    assert airflow.wait_for_run(DAG_ID, rejected_run, timeout=300) == "success"
    rejected = ledger_entry(config_path, rejected_run)
    assert rejected.outcome == Outcome.REJECTED_BY_REVIEWER and rejected.approval.by == "admin"
    assert rejected.approval.comment == "the south needs a look" and registry.champion().version == 1
    assert task_state(airflow, rejected_run, "promote") == "skipped"

    expired_run = airflow.trigger(DAG_ID, conf)
    wait_for_review(airflow, expired_run)
    # While nobody answers: the fleet counts the waiting run, and its report tab says what it waits for.
    from urllib.parse import quote

    from tests.integration.test_reports_ui import get, token

    login = token(airflow)
    status, fleet, _ = get(airflow, "/retrain/", login)
    assert status == 200 and "1 promotion(s) awaiting approval" in fleet, fleet[-2000:]
    status, page, _ = get(airflow, f"/retrain/runs/{DAG_ID}/{quote(expired_run, safe='')}", login)
    assert status == 200 and "waits for a reviewer" in page and "RUNNING" in page
    assert airflow.wait_for_run(DAG_ID, expired_run, timeout=300) == "success"
    expired = ledger_entry(config_path, expired_run)
    assert expired.outcome == Outcome.APPROVAL_EXPIRED and expired.approval.decision == "expired"
    assert f"no reviewer answered within {TIMEOUT_HOURS:g} hours" in expired.reason
    assert registry.champion().version == 1

    approved_run = airflow.trigger(DAG_ID, conf)
    wait_for_review(airflow, approved_run)
    screenshot_the_request(airflow, browser, approved_run, tmp_path / "approval-request.png")
    respond(airflow, approved_run, "Approve", "checked")
    assert airflow.wait_for_run(DAG_ID, approved_run, timeout=300) == "success"
    approved = ledger_entry(config_path, approved_run)
    assert approved.outcome == Outcome.PROMOTED and approved.approval.by == "admin"
    champion = registry.champion()
    assert champion.version == 2 and registry.metadata(2).approval.comment == "checked"
    requests = [p for p in webhook.posts if "waiting for a reviewer" in p["body"]["text"]]
    decisions = [p for p in webhook.posts if "outcome: PROMOTED" in p["body"]["text"]]
    assert (len(requests), len(decisions)) == (3, 1), "a request per wait; the decision on notify.outcomes"

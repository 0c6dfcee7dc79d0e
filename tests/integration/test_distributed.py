"""The distributed deployment the compose file describes: CeleryExecutor, PostgreSQL metadata DB and a
Redis broker (the local services), with a manual trigger through the REST API the UI's trigger form uses.

Skips with a reason where PostgreSQL or Redis is absent; mandatory in CI (RETRAIN_REQUIRE_SERVICES=1).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from retrain.config import load_config
from retrain.demo_data import write_demo_data
from retrain.registry import Registry
from tests.support.airflow_stack import POSTGRES_SERVICE, REDIS_SERVICE, AirflowStack, require

pytestmark = [pytest.mark.slow, pytest.mark.services]


@pytest.fixture
def services() -> None:
    require({**POSTGRES_SERVICE, **REDIS_SERVICE}, "the CeleryExecutor deployment needs its database and broker")


def test_a_manual_trigger_with_params_runs_on_celery_workers(services: None, tmp_path: Path) -> None:
    config_path = write_demo_data(tmp_path / "demo", months=2, start="2025-01", rows=4000)
    home = tmp_path / "airflow"
    home.mkdir()
    env = {"RETRAIN_CONFIG": str(config_path), "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False"}
    with AirflowStack(home, executor="CeleryExecutor", extra_env=env) as stack:
        stack.wait_until(lambda: stack.dag_is_parsed("retrain__churn"), timeout=180, what="the DAG to be parsed")
        assert stack.api("PATCH", "/api/v2/dags/retrain__churn", {"is_paused": False})[0] == 200

        status, error = stack.api(
            "POST", "/api/v2/dags/retrain__churn/dagRuns", {"logical_date": None, "conf": {"month": "2025-13"}}
        )
        assert status == 400 and "month" in str(error), "an invalid param is refused before any run exists"
        assert stack.runs("retrain__churn") == []

        status, created = stack.api(
            "POST",
            "/api/v2/dags/retrain__churn/dagRuns",
            {"logical_date": None, "conf": {"month": "2025-01", "min_lift": 0.01}},
        )
        assert status == 200, created
        run_id = created["dag_run_id"]

        def finished() -> bool:
            return stack.api("GET", f"/api/v2/dags/retrain__churn/dagRuns/{run_id}")[1]["state"] in (
                "success",
                "failed",
            )

        stack.wait_until(finished, timeout=300, what="the triggered run to finish")
        _, run = stack.api("GET", f"/api/v2/dags/retrain__churn/dagRuns/{run_id}")
        assert run["state"] == "success", stack.log_tail("celery-worker")
        _, instances = stack.api("GET", f"/api/v2/dags/retrain__churn/dagRuns/{run_id}/taskInstances")
        ran = {ti["task_id"]: ti for ti in instances["task_instances"] if ti["state"] == "success"}
        assert {"pull_snapshots", "check_drift", "train_challenger", "evaluate", "promote", "record_decision"} <= set(
            ran
        )
        assert all(ti["executor"] in (None, "CeleryExecutor") and ti["queue"] == "default" for ti in ran.values())
        assert "celery" in stack.log_tail("celery-worker", 400).lower()

        (entry,) = Registry.for_config(load_config(config_path)).ledger()
        assert (entry["outcome"], entry["month"], entry["run_id"]) == ("BOOTSTRAPPED", "2025-01", run_id)
        assert entry["thresholds"]["promotion"]["min_lift"] == 0.01

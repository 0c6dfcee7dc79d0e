"""A backfill with the real CLI and a real scheduler (LocalExecutor) on PostgreSQL.

Skips with a reason where PostgreSQL is absent; CI sets RETRAIN_REQUIRE_SERVICES=1, which makes it
mandatory. SQLite cannot host this: the scheduler and the backfill CLI writing at once lock it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from retrain.config import load_config
from retrain.demo_data import write_demo_data
from retrain.registry import Registry
from tests.support.airflow_stack import POSTGRES_SERVICE, AirflowStack, require

pytestmark = [pytest.mark.slow, pytest.mark.services]

# Three months: a bootstrap, then two more in order, the two later ones reprocessed (each month of a real
# scheduler run costs ~30 s on 2 cores, and the suite must stay under 20 minutes).
MONTHS = ["2025-01", "2025-02", "2025-03"]


@pytest.fixture
def postgres() -> None:
    require(POSTGRES_SERVICE, "a scheduler and the backfill CLI writing at once lock SQLite")


def test_backfill_runs_every_month_in_order_and_reprocessing_writes_nothing_twice(
    postgres: None, tmp_path: Path
) -> None:
    config_path = write_demo_data(tmp_path / "demo", months=len(MONTHS), start=MONTHS[0], rows=4000)
    home = tmp_path / "airflow"
    home.mkdir()
    # No scheduled run for the current month: only the backfill's runs should exist.
    env = {"RETRAIN_CONFIG": str(config_path), "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False"}
    with AirflowStack(home, extra_env=env) as stack:
        stack.wait_until(lambda: stack.dag_is_parsed("retrain__churn"), timeout=180, what="the DAG to be parsed")
        # A paused DAG's backfill runs stay queued; and a backfill has its own max-active-runs (default 10),
        # so one at a time must be asked for to chain promotions month by month.
        stack.cli("dags", "unpause", "retrain__churn")
        # Logical dates are data-interval starts: 2025-01-01 is the run for January.
        stack.cli(
            "backfill",
            "create",
            "--dag-id",
            "retrain__churn",
            "--from-date",
            "2025-01-01",
            "--to-date",
            f"{MONTHS[-1]}-01",
            "--max-active-runs",
            "1",
        )

        def backfill_done() -> bool:
            # Only one backfill may run per DAG: wait until the scheduler marks this one complete too.
            return bool(stack.query("SELECT 1 FROM backfill WHERE completed_at IS NOT NULL"))

        stack.wait_until(backfill_done, timeout=600, what=f"{len(MONTHS)} backfill runs to finish")
        runs = stack.runs("retrain__churn", "backfill")
        assert [state for _, state, *_ in runs] == ["success"] * len(MONTHS), stack.log_tail("scheduler")
        starts = [start for *_, start, _ in runs]
        ends = [end for *_, end in runs]
        assert starts == sorted(starts), "runs start oldest first"
        assert all(ends[i] <= starts[i + 1] for i in range(len(runs) - 1)), "one month at a time"

        registry = Registry.for_config(load_config(config_path))
        ledger = registry.ledger()
        assert [r["month"] for r in ledger] == MONTHS
        assert [r["run_id"] for r in ledger] == [run_id for _, _, run_id, *_ in runs]
        assert ledger[0]["outcome"] == "BOOTSTRAPPED"
        versions, champion = registry.versions(), registry.champion().version
        history = [k for k in registry.store.list() if not k.startswith("runs/")]

        # Reprocess two completed months: the same runs are cleared and run again.
        stack.cli(
            "backfill",
            "create",
            "--dag-id",
            "retrain__churn",
            "--from-date",
            "2025-02-01",
            "--to-date",
            "2025-03-01",
            "--reprocess-behavior",
            "completed",
            "--max-active-runs",
            "1",
        )
        reprocessed = {run_id for _, _, run_id, *_ in runs[1:3]}

        def reprocess_done() -> bool:
            rows = {run_id: (state, end) for _, state, run_id, _, end in stack.runs("retrain__churn")}
            return all(
                rows[r][0] in ("success", "failed") and rows[r][1] and rows[r][1] > ends[-1] for r in reprocessed
            )

        stack.wait_until(reprocess_done, timeout=300, what="the reprocessed runs to finish")
        assert {run_id: state for _, state, run_id, *_ in stack.runs("retrain__churn")} == {
            run_id: "success" for _, _, run_id, *_ in runs
        }
        assert registry.ledger() == ledger, "same decisions, no second ledger record"
        assert registry.versions() == versions and registry.champion().version == champion
        assert [k for k in registry.store.list() if not k.startswith("runs/")] == history

"""The distributed deployment the compose file describes, with a fleet of models: CeleryExecutor with two
workers, a PostgreSQL metadata DB and a Redis broker (the local services).

Skips with a reason where PostgreSQL or Redis is absent; mandatory in CI (RETRAIN_REQUIRE_SERVICES=1).
The tests share one deployment and run in file order: the backfill before its reprocessing, and last the
one that kills a worker.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from retrain.config import load_config
from retrain.demo_data import write_demo_data
from retrain.registry import Registry
from tests.support.airflow_stack import POSTGRES_SERVICE, REDIS_SERVICE, AirflowStack, require

pytestmark = [pytest.mark.slow, pytest.mark.services]

FLEET = ["m1", "m2", "m3"]
MONTHS = ["2025-01", "2025-02", "2025-03"]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AirflowStack, Path]]:
    """Five model configs in one folder (three for the backfill, one to trigger by hand, one slow to train),
    one registry root for all, and a CeleryExecutor deployment with two workers."""
    require({**POSTGRES_SERVICE, **REDIS_SERVICE}, "the CeleryExecutor deployment needs its database and broker")
    root = tmp_path_factory.mktemp("fleet")
    models = root / "models"
    for seed, name in enumerate([*FLEET, "manual", "slow"]):
        slow = name == "slow"
        path = write_demo_data(
            root / "data" / name,
            months=len(MONTHS),
            start=MONTHS[0],
            rows=30000 if slow else 4000,
            seed=seed,
            name=name,
            config_path=models / f"{name}.toml",
            registry=str(root / "registry"),
        )
        if slow:  # the classic GradientBoosting takes long enough to lose a worker in the middle of it
            path.write_text(path.read_text().replace("[training]", '[training]\nestimator = "gradient_boosting"'))
    home = root / "airflow"
    home.mkdir()
    env = {
        "RETRAIN_CONFIG_DIR": str(models),
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        # A lost worker's task stops heartbeating; notice it in seconds rather than the default 5 minutes.
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "3",
        "AIRFLOW__CORE__PARALLELISM": "8",
    }
    with AirflowStack(home, executor="CeleryExecutor", extra_env=env, workers=2) as stack:
        stack.wait_until(
            lambda: all(stack.dag_is_parsed(f"retrain__{m}") for m in [*FLEET, "manual", "slow"]),
            timeout=180,
            what="the five DAGs to be parsed",
        )
        yield stack, models


def registry(models: Path, name: str) -> Registry:
    return Registry.for_config(load_config(models / f"{name}.toml"))


def worker_of(stack: AirflowStack, dag_id: str, run_id: str, task_id: str) -> list[str]:
    """The workers whose logs show they executed this task of this run."""
    return [
        worker
        for worker in stack.workers
        if any(
            "Executing workload" in line and dag_id in line and run_id in line and f"task_id='{task_id}'" in line
            for line in (stack.home / f"{worker}.log").read_text(errors="replace").splitlines()
        )
    ]


def test_a_manual_trigger_with_params_runs_on_celery_workers(fleet: tuple[AirflowStack, Path]) -> None:
    stack, models = fleet
    dag = "retrain__manual"
    assert stack.api("PATCH", f"/api/v2/dags/{dag}", {"is_paused": False})[0] == 200
    status, error = stack.api(
        "POST", f"/api/v2/dags/{dag}/dagRuns", {"logical_date": None, "conf": {"month": "2025-13"}}
    )
    assert status == 400 and "month" in str(error), "an invalid param is refused before any run exists"
    assert stack.runs(dag) == []

    run_id = stack.trigger(dag, {"month": "2025-01", "min_lift": 0.01})
    state = stack.wait_for_run(dag, run_id, timeout=300)
    assert state == "success", stack.log_tail("celery-worker-1") + stack.log_tail("celery-worker-2")
    _, instances = stack.api("GET", f"/api/v2/dags/{dag}/dagRuns/{run_id}/taskInstances")
    ran = {ti["task_id"]: ti for ti in instances["task_instances"] if ti["state"] == "success"}
    assert {"wait_for_data", "pull_snapshots", "check_drift", "train_challenger", "evaluate", "promote"} <= set(ran)
    assert all(ti["queue"] == "default" for ti in ran.values())
    assert ran["train_challenger"]["pool"] == "retrain_training" and ran["evaluate"]["pool"] == "retrain_training"

    (entry,) = registry(models, "manual").ledger()
    assert (entry.outcome, entry.month, entry.run_id) == ("BOOTSTRAPPED", "2025-01", run_id)
    assert entry.thresholds.promotion.min_lift == 0.01


def test_three_models_backfilled_at_once_across_both_workers(fleet: tuple[AirflowStack, Path]) -> None:
    stack, models = fleet
    for name in FLEET:
        stack.cli("dags", "unpause", f"retrain__{name}")
    for name in FLEET:  # one backfill per model, all three at once; each chains its own months
        stack.cli(
            "backfill", "create", "--dag-id", f"retrain__{name}", "--from-date", "2025-01-01",
            "--to-date", "2025-03-01", "--max-active-runs", "1",
        )  # fmt: skip

    def done() -> bool:
        return len(stack.query("SELECT 1 FROM backfill WHERE completed_at IS NOT NULL")) == len(FLEET)

    stack.wait_until(done, timeout=900, what="three backfills of three months")
    spans = []
    for name in FLEET:
        runs = stack.runs(f"retrain__{name}", "backfill")
        assert [state for _, state, *_ in runs] == ["success"] * len(MONTHS), stack.log_tail("scheduler")
        starts, ends = [r[3] for r in runs], [r[4] for r in runs]
        assert all(ends[i] <= starts[i + 1] for i in range(len(runs) - 1)), f"{name}: one month at a time, in order"
        spans.append((starts[0], ends[-1]))
        ledger = registry(models, name).ledger()
        assert [r.month for r in ledger] == MONTHS, "exactly one ledger record per run"
        assert [r.run_id for r in ledger] == [run_id for _, _, run_id, *_ in runs]
        assert ledger[0].outcome == "BOOTSTRAPPED"
    assert max(start for start, _ in spans) < min(end for _, end in spans), "the three models ran concurrently"
    # Any task of the backfills: which worker's prefetch takes the few pull_snapshots tasks varies by run.
    workers = {
        worker
        for name in FLEET
        for _, _, run_id, *_ in stack.runs(f"retrain__{name}", "backfill")
        for task_id in ("wait_for_data", "pull_snapshots", "check_drift", "record_decision")
        for worker in worker_of(stack, f"retrain__{name}", run_id, task_id)
    }
    assert workers == set(stack.workers), "both workers took tasks"


def test_reprocessing_completed_months_writes_nothing_twice(fleet: tuple[AirflowStack, Path]) -> None:
    """A backfill with --reprocess-behavior completed clears and re-runs the same runs: each finds its
    ledger record, and the registry ends as it was."""
    stack, models = fleet
    dag, model = f"retrain__{FLEET[0]}", registry(models, FLEET[0])
    runs = stack.runs(dag, "backfill")
    assert [state for _, state, *_ in runs] == ["success"] * len(MONTHS), "the backfill above ran first"
    ledger, versions, champion = model.ledger(), model.versions(), model.champion().version
    history = [k for k in model.store.list() if not k.startswith("runs/")]
    last_end = max(end for *_, end in runs)
    stack.cli(
        "backfill", "create", "--dag-id", dag, "--from-date", "2025-02-01", "--to-date", "2025-03-01",
        "--reprocess-behavior", "completed", "--max-active-runs", "1",
    )  # fmt: skip
    reprocessed = {run_id for _, _, run_id, *_ in runs[1:]}

    def reprocess_done() -> bool:
        rows = {run_id: (state, end) for _, state, run_id, _, end in stack.runs(dag)}
        return all(rows[r][0] in ("success", "failed") and rows[r][1] and rows[r][1] > last_end for r in reprocessed)

    stack.wait_until(reprocess_done, timeout=300, what="the reprocessed runs to finish")
    assert {run_id: state for _, state, run_id, *_ in stack.runs(dag)} == {
        run_id: "success" for _, _, run_id, *_ in runs
    }
    assert model.ledger() == ledger, "same decisions, no second ledger record"
    assert model.versions() == versions and model.champion().version == champion
    assert [k for k in model.store.list() if not k.startswith("runs/")] == history


def test_a_worker_killed_while_training_is_detected_and_the_task_finishes_on_the_other(
    fleet: tuple[AirflowStack, Path],
) -> None:
    stack, models = fleet
    dag = "retrain__slow"
    run_id = stack.trigger(dag, {"month": "2025-01"})

    def training() -> bool:
        rows = stack.query(
            "SELECT state FROM task_instance WHERE dag_id = %s AND run_id = %s AND task_id = 'train_challenger'",
            dag,
            run_id,
        )
        return bool(rows) and rows[0][0] == "running" and bool(worker_of(stack, dag, run_id, "train_challenger"))

    stack.wait_until(training, timeout=300, what="the slow model to start training")
    time.sleep(2)  # well inside the fit
    (victim,) = worker_of(stack, dag, run_id, "train_challenger")
    survivor = next(w for w in stack.workers if w != victim)
    stack.kill(victim)

    state = stack.wait_for_run(dag, run_id, timeout=600)
    assert state == "success", stack.log_tail("scheduler") + stack.log_tail(survivor)
    ((tries,),) = stack.query(
        "SELECT try_number FROM task_instance WHERE dag_id = %s AND run_id = %s AND task_id = 'train_challenger'",
        dag,
        run_id,
    )
    assert tries >= 2, "Airflow noticed the lost task and tried it again"
    assert survivor in worker_of(stack, dag, run_id, "train_challenger")
    slow = registry(models, "slow")
    (entry,) = slow.ledger()
    assert (entry.outcome, entry.run_id) == ("BOOTSTRAPPED", run_id), "exactly one ledger record"
    assert slow.versions() == [1] and slow.champion().version == 1, "one version, one champion move"
    assert slow.champion().run_id == run_id

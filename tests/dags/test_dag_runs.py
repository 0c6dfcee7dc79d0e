"""Every path through the DAG with dag.test() on SQLite, against the S3 server process.

dag.test() logs task exceptions instead of raising them, so every test asserts each task's state.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from retrain.config import load_config
from retrain.registry import Registry
from tests.conftest import DEMO_START, s3_client, upload_tree, write_config
from tests.dags.conftest import parse_dag

pytestmark = pytest.mark.slow

S, K = "success", "skipped"
# Every task but keep_champion: a run that bootstraps or promotes.
PROMOTING_PATH = {
    "wait_for_data": S,
    "pull_snapshots": S,
    "check_drift": S,
    "train_challenger": S,
    "evaluate": S,
    "promote": S,
    "keep_champion": K,
    "record_decision": S,
}


def run(dag: Any, logical_date: datetime | None = None, **conf: Any) -> tuple[str, dict[str, str]]:
    dag_run = dag.test(run_conf=conf, logical_date=logical_date)
    return str(dag_run.state), {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}


def registry(config_path: Path) -> Registry:
    return Registry.for_config(load_config(config_path))


def champion_events() -> list[dict]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(AssetEvent.extra)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.name == "retrain_champion__churn")
        ).all()
        return [row[0] for row in rows]


def test_first_run_bootstraps_and_announces_the_champion(dag: Any, retrain_config: Path) -> None:
    before = len(champion_events())
    state, tasks = run(dag, month="2025-01")
    assert state == "success"
    assert tasks == PROMOTING_PATH
    reg = registry(retrain_config)
    assert reg.champion().version == 1 and reg.versions() == [1]
    (entry,) = reg.ledger()
    assert (entry.outcome, entry.month) == ("BOOTSTRAPPED", "2025-01")
    assert entry.run_id.startswith("manual__"), "the Airflow run id is the idempotency key"
    assert reg.metadata(1).run_id == entry.run_id
    events = champion_events()[before:]
    assert [(e["version"], e["month"]) for e in events] == [(1, "2025-01")]


def test_no_drift_records_and_skips_training(dag: Any, retrain_config: Path) -> None:
    run(dag, month="2025-01")
    state, tasks = run(dag, month="2025-02")
    assert state == "success"
    assert tasks == {
        "wait_for_data": S,
        "pull_snapshots": S,
        "check_drift": S,
        "train_challenger": K,
        "evaluate": K,
        "promote": K,
        "keep_champion": K,
        "record_decision": S,
    }
    reg = registry(retrain_config)
    assert [r.outcome for r in reg.ledger()] == ["BOOTSTRAPPED", "NO_DRIFT"]
    assert reg.versions() == [1]


def test_drift_and_a_kept_champion(dag: Any, retrain_config: Path) -> None:
    run(dag, month="2025-01")
    state, tasks = run(dag, month="2025-04")
    assert state == "success"
    assert tasks == {
        "wait_for_data": S,
        "pull_snapshots": S,
        "check_drift": S,
        "train_challenger": S,
        "evaluate": S,
        "promote": K,
        "keep_champion": S,
        "record_decision": S,
    }
    reg = registry(retrain_config)
    last = reg.ledger()[-1]
    assert last.outcome == "KEPT_CHAMPION" and last.drift.drifted_features == ("usage_gb",)
    assert reg.versions() == [1] and reg.champion().version == 1
    assert last.reference.months == ("2025-01",) and last.reference.moved_to == "2025-04"
    assert reg.champion().validated_month == "2025-04", "kept and holding up: the new normal is the reference"


def test_drift_and_a_promotion(dag: Any, retrain_config: Path) -> None:
    run(dag, month="2025-01")
    before = len(champion_events())
    state, tasks = run(dag, month="2025-07")
    assert state == "success"
    assert tasks["promote"] == S and tasks["keep_champion"] == K and tasks["record_decision"] == S
    reg = registry(retrain_config)
    assert reg.ledger()[-1].outcome == "PROMOTED"
    assert reg.champion().version == 2 and reg.champion().data_month == "2025-07"
    assert reg.champion().validated_month == "2025-07", "a promotion validates the new champion on its month"
    assert [e["version"] for e in champion_events()[before:]] == [2]


def test_a_bad_snapshot_fails_with_nothing_written(dag: Any, retrain_config: Path, s3_env: str) -> None:
    bucket = load_config(retrain_config).registry.root.split("/")[2]
    s3_client(s3_env).put_object(
        Bucket=bucket, Key="data/production/month=2025-01/part-0000.parquet", Body=b"PAR1 truncated"
    )
    state, tasks = run(dag, month="2025-01")
    assert state == "failed"
    assert tasks["wait_for_data"] == S and tasks["pull_snapshots"] == "failed"
    assert {tasks[t] for t in tasks if t not in ("wait_for_data", "pull_snapshots")} == {"upstream_failed"}
    reg = registry(retrain_config)
    assert reg.store.list() == [], "no version, no pointer, no ledger record, no run files"


def test_forced_retrain_without_drift(dag: Any, retrain_config: Path) -> None:
    run(dag, month="2025-01")
    state, tasks = run(dag, month="2025-02", force_retrain=True)
    assert state == "success" and tasks["train_challenger"] == S and tasks["evaluate"] == S
    last = registry(retrain_config).ledger()[-1]
    assert last.forced is True and last.drift.drifted is False
    assert "retraining forced" in last.reason


def test_dry_run_decides_but_never_promotes(dag: Any, retrain_config: Path) -> None:
    before = len(champion_events())
    state, tasks = run(dag, month="2025-01", dry_run=True)
    assert state == "success"
    assert tasks["evaluate"] == S and tasks["promote"] == K and tasks["keep_champion"] == S
    reg = registry(retrain_config)
    assert reg.champion() is None and reg.versions() == []
    (entry,) = reg.ledger()
    assert entry.dry_run is True and entry.outcome == "BOOTSTRAPPED"
    assert len(champion_events()) == before


def test_threshold_overrides_reach_the_engine(dag: Any, retrain_config: Path) -> None:
    run(dag, month="2025-01")
    state, _ = run(dag, month="2025-04", min_lift=0.5, alpha=0.01)
    assert state == "success"
    last = registry(retrain_config).ledger()[-1]
    assert last.thresholds.promotion.min_lift == 0.5 and last.thresholds.drift.alpha == 0.01
    assert "below min_lift=0.5" in last.reason


def test_without_a_month_param_the_data_interval_decides(dag: Any, retrain_config: Path) -> None:
    state, _ = run(dag, logical_date=datetime(2025, 2, 1, tzinfo=UTC))
    assert state == "success"
    assert registry(retrain_config).ledger()[0].month == "2025-01"


def test_a_scheduled_or_backfilled_run_over_years_old_history_runs_every_task(
    airflow_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A run dated before the DAG's start date would get no task at all and still succeed, doing nothing.
    from retrain.demo_data import write_demo_data

    write_demo_data(tmp_path / "data", months=1, start="2019-03", rows=4000, config=False)
    path = write_config(
        tmp_path / "retrain.toml",
        production=str(tmp_path / "data" / "production"),
        labeled=str(tmp_path / "data" / "labeled"),
        registry=str(tmp_path / "registry"),
    )
    path.write_text(path.read_text().replace(f'reference_month = "{DEMO_START}"', ""))
    monkeypatch.setenv("RETRAIN_CONFIG", str(path))
    # Like test_without_a_month_param_the_data_interval_decides: the interval that ended on 1 April.
    state, tasks = run(parse_dag(), logical_date=datetime(2019, 4, 1, tzinfo=UTC))
    assert state == "success"
    assert tasks == PROMOTING_PATH
    assert [(r.month, r.outcome) for r in registry(path).ledger()] == [("2019-03", "BOOTSTRAPPED")]


@pytest.mark.parametrize(
    "conf",
    [{"month": "2025-13"}, {"month": "January"}, {"alpha": 1.5}, {"min_lift": -0.1}, {"force_retrain": "yes"}],
)
def test_invalid_params_are_rejected_before_any_task_runs(dag: Any, retrain_config: Path, conf: dict) -> None:
    from airflow.sdk.definitions.param import ParamValidationError

    with pytest.raises(ParamValidationError):
        dag.test(run_conf=conf, logical_date=None)
    assert registry(retrain_config).store.list() == []


def test_an_unknown_conf_key_fails_the_run_at_its_first_task(
    dag: Any, retrain_config: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state, tasks = run(dag, month="2025-01", min_lft=0.01)
    assert state == "failed" and tasks["wait_for_data"] == "failed"
    assert {tasks[t] for t in tasks if t != "wait_for_data"} == {"upstream_failed"}
    assert (
        "unknown key in the run's conf: min_lft; accepted params: month, force_retrain, dry_run, alpha, min_lift"
        in (caplog.text)
    )
    assert registry(retrain_config).store.list() == []


def test_a_backfill_that_cannot_promote_never_says_promoted(
    dag: Any, retrain_config: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A champion of July exists; a backfill run for April then wins on April's own data, but may not promote.
    run(dag, month="2025-07")
    state, tasks = run(parse_dag(), month="2025-02", force_retrain=True)
    assert state == "success"
    assert tasks["evaluate"] == S and tasks["promote"] == K and tasks["keep_champion"] == S
    last = registry(retrain_config).ledger()[-1]
    assert (last.decision, last.outcome) == ("PROMOTED", "SUPERSEDED")
    assert "outcome: SUPERSEDED" in caplog.text and "outcome: PROMOTED" not in caplog.text
    assert registry(retrain_config).champion().validated_month == "2025-07", "an older month never moves it"


@pytest.fixture
def waiting_config(
    s3_bucket: str, s3_env: str, demo_source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Production data up to January only; the DAG waits at most 30 s, looking every second (a task
    can take 10 s to start on a loaded machine)."""
    upload_tree(s3_env, demo_source / "labeled", s3_bucket, "data/labeled")
    upload_tree(
        s3_env, demo_source / "production" / f"month={DEMO_START}", s3_bucket, f"data/production/month={DEMO_START}"
    )
    path = write_config(
        tmp_path / "retrain.toml",
        production=f"s3://{s3_bucket}/data/production",
        labeled=f"s3://{s3_bucket}/data/labeled",
        registry=f"s3://{s3_bucket}/registry",
        data_extra='success_marker = "_SUCCESS"\nwait_timeout_minutes = 0.5\nwait_poke_seconds = 1',
    )
    monkeypatch.setenv("RETRAIN_CONFIG", str(path))
    return path


def _land(s3_env: str, bucket: str, source: Path, prefix: str) -> None:
    upload_tree(s3_env, source, bucket, prefix)
    s3_client(s3_env).put_object(Bucket=bucket, Key=f"{prefix}/_SUCCESS", Body=b"")


def _reschedule_count(database: Path) -> int:
    """Rows in Airflow's task_reschedule table, read over a connection of its own (the run holds others)."""
    with contextlib.closing(sqlite3.connect(database, timeout=10)) as connection:
        return connection.execute("SELECT COUNT(*) FROM task_reschedule").fetchone()[0]


def test_the_run_waits_for_late_data_without_holding_a_worker(
    airflow_db: Path, waiting_config: Path, s3_env: str, s3_bucket: str, demo_source: Path
) -> None:
    # January's labels are there but carry no _SUCCESS marker yet; its production partition neither.
    month = "month=2025-01"
    s3_client(s3_env).delete_object(Bucket=s3_bucket, Key=f"data/production/{month}/part-0000.parquet")
    s3_client(s3_env).put_object(Bucket=s3_bucket, Key=f"data/labeled/{month}/_SUCCESS", Body=b"")
    database, done = airflow_db / "airflow.db", threading.Event()
    before = _reschedule_count(database)

    def land_once_the_sensor_has_given_its_slot_back() -> None:
        # Not after a fixed delay: on a loaded machine the task can take longer than that to start.
        while not done.wait(0.2):
            with contextlib.suppress(sqlite3.OperationalError):  # the run is writing; look again
                if _reschedule_count(database) > before:
                    break
        _land(s3_env, s3_bucket, demo_source / "production" / month, f"data/production/{month}")

    landing = threading.Thread(target=land_once_the_sensor_has_given_its_slot_back)
    landing.start()
    try:
        dag_run = parse_dag().test(run_conf={"month": "2025-01"}, logical_date=None)
    finally:
        done.set()
        landing.join()
    assert str(dag_run.state) == "success"
    sensor = next(ti for ti in dag_run.get_task_instances() if ti.task_id == "wait_for_data")
    assert _reschedules(sensor) >= 1, "the sensor gave its slot back between pokes"
    assert registry(waiting_config).ledger()[0].outcome == "BOOTSTRAPPED"


def _reschedules(ti: Any) -> int:
    from airflow.models.taskreschedule import TaskReschedule
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    with create_session() as session:
        return session.scalar(select(func.count()).select_from(TaskReschedule).where(TaskReschedule.ti_id == ti.id))


def test_a_month_before_the_data_begins_fails_at_once_instead_of_waiting(
    airflow_db: Path, waiting_config: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A backfill reaching back before the first partition: nothing will ever land for it.
    dag_run = parse_dag().test(run_conf={"month": "2024-11"}, logical_date=None)
    tasks = {ti.task_id: ti for ti in dag_run.get_task_instances()}
    assert str(dag_run.state) == "failed" and str(tasks["wait_for_data"].state) == "failed"
    assert _reschedules(tasks["wait_for_data"]) == 0 and tasks["wait_for_data"].try_number == 1
    assert "production month 2024-11" in caplog.text
    assert "before the first production month, 2025-01, so it never lands" in caplog.text
    assert registry(waiting_config).store.list() == []


def test_data_that_never_lands_fails_the_run_naming_what_is_missing(
    airflow_db: Path, waiting_config: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state, tasks = run(parse_dag(), month="2025-03")
    assert state == "failed" and tasks["wait_for_data"] == "failed"
    assert {tasks[t] for t in tasks if t != "wait_for_data"} == {"upstream_failed"}
    assert "data for 2025-03 still missing after" in caplog.text
    assert "production month 2025-03" in caplog.text and "no data files yet" in caplog.text
    assert "labeled month 2025-03" in caplog.text and "no _SUCCESS marker yet" in caplog.text
    assert registry(waiting_config).store.list() == []

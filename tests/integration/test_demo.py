"""`make demo` leaves Airflow as real runs would: each run's start, end and trigger read as they happened,
and the scheduler, once a DAG is unpaused, creates the month the demo left for it (no loop on a month that
already has a run). The demo runs one model over two months here, on its own copy of the config."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from retrain.months import previous_complete_month
from tests.conftest import ROOT
from tests.support.airflow_stack import POSTGRES, POSTGRES_SERVICE, require

pytestmark = [pytest.mark.slow, pytest.mark.services]


def drop_schema(schema: str) -> None:
    import adbc_driver_postgresql.dbapi as dbapi

    url = f"postgresql://{POSTGRES['user']}@{POSTGRES['host']}:{POSTGRES['port']}/postgres"
    with dbapi.connect(url) as connection, connection.cursor() as cursor:
        cursor.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        connection.commit()


def test_demo_runs_read_as_real_runs_and_the_scheduler_takes_the_next_month(tmp_path: Path) -> None:
    """churn from files and churn_db from PostgreSQL tables the demo loads (a schema of the test's own)."""
    require(POSTGRES_SERVICE, "the demo's database-backed model reads its months from PostgreSQL")
    config_dir = tmp_path / "config" / "models"
    config_dir.mkdir(parents=True)
    shutil.copy(ROOT / "config" / "models" / "churn.toml", config_dir)  # its data and registry: tmp_path/demo
    schema = f"retrain_demo_{uuid.uuid4().hex[:8]}"
    database_model = (ROOT / "config" / "models" / "churn_db.toml").read_text()
    (config_dir / "churn_db.toml").write_text(database_model.replace("sql:retrain_demo.", f"sql:{schema}."))
    demo = tmp_path / "demo"
    began = datetime.now(UTC)
    command = [sys.executable, str(ROOT / "scripts" / "demo.py"), "--dir", str(demo), "--months", "2"]
    try:
        done = subprocess.run(
            [*command, "--models", "churn,churn_db", "--config-dir", str(config_dir)],
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        drop_schema(schema)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    scheduled_month = previous_complete_month(datetime.now(UTC))
    assert f"Left for the scheduler: {scheduled_month}" in done.stdout
    assert f"{schema}.churn_db_production: " in done.stdout and "churn_db  success" in done.stdout

    database = demo / "airflow" / "airflow.db"
    with sqlite3.connect(database) as db:
        runs = db.execute(
            "select run_type, triggered_by, triggering_user_name, start_date, end_date from dag_run"
        ).fetchall()
    assert len(runs) == 4, "two months of two models"
    for run_type, triggered_by, user, start, end in runs:
        assert (run_type, triggered_by, user) == ("manual", "CLI", "make demo")
        started = datetime.fromisoformat(start).replace(tzinfo=UTC)
        duration = datetime.fromisoformat(end).replace(tzinfo=UTC) - started
        assert started >= began - timedelta(seconds=1), "started when it ran, not at its logical date"
        assert timedelta(0) < duration < timedelta(minutes=5)

    env = {
        **os.environ,
        "AIRFLOW_HOME": str(demo / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{database}",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "RETRAIN_CONFIG_DIR": str(config_dir),
    }
    airflow = str(Path(sys.executable).parent / "airflow")
    subprocess.run([airflow, "dags", "unpause", "retrain__churn"], env=env, check=True, capture_output=True)
    scheduler = subprocess.run(
        [airflow, "scheduler", "--num-runs", "5", "--skip-serve-logs"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "run already exists" not in scheduler.stdout + scheduler.stderr
    with sqlite3.connect(database) as db:
        created = db.execute(
            "select logical_date, data_interval_end from dag_run where run_type = 'scheduled'"
        ).fetchall()
    assert [(logical[:7], end[:7]) for logical, end in created] == [
        (scheduled_month, (datetime.fromisoformat(created[0][0]) + timedelta(days=32)).strftime("%Y-%m"))
    ], "one run, for the month the demo left, whose data is there"


def test_the_demo_on_s3_keeps_data_and_registry_in_a_local_seaweedfs(tmp_path: Path) -> None:
    """`make demo STORAGE=s3`: the months and the registry in the bucket of a SeaweedFS the demo starts and
    stops; started again from what the demo left (as `make airflow` does), it holds the demo's ledger."""
    config_dir = tmp_path / "config" / "models"
    config_dir.mkdir(parents=True)
    shutil.copy(ROOT / "config" / "models" / "churn.toml", config_dir)
    demo = tmp_path / "demo"
    command = [sys.executable, str(ROOT / "scripts" / "demo.py"), "--dir", str(demo), "--months", "1"]
    done = subprocess.run(
        [*command, "--models", "churn", "--config-dir", str(config_dir), "--storage", "s3"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Reports: s3://retrain-demo/registry/" in done.stdout and "Stopped SeaweedFS" in done.stdout
    assert not any((tmp_path / "demo" / "registry").glob("*")), "nothing of the registry on local disk"
    sys.path.insert(0, str(ROOT / "scripts"))
    import demo as demo_script

    from retrain.config import load_config
    from retrain.registry import Registry

    server = demo_script.local_s3(demo).start()
    try:
        with pytest.MonkeyPatch.context() as patch:
            for name, value in server.environment.items():
                patch.setenv(name, value)
            config = load_config(demo / "config-s3" / "churn.toml")
            assert config.data.production == "s3://retrain-demo/churn/production"
            assert [r.outcome for r in Registry.for_config(config).ledger()] == ["BOOTSTRAPPED"]
    finally:
        server.stop()

"""Airflow in a temp AIRFLOW_HOME with a SQLite metadata DB, set up before anything imports airflow."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="retrain-airflow-"))
AIRFLOW_ENV = {
    "AIRFLOW_HOME": str(AIRFLOW_HOME),
    "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{AIRFLOW_HOME / 'airflow.db'}",
}
# Airflow reads its settings once, at import: they must be in place before the first `import airflow`.
os.environ.update(AIRFLOW_ENV)


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        env={**os.environ, **AIRFLOW_ENV},
        check=True,
        capture_output=True,
    )
    return AIRFLOW_HOME


DAG_ID = "retrain__churn"


def parse_dag(dag_id: str = DAG_ID):  # noqa: ANN201 - airflow's DAG type
    """Parsed afresh: dag.test() folds each run's conf into the DAG object's params."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    return bag.dags[dag_id]


@pytest.fixture
def retrain_config(s3_demo_config: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Demo data in a fresh bucket on the S3 server process; the DAG file finds the config through
    RETRAIN_CONFIG (one model)."""
    monkeypatch.setenv("RETRAIN_CONFIG", str(s3_demo_config))
    yield s3_demo_config


@pytest.fixture
def dag(airflow_db: Path, retrain_config: Path):  # noqa: ANN201 - airflow's DAG type
    return parse_dag()

"""The DAG file parses cleanly, cheaply, and describes the graph the README promises."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from tests.dags.conftest import AIRFLOW_ENV, ROOT

EXPECTED_DOWNSTREAM = {
    "pull_snapshots": {"check_drift"},
    "check_drift": {"train_challenger", "record_decision"},
    "train_challenger": {"evaluate"},
    "evaluate": {"promote", "keep_champion"},
    "promote": {"record_decision"},
    "keep_champion": {"record_decision"},
    "record_decision": set(),
}

PARSE_PROBE = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
heavy = [m for m in ("pandas", "sklearn", "scipy", "boto3", "pyarrow", "retrain.pipeline") if m in sys.modules]
print(json.dumps({"errors": bag.import_errors, "dags": sorted(bag.dag_ids), "heavy": heavy}))
"""


def test_parses_without_heavy_imports_or_a_database() -> None:
    # An unreachable metadata DB proves parsing touches no database, connection or variable.
    env = {**os.environ, **AIRFLOW_ENV, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql://nobody@127.0.0.1:1/none"}
    result = subprocess.run(
        [sys.executable, "-c", PARSE_PROBE, str(ROOT / "dags")], env=env, capture_output=True, text=True, check=True
    )
    parsed = json.loads(result.stdout.strip().splitlines()[-1])
    assert parsed == {"errors": {}, "dags": ["model_retraining"], "heavy": []}


def test_owner_tags_retries_and_failure_callback(dag) -> None:  # noqa: ANN001
    assert set(dag.tags) == {"ml", "retraining", "drift"}
    assert dag.max_active_runs == 1
    assert dag.doc_md and "airflow backfill create" in dag.doc_md
    for task in dag.tasks:
        assert task.owner == "ml-platform"
        assert task.retries == 3 and task.retry_exponential_backoff
        assert task.retry_policy is not None
        assert task.on_failure_callback


def test_task_graph(dag) -> None:  # noqa: ANN001
    assert {t.task_id: set(t.downstream_task_ids) for t in dag.tasks} == EXPECTED_DOWNSTREAM
    assert dag.get_task("record_decision").trigger_rule == "none_failed_min_one_success"
    assert [a.name for a in dag.get_task("promote").outlets] == ["retrain_champion"]


def test_a_scheduled_run_covers_the_whole_previous_month(dag) -> None:  # noqa: ANN001
    from airflow.sdk import CronDataIntervalTimetable
    from airflow.serialization.encoders import coerce_to_core_timetable
    from airflow.timetables.base import TimeRestriction

    assert isinstance(dag.timetable, CronDataIntervalTimetable)
    timetable = coerce_to_core_timetable(dag.timetable)
    first = timetable.next_dagrun_info(
        last_automated_data_interval=None,
        restriction=TimeRestriction(earliest=datetime(2025, 1, 1, tzinfo=UTC), latest=None, catchup=True),
    )
    assert (first.data_interval.start, first.data_interval.end) == (
        datetime(2025, 1, 1, tzinfo=UTC),
        datetime(2025, 2, 1, tzinfo=UTC),
    )
    assert first.run_after == datetime(2025, 2, 1, tzinfo=UTC), "January runs once January is over"


def test_params_render_as_a_validated_trigger_form(dag) -> None:  # noqa: ANN001
    params = dag.params
    assert set(params.keys()) == {"month", "force_retrain", "dry_run", "alpha", "min_lift"}
    for name in params:
        param = params.get_param(name)
        assert param.schema.get("title") and param.description
    assert params.get_param("month").schema["pattern"] == r"^\d{4}-(0[1-9]|1[0-2])$"


def test_the_dag_module_reads_no_variables_or_connections() -> None:
    source = (ROOT / "dags" / "model_retraining.py").read_text()
    for lookup in ("Variable.get", "get_connection", "BaseHook", "open("):
        assert lookup not in source


def test_only_the_dag_file_lives_in_dags() -> None:
    assert sorted(p.name for p in Path(ROOT / "dags").glob("*.py")) == ["model_retraining.py"]


def _dag_module():  # noqa: ANN202
    import importlib.util

    spec = importlib.util.spec_from_file_location("model_retraining_module", ROOT / "dags" / "model_retraining.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_which_month_a_run_processes() -> None:
    from types import SimpleNamespace

    run_month = _dag_module()._run_month
    january = {
        "data_interval_start": datetime(2025, 1, 1, tzinfo=UTC),
        "data_interval_end": datetime(2025, 2, 1, tzinfo=UTC),
    }
    manual = SimpleNamespace(run_after=datetime(2025, 3, 15, 9, 30, tzinfo=UTC))
    assert run_month({"params": {"month": "2024-07"}, **january}) == "2024-07", "the param wins"
    assert run_month({"params": {"month": None}, **january}) == "2025-01", "a scheduled run: its data interval"
    no_interval = {"data_interval_start": None, "data_interval_end": None, "dag_run": manual}
    assert run_month({"params": {}, **no_interval}) == "2025-02", "no logical date: the last complete month"
    zero_length = {"data_interval_start": manual.run_after, "data_interval_end": manual.run_after, "dag_run": manual}
    assert run_month({"params": {}, **zero_length}) == "2025-02"


def test_the_failure_callback_logs_one_actionable_paragraph(caplog) -> None:  # noqa: ANN001
    from types import SimpleNamespace

    context = {
        "params": {"month": "2025-04"},
        "ti": SimpleNamespace(task_id="pull_snapshots", try_number=1),
        "dag_run": SimpleNamespace(run_id="manual__x"),
        "exception": ValueError("month 2025-04 (s3://b/p/month=2025-04): missing column spend"),
    }
    with caplog.at_level("ERROR"):
        _dag_module().log_failure(context)
    (record,) = caplog.records
    message = record.getMessage()
    assert "month 2025-04, task pull_snapshots" in message and "missing column spend" in message
    assert "\n" not in message

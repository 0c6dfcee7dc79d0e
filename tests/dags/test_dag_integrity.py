"""The DAG file parses cleanly, cheaply, one DAG per model config, and describes the graph the README
promises."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.dags.conftest import AIRFLOW_ENV, ROOT

EXPECTED_DOWNSTREAM = {
    "wait_for_data": {"pull_snapshots"},
    "pull_snapshots": {"check_drift"},
    "check_drift": {"train_challenger", "record_decision"},
    "train_challenger": {"evaluate"},
    "evaluate": {"promote", "keep_champion"},
    "promote": {"record_decision"},
    "keep_champion": {"record_decision"},
    "record_decision": set(),
}

PARSE_PROBE = """
import json, sys, time
started = time.perf_counter()
from airflow.dag_processing.dagbag import DagBag
imported = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1])
parsed = time.perf_counter()
heavy = [m for m in ("pandas", "sklearn", "scipy", "boto3", "pyarrow", "retrain.cycle") if m in sys.modules]
broken = {d: g.description for d, g in bag.dags.items() if "config-error" in g.tags}
print(json.dumps({"errors": bag.import_errors, "dags": sorted(bag.dag_ids), "heavy": heavy, "broken": broken,
                  "parse_seconds": parsed - imported}))
"""


def parse_in_a_fresh_process(**env_overrides: str) -> dict:
    # An unreachable metadata DB proves parsing touches no database, connection or variable.
    env = {k: v for k, v in os.environ.items() if k not in ("RETRAIN_CONFIG", "RETRAIN_CONFIG_DIR")}
    env.update(AIRFLOW_ENV, AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="postgresql://nobody@127.0.0.1:1/none")
    env.update(env_overrides)
    result = subprocess.run(
        [sys.executable, "-c", PARSE_PROBE, str(ROOT / "dags")], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_one_dag_per_model_config_without_heavy_imports_or_a_database() -> None:
    parsed = parse_in_a_fresh_process()
    assert parsed["errors"] == {} and parsed["heavy"] == [] and parsed["broken"] == {}
    assert parsed["dags"] == ["retrain__churn", "retrain__churn_db", "retrain__churn_eu", "retrain__home_prices"], (
        "config/models/*.toml by default"
    )


def model_config(name: str, **sections: str) -> str:
    body = {
        "model": f'name = "{name}"\ntarget = "y"\nnumeric_features = ["x"]',
        "data": 'production = "data/production"\nlabeled = "data/labeled"',
        "registry": 'root = "s3://bucket/registry"',
        **sections,
    }
    return "\n".join(f"[{section}]\n{text}\n" for section, text in body.items())


@pytest.mark.slow
def test_fifty_model_configs_parse_in_under_two_seconds(tmp_path: Path) -> None:
    for i in range(50):
        (tmp_path / f"model_{i:02d}.toml").write_text(model_config(f"model_{i:02d}"))
    parsed = parse_in_a_fresh_process(RETRAIN_CONFIG_DIR=str(tmp_path))
    assert len(parsed["dags"]) == 50 and parsed["errors"] == {} and parsed["heavy"] == []
    assert parsed["parse_seconds"] < 2.0, f"parsing 50 model configs took {parsed['parse_seconds']:.2f} s"


def test_a_bad_config_breaks_only_its_own_dag(tmp_path: Path) -> None:
    (tmp_path / "good.toml").write_text(model_config("good"))
    (tmp_path / "typo.toml").write_text(model_config("typo", training="seed = 1.5"))
    (tmp_path / "twin.toml").write_text(model_config("good"))
    (tmp_path / "garbled.toml").write_text("[model\nname = ")
    parsed = parse_in_a_fresh_process(RETRAIN_CONFIG_DIR=str(tmp_path))
    assert parsed["errors"] == {}, "no file-level import error: it would take the healthy models down"
    assert parsed["dags"] == ["retrain__garbled", "retrain__good", "retrain__twin", "retrain__typo"]
    broken = parsed["broken"]
    assert set(broken) == {"retrain__garbled", "retrain__twin", "retrain__typo"}
    assert "typo.toml" in broken["retrain__typo"] and "training.seed must be an integer" in broken["retrain__typo"]
    assert "garbled.toml: invalid TOML" in broken["retrain__garbled"]
    assert "model.name 'good' is already used by" in broken["retrain__twin"]


def test_a_config_sets_schedule_tags_and_owners(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.dags.conftest import parse_dag

    path = tmp_path / "weekly.toml"
    path.write_text(
        model_config(
            "weekly",
            airflow='schedule = "0 6 * * 1"\ntags = ["team-a"]\nowners = ["alice", "bob"]\nstart_month = "2018-06"',
        )
    )
    monkeypatch.setenv("RETRAIN_CONFIG", str(path))
    from airflow.serialization.encoders import coerce_to_core_timetable

    dag = parse_dag("retrain__weekly")
    assert coerce_to_core_timetable(dag.timetable).summary == "0 6 * * 1"
    assert {"team-a", "ml", "retraining"} <= set(dag.tags)
    assert {task.owner for task in dag.tasks} == {"alice,bob"}
    assert [a.name for a in dag.get_task("promote").outlets] == ["retrain_champion__weekly"]
    assert dag.start_date == datetime(2018, 6, 1, tzinfo=UTC)


def test_the_dag_starts_early_enough_for_backfills_over_years_of_history(dag) -> None:  # noqa: ANN001
    # Airflow creates no task for a run before the DAG's start date and calls that run a success.
    assert dag.start_date == datetime(2000, 1, 1, tzinfo=UTC) and dag.catchup is False


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
    assert [a.name for a in dag.get_task("promote").outlets] == ["retrain_champion__churn"]
    sensor = dag.get_task("wait_for_data")
    assert sensor.mode == "reschedule", "waiting must not hold a worker slot"
    assert {t.task_id for t in dag.tasks if t.pool == "retrain_training"} == {"train_challenger", "evaluate"}


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


def test_the_dag_module_reads_no_variables_or_connections() -> None:  # and no data: only TOML configs
    layer = ROOT / "include" / "retrain" / "airflow"
    for path in [ROOT / "dags" / "model_retraining.py", layer / "factory.py", layer / "params.py", layer / "tasks.py"]:
        source = path.read_text()
        for lookup in (r"Variable\.get", "get_connection", "BaseHook", r"(?<![\w.])open\("):
            assert not re.search(lookup, source), f"{path.name} uses {lookup}"


def test_only_the_dag_file_lives_in_dags() -> None:
    assert sorted(p.name for p in Path(ROOT / "dags").glob("*.py")) == ["model_retraining.py"]


def test_which_month_a_run_processes() -> None:
    from types import SimpleNamespace

    from retrain.airflow.params import run_month

    january = {
        "data_interval_start": datetime(2025, 1, 1, tzinfo=UTC),
        "data_interval_end": datetime(2025, 2, 1, tzinfo=UTC),
    }
    manual = SimpleNamespace(run_after=datetime(2025, 3, 15, 9, 30, tzinfo=UTC))
    assert run_month({"params": {"month": "2024-07"}, **january}) == "2024-07", "the param wins"
    assert run_month({"params": {"month": None}, **january}) == "2025-01", "a scheduled run: its data interval"
    fifth = {
        "data_interval_start": datetime(2025, 1, 5, tzinfo=UTC),
        "data_interval_end": datetime(2025, 2, 5, tzinfo=UTC),
    }
    assert run_month({"params": {}, **fifth}) == "2025-01", "cron 0 0 5 * *: data given four days to land"
    weekly = {
        "data_interval_start": datetime(2025, 3, 3, tzinfo=UTC),
        "data_interval_end": datetime(2025, 3, 10, tzinfo=UTC),
    }
    assert run_month({"params": {}, **weekly}) == "2025-02", "a weekly run never takes March before it ended"
    quarter = {
        "data_interval_start": datetime(2025, 1, 1, tzinfo=UTC),
        "data_interval_end": datetime(2025, 4, 1, tzinfo=UTC),
    }
    assert run_month({"params": {}, **quarter}) == "2025-03", "a quarterly run: the quarter's last month"
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
    from retrain.airflow import notifications

    with caplog.at_level("ERROR"):
        notifications.log_failure(context)
    (record,) = [r for r in caplog.records if r.name == notifications.log.name]
    message = record.getMessage()
    assert "month 2025-04, task pull_snapshots" in message and "missing column spend" in message
    assert "\n" not in message


def test_with_approval_required_a_reviewer_task_stands_between_evaluate_and_promote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.dags.conftest import parse_dag

    path = tmp_path / "reviewed.toml"
    path.write_text(model_config("reviewed", approval='required = true\napprovers = ["dana"]\ntimeout_hours = 24'))
    monkeypatch.setenv("RETRAIN_CONFIG", str(path))
    dag = parse_dag("retrain__reviewed")
    downstream = {t.task_id: set(t.downstream_task_ids) for t in dag.tasks}
    assert downstream == {
        **EXPECTED_DOWNSTREAM,
        "evaluate": {"approve_promotion"},
        "approve_promotion": {"promote", "keep_champion"},
    }
    review = dag.get_task("approve_promotion")
    assert review.options == ["Approve", "Reject"] and review.assigned_users == [{"id": "dana", "name": "dana"}]
    assert review.response_timeout.total_seconds() == 24 * 3600 and review.execution_timeout is None
    assert review.pool != "retrain_training", "waiting for a person holds no training slot"

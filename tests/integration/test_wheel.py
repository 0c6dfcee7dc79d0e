"""The project's wheel installed where a team already runs Airflow: a fresh virtual environment holding
only the locked apache-airflow, then `pip install retrain-*.whl`. A three-line DAG file naming a config
folder gives the fleet's DAGs, and the report plugin is mounted in the api-server through the wheel's
`airflow.plugins` entry point, with no file copied into a plugins folder."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.airflow_stack import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DAG_FILE = '''"""Retraining DAGs, one per model config in the folder below."""
from retrain.airflow import build_fleet
globals().update(build_fleet("{folder}"))
'''
PROBE = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
print(json.dumps({"dags": sorted(bag.dag_ids), "errors": {k: str(v) for k, v in bag.import_errors.items()},
                  "broken": sorted(d for d, g in bag.dags.items() if "config-error" in g.tags)}))
"""


def airflow_requirement() -> str:
    """Plain apache-airflow at the version requirements.txt locks, as a team would already run it."""
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        match = re.match(r"apache-airflow(\[[^]]*\])?==(\S+)", line)
        if match:
            return f"apache-airflow=={match[2]}"
    raise AssertionError("requirements.txt locks no apache-airflow")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """A fresh venv with the locked Airflow and the project's wheel; its bin folder and a work folder."""
    work = tmp_path_factory.mktemp("wheel")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(work / "dist"), str(ROOT)],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (work / "dist").glob("retrain-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(work / "venv")], check=True)
    pip = [
        str(work / "venv" / "bin" / "python"),
        "-m",
        "pip",
        "install",
        "--quiet",
        "-c",
        str(ROOT / "constraints.txt"),
    ]
    for requirement in (airflow_requirement(), str(wheel)):
        done = subprocess.run([*pip, requirement], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
    yield work / "venv" / "bin", work
    shutil.rmtree(work / "venv", ignore_errors=True)


def environment(work: Path) -> dict[str, str]:
    """Nothing of this checkout on the path: what runs comes from the wheel."""
    home = work / "airflow"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "RETRAIN", "PYTHON"))}
    return {
        **env,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(work / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(work / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
    }


def test_the_wheel_brings_the_engine_and_its_cli(installed: tuple[Path, Path]) -> None:
    bin_dir, work = installed
    result = subprocess.run(
        [str(bin_dir / "python"), "-c", "import retrain, sklearn, pyarrow; print(retrain.__file__)"],
        capture_output=True,
        text=True,
        env=environment(work),
        check=True,
    )
    assert "site-packages/retrain/" in result.stdout, "the engine comes from the wheel, not this checkout"
    help_text = subprocess.run(
        [str(bin_dir / "retrain"), "--help"], capture_output=True, text=True, env=environment(work), check=True
    )
    assert "cycle" in help_text.stdout


def test_a_three_line_dag_file_builds_the_fleet(installed: tuple[Path, Path]) -> None:
    bin_dir, work = installed
    models = work / "models"
    models.mkdir(exist_ok=True)
    for config in (ROOT / "config" / "models").glob("*.toml"):
        shutil.copy(config, models)
    (models / "broken.toml").write_text("[model]\nname = ")
    (work / "dags").mkdir(exist_ok=True)
    (work / "dags" / "retrain_fleet.py").write_text(DAG_FILE.format(folder=models))
    assert len((work / "dags" / "retrain_fleet.py").read_text().splitlines()) == 3
    result = subprocess.run(
        [str(bin_dir / "python"), "-c", PROBE, str(work / "dags")],
        capture_output=True,
        text=True,
        env=environment(work),
        check=True,
    )
    parsed = json.loads(result.stdout.strip().splitlines()[-1])
    assert parsed["errors"] == {}
    assert parsed["dags"] == [
        "retrain__broken",
        "retrain__churn",
        "retrain__churn_db",
        "retrain__churn_eu",
        "retrain__home_prices",
    ]
    assert parsed["broken"] == ["retrain__broken"], "a bad config breaks only its own DAG"


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def test_the_api_server_mounts_the_report_plugin_from_the_entry_point(installed: tuple[Path, Path]) -> None:
    bin_dir, work = installed
    env = environment(work)
    (work / "plugins").mkdir(exist_ok=True)  # empty: the plugin comes from the wheel's entry point
    airflow = str(bin_dir / "airflow")
    plugins = subprocess.run([airflow, "plugins", "--output", "json"], capture_output=True, text=True, env=env)
    assert plugins.returncode == 0, plugins.stderr[-2000:]
    (listed,) = [p for p in json.loads(plugins.stdout) if p["name"] == "retrain_reports"]
    assert "retrain.airflow.plugin" in listed["source"]
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True)
    port = free_port()
    log = open(work / "api-server.log", "w")  # noqa: SIM115 - closed with the server below
    server = subprocess.Popen([airflow, "api-server", "--port", str(port)], env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if get(port, "/api/v2/monitor/health")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(1)
        else:
            pytest.fail(f"the api-server did not start: {(work / 'api-server.log').read_text()[-2000:]}")
        for route in ("/retrain/", "/retrain/history/retrain__churn", "/retrain/runs/retrain__churn/any"):
            status, body = get(port, route)
            assert status == 401, f"{route}: {status} {body[:200]}"  # mounted, and behind Airflow's login
            assert "Not authenticated" in body
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()

"""A real Airflow deployment for tests: scheduler, dag-processor and api-server on a fresh PostgreSQL
database, in a temp AIRFLOW_HOME, every component its own process on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import pytest

ROOT = Path(__file__).resolve().parents[2]
POSTGRES = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
REDIS = ("127.0.0.1", 6379)
POSTGRES_SERVICE = {"PostgreSQL": (POSTGRES["host"], POSTGRES["port"])}
REDIS_SERVICE = {"Redis": REDIS}


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require(services: dict[str, tuple[str, int]], why: str) -> None:
    """Skip, with a reason, when a service is unreachable; fail instead where CI makes them mandatory."""
    absent = [name for name, (host, port) in services.items() if not reachable(host, port)]
    if not absent:
        return
    names = " and ".join(absent)
    unavailable(f"needs {names} on 127.0.0.1: {why}", required=f"{names} required on 127.0.0.1 but unreachable")


def unavailable(reason: str, *, required: str) -> NoReturn:
    """Skip with `reason`; where CI makes the services mandatory (RETRAIN_REQUIRE_SERVICES=1), fail."""
    if os.environ.get("RETRAIN_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{required} (RETRAIN_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _admin(statement: str) -> None:
    """Run CREATE/DROP DATABASE, which PostgreSQL refuses inside a transaction."""
    import psycopg2

    connection = psycopg2.connect(dbname="postgres", **POSTGRES)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement)
    finally:
        connection.close()


class AirflowStack:
    """Start with `with AirflowStack(home, executor=...) as stack:`; components stop and the DB is dropped."""

    def __init__(
        self,
        home: Path,
        *,
        executor: str = "LocalExecutor",
        extra_env: dict[str, str] | None = None,
        training_slots: int = 2,
        workers: int = 1,
    ):
        self.home = home
        self.executor = executor
        self.training_slots = training_slots
        self.workers = [f"celery-worker-{i + 1}" for i in range(workers)] if executor == "CeleryExecutor" else []
        self.database = f"retrain_test_{uuid.uuid4().hex[:10]}"
        self.api_port = free_port()
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.admin_password = secrets.token_urlsafe(12)
        (home / "passwords.json").write_text(f'{{"admin": "{self.admin_password}"}}')
        postgres_url = f"{POSTGRES['user']}@{POSTGRES['host']}:{POSTGRES['port']}/{self.database}"
        self.env = {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": executor,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.api_port}/execution/",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://{postgres_url}",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(16),
            "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__CORE__PARALLELISM": "4",
            **(extra_env or {}),
        }
        if executor == "CeleryExecutor":
            # A Redis database of its own, so parallel test runs never share a queue.
            self.env["AIRFLOW__CELERY__BROKER_URL"] = f"redis://{REDIS[0]}:{REDIS[1]}/{1 + uuid.uuid4().int % 15}"
            self.env["AIRFLOW__CELERY__RESULT_BACKEND"] = f"db+postgresql://{postgres_url}"

    def __enter__(self) -> AirflowStack:
        _admin(f'CREATE DATABASE "{self.database}"')
        self.cli("db", "migrate")
        # As the setup scripts do: training and evaluation queue in this pool.
        self.cli("pools", "set", "retrain_training", str(self.training_slots), "retrain: training and evaluation")
        self.start("api-server", "api-server", "--host", "127.0.0.1", "--port", str(self.api_port), "--workers", "1")
        self.start("scheduler", "scheduler")
        self.start("dag-processor", "dag-processor")
        for name in self.workers:
            self.start(name, "celery", "worker", "--concurrency", "2", "--celery-hostname", f"{name}@%h")
        self.wait_until(lambda: reachable("127.0.0.1", self.api_port), timeout=120, what="the api-server")
        return self

    def __exit__(self, *exc: object) -> None:
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
        _admin(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')

    def start(self, name: str, *args: str) -> None:
        log = open(self.home / f"{name}.log", "wb")  # noqa: SIM115 - lives as long as the process
        # A session of its own: killing a component kills everything it forked (a worker's task runners).
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "airflow", *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self, name: str) -> None:
        """SIGKILL a component and everything it forked, as a machine failure would."""
        process = self.processes.pop(name)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def cli(self, *args: str) -> str:
        result = subprocess.run([sys.executable, "-m", "airflow", *args], env=self.env, capture_output=True, text=True)
        if result.returncode:
            raise RuntimeError(f"airflow {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def query(self, sql: str, *params: Any) -> list[tuple]:
        import psycopg2

        with psycopg2.connect(dbname=self.database, **POSTGRES) as connection, connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()

    def wait_until(self, condition: Callable[[], bool], *, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise AssertionError(
                        f"{name} exited with {process.returncode} while waiting for {what}\n" + self.log_tail(name)
                    )
            if condition():
                return
            time.sleep(2)
        raise AssertionError(
            f"timed out after {timeout:.0f}s waiting for {what}\n"
            + "\n".join(self.log_tail(name) for name in self.processes)
        )

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.home / f"{name}.log"
        text = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else []
        return f"--- {name}.log ---\n" + "\n".join(text)

    def api(self, method: str, path: str, body: dict | None = None) -> tuple[int, Any]:
        """Call the REST API the UI uses, logged in as the admin user."""
        credentials = {"username": "admin", "password": self.admin_password}
        status, token = self._http("POST", "/auth/token", credentials, {})
        assert status == 201, f"login failed: {status} {token}"
        return self._http(method, path, body, {"Authorization": f"Bearer {token['access_token']}"})

    def _http(self, method: str, path: str, body: dict | None, headers: dict[str, str]) -> tuple[int, Any]:
        import json
        import urllib.error
        import urllib.request

        request = urllib.request.Request(
            f"http://127.0.0.1:{self.api_port}{path}",
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={"Content-Type": "application/json", **headers},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    def trigger(self, dag_id: str, conf: dict[str, Any]) -> str:
        """Unpause a DAG and trigger a run through the REST API the UI's trigger form uses; its run id."""
        assert self.api("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})[0] == 200
        status, created = self.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf})
        assert status == 200, created
        return created["dag_run_id"]

    def run_state(self, dag_id: str, run_id: str) -> str:
        return self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")[1]["state"]

    def wait_for_run(self, dag_id: str, run_id: str, *, timeout: float) -> str:
        """Wait until a run succeeds or fails; its final state."""
        self.wait_until(
            lambda: self.run_state(dag_id, run_id) in ("success", "failed"), timeout=timeout, what=f"run {run_id}"
        )
        return self.run_state(dag_id, run_id)

    def dag_is_parsed(self, dag_id: str) -> bool:
        return bool(self.query("SELECT 1 FROM dag WHERE dag_id = %s", dag_id))

    def runs(self, dag_id: str, run_type: str | None = None) -> list[tuple]:
        sql = "SELECT logical_date, state, run_id, start_date, end_date FROM dag_run WHERE dag_id = %s"
        params: list[Any] = [dag_id]
        if run_type:
            sql += " AND run_type = %s"
            params.append(run_type)
        return self.query(sql + " ORDER BY logical_date", *params)

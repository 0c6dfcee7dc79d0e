"""`make airflow`: Airflow on the home `make demo` filled, with this project's DAGs and plugin, behind a login.

Starts the api-server (UI and REST API), scheduler, dag-processor and triggerer as processes of their own,
like `airflow standalone` but sized for a small machine: executor parallelism is the number of cores,
every listener binds 127.0.0.1 (the api-server only: the log servers are not started, the UI reads task
logs from the shared home), and Ctrl+C stops everything. If `make demo` never ran, it runs first, so the
grid shows the demo's months. The simple auth manager holds one admin user, whose password is generated
once and kept in the home.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import demo  # noqa: E402 - the sibling script: same home, same data, same pool

ADMIN = "admin"


def admin_password(password_file: Path) -> str:
    if password_file.exists():
        return json.loads(password_file.read_text())[ADMIN]
    password = secrets.token_urlsafe(12)
    password_file.write_text(json.dumps({ADMIN: password}) + "\n")
    password_file.chmod(0o600)
    return password


def storage(demo_dir: Path) -> tuple[Any, Path]:
    """The demo's local SeaweedFS, started, and its configs, when `make demo STORAGE=s3` made the demo."""
    kept = demo_dir / demo.STORAGE_FILE
    if not kept.exists():
        return None, demo.CONFIG_DIR
    settings = json.loads(kept.read_text())
    server = demo.local_s3(demo_dir).start()
    print(f"SeaweedFS:    {server.endpoint} (the demo's data and registry; stopped with the rest)")
    return server, Path(settings["config_dir"])


def environment(
    demo_dir: Path, port: int, password_file: Path, config_dir: Path = demo.CONFIG_DIR, server: Any = None
) -> dict[str, str]:
    home = demo_dir / "airflow"
    secret_file = home / "secrets.json"
    if not secret_file.exists():
        secret_file.write_text(json.dumps({"jwt": secrets.token_hex(32), "api": secrets.token_hex(32)}))
        secret_file.chmod(0o600)
    keys = json.loads(secret_file.read_text())
    return {
        **os.environ,
        **demo.airflow_env(demo_dir, config_dir),
        **(server.environment if server is not None else {}),
        # Components spawn `airflow` by name: this venv's bin/ must come first.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(max(2, os.cpu_count() or 2)),
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(password_file),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__API_AUTH__JWT_SECRET": keys["jwt"],
        "AIRFLOW__API__SECRET_KEY": keys["api"],
        # Tasks reach the execution API on the port the api-server really listens on.
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
    }


COMPONENTS = {
    "api-server": ["api-server", "--host", "127.0.0.1", "--workers", "1"],
    "scheduler": ["scheduler", "--skip-serve-logs"],
    "dag-processor": ["dag-processor"],
    "triggerer": ["triggerer", "--skip-serve-logs"],
}


CLI_VARIABLES = (
    "AIRFLOW_HOME",
    "PATH",
    "RETRAIN_CONFIG_DIR",
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
)


def write_cli_env(home: Path, env: dict[str, str]) -> Path:
    """A file to `source` so the airflow CLI in a shell sees this home: its DB, DAGs, plugin and login."""
    path = home / "env.sh"
    exported = [k for k in env if k.startswith("AIRFLOW__") or k in CLI_VARIABLES]
    path.write_text("".join(f"export {k}={shlex.quote(env[k])}\n" for k in sorted(exported)))
    path.chmod(0o600)
    return path


def _interrupt(signal_number: int, frame: object) -> None:
    raise KeyboardInterrupt


def port_in_use(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", default="demo", help="demo folder (default: ./demo)")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    demo_dir = Path(args.dir).resolve()
    home = demo_dir / "airflow"
    if not (home / "airflow.db").exists():
        print(f"No demo history in {home}: running `make demo` first ...\n", flush=True)
        subprocess.run([sys.executable, str(ROOT / "scripts" / "demo.py"), "--dir", str(demo_dir)], check=True)
    if port_in_use(args.port):
        sys.exit(f"port {args.port} is taken on 127.0.0.1: stop what uses it, or `make airflow AIRFLOW_PORT=8081`")
    password_file = home / "passwords.json"
    password = admin_password(password_file)
    server, config_dir = storage(demo_dir)
    env = environment(demo_dir, args.port, password_file, config_dir, server)
    logs = home / "components"
    logs.mkdir(exist_ok=True)
    processes = {}
    for name, command in COMPONENTS.items():
        log = open(logs / f"{name}.log", "ab")  # noqa: SIM115 - open as long as the component runs
        processes[name] = subprocess.Popen(
            [sys.executable, "-m", "airflow", *command],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl+C reaches this script only; it stops each component in order
        )
    print(f"Airflow UI:   http://127.0.0.1:{args.port}   (components starting; give it half a minute)")
    print(f"Login:        {ADMIN} / {password}   (kept in {password_file})")
    print(f"DAGs:         retrain__{', retrain__'.join(demo.DEMO_MODELS)}, with the demo's runs in the grid")
    print(
        "Paused:       every DAG starts paused. Unpause one with its toggle in the UI, or\n"
        "              `airflow dags unpause retrain__churn` (CLI line below), and the scheduler runs the month\n"
        "              the demo left for it. A run triggered on a paused DAG waits, queued, until it is unpaused."
    )
    print(f"Logs:         {logs}/<component>.log; task logs under {home / 'logs'}")
    print(f"CLI:          source {write_cli_env(home, env)} && airflow dags list   (same home, same DB)")
    print("Stop:         Ctrl+C (stops every component)\n", flush=True)
    # Ctrl+C, or a `kill` of this script, stops every component (a shell starting it in the background
    # would otherwise leave SIGINT ignored).
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signal_number, _interrupt)
    try:
        while all(process.poll() is None for process in processes.values()):
            time.sleep(1)
        failed = [name for name, process in processes.items() if process.poll() is not None]
        print(f"{', '.join(failed)} exited; see {logs}. Stopping the rest.", file=sys.stderr)
    except KeyboardInterrupt:
        print("\nStopping Airflow ...", flush=True)
    finally:
        for process in processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for name, process in processes.items():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                print(f"{name} did not stop in 30 s; killing it", file=sys.stderr)
                os.killpg(process.pid, signal.SIGKILL)
        if server is not None:
            server.stop()
        print("Stopped.")


if __name__ == "__main__":
    main()

"""`make airflow`: Airflow standalone with this project's DAG and the local demo store, behind a login.

Creates the demo data if it is missing (it never resets an existing registry), then starts `airflow
standalone` on 127.0.0.1 with the simple auth manager and one admin user whose password is generated once
and kept in the standalone folder. Trigger `model_retraining` from the UI with "Trigger DAG w/ config" to
see the Params form.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ADMIN = "admin"


def admin_password(password_file: Path) -> str:
    if password_file.exists():
        return json.loads(password_file.read_text())[ADMIN]
    password = secrets.token_urlsafe(12)
    password_file.write_text(json.dumps({ADMIN: password}) + "\n")
    password_file.chmod(0o600)
    return password


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", default="demo", help="demo folder (default: ./demo)")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    demo = Path(args.dir).resolve()
    config = demo / "retrain.toml"
    if not config.exists():
        from retrain.demo_data import write_demo_data

        print(f"No demo data in {demo}: generating 12 months ...")
        write_demo_data(demo, months=12)
    home = demo / "airflow-standalone"
    home.mkdir(parents=True, exist_ok=True)
    password_file = home / "passwords.json"
    password = admin_password(password_file)
    env = {
        **os.environ,
        # standalone starts each component as an `airflow` subprocess: this venv's bin/ must come first.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(password_file),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(args.port),
        # Tasks reach the execution API on the port the api-server really listens on.
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{args.port}/execution/",
        "RETRAIN_CONFIG": str(config),
    }
    print(f"Airflow UI:  http://127.0.0.1:{args.port}")
    print(f"Login:       {ADMIN} / {password}   (kept in {password_file})")
    print(f"retrain:     config {config}; registry and ledger under {demo / 'registry'}")
    print("DAG:         model_retraining (paused at first: unpause it, or use 'Trigger' with a config)\n", flush=True)
    os.execvpe(sys.executable, [sys.executable, "-m", "airflow", "standalone"], env)


if __name__ == "__main__":
    main()

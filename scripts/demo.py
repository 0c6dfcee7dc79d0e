"""`make demo`: twelve months of demo data, then the model_retraining DAG through Airflow, month by month.

Airflow runs on a SQLite metadata DB under the demo folder, one DAG run per month in order (dag.test(), the
same code path the scheduler's tasks take). No services are needed: data and registry are local folders.
Running it again re-uses the generated data (it is deterministic) and resets the registry and Airflow
state, so every run tells the same story from the start.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def prepare_data(demo: Path, months: int, start: str) -> Path:
    from retrain.demo_data import write_demo_data
    from retrain.snapshots import list_months

    config = demo / "retrain.toml"
    have = list_months(str(demo / "labeled")) if config.exists() else []
    if len(have) == months and have[0] == start:
        print(f"Re-using the demo data in {demo} ({months} months from {start}).")
    else:
        print(f"Generating {months} months of demo data in {demo} ...")
        shutil.rmtree(demo, ignore_errors=True)
        write_demo_data(demo, months=months, start=start)
    for state in ("registry", "airflow"):
        if (demo / state).exists():
            print(f"Resetting {demo / state} from the previous demo run.")
            shutil.rmtree(demo / state)
    return config


def airflow_env(demo: Path, config: Path) -> dict[str, str]:
    home = demo / "airflow"
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        # dag.test() warns about every branch it skipped; the demo checks each run's state itself.
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "ERROR",
        "RETRAIN_CONFIG": str(config),
    }


def run_months(months: list[str]) -> None:
    # Imported only now: Airflow reads its settings from the environment at import time.
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    if bag.import_errors:
        sys.exit(f"DAG import errors: {bag.import_errors}")
    for month in months:
        dag = DagBag(dag_folder=str(ROOT / "dags")).get_dag("model_retraining")
        started = time.monotonic()
        year, number = map(int, month.split("-"))
        dag_run = dag.test(run_conf={"month": month}, logical_date=datetime(year, number, 1, tzinfo=UTC))
        states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
        ran = [task for task, state in states.items() if state == "success"]
        print(f"  {month}: DAG run {dag_run.state} in {time.monotonic() - started:4.1f} s ({', '.join(ran)})")
        if str(dag_run.state) != "success":
            sys.exit(f"the DAG run for {month} failed: {states}; logs under {os.environ['AIRFLOW_HOME']}/logs")


def _auc(metrics: dict | None) -> str:
    return f"{metrics['auc']:.4f}" if metrics else "-"


def print_summary(config: Path) -> None:
    from retrain.config import load_config
    from retrain.registry import Registry

    registry = Registry.for_config(load_config(config))
    header = (
        f"{'month':<8} {'drift':<32} {'champion AUC':>12} {'challenger AUC':>14} "
        f"{'lift [95% interval]':<27} {'decision':<14} {'champion':>8}"
    )
    print()
    print(header)
    print("-" * len(header))
    for entry in registry.ledger():
        drift = entry.get("drift") or {}
        drifted = "yes: " + ", ".join(drift["drifted_features"]) if drift.get("drifted") else "no"
        metrics = entry.get("metrics") or {}
        champion, challenger, lift = (metrics.get(k) for k in ("champion", "challenger", "lift"))
        lift_text = f"{lift['lift']:+.4f} [{lift['low']:+.4f}, {lift['high']:+.4f}]" if lift else "-"
        version = f"v{entry['champion_version']}" if entry["champion_version"] else "-"
        print(
            f"{entry['month']:<8} {drifted:<32} {_auc(champion):>12} {_auc(challenger):>14} {lift_text:<27} "
            f"{entry['outcome']:<14} {version:>8}"
        )
    print()
    print(f"Ledger:  {registry.uri}/ledger/  (retrain registry ledger --config {config})")
    print(f"Reports: {registry.uri}/runs/<month>/<run>/report.html, with drift.json and evaluation.json")
    print(f"Airflow: {config.parent / 'airflow'} (SQLite metadata DB and task logs)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", default="demo", help="demo folder (default: ./demo)")
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--start", default="2025-01")
    args = parser.parse_args()
    demo = Path(args.dir).resolve()
    started = time.monotonic()

    config = prepare_data(demo, args.months, args.start)
    env = airflow_env(demo, config)
    os.environ.update(env)
    (demo / "airflow").mkdir(parents=True)
    print("Initialising the Airflow metadata DB (SQLite) ...")
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], env={**os.environ, **env}, check=True, capture_output=True
    )
    from retrain.months import shift_month

    months = [shift_month(args.start, i) for i in range(args.months)]
    print(f"Running the model_retraining DAG for {months[0]} .. {months[-1]}, one month at a time:")
    run_months(months)
    print_summary(config)
    print(f"\nDone in {time.monotonic() - started:.0f} s.")


if __name__ == "__main__":
    main()

"""`make demo`: twelve months of demo data for the three demo models, then their DAGs through Airflow, month by month.

The models are the configs in config/models/ (`churn`; `churn_eu`, whose labels arrive a month late; and
`home_prices`, a regression model);
their data goes to demo/<model>/. The twelve months end with the last complete month, so the scheduler's
next run, once a DAG is unpaused in `make airflow`, is a month that has data. Airflow runs on a SQLite
metadata DB in demo/airflow (the home `make airflow` opens, so its grid shows these runs), one DAG run per
model and month, in order, with dag.test() (the code path the scheduler's tasks take). No services are
needed: data and registry are local folders. Running it again re-uses the generated data when it covers
the same months and resets the registry and Airflow state, so every run tells the same story from the start.
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
CONFIG_DIR = ROOT / "config" / "models"
# model name: its synthetic world (retrain.demo_data.WORLDS) and that world's seed
DEMO_MODELS = {"churn": ("churn", 0), "churn_eu": ("churn", 1), "home_prices": ("home_prices", 2)}
TRAINING_POOL_SLOTS = 2


def demo_months(count: int, start: str | None) -> list[str]:
    from retrain.months import previous_complete_month, shift_month

    first = start or shift_month(previous_complete_month(datetime.now(UTC)), -(count - 1))
    return [shift_month(first, i) for i in range(count)]


def prepare_data(demo: Path, months: list[str]) -> list[Path]:
    """Generate each demo model's data unless it is already there for these months; returns the configs."""
    from retrain.config import load_config
    from retrain.demo_data import write_demo_data
    from retrain.snapshots import list_months

    configs = [CONFIG_DIR / f"{name}.toml" for name in DEMO_MODELS]
    for path, (name, (world, seed)) in zip(configs, DEMO_MODELS.items(), strict=True):
        config = load_config(path)
        folder = Path(config.data.production).parent
        have = list_months(config.data.production)
        if have == months:
            print(f"Re-using the demo data of {name} in {folder} ({months[0]} .. {months[-1]}).")
            continue
        print(f"Generating {len(months)} months of demo data for {name} in {folder} ...")
        shutil.rmtree(folder, ignore_errors=True)
        write_demo_data(
            folder,
            months=len(months),
            start=months[0],
            seed=seed,
            label_delay=config.data.label_delay_months,
            config=False,
            world=world,
        )
    for state in ("registry", "airflow"):
        if (demo / state).exists():
            print(f"Resetting {demo / state} from the previous demo run.")
            shutil.rmtree(demo / state)
    return configs


def airflow_env(demo: Path) -> dict[str, str]:
    home = demo / "airflow"
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        # dag.test() warns about every branch it skipped; the demo checks each run's state itself.
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "ERROR",
        "RETRAIN_CONFIG_DIR": str(CONFIG_DIR),
    }


def run_months(months: list[str]) -> None:
    # Imported only now: Airflow reads its settings from the environment at import time.
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    if bag.import_errors:
        sys.exit(f"DAG import errors: {bag.import_errors}")
    for month in months:
        for name in DEMO_MODELS:
            dag = DagBag(dag_folder=str(ROOT / "dags")).dags[f"retrain__{name}"]
            started = time.monotonic()
            year, number = map(int, month.split("-"))
            first_day = datetime(year, number, 1, tzinfo=UTC)
            # Run ids come from run_after: the month's first day names the month in the grid.
            dag_run = dag.test(run_conf={"month": month}, logical_date=first_day, run_after=first_day)
            instances = sorted(
                dag_run.get_task_instances(), key=lambda ti: ti.start_date or datetime.max.replace(tzinfo=UTC)
            )
            states = {ti.task_id: str(ti.state) for ti in instances}
            path = " > ".join(t for t, s in states.items() if s == "success" and t != "wait_for_data")
            print(f"  {month} {name:<9} {dag_run.state} in {time.monotonic() - started:4.1f} s: {path}")
            if str(dag_run.state) != "success":
                sys.exit(
                    f"the DAG run of {name} for {month} failed: {states}; logs in {os.environ['AIRFLOW_HOME']}/logs"
                )


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def print_summary(config_path: Path) -> None:
    from retrain.config import load_config
    from retrain.registry import Registry

    config = load_config(config_path)
    registry = Registry.for_config(config)
    ledger = registry.ledger()
    realized = {
        entry.performance.realized_month: entry.performance.realized_value
        for entry in ledger
        if entry.performance and entry.performance.realized_value is not None
    }
    delay = config.data.label_delay_months
    print(
        f"\n{config.model.name}: labels arrive {delay} month{'s' if delay != 1 else ''} late"
        if delay
        else f"\n{config.model.name}:"
    )
    metric = config.promotion.judged_by.label
    header = (
        f"{'month':<8} {'labels':<8} {'reference':<9} {'drift':<24} {'est. ' + metric:>9} {'real ' + metric:>9} "
        f"{'champion':>8} {'challenger':>10} {'lift [95% interval]':<27} {'decision':<14} {'champion':>8}"
    )
    print(header)
    print("-" * len(header))
    for entry in ledger:
        drift, metrics, reference, months = entry.drift, entry.metrics, entry.reference, entry.months
        drifted = ", ".join(drift.drifted_features) if drift and drift.drifted else "no"
        champion = metrics.champion if metrics else None
        challenger = metrics.challenger if metrics else None
        lift = metrics.lift if metrics else None
        lift_text = f"{lift.lift:+.4f} [{lift.low:+.4f}, {lift.high:+.4f}]" if lift else "-"
        moved = ">" if reference and reference.moved else ""
        estimated = entry.performance.estimated_value if entry.performance else None
        print(
            f"{entry.month:<8} {months.labels_up_to if months else '-':<8} "
            f"{','.join(reference.months if reference else ()) + moved:<9} "
            f"{drifted:<24} {_number(estimated):>9} {_number(realized.get(entry.month)):>9} "
            f"{_number(champion and champion.score):>8} {_number(challenger and challenger.score):>10} {lift_text:<27} "
            f"{entry.outcome:<14} {'v' + str(entry.champion_version) if entry.champion_version else '-':>8}"
        )
    print(f"Ledger:  retrain registry ledger --config {config_path.relative_to(ROOT)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", default="demo", help="demo folder (default: ./demo)")
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--start", help="first month, YYYY-MM (default: twelve months ending last month)")
    args = parser.parse_args()
    demo = Path(args.dir).resolve()
    started = time.monotonic()

    months = demo_months(args.months, args.start)
    configs = prepare_data(demo, months)
    env = airflow_env(demo)
    os.environ.update(env)
    (demo / "airflow").mkdir(parents=True)
    print("Initialising the Airflow metadata DB (SQLite) and the retrain_training pool ...")
    for command in (
        ["db", "migrate"],
        ["pools", "set", "retrain_training", str(TRAINING_POOL_SLOTS), "retrain: training and evaluation"],
    ):
        subprocess.run([sys.executable, "-m", "airflow", *command], env=os.environ, check=True, capture_output=True)
    print(f"Running retrain__{' and retrain__'.join(DEMO_MODELS)} for {months[0]} .. {months[-1]}, month by month:")
    run_months(months)
    for config in configs:
        print_summary(config)
    print(
        "\nReading the tables: `labels` is the last labeled month a run used; `reference` the production month(s)\n"
        "drift was tested against ('>': this run moved the reference to the month it validated the champion on);\n"
        "`est.` the champion's AUC (home_prices: RMSE) estimated before labels, `real` what it was once labels\n"
        "arrived; champion and challenger are scored on the same holdout, in the model's promotion metric."
    )
    print(f"Reports: {demo / 'registry'}/<model>/runs/<month>/<run>/report.html")
    print(f"Airflow: {demo / 'airflow'} (make airflow opens it: the runs above show in its grid)")
    print(f"\nDone in {time.monotonic() - started:.0f} s.")


if __name__ == "__main__":
    main()

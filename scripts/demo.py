"""`make demo`: thirteen months of demo data for the demo models, then their DAGs through Airflow,
month by month, for the first twelve.

The models are the configs in config/models/ (`churn`; `churn_eu`, whose labels arrive a month late;
`home_prices`, a regression model; `churn_db`, whose months go into PostgreSQL tables when the machine's
PostgreSQL answers, and which sits the demo out otherwise); their data goes to demo/<model>/. The months
end with the last complete month, which the demo leaves to the scheduler: once a DAG is unpaused in
`make airflow`, the scheduler's first run is that month, whose data is there. Airflow runs on a SQLite
metadata DB in demo/airflow (the home `make airflow` opens, so its grid shows these runs), one DAG run per
model and month, in order, with dag.test() (the code path the scheduler's tasks take); each run then
reads as what it was: started and ended when it really ran, triggered by `make demo`. No service is
needed (churn_db joins when PostgreSQL answers): the other data and the registry are local folders.
Running it again re-uses the generated data when it covers the same months and resets the registry and
Airflow state, so every run tells the same story from the start.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "config" / "models"
# model name: its synthetic world (retrain.demo_data.WORLDS) and that world's seed
DEMO_MODELS = {
    "churn": ("churn", 0),
    "churn_eu": ("churn", 1),
    "home_prices": ("home_prices", 2),
    # Its months live in PostgreSQL: in the demo when the machine's answers (config/models/churn_db.toml).
    "churn_db": ("churn", 3),
}
DATABASE_MODELS = ("churn_db",)
TRAINING_POOL_SLOTS = 2
TRIGGERED_BY = "make demo"


def demo_months(count: int, start: str | None) -> list[str]:
    """`count` months for the demo's runs and one more, the last complete month, for the scheduler's."""
    from retrain.months import previous_complete_month, shift_month

    first = start or shift_month(previous_complete_month(datetime.now(UTC)), -count)
    return [shift_month(first, i) for i in range(count + 1)]


def prepare_data(demo: Path, months: list[str], models: list[str], config_dir: Path = CONFIG_DIR) -> list[Path]:
    """Generate each demo model's data unless it is already there for these months; returns the configs."""
    from retrain.config import load_config
    from retrain.demo_data import write_demo_data
    from retrain.snapshots import list_months

    configs = [config_dir / f"{name}.toml" for name in models]
    for path, name in zip(configs, models, strict=True):
        world, seed = DEMO_MODELS[name]
        config = load_config(path)
        if name in DATABASE_MODELS:
            load_into_database(config, demo / name, months, world, seed)
            continue
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


def database_reachable(url: str) -> bool:
    try:
        import adbc_driver_postgresql.dbapi as dbapi

        with dbapi.connect(url) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchall()
        return True
    except Exception:  # noqa: BLE001 - no server, no driver, no login: the model sits this demo out
        return False


def load_into_database(config: Any, staging: Path, months: list[str], world: str, seed: int) -> None:
    """Generate the model's months as files, then load them into its tables (recreated on every demo run)."""
    import adbc_driver_postgresql.dbapi as dbapi
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from retrain.demo_data import write_demo_data
    from retrain.snapshots.sql import Source

    print(f"Loading {len(months)} months of demo data for {config.model.name} into PostgreSQL ...")
    shutil.rmtree(staging, ignore_errors=True)
    write_demo_data(staging, months=len(months), start=months[0], seed=seed, config=False, world=world)
    with dbapi.connect(config.database.url) as connection, connection.cursor() as cursor:
        for role in ("production", "labeled"):
            schema, table = Source(getattr(config.data, role), config.database).text.split(".")
            parts = []
            for month in months:
                part = pq.read_table(staging / role / f"month={month}").replace_schema_metadata(None)
                columns = {}
                for field in part.schema:
                    column = part[field.name]
                    if pa.types.is_timestamp(field.type):  # PostgreSQL keeps microseconds
                        column = pc.cast(column, pa.timestamp("us", field.type.tz), safe=False)
                    elif pa.types.is_large_string(field.type):
                        column = pc.cast(column, pa.string())
                    columns[field.name] = column
                parts.append(pa.table(columns).append_column("month", pa.array([month] * part.num_rows)))
            cursor.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            cursor.execute(f"DROP TABLE IF EXISTS {schema}.{table}")
            cursor.adbc_ingest(table, pa.concat_tables(parts), mode="create", db_schema_name=schema)
            print(f"  {schema}.{table}: {sum(p.num_rows for p in parts):,} rows")
        connection.commit()
    shutil.rmtree(staging, ignore_errors=True)


STORAGE_FILE = "storage.json"
S3_BUCKET = "retrain-demo"


def local_s3(demo: Path) -> Any:
    sys.path.insert(0, str(ROOT / "scripts"))
    from local_s3 import SeaweedServer

    return SeaweedServer(demo / "s3", S3_BUCKET, access_key="retrain-demo", secret_key="retrain-demo-local-only")


def onto_s3(demo: Path, configs: list[Path]) -> tuple[Any, Path, list[Path]]:
    """Start a local SeaweedFS, upload the generated months, and give every model a config whose data (when
    files) and registry are in its bucket; `make airflow` finds the server and configs in storage.json."""

    shutil.rmtree(demo / "s3", ignore_errors=True)
    server = local_s3(demo).start()
    try:
        return server, *_upload(demo, configs, server)
    except BaseException:
        server.stop()
        raise


def _upload(demo: Path, configs: list[Path], server: Any) -> tuple[Path, list[Path]]:
    from retrain.config import load_config
    from retrain.snapshots.sql import is_sql

    os.environ.update(server.environment)
    print(f"SeaweedFS (S3) on {server.endpoint}, bucket {S3_BUCKET}, data in {server.folder}")
    client = server.client()
    folder = demo / "config-s3"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    moved = []
    for path in configs:
        config = load_config(path)
        text = path.read_text()
        for role in ("production", "labeled"):
            root = getattr(config.data, role)
            if is_sql(root):
                continue
            prefix = f"{config.model.name}/{role}"
            for file in sorted(Path(root).rglob("*")):
                if file.is_file():
                    client.upload_file(str(file), S3_BUCKET, f"{prefix}/{file.relative_to(root).as_posix()}")
            text = re.sub(rf'(?m)^{role} = "[^"]*"', f'{role} = "s3://{S3_BUCKET}/{prefix}"', text)
        text = re.sub(r'(?m)^root = "[^"]*"', f'root = "s3://{S3_BUCKET}/registry"', text)
        (folder / path.name).write_text(text)
        moved.append(folder / path.name)
    (demo / STORAGE_FILE).write_text(json.dumps({"storage": "s3", "config_dir": str(folder)}) + "\n")
    return folder, moved


def airflow_env(demo: Path, config_dir: Path = CONFIG_DIR) -> dict[str, str]:
    home = demo / "airflow"
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        # dag.test() warns about every branch it skipped; the demo checks each run's state itself.
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "ERROR",
        "RETRAIN_CONFIG_DIR": str(config_dir),
    }


def read_as_run(dag_id: str, run_id: str, started: datetime) -> None:
    """dag.test() starts a run at its logical date (a duration of months in the UI) and names `dag_test` as
    its trigger; the run's record says when it really ran, and that the demo triggered it."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.types import DagRunTriggeredByType
    from sqlalchemy import select

    with create_session() as session:
        run = session.scalar(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
        run.start_date = run.queued_at = started
        run.triggered_by = DagRunTriggeredByType.CLI
        run.triggering_user_name = TRIGGERED_BY


def run_months(months: list[str], models: list[str]) -> None:
    # Imported only now: Airflow reads its settings from the environment at import time.
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    if bag.import_errors:
        sys.exit(f"DAG import errors: {bag.import_errors}")
    for month in months:
        for name in models:
            dag = DagBag(dag_folder=str(ROOT / "dags")).dags[f"retrain__{name}"]
            started = time.monotonic()
            started_at = datetime.now(UTC)
            year, number = map(int, month.split("-"))
            first_day = datetime(year, number, 1, tzinfo=UTC)
            # Run ids come from run_after: the month's first day names the month in the grid.
            dag_run = dag.test(run_conf={"month": month}, logical_date=first_day, run_after=first_day)
            read_as_run(dag.dag_id, dag_run.run_id, started_at)
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
    print(f"Ledger:  retrain registry ledger --config {os.path.relpath(config_path)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", default="demo", help="demo folder (default: ./demo)")
    parser.add_argument("--months", type=int, default=12, help="months the demo runs (default: 12)")
    parser.add_argument("--start", help="first month, YYYY-MM (default: the months before last month)")
    parser.add_argument("--models", default=",".join(DEMO_MODELS), help="comma-separated (default: all)")
    parser.add_argument("--config-dir", type=Path, default=CONFIG_DIR, help="model configs (default: config/models)")
    parser.add_argument(
        "--storage", choices=("local", "s3"), default="local", help="s3: data and registry on a local SeaweedFS"
    )
    args = parser.parse_args()
    demo = Path(args.dir).resolve()
    started = time.monotonic()
    models = [m for m in args.models.split(",") if m]
    unknown = sorted(set(models) - set(DEMO_MODELS))
    if unknown:
        sys.exit(f"unknown demo model(s) {', '.join(unknown)}; the demo's are {', '.join(DEMO_MODELS)}")
    for name in [m for m in models if m in DATABASE_MODELS]:
        from retrain.config import load_config

        url = load_config(args.config_dir / f"{name}.toml").database.url
        if not database_reachable(url):
            print(f"Leaving {name} out: its months live in PostgreSQL, and {url} does not answer.")
            models.remove(name)

    *months, scheduled = demo_months(args.months, args.start)
    config_dir = args.config_dir.resolve()
    configs = prepare_data(demo, [*months, scheduled], models, config_dir)
    server = None
    if args.storage == "s3":
        server, config_dir, configs = onto_s3(demo, configs)
    else:
        (demo / STORAGE_FILE).unlink(missing_ok=True)
    try:
        run_airflow(demo, config_dir, configs, months, scheduled, models, started)
    finally:
        if server is not None:
            server.stop()
            print(f"Stopped SeaweedFS; `make airflow` starts it again from {server.folder}.")


def run_airflow(
    demo: Path,
    config_dir: Path,
    configs: list[Path],
    months: list[str],
    scheduled: str,
    models: list[str],
    started: float,
) -> None:
    env = airflow_env(demo, config_dir)
    os.environ.update(env)
    (demo / "airflow").mkdir(parents=True)
    print("Initialising the Airflow metadata DB (SQLite) and the retrain_training pool ...")
    for command in (
        ["db", "migrate"],
        ["pools", "set", "retrain_training", str(TRAINING_POOL_SLOTS), "retrain: training and evaluation"],
    ):
        subprocess.run([sys.executable, "-m", "airflow", *command], env=os.environ, check=True, capture_output=True)
    print(f"Running retrain__{' and retrain__'.join(models)} for {months[0]} .. {months[-1]}, month by month:")
    run_months(months, models)
    for config in configs:
        print_summary(config)
    print(
        "\nReading the tables: `labels` is the last labeled month a run used; `reference` the production month(s)\n"
        "drift was tested against ('>': this run moved the reference to the month it validated the champion on);\n"
        "`est.` the champion's AUC (home_prices: RMSE) estimated before labels, `real` what it was once labels\n"
        "arrived; champion and challenger are scored on the same holdout, in the model's promotion metric."
    )
    from retrain.config import load_config

    print(f"Reports: {load_config(configs[0]).registry.root}/<model>/runs/<month>/<run>/report.html")
    print(f"Airflow: {demo / 'airflow'} (make airflow opens it: the runs above show in its grid)")
    print(
        f"Left for the scheduler: {scheduled}, whose data is there. The DAGs start paused: unpause one in\n"
        "`make airflow` (its toggle, or `airflow dags unpause retrain__churn`) and the scheduler runs it."
    )
    print(f"\nDone in {time.monotonic() - started:.0f} s.")


if __name__ == "__main__":
    main()

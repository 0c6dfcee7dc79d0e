"""The fleet's DAGs: one retraining DAG per model config, and a paused, failing DAG for a config that
does not load. Reading the TOML files is the only work done at parse time."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

from airflow.sdk import DAG, CronDataIntervalTimetable, task

from retrain.airflow import tasks
from retrain.airflow.notifications import failure_notifier, log_failure
from retrain.airflow.params import PARAMS
from retrain.airflow.retries import RETRIES
from retrain.config import Config

log = logging.getLogger(__name__)

# Where the report plugin finds a DAG's model config: recorded in the DAG's default_args, which the
# metadata DB keeps with the serialized DAG (operators ignore keys that are not their arguments).
CONFIG_ARG = "retrain_config"

DOC = """
# Model retraining: `{model}`

Keeps the `{model}` model fresh, from config `{config}`: waits for the month's data, tests every feature for
drift, trains a challenger when something moved, and promotes it only when it is measurably better. Params:
`month`, `force_retrain`, `dry_run`, `alpha`, `min_lift`. The ledger: `retrain registry ledger --config {config}`.
"""


def build_dag(config_path: Path, config: Config, doc_md: str = DOC) -> DAG:
    """The retraining DAG of one model config; `doc_md` may name `{model}`, `{config}` and `{dag_id}`."""
    from retrain.fleet import dag_id as dag_id_for

    path = str(config_path)
    dag_id = dag_id_for(config.model.name)
    data = config.data
    with DAG(
        dag_id=dag_id,
        description=f"Drift-gated monthly retraining of {config.model.name}",
        doc_md=doc_md.format(model=config.model.name, config=path, dag_id=dag_id),
        schedule=CronDataIntervalTimetable(config.airflow.schedule, timezone="UTC"),
        start_date=datetime.strptime(config.airflow.start_month, "%Y-%m").replace(tzinfo=UTC),
        catchup=False,
        max_active_runs=1,
        tags=["ml", "retraining", "drift", *config.airflow.tags],
        default_args={
            "owner": ",".join(config.airflow.owners),
            **RETRIES,
            "on_failure_callback": [log_failure, failure_notifier(path, dag_id)],
            CONFIG_ARG: path,
        },
        params=PARAMS,
        auto_register=False,
    ) as dag:
        # The sensor's own deadline (data.wait_timeout_minutes, in the task) fires first, naming what is missing.
        ready = tasks.wait_for_data.override(
            poke_interval=data.wait_poke_seconds, timeout=data.wait_timeout_minutes * 60 + data.wait_poke_seconds
        )(path)
        pulled = tasks.pull_snapshots(path)
        gate = tasks.check_drift(path)
        trained = tasks.train_challenger(path)
        decided = tasks.evaluate(path)
        promoted = tasks.promote.override(outlets=[tasks.champion_asset(config.model.name)])(path)
        kept = tasks.keep_champion(path)
        recorded = tasks.record_decision(path)

        ready >> pulled >> gate >> [trained, recorded]
        if config.approval.required:
            from retrain.airflow.approval import PromotionApproval

            approval = PromotionApproval(config_path=path, approval=config.approval)
            trained >> decided >> approval >> [promoted, kept]
        else:
            trained >> decided >> [promoted, kept]
        [promoted, kept] >> recorded
    return dag


def build_broken_dag(config_path: Path, error: Exception) -> DAG:
    """A config that does not load breaks only its own DAG: paused, its description the error, its one task
    failing with it. (Airflow marks every DAG of a file with an import error stale, so raising here would
    take the healthy models down too.)"""
    from retrain.fleet import dag_id as dag_id_for

    message = f"{error}"
    with DAG(
        dag_id=dag_id_for(config_path.stem),
        description=f"CONFIG ERROR: {message}"[:200],
        doc_md=f"# Broken model config\n\n`{config_path}` does not load:\n\n    {message}\n\nFix the file; "
        "the DAG comes back at the next parse.",
        schedule=None,
        start_date=datetime(2025, 1, 1, tzinfo=UTC),
        is_paused_upon_creation=True,
        tags=["retraining", "config-error"],
        auto_register=False,
    ) as dag:

        @task
        def config_error() -> None:
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(message)

        config_error()
    return dag


def build_fleet(config_dir: str | Path | None = None, *, doc_md: str | None = None) -> dict[str, DAG]:
    """One DAG per model config (`*.toml`) in `config_dir`, by DAG id; without it, the folder the
    environment names (see `retrain.fleet`). `doc_md`, the DAGs' documentation, is typically the DAG
    file's docstring. A DAG file exposes them:

        globals().update(build_fleet("/opt/airflow/models", doc_md=__doc__))
    """
    from retrain.config import load_config
    from retrain.errors import ConfigError
    from retrain.fleet import config_files

    dags: dict[str, DAG] = {}
    owners: dict[str, Path] = {}
    for path in config_files(config_dir):
        try:
            config = load_config(path)
            if config.model.name in owners:
                raise ConfigError(
                    f"{path}: model.name {config.model.name!r} is already used by {owners[config.model.name]}; "
                    "every model needs its own name (its DAG id and registry prefix)"
                )
        except ConfigError as error:
            log.error("model config %s does not load: %s", path, error)
            broken = build_broken_dag(path, error)
            dags.setdefault(broken.dag_id, broken)
            continue
        owners[config.model.name] = path
        dag = build_dag(path, config, doc_md or DOC)
        dags[dag.dag_id] = dag
    return dags

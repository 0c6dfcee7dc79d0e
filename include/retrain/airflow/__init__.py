"""retrain's Airflow layer, the one part of the package that imports Airflow.

- `factory`: the fleet's DAGs, one per model config (`build_fleet`), and the broken-config DAG;
- `tasks`: the DAG's tasks, each calling one step of `retrain.cycle`;
- `params`: a run's Params, its month, and the check of its conf;
- `retries`: which errors are retried;
- `notifications`: decisions and failures through Airflow's notifiers;
- `plugin`: the report views in the Airflow UI, registered through the `airflow.plugins` entry point.

A DAG file that serves a folder of model configs is a docstring and two lines:

    from retrain.airflow import build_fleet
    globals().update(build_fleet("/opt/airflow/models"))
"""

from retrain.airflow.factory import build_fleet

__all__ = ["build_fleet"]

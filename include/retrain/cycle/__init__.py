"""One retraining cycle as steps that take and return typed records (`retrain.records`).

The Airflow DAG runs each step as its own task and passes the records' JSON form through XCom; `run_cycle`
runs them in one process for the CLI. Heavy artifacts (drift report, challenger model, evaluation) are
written to the run's folder in the registry and travel as URIs. Only `promote`, `keep` and `record` touch
the registry's history, and each is safe to repeat for the same run id.

- `context`: what every step gets (config, run, registry);
- `window`: which months a run uses, and whether they have landed;
- `reference`: what drift is tested against;
- `frames`: snapshots read once per process, and the holdout;
- `pull`, `drift`, `train`, `evaluate`, `promote`, `keep`, `record`: the steps, in order;
- `estimate`: the champion's AUC before labels, for the drift step;
- `run`: the loop that runs a cycle outside Airflow.
"""

from retrain.cycle.context import Cycle
from retrain.cycle.run import run_cycle

__all__ = ["Cycle", "run_cycle"]

"""The fleet: every model config Airflow serves, found the same way by the DAG file and the UI plugin.

`RETRAIN_CONFIG` names one config file; otherwise every `*.toml` in `RETRAIN_CONFIG_DIR` (default
`config/models` next to `include/`) is a model. Each model's DAG is `retrain__<model.name>`.
"""

from __future__ import annotations

import os
from pathlib import Path

DAG_PREFIX = "retrain__"
DEFAULT_CONFIG_DIR = Path(__file__).resolve().parents[2] / "config" / "models"


def dag_id(model_name: str) -> str:
    return f"{DAG_PREFIX}{model_name}"


def config_files() -> list[Path]:
    """The model config files, in a stable order."""
    single = os.environ.get("RETRAIN_CONFIG")
    if single:
        return [Path(single)]
    return sorted(Path(os.environ.get("RETRAIN_CONFIG_DIR", str(DEFAULT_CONFIG_DIR))).glob("*.toml"))


def config_for_dag(wanted: str) -> Path | None:
    """The config file behind a DAG id, or None (a DAG of someone else's, or a config that does not load)."""
    from retrain.config import load_config
    from retrain.errors import ConfigError

    if not wanted.startswith(DAG_PREFIX):
        return None
    for path in config_files():
        try:
            if dag_id(load_config(path).model.name) == wanted:
                return path
        except ConfigError:
            continue
    return None

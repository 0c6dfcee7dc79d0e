"""The fleet: every model config Airflow serves, found the same way by the DAG file and the UI plugin.

`RETRAIN_CONFIG` names one config file; otherwise every `*.toml` in `RETRAIN_CONFIG_DIR` (default
`config/models` next to `include/`) is a model. Each model's DAG is `retrain__<model.name>`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from retrain.config import Config

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


def loadable_configs() -> Iterator[Config]:
    """The fleet's configs that load (a broken one is its own DAG's problem, shown there)."""
    from retrain.config import load_config
    from retrain.errors import ConfigError

    for path in config_files():
        try:
            yield load_config(path)
        except ConfigError:
            continue


def config_for_dag(wanted: str) -> Config | None:
    """The config behind a DAG id, or None (a DAG of someone else's, or a config that does not load)."""
    if not wanted.startswith(DAG_PREFIX):
        return None
    return next((config for config in loadable_configs() if dag_id(config.model.name) == wanted), None)

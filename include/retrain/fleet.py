"""The fleet: the model configs one Airflow deployment serves, each the DAG `retrain__<model.name>`.

A DAG file names its config folder (`retrain.airflow.build_fleet(folder)`); without one, `RETRAIN_CONFIG`
names a single config file and `RETRAIN_CONFIG_DIR` a folder of them, and in a checkout of this
repository the folder `config/models` is the default.
"""

from __future__ import annotations

import os
from pathlib import Path

from retrain.errors import ConfigError

DAG_PREFIX = "retrain__"
CHECKOUT_CONFIG_DIR = Path(__file__).resolve().parents[2] / "config" / "models"


def dag_id(model_name: str) -> str:
    return f"{DAG_PREFIX}{model_name}"


def config_files(config_dir: str | Path | None = None) -> list[Path]:
    """The model config files, in a stable order."""
    if config_dir is None:
        single = os.environ.get("RETRAIN_CONFIG")
        if single:
            return [Path(single)]
        config_dir = os.environ.get("RETRAIN_CONFIG_DIR")
    if config_dir is None:
        if not CHECKOUT_CONFIG_DIR.is_dir():
            raise ConfigError(
                "no model config folder: pass one to build_fleet(), or set RETRAIN_CONFIG_DIR (or RETRAIN_CONFIG)"
            )
        config_dir = CHECKOUT_CONFIG_DIR
    folder = Path(config_dir)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: the model config folder does not exist")
    return sorted(folder.glob("*.toml"))

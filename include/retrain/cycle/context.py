"""What every step of one run needs: the config with the run's overrides, the run's identity, and the
registry, opened once and passed along."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from retrain.registry import Registry, RunFolder

if TYPE_CHECKING:
    from retrain.config import Config
    from retrain.records import Run


@dataclass(frozen=True)
class Cycle:
    config: Config
    run: Run
    registry: Registry

    @classmethod
    def open(cls, config: Config, run: Run) -> Cycle:
        return cls(config, run, Registry.for_config(config))

    @property
    def folder(self) -> RunFolder:
        """The run's working folder in the registry: its reports, its challenger, its evaluation."""
        return self.registry.run_folder(self.run.month, self.run.key)

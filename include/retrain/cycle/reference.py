"""The drift reference: what a run's production month is tested against (`drift.reference`).

- `validated` (default): the production month on which the champion was last validated;
- `training`: the champion's training window (its labeled months);
- `fixed`: `data.reference_month`, which every mode uses before any champion exists (default: the
  earliest production month).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from retrain.errors import DataError
from retrain.records import Reference
from retrain.snapshots import list_months

if TYPE_CHECKING:
    from retrain.config import Config
    from retrain.records import Champion, Snapshot
    from retrain.registry import Registry
    from retrain.snapshots import Schema

log = logging.getLogger(__name__)

Scan = Callable[[str, str, "Schema"], "Snapshot"]


def choose_reference(
    config: Config,
    registry: Registry,
    champion: Champion | None,
    features: Schema,
    production: Snapshot,
    scan: Scan,
) -> Reference:
    """The drift reference for `drift.reference`, with where it came from in words. `scan` validates a
    month of a dataset (root, month, schema)."""
    mode = config.drift.reference
    if champion is not None and mode == "validated":
        month = champion.validated_month or champion.data_month
        source = f"production month {month}, on which champion version {champion.version} was last validated"
        if month == production.month:
            return Reference(mode, source, (month,), (production,))
        try:
            snapshot = scan(config.data.production, month, features)
        except DataError as error:
            log.warning(
                "champion v%d's validation month is unreadable (%s); using the fixed reference", champion.version, error
            )
        else:
            return Reference(mode, source, (month,), (snapshot,))
    if champion is not None and mode == "training":
        training = registry.metadata(champion.version).lineage.training
        try:
            snapshots = tuple(scan(config.data.labeled, item.month or "", features) for item in training)
        except DataError as error:
            log.warning(
                "champion v%d's training data is unreadable (%s); using the fixed reference", champion.version, error
            )
        else:
            months = tuple(s.month or "" for s in snapshots)
            source = f"labeled months {', '.join(months)}, champion version {champion.version}'s training data"
            return Reference(mode, source, months, snapshots)
    months = list_months(config.data.production, config.storage, config.data.partitioning)
    month = config.data.reference_month or (months[0] if months else None)
    if month is None:
        raise DataError(f"{config.data.production}: no production months to use as the drift reference")
    why = "data.reference_month" if config.data.reference_month else "the earliest production month"
    snapshot = production if month == production.month else scan(config.data.production, month, features)
    used = "fixed" if champion is None or mode == "fixed" else mode
    return Reference(used, f"production month {month} ({why})", (month,), (snapshot,))

"""The first step: resolve and validate every snapshot a run uses, before anything is written."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from retrain.cycle.frames import schemas
from retrain.cycle.reference import Scan, choose_reference
from retrain.cycle.window import labeled_month_for, training_window
from retrain.errors import DataError
from retrain.months import is_month
from retrain.records import Pulled, Snapshot
from retrain.serial import to_bytes
from retrain.snapshots import NULL, combine_kinds, release_unused_memory, scan_month

if TYPE_CHECKING:
    from retrain.config import Config
    from retrain.cycle.context import Cycle
    from retrain.records import Champion
    from retrain.snapshots import Schema

log = logging.getLogger(__name__)

PULLED_FILE = "pulled.json"  # the state a run started from, in its run folder


def pull_snapshots(cycle: Cycle) -> Pulled:
    """Resolve and validate every snapshot the run will use, streaming them, before anything is written.

    The registry is checked first, so a registry that cannot be used stops the run before any data step.
    """
    config, registry, run = cycle.config, cycle.registry, cycle.run
    registry.check()
    recorded = registry.ledger_record(run.month, run.key)
    recorded_outcome = recorded.outcome if recorded else None
    champion = registry.champion()
    resumed = _resumed(cycle, champion)
    if resumed is not None:
        return replace(resumed, recorded_outcome=recorded_outcome)
    features, labeled_schema = schemas(config)

    def scan(root: str, month: str, schema: Schema) -> Snapshot:
        return _scan(config, root, month, schema)

    production, labeled = _scan_inputs(config, run.month)
    validation = None
    if champion is not None:
        reused = [s for s in labeled if s.month == champion.validated_month]
        validation = reused[0] if reused else _optional_scan(scan, config.data.labeled, champion, labeled_schema)
    reference = choose_reference(config, registry, champion, features, production, scan)
    check_kinds([*reference.snapshots, production, *labeled, *([validation] if validation else [])])
    pulled = Pulled(
        run_id=run.run_id,
        run_key=run.key,
        month=run.month,
        labeled_month=labeled_month_for(config, run.month),
        champion=champion,
        reference=reference,
        production=production,
        labeled=tuple(labeled),
        validation=validation,
        recorded_outcome=recorded_outcome,
    )
    cycle.folder.write(PULLED_FILE, to_bytes(pulled))
    release_unused_memory()
    return pulled


def _scan(config: Config, root: str, month: str, schema: Schema) -> Snapshot:
    return scan_month(
        root,
        month,
        schema,
        max_null_rate=config.data.max_null_rate,
        by_feature=config.data.max_null_rate_by_feature,
        spec=config.storage,
        partitioning=config.data.partitioning,
    )


def _scan_inputs(config: Config, month: str) -> tuple[Snapshot, list[Snapshot]]:
    """A run's production month and its labeled window, each validated."""
    features, labeled_schema = schemas(config)
    production = _scan(config, config.data.production, month, features)
    labeled = [_scan(config, config.data.labeled, m, labeled_schema) for m in training_window(config, month)]
    return production, labeled


@dataclass(frozen=True)
class CheckedInputs:
    """What `retrain check` found: the snapshots a run for `month` reads, each validated."""

    month: str
    production: Snapshot
    labeled: tuple[Snapshot, ...]


def check_inputs(config: Config, month: str) -> CheckedInputs:
    """Validate what a run for `month` reads, its production month and labeled window, as pull_snapshots
    does, without the registry and writing nothing: a new dataset's first test. The first problem raises."""
    if not is_month(month):
        raise DataError(f"month must be YYYY-MM, got {month!r}")
    production, labeled = _scan_inputs(config, month)
    check_kinds([production, *labeled])
    return CheckedInputs(month, production, tuple(labeled))


def _resumed(cycle: Cycle, champion: Champion | None) -> Pulled | None:
    """A run that already moved the champion pointer (and was then interrupted before its ledger record)
    resumes from the state it started from: pulled afresh, its own promotion would look like the champion
    it started from, and its own month like the drift reference."""
    run = cycle.run
    if champion is None or run.run_id not in (champion.run_id, champion.validated_run_id):
        return None
    started = cycle.folder.read_record(Pulled, PULLED_FILE)
    if started is None:
        return None
    log.info("run %s moved the champion before it was interrupted; resuming from its first pull", run.run_id)
    return started


def _optional_scan(scan: Scan, root: str, champion: Champion, schema: Schema) -> Snapshot | None:
    """A month that only improves the run (the champion's validation data): missing is a warning."""
    try:
        return scan(root, champion.validated_month or champion.data_month, schema)
    except DataError as error:
        log.warning("no estimated AUC this run: the champion's validation month is unreadable (%s)", error)
        return None


def check_kinds(snapshots: list[Snapshot]) -> None:
    """A categorical column's values keep one type in every snapshot a run compares or trains on."""
    seen: dict[str, tuple[str, str]] = {}
    for snapshot in snapshots:
        for column, kind in snapshot.kinds.items():
            known, first = seen.get(column, (NULL, snapshot.where))
            seen[column] = (combine_kinds(known, kind, column, first, snapshot.where), first)

"""Validated snapshots as frames, read once per process: the steps of one cycle share their labeled months.

Keyed by the snapshot's fingerprint, so a changed snapshot is never served from here.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

from retrain.snapshots import Schema, SnapshotReader

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from retrain.config import Config
    from retrain.records import Snapshot

FRAME_CACHE_SIZE = 6
_frames: OrderedDict[tuple[str, str | None, Schema], pd.DataFrame] = OrderedDict()


def schemas(config: Config) -> tuple[Schema, Schema]:
    """The production schema (features only) and the labeled one (features, target, timestamp)."""
    labeled = Schema.for_model(config.model, labeled=True, segments=config.promotion.segments)
    return Schema.for_model(config.model, labeled=False), labeled


def reader(config: Config, snapshot: Snapshot) -> SnapshotReader:
    return SnapshotReader.of(snapshot, config.storage)


def frame(config: Config, snapshot: Snapshot, schema: Schema, *, keep: bool = True) -> pd.DataFrame:
    """A validated snapshot as a frame. With `keep=False` the frame is handed over and no longer kept
    (a month only training still needs)."""
    key = (snapshot.uri, snapshot.fingerprint, schema)
    if key in _frames:
        _frames.move_to_end(key)
        return _frames[key] if keep else _frames.pop(key)
    # pull_snapshots validated this snapshot and warned about its unlabeled rows; once per run is enough.
    read = reader(config, snapshot).frame(
        schema,
        max_null_rate=config.data.max_null_rate,
        by_feature=config.data.max_null_rate_by_feature,
        announce=False,
    )[0]
    if not keep:
        return read
    _frames[key] = read
    while len(_frames) > FRAME_CACHE_SIZE:
        _frames.popitem(last=False)
    return read


def release_frames() -> None:
    """Drop the frames kept for the steps of this process (the CLI does at the end of a cycle)."""
    _frames.clear()


def holdout_mask(config: Config, labeled: pd.DataFrame) -> np.ndarray:
    from retrain.evaluation import holdout_mask as mask

    return mask(
        labeled,
        config.model.target,
        config.training.holdout_fraction,
        timestamp=config.model.timestamp,
        seed=config.training.seed,
        task=config.model.task,
    )


def known_classes(
    config: Config, *snapshots: Snapshot | None, models: tuple[object, ...] = ()
) -> tuple[str, ...] | None:
    """A multiclass model's classes, in the order its probabilities are lined up in: every label its
    snapshots hold and every class its models know, sorted. None for other tasks."""
    from retrain.tasks import model_classes

    if config.model.task != "multiclass":
        return None
    labels = {label for s in snapshots if s is not None for label in s.classes}
    for model in models:
        labels.update(model_classes(model) or ())
    return tuple(sorted(labels))


def labels_of(config: Config, rows: pd.DataFrame, classes: tuple[str, ...] | None) -> np.ndarray:
    """The holdout's labels as the metrics take them: 0/1, positions in `classes`, or numbers."""
    from retrain.tasks import task_labels

    return task_labels(rows[config.model.target].to_numpy(), config.model.task, classes, where=config.data.labeled)


def holdout(config: Config, snapshot: Snapshot) -> pd.DataFrame:
    """The holdout rows of a labeled month."""
    month = frame(config, snapshot, schemas(config)[1])
    return month[holdout_mask(config, month)].reset_index(drop=True)

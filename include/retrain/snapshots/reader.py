"""Reading a snapshot (a month folder or a single file): listed once, validated by streaming it batch by
batch, read back whole as a typed frame, or one column at a time for the drift tests."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, TypeAlias

import numpy as np
import pyarrow as pa

from retrain.errors import ChangedError, DataError
from retrain.records import Snapshot
from retrain.snapshots.categories import CATEGORIES, NULL, categorical_values, codes, merge_kinds
from retrain.snapshots.files import (
    file_batches,
    parquet_column_batches,
    parquet_column_chunks,
    parquet_row_count,
    read_arrow_schema,
)
from retrain.snapshots.layout import BY_MONTH, DATA_FILES, DATA_SUFFIXES, describe, is_csv, month_folder
from retrain.snapshots.schema import Schema
from retrain.snapshots.sql import is_sql, materialize
from retrain.snapshots.values import Rows, class_labels, label_values, numeric_values, regression_targets, timestamps
from retrain.storage import ObjectInfo, Store, open_store

if TYPE_CHECKING:
    import pandas as pd

    from retrain.config import StorageSpec
    from retrain.months import Partitioning

    # One batch's converted column: float64 numbers or 0/1 labels, text categories, or UTC timestamps.
    Converted: TypeAlias = np.ndarray | pa.DictionaryArray | pd.Series

log = logging.getLogger(__name__)
EMPTY: Mapping[str, float] = MappingProxyType({})


def release_unused_memory() -> None:
    """Hand back to the system what Arrow's allocator keeps for reuse once a step is done with its batches:
    it keeps freed memory otherwise, and the next step's own peak (training) would come on top of it. In
    a 1M-row cycle the process's peak varied from 0.96 to 1.18 GB with it kept, and 0.94 to 1.02 GB without."""
    pa.default_memory_pool().release_unused()


def _labeled(labels: np.ndarray) -> np.ndarray:
    if labels.dtype == object:
        return labels != None  # noqa: E711 (elementwise)
    return ~np.isnan(labels)


@dataclass
class _Stats:
    rows: int = 0
    nulls: dict[str, int] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)
    kind_file: dict[str, str] = field(default_factory=dict)
    # Rows per class: 0 and 1 for a binary target, the labels of a multiclass one, none for a regression one.
    classes: dict[int | str, int] = field(default_factory=lambda: {0: 0, 1: 0})
    unlabeled: int = 0
    timestamps: int = 0
    # With model.positive_label: the target's other value, seen over every batch (a second one is refused).
    other_labels: set[str] = field(default_factory=set)


class SnapshotReader:
    """The files of one snapshot (a month folder or a single file), listed once and read on demand."""

    def __init__(
        self,
        uri: str,
        *,
        month: str | None = None,
        spec: StorageSpec | None = None,
        expected_fingerprint: str | None = None,
    ) -> None:
        self.uri, self.month = uri, month
        self.where = describe(month, uri)
        self.sql = is_sql(uri)
        database_fingerprint = None
        if self.sql:
            if month is None:
                raise DataError(f"{uri}: a SQL source is read a month at a time")
            # The copy is keyed by the database's fingerprint: taking it tells whether the rows changed.
            folder, database_fingerprint = materialize(uri, month, spec.database if spec else None)
            if expected_fingerprint not in (None, database_fingerprint):
                raise ChangedError(
                    f"{self.where}: the month's rows changed since they were validated; re-run the cycle"
                )
            self.store = open_store(str(folder))
            entries = [e for e in self.store.entries("") if "/" not in e.key and e.key.endswith(DATA_SUFFIXES)]
        elif uri.endswith(DATA_SUFFIXES):
            folder, _, name = uri.rpartition("/")
            self.store: Store = open_store(folder or ".", spec)
            entries = [e for e in self.store.entries(name) if e.key == name]
            if not entries:
                raise DataError(f"{uri}: file not found")
        else:
            self.store = open_store(uri, spec)
            entries = [e for e in self.store.entries("") if "/" not in e.key and e.key.endswith(DATA_SUFFIXES)]
        if not entries:
            raise DataError(f"{self.where}: no data files ({DATA_FILES})")
        self.entries: list[ObjectInfo] = entries
        digest = hashlib.sha256()
        for entry in entries:
            digest.update(entry.fingerprint_part())
        # A SQL month's fingerprint is the database's (row count and checksum), not its local copy's.
        self.fingerprint = database_fingerprint or digest.hexdigest()
        if expected_fingerprint is not None and expected_fingerprint != self.fingerprint:
            raise ChangedError(
                f"{self.where}: snapshot changed since it was validated (its files' fingerprint differs); "
                "re-run the cycle"
            )
        self._paths: dict[str, Path] = {}

    @classmethod
    def of(cls, snapshot: Snapshot, spec: StorageSpec | None = None) -> SnapshotReader:
        """Re-open a validated snapshot; ChangedError if any of its files changed since."""
        return cls(snapshot.uri, month=snapshot.month, spec=spec, expected_fingerprint=snapshot.fingerprint)

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(entry.key for entry in self.entries)

    def _path(self, entry: ObjectInfo) -> Path:
        if entry.key not in self._paths:
            try:
                self._paths[entry.key] = self.store.local_path(entry)
            except ChangedError as error:
                raise ChangedError(f"{self.where}: {error}; re-run the cycle") from None
        return self._paths[entry.key]

    def file_where(self, entry: ObjectInfo) -> str:
        if self.sql:
            return self.where  # its local copy is no place a user knows
        return describe(self.month, self.store.uri_for(entry.key))

    def batches(
        self, columns: tuple[str, ...], categorical: tuple[str, ...] = ()
    ) -> Iterator[tuple[ObjectInfo, int, pa.RecordBatch]]:
        """(file, row offset in the file, batch) for every batch of every file, with only `columns`."""
        for entry in self.entries:
            for offset, batch in self._file_batches(entry, columns, categorical):
                yield entry, offset, batch

    def _file_batches(
        self, entry: ObjectInfo, columns: tuple[str, ...], categorical: tuple[str, ...] = ()
    ) -> Iterator[tuple[int, pa.RecordBatch]]:
        offset = 0
        for batch in file_batches(self._path(entry), self.file_where(entry), columns, categorical):
            yield offset, batch
            offset += batch.num_rows

    # -- validation ---------------------------------------------------------------------------------------

    def scan(self, schema: Schema, *, max_null_rate: float = 1.0, by_feature: Mapping[str, float] = EMPTY) -> Snapshot:
        """Validate every row of the snapshot in bounded memory; the Snapshot records what it found.
        A feature's null rate may reach its `by_feature` limit, else `max_null_rate`."""
        stats = _Stats(nulls=dict.fromkeys(schema.features, 0))
        for entry, offset, batch in self.batches(schema.columns, (*schema.categorical, *schema.extra)):
            self._convert(batch, schema, entry, offset, stats, keep=False)
        return self._finish(schema, stats, max_null_rate, by_feature)

    def _convert(
        self, batch: pa.RecordBatch, schema: Schema, entry: ObjectInfo, offset: int, stats: _Stats, *, keep: bool
    ) -> dict[str, Converted] | None:
        where = self.file_where(entry)
        from_csv = is_csv(entry.key)
        rows = Rows(offset, csv=from_csv)
        stats.rows += batch.num_rows
        converted: dict[str, Converted] = {}
        for column in schema.numeric:
            values = numeric_values(batch.column(column), where, column, rows)
            stats.nulls[column] += int(np.isnan(values).sum())
            converted[column] = values
        for column in schema.categorical:
            values, kind = categorical_values(batch.column(column), where, column, from_csv=from_csv)
            merge_kinds(
                stats.kinds, self.where, column, kind, seen_in=stats.kind_file.get(column, ""), now_in=entry.key
            )
            if kind != NULL:
                stats.kind_file.setdefault(column, entry.key)
            stats.nulls[column] += values.null_count
            converted[column] = values
        for column in schema.extra:
            converted[column] = categorical_values(batch.column(column), where, column, from_csv=from_csv)[0]
        if schema.target and schema.task == "multiclass":
            labels = class_labels(batch.column(schema.target))
            present = labels != None  # noqa: E711 (elementwise)
            stats.unlabeled += int((~present).sum())
            found, counts = np.unique(labels[present].astype(str), return_counts=True)
            for label, count in zip(found.tolist(), counts.tolist(), strict=True):
                stats.classes[label] = stats.classes.get(label, 0) + count
            converted[schema.target] = labels
        elif schema.target and schema.task == "regression":
            labels = regression_targets(batch.column(schema.target), where, schema.target, rows)
            stats.unlabeled += int(np.isnan(labels).sum())
            converted[schema.target] = labels
        elif schema.target:
            labels = label_values(
                batch.column(schema.target),
                where,
                schema.target,
                rows,
                positive_label=schema.positive_label,
                other_labels=stats.other_labels,
            )
            labeled = ~np.isnan(labels)
            stats.unlabeled += int((~labeled).sum())
            positives = int((labels == 1).sum())
            stats.classes[1] += positives
            stats.classes[0] += int(labeled.sum()) - positives
            converted[schema.target] = labels
        if schema.timestamp:
            stamps = timestamps(batch.column(schema.timestamp), where, schema.timestamp, rows)
            stats.timestamps += int(stamps.notna().sum())
            converted[schema.timestamp] = stamps
        return converted if keep else None

    def _finish(
        self,
        schema: Schema,
        stats: _Stats,
        max_null_rate: float,
        by_feature: Mapping[str, float],
        *,
        announce: bool = True,
    ) -> Snapshot:
        if stats.rows == 0:
            raise DataError(f"{self.where}: empty snapshot (0 rows)")
        null_rates = {}
        for column in schema.features:
            rate = stats.nulls[column] / stats.rows
            if rate == 1.0:
                raise DataError(f"{self.where}: column {column} is entirely null")
            limit = by_feature.get(column, max_null_rate)
            if rate > limit:
                own = column in by_feature
                key = f"data.max_null_rate_by_feature.{column}" if own else "data.max_null_rate"
                # A feature missing this often by nature gets its own limit; the others keep theirs tight.
                hint = "" if own else f" (or give it its own: data.max_null_rate_by_feature = {{ {column} = ... }})"
                raise DataError(f"{self.where}: column {column} is {rate:.0%} null, above {key}={limit:.0%}{hint}")
            null_rates[column] = rate
        if schema.timestamp and stats.timestamps == 0:
            raise DataError(f"{self.where}: timestamp column {schema.timestamp} has no parseable timestamps")
        rows = stats.rows
        if schema.target:
            labeled = stats.rows - stats.unlabeled
            if labeled == 0:
                raise DataError(f"{self.where}: target column {schema.target} has no labels")
            if schema.task == "multiclass":
                stats.classes = {k: v for k, v in stats.classes.items() if v and k not in (0, 1)}
                if len(stats.classes) < 3:
                    shown = ", ".join(repr(k) for k in sorted(stats.classes))
                    raise DataError(
                        f"{self.where}: target column {schema.target} holds {len(stats.classes)} class"
                        f"{'' if len(stats.classes) == 1 else 'es'} ({shown}); model.task is multiclass, which "
                        'needs at least 3 (for two, model.task = "binary")'
                    )
            elif schema.task == "regression":
                stats.classes = {}
            elif min(stats.classes.values()) == 0:
                missing = "1" if stats.classes[1] == 0 else "0"
                if schema.positive_label is not None:
                    missing = f"{schema.positive_label!r} (model.positive_label)" if missing == "1" else "a negative"
                raise DataError(
                    f"{self.where}: target column {schema.target} holds a single class; no row is {missing}"
                )
            if stats.unlabeled and announce:
                log.warning("%s: dropping %d rows without a label in %s", self.where, stats.unlabeled, schema.target)
            rows = labeled
        return Snapshot(
            uri=self.uri,
            month=self.month,
            files=self.files,
            rows=rows,
            fingerprint=self.fingerprint,
            null_rates=null_rates,
            kinds={c: k for c, k in stats.kinds.items()},
            classes={str(k): v for k, v in sorted(stats.classes.items(), key=lambda kv: str(kv[0]))}
            if schema.target
            else {},
        )

    # -- reading ------------------------------------------------------------------------------------------

    def frame(
        self,
        schema: Schema,
        *,
        max_null_rate: float = 1.0,
        by_feature: Mapping[str, float] = EMPTY,
        announce: bool = True,
    ) -> tuple[pd.DataFrame, Snapshot]:
        """The validated, typed frame: float64 numbers, categorical text categories, the target (float 0/1 for
        a binary model, text labels for a multiclass one, float for a regression one; rows without a label
        dropped), UTC timestamps. `announce=False` for a snapshot whose scan already warned
        about its unlabeled rows (a step re-reading what an earlier step validated)."""
        import pandas as pd

        stats = _Stats(nulls=dict.fromkeys(schema.features, 0))
        parts: dict[str, list[Converted]] = {c: [] for c in schema.columns}
        for entry, offset, batch in self.batches(schema.columns, (*schema.categorical, *schema.extra)):
            converted = self._convert(batch, schema, entry, offset, stats, keep=True)
            keep = _labeled(converted[schema.target]) if schema.target else None
            for column, values in converted.items():
                parts[column].append(_take(values, keep))
        snapshot = self._finish(schema, stats, max_null_rate, by_feature, announce=announce)
        columns: dict[str, np.ndarray | pd.Series] = {}
        for column in schema.numeric:
            columns[column] = np.concatenate(parts[column])
        for column in (*schema.categorical, *schema.extra):
            columns[column] = pa.chunked_array(parts[column], type=CATEGORIES).to_pandas()
        if schema.target:
            columns[schema.target] = np.concatenate(parts[schema.target])
        if schema.timestamp:
            columns[schema.timestamp] = pd.concat(parts[schema.timestamp], ignore_index=True)
        return pd.DataFrame(columns), snapshot

    def _column(
        self, column: str, *, categorical: bool, batch_rows: int | None = None
    ) -> Iterator[tuple[ObjectInfo, int, pa.Array]]:
        """One column over every file, chunk by chunk: straight from the Parquet column chunks (no batching
        and no other column decoded), or from a CSV's batches. With `batch_rows`, a Parquet column comes in
        batches of at most that many rows, so a file larger than memory can be read."""
        for entry in self.entries:
            path, where = self._path(entry), self.file_where(entry)
            if path.suffix != ".parquet":
                for offset, batch in self._file_batches(entry, (column,), (column,) if categorical else ()):
                    yield entry, offset, batch.column(column)
                continue
            offset = 0
            chunks = (
                parquet_column_chunks(path, where, column, categorical=categorical)
                if batch_rows is None
                else parquet_column_batches(path, where, column, categorical=categorical, batch_rows=batch_rows)
            )
            for chunk in chunks:
                yield entry, offset, chunk
                offset += len(chunk)

    def numeric_batches(self, column: str, batch_rows: int | None) -> Iterator[np.ndarray]:
        """One numeric column over every file, batch by batch, NaN for missing (checked as `numeric`)."""
        for entry, offset, chunk in self._column(column, categorical=False, batch_rows=batch_rows):
            yield numeric_values(chunk, self.file_where(entry), column, Rows(offset, csv=is_csv(entry.key)))

    def numeric(self, column: str) -> np.ndarray:
        """One numeric column over every file, NaN for missing."""
        parts = [
            numeric_values(chunk, self.file_where(entry), column, Rows(offset, csv=is_csv(entry.key)))
            for entry, offset, chunk in self._column(column, categorical=False)
        ]
        if len(parts) == 1:
            return parts[0]
        return np.concatenate(parts) if parts else np.empty(0)

    def category_counts(
        self,
        column: str,
        *,
        take: np.ndarray | None = None,
        taken: list[pa.Array] | None = None,
        batch_rows: int | None = None,
    ) -> tuple[dict[str, int], int, str]:
        """Rows per category, null rows, and the values' kind, over every file (from dictionary codes).

        With `take` (sorted row positions over the whole snapshot), the values at those rows are appended
        to `taken` on the way, so a sample of the column needs no second read.
        """
        counts: dict[str, int] = {}
        nulls, kinds, seen_in, start = 0, {}, "", 0
        for entry, _, chunk in self._column(column, categorical=True, batch_rows=batch_rows):
            values, kind = categorical_values(chunk, self.file_where(entry), column, from_csv=is_csv(entry.key))
            merge_kinds(kinds, self.where, column, kind, seen_in=seen_in, now_in=entry.key)
            seen_in = seen_in or (entry.key if kind != NULL else "")
            if take is not None and taken is not None:
                inside = take[(take >= start) & (take < start + len(values))] - start
                taken.append(values.take(pa.array(inside)))
            start += len(values)
            nulls += values.null_count
            per_code = np.bincount(codes(values.indices), minlength=len(values.dictionary))
            for name, count in zip(values.dictionary.to_pylist(), per_code.tolist(), strict=True):
                if count:
                    counts[name] = counts.get(name, 0) + count
        return counts, nulls, kinds.get(column, NULL)

    def row_count(self) -> int | None:
        """Rows in every file, from Parquet footers alone; None when a CSV file must be read to know."""
        total = 0
        for entry in self.entries:
            path = self._path(entry)
            if path.suffix != ".parquet":
                return None
            total += parquet_row_count(path, self.file_where(entry))
        return total

    def arrow_schema(self) -> pa.Schema:
        """The first file's column types, for typing columns from the data alone."""
        entry = self.entries[0]
        return read_arrow_schema(self._path(entry), self.file_where(entry))


def _take(values: Converted, keep: np.ndarray | None) -> Converted:
    if keep is None:
        return values
    if isinstance(values, np.ndarray):
        return values[keep]
    if isinstance(values, pa.Array):
        return values.filter(pa.array(keep))
    return values[keep].reset_index(drop=True)


def scan_month(
    root: str,
    month: str,
    schema: Schema,
    *,
    max_null_rate: float = 1.0,
    by_feature: Mapping[str, float] = EMPTY,
    spec: StorageSpec | None = None,
    partitioning: Partitioning = BY_MONTH,
) -> Snapshot:
    """Validate one month of a dataset without keeping it in memory."""
    reader = SnapshotReader(month_folder(root, month, partitioning), month=month, spec=spec)
    return reader.scan(schema, max_null_rate=max_null_rate, by_feature=by_feature)

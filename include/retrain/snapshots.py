"""Monthly snapshots: locating `<root>/month=YYYY-MM/*.parquet|*.csv`, reading them, validating them.

Validation runs before anything else and stops at the first problem with a message that names the
file or month and the column, so nothing downstream ever sees a bad frame.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from retrain.errors import DataError, NotFoundError
from retrain.storage import Store, open_store

if TYPE_CHECKING:
    from retrain.config import ModelSpec, StorageSpec

log = logging.getLogger(__name__)

DATA_SUFFIXES = (".parquet", ".csv")
MONTH_DIR = re.compile(r"^month=(\d{4}-\d{2})/")


@dataclass(frozen=True)
class Schema:
    """The columns a snapshot must have and how to type them."""

    numeric: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    target: str | None = None
    timestamp: str | None = None

    @classmethod
    def for_model(cls, model: ModelSpec, *, labeled: bool) -> Schema:
        return cls(
            numeric=model.numeric_features,
            categorical=model.categorical_features,
            target=model.target if labeled else None,
            timestamp=model.timestamp if labeled else None,
        )

    @property
    def features(self) -> tuple[str, ...]:
        return (*self.numeric, *self.categorical)

    @property
    def columns(self) -> tuple[str, ...]:
        extra = tuple(c for c in (self.target, self.timestamp) if c)
        return (*self.features, *extra)


@dataclass(frozen=True)
class Snapshot:
    """Where a frame came from: enough lineage to find, count and verify it again."""

    uri: str
    month: str | None
    files: tuple[str, ...]
    rows: int
    sha256: str
    null_rates: dict[str, float] = field(default_factory=dict)

    def lineage(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "month": self.month,
            "files": list(self.files),
            "rows": self.rows,
            "sha256": self.sha256,
        }


def month_folder(root: str, month: str) -> str:
    return f"{root.rstrip('/')}/month={month}"


def list_months(root: str, spec: StorageSpec | None = None) -> list[str]:
    """Months that have at least one data file under a dataset root."""
    months = set()
    for key in open_store(root, spec).list("month="):
        match = MONTH_DIR.match(key)
        if match and key.endswith(DATA_SUFFIXES):
            months.add(match.group(1))
    return sorted(months)


def _describe(month: str | None, uri: str) -> str:
    return f"month {month} ({uri})" if month else uri


def _read_file(store: Store, key: str, columns: tuple[str, ...] | None) -> tuple[pd.DataFrame, bytes]:
    """One file's requested columns; missing columns and unreadable files are reported by file name."""
    where = store.uri_for(key)
    data = store.read(key)
    if not data:
        raise DataError(f"{where}: empty file (0 bytes)")
    try:
        if key.endswith(".parquet"):
            import pyarrow.parquet as pq

            parquet = pq.ParquetFile(io.BytesIO(data))
            available = parquet.schema_arrow.names
            _check_columns(where, available, columns)
            frame = parquet.read(columns=list(columns) if columns else None).to_pandas()
        else:
            header = pd.read_csv(io.BytesIO(data), nrows=0).columns.tolist()
            _check_columns(where, header, columns)
            frame = pd.read_csv(io.BytesIO(data), usecols=list(columns) if columns else None)
    except DataError:
        raise
    except Exception as error:  # noqa: BLE001 - any parser failure means the file is unreadable
        kind = "Parquet" if key.endswith(".parquet") else "CSV"
        raise DataError(f"{where}: unreadable or corrupt {kind} file: {error}") from None
    return frame, data


def _check_columns(where: str, available: list[str], columns: tuple[str, ...] | None) -> None:
    if not columns:
        return
    missing = [c for c in columns if c not in available]
    if missing:
        raise DataError(f"{where}: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}")


def read_location(
    uri: str,
    columns: tuple[str, ...] | None = None,
    *,
    month: str | None = None,
    spec: StorageSpec | None = None,
) -> tuple[pd.DataFrame, Snapshot]:
    """Read a data file or a folder of them (one month), keeping only `columns` when given."""
    if uri.endswith(DATA_SUFFIXES):
        folder, _, name = uri.rpartition("/")
        store, keys = open_store(folder or ".", spec), [name]
    else:
        store = open_store(uri, spec)
        keys = [k for k in store.list("") if "/" not in k and k.endswith(DATA_SUFFIXES)]
    if not keys:
        raise DataError(f"{_describe(month, uri)}: no data files (*.parquet or *.csv)")
    frames, digest = [], hashlib.sha256()
    for key in keys:
        try:
            frame, data = _read_file(store, key, columns)
        except NotFoundError:
            raise DataError(f"{store.uri_for(key)}: file not found") from None
        frames.append(frame)
        digest.update(key.encode() + b"\0" + hashlib.sha256(data).digest())
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    snapshot = Snapshot(uri=uri, month=month, files=tuple(keys), rows=len(frame), sha256=digest.hexdigest())
    return frame, snapshot


def read_month(
    root: str, month: str, schema: Schema, *, max_null_rate: float = 1.0, spec: StorageSpec | None = None
) -> tuple[pd.DataFrame, Snapshot]:
    """Read and validate one month of a dataset, with only the schema's columns."""
    uri = month_folder(root, month)
    frame, snapshot = read_location(uri, schema.columns, month=month, spec=spec)
    frame, null_rates = validate(frame, schema, where=_describe(month, uri), max_null_rate=max_null_rate)
    return frame, dataclasses.replace(snapshot, rows=len(frame), null_rates=null_rates)


def infer_schema(frame: pd.DataFrame) -> Schema:
    """Type columns from the data alone: numbers are numeric, text, booleans and categories categorical."""
    numeric, categorical = [], []
    for column in frame.columns:
        dtype = frame[column].dtype
        if pd.api.types.is_bool_dtype(dtype):
            categorical.append(column)
        elif pd.api.types.is_numeric_dtype(dtype):
            numeric.append(column)
        elif not pd.api.types.is_datetime64_any_dtype(dtype):
            categorical.append(column)
    return Schema(numeric=tuple(numeric), categorical=tuple(categorical))


def _as_numeric(series: pd.Series, where: str) -> pd.Series:
    if pd.api.types.is_bool_dtype(series.dtype):
        return series.astype("float64")
    if pd.api.types.is_numeric_dtype(series.dtype):
        return series.astype("float64")
    converted = pd.to_numeric(series, errors="coerce")
    bad = converted.isna() & series.notna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{where}: column {series.name} is numeric but holds text (row {row}: {series.iloc[row]!r})")
    return converted.astype("float64")


def as_category_strings(series: pd.Series) -> pd.Series:
    """Categorical values as Python strings with NaN for missing, the one form every step expects."""
    values = series.astype("object")
    present = values.notna()
    out = pd.Series(np.full(len(values), np.nan, dtype=object), index=series.index, name=series.name)
    out[present] = values[present].map(str)
    return out


def _as_binary_target(series: pd.Series, where: str) -> pd.Series:
    present = series.dropna()
    values = set(pd.unique(present))
    if not values <= {0, 1}:  # True and False compare equal to 1 and 0
        shown = ", ".join(str(v) for v in sorted(values, key=str)[:5])
        raise DataError(f"{where}: target column {series.name} must be binary 0/1, found {shown}")
    return series.astype("float64")


def validate(
    frame: pd.DataFrame, schema: Schema, *, where: str, max_null_rate: float = 1.0
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Check and type a frame; returns the typed frame and each feature's null rate."""
    if frame.empty:
        raise DataError(f"{where}: empty snapshot (0 rows)")
    typed = pd.DataFrame(index=frame.index)
    null_rates: dict[str, float] = {}
    for column in schema.features:
        series = frame[column]
        if column in schema.numeric:
            typed[column] = _as_numeric(series, where)
        else:
            typed[column] = as_category_strings(series)
        rate = float(typed[column].isna().mean())
        if rate == 1.0:
            raise DataError(f"{where}: column {column} is entirely null")
        if rate > max_null_rate:
            raise DataError(
                f"{where}: column {column} is {rate:.0%} null, above data.max_null_rate={max_null_rate:.0%}"
            )
        null_rates[column] = rate
    if schema.timestamp:
        stamps = pd.to_datetime(frame[schema.timestamp], errors="coerce", utc=True)
        if stamps.isna().all():
            raise DataError(f"{where}: timestamp column {schema.timestamp} has no parseable timestamps")
        typed[schema.timestamp] = stamps
    if schema.target:
        target = _as_binary_target(frame[schema.target], where)
        unlabeled = int(target.isna().sum())
        if unlabeled:
            log.warning("%s: dropping %d rows without a label in %s", where, unlabeled, schema.target)
        typed[schema.target] = target
        typed = typed[target.notna()].reset_index(drop=True)
        if typed.empty:
            raise DataError(f"{where}: target column {schema.target} has no labels")
        if typed[schema.target].nunique() < 2:
            raise DataError(f"{where}: target column {schema.target} holds a single class; need both 0 and 1")
    return typed, null_rates

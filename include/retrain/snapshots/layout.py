"""Where a dataset keeps its months: the partition layout, the data files in a month's folder, and whether
a month has landed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from retrain.months import Partitioning
from retrain.snapshots import sql
from retrain.storage import open_store

if TYPE_CHECKING:
    from retrain.config import StorageSpec

# CSV also as exports leave it compressed (pyarrow decompresses by the extension).
CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.zst")

DATA_SUFFIXES = (".parquet", *CSV_SUFFIXES)

DATA_FILES = ", ".join(f"*{suffix}" for suffix in DATA_SUFFIXES)

BY_MONTH = Partitioning()


def month_folder(root: str, month: str, partitioning: Partitioning = BY_MONTH) -> str:
    """Where a month's files are; a SQL source is its own location (the month selects its rows)."""
    if sql.is_sql(root):
        return root
    return f"{root.rstrip('/')}/{partitioning.folder(month)}"


def describe(month: str | None, uri: str) -> str:
    return f"month {month} ({uri})" if month else uri


def is_csv(name: str) -> bool:
    return name.endswith(CSV_SUFFIXES)


def list_months(root: str, spec: StorageSpec | None = None, partitioning: Partitioning = BY_MONTH) -> list[str]:
    """Months that have at least one data file directly in their folder under a dataset root (or rows,
    in a SQL source)."""
    if sql.is_sql(root):
        return sql.list_months(root, spec.database if spec else None)
    months = set()
    for key in open_store(root, spec).list(partitioning.prefix):
        month = partitioning.month_of(key) if key.endswith(DATA_SUFFIXES) else None
        if month is not None:
            months.add(month)
    return sorted(months)


def month_readiness(
    root: str,
    month: str,
    *,
    marker: str | None,
    spec: StorageSpec | None = None,
    partitioning: Partitioning = BY_MONTH,
) -> str | None:
    """None when a month's partition has landed (data files, and the marker file when one is configured);
    else what is missing, in words. A SQL source's month has landed when it has rows, or when
    database.readiness_query says so."""
    if sql.is_sql(root):
        return sql.month_readiness(root, month, spec.database if spec else None)
    uri = month_folder(root, month, partitioning)
    names = [k for k in open_store(uri, spec).list("") if "/" not in k]
    if not any(name.endswith(DATA_SUFFIXES) for name in names):
        return f"month {month} ({uri}): no data files yet"
    if marker and marker not in names:
        return f"month {month} ({uri}): no {marker} marker yet"
    return None

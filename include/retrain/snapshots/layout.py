"""Where a dataset keeps its months: the partition layout, the data files in a month's folder, and whether
a month has landed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from retrain.months import Partitioning
from retrain.storage import open_store

if TYPE_CHECKING:
    from retrain.config import StorageSpec

# CSV also as exports leave it compressed (pyarrow decompresses by the extension).
CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.zst")

DATA_SUFFIXES = (".parquet", *CSV_SUFFIXES)

DATA_FILES = ", ".join(f"*{suffix}" for suffix in DATA_SUFFIXES)

BY_MONTH = Partitioning()


def month_folder(root: str, month: str, partitioning: Partitioning = BY_MONTH) -> str:
    return f"{root.rstrip('/')}/{partitioning.folder(month)}"


def describe(month: str | None, uri: str) -> str:
    return f"month {month} ({uri})" if month else uri


def is_csv(name: str) -> bool:
    return name.endswith(CSV_SUFFIXES)


def list_months(root: str, spec: StorageSpec | None = None, partitioning: Partitioning = BY_MONTH) -> list[str]:
    """Months that have at least one data file directly in their folder under a dataset root."""
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
    else what is missing, in words."""
    uri = month_folder(root, month, partitioning)
    names = [k for k in open_store(uri, spec).list("") if "/" not in k]
    if not any(name.endswith(DATA_SUFFIXES) for name in names):
        return f"month {month} ({uri}): no data files yet"
    if marker and marker not in names:
        return f"month {month} ({uri}): no {marker} marker yet"
    return None

"""Monthly snapshots: locating `<root>/month=YYYY-MM/*.parquet|*.csv[.gz|.bz2|.zst]` (or another
`data.partition`), validating them, reading them.

A snapshot is validated by streaming its files batch by batch, so a month larger than memory is checked
in bounded memory; later steps read back only the columns they need. Categorical columns stay Arrow
dictionaries (pandas categoricals once in a frame) from the file to the model: no Python string per row.
Every problem stops the read with one message that names the file or month and the column.

A snapshot's fingerprint is a SHA-256 over each file's name, size and version (the S3 ETag, or the local
modification time), taken from the listing: a later step compares it without reading any data, and S3
downloads are pinned to the listed ETag.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from retrain.errors import ChangedError, DataError
from retrain.months import Partitioning
from retrain.storage import ObjectInfo, Store, open_store

if TYPE_CHECKING:
    import pandas as pd

    from retrain.config import ModelSpec, StorageSpec

log = logging.getLogger(__name__)
EMPTY: Mapping[str, float] = MappingProxyType({})

# CSV also as exports leave it compressed (pyarrow decompresses by the extension).
CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.zst")
DATA_SUFFIXES = (".parquet", *CSV_SUFFIXES)
DATA_FILES = ", ".join(f"*{suffix}" for suffix in DATA_SUFFIXES)
BY_MONTH = Partitioning()
BATCH_ROWS = 1 << 19
INTEGER_TEXT = re.compile(r"^[+-]?\d+$")
BOOLEAN_TEXT = {"true": "True", "false": "False"}
MALFORMED_ROW = re.compile(r"(?:Row #(\d+): )?Expected (\d+) columns, got (\d+): (.*)", re.DOTALL)
NOT_UTF8_COLUMN = re.compile(r"CSV column #(\d+): (?:Row #(\d+): )?CSV conversion error to string: invalid UTF8")
CATEGORIES = pa.dictionary(pa.int32(), pa.string())
# A categorical column's values are one of these kinds in every file of a month and across snapshots;
# "null" (a column with no value at all) agrees with any kind. Text is typed by what it holds: integers
# only, some integers among other codes (MIXED), or none.
TEXT, INTEGER, BOOLEAN, NUMBER, NULL = "text", "integer", "boolean", "number", "null"
MIXED = "integer and text"


@dataclass(frozen=True)
class Schema:
    """The columns a snapshot must have and how to type them."""

    numeric: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    target: str | None = None
    timestamp: str | None = None
    positive_label: str | None = None

    @classmethod
    def for_model(cls, model: ModelSpec, *, labeled: bool) -> Schema:
        return cls(
            numeric=model.numeric_features,
            categorical=model.categorical_features,
            target=model.target if labeled else None,
            timestamp=model.timestamp if labeled else None,
            positive_label=model.positive_label if labeled else None,
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
    """What validation established about a snapshot: enough lineage to find, count and verify it again."""

    uri: str
    month: str | None
    files: tuple[str, ...]
    rows: int
    fingerprint: str
    null_rates: dict[str, float] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)
    classes: dict[str, int] = field(default_factory=dict)

    def lineage(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "month": self.month,
            "files": list(self.files),
            "rows": self.rows,
            "fingerprint": self.fingerprint,
            "kinds": dict(self.kinds),
        }


def release_unused_memory() -> None:
    """Hand back to the system what Arrow's allocator keeps for reuse once a step is done with its batches:
    it keeps freed memory otherwise, and the next step's own peak (training) would come on top of it. In
    a 1M-row cycle the process's peak varied from 0.96 to 1.18 GB with it kept, and 0.94 to 1.02 GB without."""
    pa.default_memory_pool().release_unused()


def month_folder(root: str, month: str, partitioning: Partitioning = BY_MONTH) -> str:
    return f"{root.rstrip('/')}/{partitioning.folder(month)}"


def describe(month: str | None, uri: str) -> str:
    return f"month {month} ({uri})" if month else uri


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


# -- reading files ----------------------------------------------------------------------------------------


def _check_header(where: str, names: list[str], columns: tuple[str, ...]) -> None:
    duplicated = sorted({c for c in columns if names.count(c) > 1})
    if duplicated:
        raise DataError(f"{where}: column {duplicated[0]} appears {names.count(duplicated[0])} times in the header")
    missing = [c for c in columns if c not in names]
    if missing:
        hint = ""
        separator = next((s for s in (";", "\t", "|") if len(names) == 1 and s in names[0]), None)
        if separator:  # a European spreadsheet's export, or a TSV named .csv
            hint = f" (the header is one field holding {separator!r}: retrain reads comma-separated CSV)"
        else:
            near = [f"{name!r} for {column}" for column in missing for name in names if _loose(name) == _loose(column)]
            if near:  # a rename upstream (Tenure_Months), or spaces a spreadsheet left around a name
                hint = f" (the file has {', '.join(near)}: names must match exactly)"
        raise DataError(f"{where}: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}{hint}")


def _loose(name: str) -> str:
    """A column name without case, surrounding spaces, or the difference between '_', '-', ' ' and '.'."""
    return re.sub(r"[\s_.-]+", "_", name.strip().lower())


def _open_parquet(path: Path, where: str, columns: tuple[str, ...], categorical: tuple[str, ...]) -> Any:
    """A Parquet file whose `columns` exist, with `categorical` ones read as dictionaries. The columns are
    checked first: Parquet's dictionary option raises a bare KeyError for a column it cannot find, or one
    that is nested (a list or a struct)."""
    import pyarrow.parquet as pq

    try:
        metadata = pq.read_metadata(path)
        schema = metadata.schema.to_arrow_schema()
    except (pa.ArrowException, OSError) as error:
        raise DataError(f"{where}: unreadable or corrupt Parquet file: {error}") from None
    _check_header(where, schema.names, columns)
    for column in categorical:
        kind = schema.field(column).type
        if pa.types.is_nested(kind):
            raise DataError(f"{where}: column {column} is categorical but has type {kind}")
    try:
        return pq.ParquetFile(path, metadata=metadata, read_dictionary=list(categorical))
    except (pa.ArrowException, OSError) as error:
        raise DataError(f"{where}: unreadable or corrupt Parquet file: {error}") from None


def _parquet_batches(
    path: Path, where: str, columns: tuple[str, ...], categorical: tuple[str, ...]
) -> Iterator[pa.RecordBatch]:
    parquet = _open_parquet(path, where, columns, categorical)
    try:
        yield from parquet.iter_batches(batch_size=BATCH_ROWS, columns=list(columns))
    except (pa.ArrowException, OSError) as error:
        raise DataError(f"{where}: unreadable or corrupt Parquet file: {error}") from None


def is_csv(name: str) -> bool:
    return name.endswith(CSV_SUFFIXES)


def _csv_header(path: Path, where: str) -> list[str]:
    try:
        # utf-8-sig: spreadsheet exports start with a byte-order mark, which would rename the first column.
        with (
            pa.input_stream(str(path), compression="detect") as raw,
            io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as handle,
        ):
            header = next(csv.reader(handle), None)
    except UnicodeDecodeError as error:
        raise DataError(
            f"{where}: not UTF-8 text (byte 0x{error.object[error.start]:02x} at byte {error.start}); "
            "save or export the file as UTF-8"
        ) from None
    except (csv.Error, pa.ArrowException, OSError) as error:
        raise DataError(f"{where}: unreadable or corrupt CSV file: {error}") from None
    if header is None:
        raise DataError(f"{where}: empty file (no header line)")
    return header


def _csv_batches(path: Path, where: str, columns: tuple[str, ...]) -> Iterator[pa.RecordBatch]:
    """Every configured column as text (parsed by the converters below), malformed rows refused."""
    import pyarrow.csv as pacsv

    header = _csv_header(path, where)
    _check_header(where, header, columns)
    try:
        # No invalid_row_handler: a Python callback held by Arrow's read-ahead thread can be released after
        # the interpreter has begun to exit, which aborts the process; Arrow's own error names the row.
        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(use_threads=False, block_size=16 << 20),
            # A quoted free-text column may hold line breaks; Arrow only promises to read them with this set.
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                include_columns=list(columns),
                column_types=dict.fromkeys(columns, pa.string()),
                strings_can_be_null=True,
            ),
        )
        with reader:
            yield from reader
    except (pa.ArrowException, OSError) as error:
        malformed = MALFORMED_ROW.search(str(error))
        if malformed:
            line, expected, actual, text = malformed.groups()
            at = f"line {line}" if line else "a row"
            raise DataError(f"{where}: {at}: {actual} fields where the header has {expected}: {text[:80]!r}") from None
        not_utf8 = NOT_UTF8_COLUMN.search(str(error))
        if not_utf8 and int(not_utf8[1]) < len(header):
            line = f" (line {not_utf8[2]})" if not_utf8[2] else ""  # Arrow counts lines from 1, the header's too
            raise DataError(
                f"{where}: column {header[int(not_utf8[1])]} is not UTF-8 text{line}; save or export the file as UTF-8"
            ) from None
        raise DataError(f"{where}: unreadable or corrupt CSV file: {error}") from None


def _batches(
    path: Path, where: str, columns: tuple[str, ...], categorical: tuple[str, ...]
) -> Iterator[pa.RecordBatch]:
    if path.stat().st_size == 0:
        raise DataError(f"{where}: empty file (0 bytes)")
    if path.suffix == ".parquet":
        return _parquet_batches(path, where, columns, categorical)
    return _csv_batches(path, where, columns)


# -- converting columns -----------------------------------------------------------------------------------


def _first_row(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


@dataclass(frozen=True)
class Rows:
    """Where a batch's rows sit in their file, so that a bad value is named where its user will look."""

    offset: int = 0
    csv: bool = False

    def at(self, index: int) -> str:
        row = self.offset + index
        # An editor numbers a CSV's lines from 1, the header on line 1; pandas numbers a frame's rows from 0.
        return f"line {row + 2}" if self.csv else f"row {row}"


def numeric_values(array: pa.Array, where: str, column: str, rows: Rows = Rows()) -> np.ndarray:
    """A column as float64 with NaN for missing; text that is not a number and infinities are refused."""
    kind = array.type
    if pa.types.is_dictionary(kind):
        array, kind = array.dictionary_decode(), kind.value_type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        import pyarrow.compute as pc

        trimmed = _blank_as_null(array)
        try:
            array = pc.cast(trimmed, pa.float64())
        except pa.ArrowInvalid:
            flags = _boolean_text(trimmed)
            if flags is not None:
                return float64_values(flags)
            parsed = [_parse_float(v) for v in trimmed.to_pylist()]
            row = next(i for i, v in enumerate(parsed) if v is False)
            raise DataError(
                f"{where}: column {column} is numeric but holds text ({rows.at(row)}: {array[row].as_py()!r})"
            ) from None
    elif pa.types.is_duration(kind):
        # A time span (a pandas timedelta) as seconds: the drift tests and the trees do not see the unit.
        return float64_values(array.view(pa.int64())) / DURATION_UNITS_PER_SECOND[kind.unit]
    elif not (
        pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_decimal(kind)
        or pa.types.is_null(kind)
    ):
        raise DataError(f"{where}: column {column} is numeric but has type {kind}")
    values = float64_values(array)
    infinite = np.isinf(values)
    if infinite.any():
        row = _first_row(infinite)
        raise DataError(f"{where}: column {column} holds an infinite value ({rows.at(row)}: {values[row]})")
    return values


def label_values(
    array: pa.Array,
    where: str,
    column: str,
    rows: Rows = Rows(),
    *,
    positive_label: str | None = None,
    other_labels: set[str] | None = None,
) -> np.ndarray:
    """The target as float 1/0, NaN where a row has no label.

    Without `positive_label`: numbers 0/1, booleans, or their text (a CSV holds only text, and pandas
    writes booleans as True/False). With it, labels compare as text: that value is 1, the one other value
    0. `other_labels` gathers the other value over a snapshot's batches, so that a third one is refused
    rather than silently counted as negative.
    """
    import pyarrow.compute as pc

    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    text_kind = pa.types.is_string(array.type) or pa.types.is_large_string(array.type)
    if positive_label is None and not text_kind:
        return _binary(numeric_values(array, where, column, rows), where, column)
    text = _blank_as_null(array if text_kind else pc.cast(array, pa.string()))
    present = pc.is_valid(text).to_numpy(zero_copy_only=False)
    if positive_label is None:
        try:
            numbers = numeric_values(text, where, column, rows)
        except DataError:
            numbers = None  # neither numbers nor true/false: labels that need model.positive_label
        if numbers is not None:
            return _binary(numbers, where, column)
        # numeric_values reads numbers and true/false text alike, so some value here is neither.
        boolean = pc.fill_null(pc.is_in(pc.utf8_lower(text), value_set=pa.array(list(BOOLEAN_TEXT))), False)
        row = _first_row(present & ~boolean.to_numpy(zero_copy_only=False))
        raise DataError(
            f"{where}: target column {column} must be binary 0/1 or true/false ({rows.at(row)}: "
            f"{array[row].as_py()!r}); for other labels set model.positive_label to the one meaning positive"
        )
    positive = pc.fill_null(pc.equal(text, positive_label), False).to_numpy(zero_copy_only=False)
    others = other_labels if other_labels is not None else set()
    others.update(pc.unique(pc.filter(text, pa.array(present & ~positive))).to_pylist())
    if len(others) > 1:
        shown = ", ".join(repr(v) for v in sorted(others)[:5])
        raise DataError(
            f"{where}: target column {column} holds {shown} besides model.positive_label {positive_label!r}; "
            "a binary target has one other value"
        )
    return np.where(present, positive.astype(np.float64), np.nan)


def _boolean_text(text: pa.Array) -> pa.Array | None:
    """Text holding only true/false (any case) as booleans, as a Parquet file would hold them (pandas writes
    booleans so in a CSV); None when any value is other text."""
    import pyarrow.compute as pc

    lowered = pc.utf8_lower(text)
    known = pc.or_kleene(pc.is_in(lowered, value_set=pa.array(list(BOOLEAN_TEXT))), pc.is_null(lowered))
    return pc.equal(lowered, "true") if pc.all(known).as_py() else None


def _blank_as_null(text: pa.Array) -> pa.Array:
    """Text trimmed, with a blank cell (" " in a CSV export) missing, as an empty one is."""
    import pyarrow.compute as pc

    trimmed = pc.utf8_trim_whitespace(text)
    return pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, trimmed.type), trimmed)


def _binary(labels: np.ndarray, where: str, column: str) -> np.ndarray:
    labeled = ~np.isnan(labels)
    if (labeled & (labels != 0) & (labels != 1)).any():
        shown = ", ".join(f"{v:g}" for v in np.unique(labels[labeled])[:5].tolist())
        raise DataError(
            f"{where}: target column {column} must be binary 0/1, found {shown}; for a two-valued label such "
            "as -1/1 or 1/2, set model.positive_label to the value meaning positive"
        )
    return labels


NUMPY_TYPES = {
    pa.float64(): np.float64,
    pa.float32(): np.float32,
    pa.int64(): np.int64,
    pa.int32(): np.int32,
    pa.int16(): np.int16,
    pa.int8(): np.int8,
    pa.uint64(): np.uint64,
    pa.uint32(): np.uint32,
    pa.uint16(): np.uint16,
    pa.uint8(): np.uint8,
}


def _valid(array: pa.Array) -> np.ndarray | None:
    """Which values are present, from the Arrow validity bitmap; None when all are."""
    if not array.null_count:
        return None
    bits = np.unpackbits(np.frombuffer(array.buffers()[0], dtype=np.uint8), bitorder="little")
    return bits[array.offset : array.offset + len(array)].astype(bool)


DURATION_UNITS_PER_SECOND = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}


def float64_values(array: pa.Array) -> np.ndarray:
    """An Arrow array as float64 numpy values, nulls as NaN, without a copy where the data allow.

    Read straight from the Arrow buffers: any pyarrow conversion or compute call imports pandas (a third
    of a second), which the drift command never needs.
    """
    if pa.types.is_null(array.type):
        return np.full(len(array), np.nan)
    dtype = NUMPY_TYPES.get(array.type)
    if dtype is None:  # booleans, decimals: Arrow's own cast
        import pyarrow.compute as pc

        array, dtype = pc.cast(array, pa.float64()), np.float64
    width = np.dtype(dtype).itemsize
    values = np.frombuffer(array.buffers()[1], dtype=dtype, count=len(array), offset=array.offset * width)
    valid = _valid(array)
    if dtype is not np.float64 or valid is not None:
        values = values.astype(np.float64)
    if valid is not None:
        values[~valid] = np.nan
    return values


def _codes(indices: pa.Array) -> np.ndarray:
    """A dictionary array's int32 codes, nulls dropped, as numpy."""
    codes = np.frombuffer(indices.buffers()[1], dtype=np.int32, count=len(indices), offset=indices.offset * 4)
    valid = _valid(indices)
    return codes if valid is None else codes[valid]


def _parse_float(text: str | None) -> float | bool | None:
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return False


def categorical_values(array: pa.Array, where: str, column: str, *, from_csv: bool) -> tuple[pa.Array, str]:
    """A column as a dictionary array of text categories, and the kind of its values."""
    import pyarrow.compute as pc

    kind = array.type
    if pa.types.is_dictionary(kind):
        if pa.types.is_string(kind.value_type) or pa.types.is_large_string(kind.value_type):
            strings = array if kind == CATEGORIES else array.cast(CATEGORIES)
            return _text_categories(strings, from_csv)
        array, kind = array.dictionary_decode(), kind.value_type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        strings = pc.dictionary_encode(array.cast(pa.string())).cast(CATEGORIES)
        return _text_categories(strings, from_csv)
    if pa.types.is_null(kind):
        return pc.dictionary_encode(array.cast(pa.string())).cast(CATEGORIES), NULL
    encoded = pc.dictionary_encode(array)
    values = encoded.dictionary.to_pylist()
    if pa.types.is_boolean(kind):
        value_kind = BOOLEAN
    elif pa.types.is_integer(kind):
        value_kind = INTEGER
    elif pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        value_kind = NUMBER
    else:
        raise DataError(f"{where}: column {column} is categorical but has type {kind}")
    # Categories are named as Python prints them, so 1 and "1" are the same category.
    labels = pa.array([str(v) for v in values], pa.string())
    return pa.DictionaryArray.from_arrays(encoded.indices.cast(pa.int32()), labels), value_kind


def _text_kind(dictionary: pa.Array, from_csv: bool) -> str:
    """Text categories typed by their values: integers only (a CSV holds every value as text, and a code
    list may be stored as text), integers among other codes, none; in a CSV, only true/false is boolean."""
    if not len(dictionary):
        return NULL
    values = dictionary.to_pylist()
    integers = sum(1 for v in values if INTEGER_TEXT.match(v))
    if integers == len(values):
        return INTEGER
    if integers:
        return MIXED
    return BOOLEAN if from_csv and all(v.lower() in BOOLEAN_TEXT for v in values) else TEXT


def _text_categories(strings: pa.DictionaryArray, from_csv: bool) -> tuple[pa.DictionaryArray, str]:
    """Text categories and their kind; a CSV's true/false categories are named as Parquet's booleans are
    (True, False), so that the same data give the same categories in either format."""
    kind = _text_kind(strings.dictionary, from_csv)
    if kind != BOOLEAN:
        return strings, kind
    import pyarrow.compute as pc

    names = pa.array([BOOLEAN_TEXT[v.lower()] for v in strings.dictionary.to_pylist()], pa.string())
    # Encoded again: "true" and "TRUE" in one file are one category.
    return pc.dictionary_encode(names.take(strings.indices)).cast(CATEGORIES), kind


def combined_kind(known: str, kind: str) -> str | None:
    """The kind of a column seen as `known` and then as `kind`, None when one column cannot hold both.
    Integer codes and text codes are two encodings of a column (0/1 against basic/premium), unless some
    text holds both: a code list that gained a code such as "A7" keeps its integer codes as categories."""
    if kind in (NULL, known):
        return known
    if known == NULL:
        return kind
    if MIXED in (known, kind) and {known, kind} <= {INTEGER, TEXT, MIXED}:
        return MIXED
    return None


def combine_kinds(known: str, kind: str, column: str, first: str, second: str, where: str = "") -> str:
    """`combined_kind`, or one error naming the column and where each kind was seen."""
    combined = combined_kind(known, kind)
    if combined is None:
        raise DataError(
            f"{where + ': ' if where else ''}column {column} holds {known} values in {first} but {kind} values "
            f"in {second}; a categorical column must keep one type"
        )
    return combined


def merge_kinds(kinds: dict[str, str], where: str, column: str, kind: str, *, seen_in: str, now_in: str) -> None:
    """Record a column's value kind; a kind elsewhere in the same data that cannot go with it is an error."""
    kinds[column] = combine_kinds(kinds.get(column, NULL), kind, column, seen_in, now_in, where)


# -- snapshots --------------------------------------------------------------------------------------------


@dataclass
class _Stats:
    rows: int = 0
    nulls: dict[str, int] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)
    kind_file: dict[str, str] = field(default_factory=dict)
    classes: dict[int, int] = field(default_factory=lambda: {0: 0, 1: 0})
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
        if uri.endswith(DATA_SUFFIXES):
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
        self.fingerprint = digest.hexdigest()
        if expected_fingerprint is not None and expected_fingerprint != self.fingerprint:
            raise ChangedError(
                f"{self.where}: snapshot changed since it was validated (its files' fingerprint differs); "
                "re-run the cycle"
            )
        self._paths: dict[str, Path] = {}

    @classmethod
    def from_lineage(cls, lineage: dict[str, Any], spec: StorageSpec | None = None) -> SnapshotReader:
        """Re-open a validated snapshot; ChangedError if any of its files changed since."""
        expected = lineage.get("fingerprint")
        return cls(lineage["uri"], month=lineage.get("month"), spec=spec, expected_fingerprint=expected)

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
        for batch in _batches(self._path(entry), self.file_where(entry), columns, categorical):
            yield offset, batch
            offset += batch.num_rows

    # -- validation ---------------------------------------------------------------------------------------

    def scan(self, schema: Schema, *, max_null_rate: float = 1.0, by_feature: Mapping[str, float] = EMPTY) -> Snapshot:
        """Validate every row of the snapshot in bounded memory; the Snapshot records what it found.
        A feature's null rate may reach its `by_feature` limit, else `max_null_rate`."""
        stats = _Stats(nulls=dict.fromkeys(schema.features, 0))
        for entry, offset, batch in self.batches(schema.columns, schema.categorical):
            self._convert(batch, schema, entry, offset, stats, keep=False)
        return self._finish(schema, stats, max_null_rate, by_feature)

    def _convert(
        self, batch: pa.RecordBatch, schema: Schema, entry: ObjectInfo, offset: int, stats: _Stats, *, keep: bool
    ) -> dict[str, Any] | None:
        where = self.file_where(entry)
        from_csv = is_csv(entry.key)
        rows = Rows(offset, csv=from_csv)
        stats.rows += batch.num_rows
        converted: dict[str, Any] = {}
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
        if schema.target:
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
            stamps = _timestamps(batch.column(schema.timestamp), where, schema.timestamp, rows)
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
            if min(stats.classes.values()) == 0:
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
            classes={str(k): v for k, v in stats.classes.items()} if schema.target else {},
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
        """The validated, typed frame: float64 numbers, categorical text categories, float 0/1 target (rows
        without a label dropped), UTC timestamps. `announce=False` for a snapshot whose scan already warned
        about its unlabeled rows (a step re-reading what an earlier step validated)."""
        import pandas as pd

        stats = _Stats(nulls=dict.fromkeys(schema.features, 0))
        parts: dict[str, list[Any]] = {c: [] for c in schema.columns}
        for entry, offset, batch in self.batches(schema.columns, schema.categorical):
            converted = self._convert(batch, schema, entry, offset, stats, keep=True)
            keep = ~np.isnan(converted[schema.target]) if schema.target else None
            for column, values in converted.items():
                parts[column].append(_take(values, keep))
        snapshot = self._finish(schema, stats, max_null_rate, by_feature, announce=announce)
        columns: dict[str, Any] = {}
        for column in schema.numeric:
            columns[column] = np.concatenate(parts[column])
        for column in schema.categorical:
            columns[column] = pa.chunked_array(parts[column], type=CATEGORIES).to_pandas()
        if schema.target:
            columns[schema.target] = np.concatenate(parts[schema.target])
        if schema.timestamp:
            columns[schema.timestamp] = pd.concat(parts[schema.timestamp], ignore_index=True)
        return pd.DataFrame(columns), snapshot

    def _column(self, column: str, *, categorical: bool) -> Iterator[tuple[ObjectInfo, int, pa.Array]]:
        """One column over every file, chunk by chunk: straight from the Parquet column chunks (no batching
        and no other column decoded), or from a CSV's batches."""
        for entry in self.entries:
            path, where = self._path(entry), self.file_where(entry)
            if path.suffix != ".parquet":
                for offset, batch in self._file_batches(entry, (column,), (column,) if categorical else ()):
                    yield entry, offset, batch.column(column)
                continue
            parquet = _open_parquet(path, where, (column,), (column,) if categorical else ())
            try:
                chunks = parquet.read(columns=[column]).column(0).chunks
            except (pa.ArrowException, OSError) as error:
                raise DataError(f"{where}: unreadable or corrupt Parquet file: {error}") from None
            offset = 0
            for chunk in chunks:
                yield entry, offset, chunk
                offset += len(chunk)

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
        self, column: str, *, take: np.ndarray | None = None, taken: list[pa.Array] | None = None
    ) -> tuple[dict[str, int], int, str]:
        """Rows per category, null rows, and the values' kind, over every file (from dictionary codes).

        With `take` (sorted row positions over the whole snapshot), the values at those rows are appended
        to `taken` on the way, so a sample of the column needs no second read.
        """
        counts: dict[str, int] = {}
        nulls, kinds, seen_in, start = 0, {}, "", 0
        for entry, _, chunk in self._column(column, categorical=True):
            values, kind = categorical_values(chunk, self.file_where(entry), column, from_csv=is_csv(entry.key))
            merge_kinds(kinds, self.where, column, kind, seen_in=seen_in, now_in=entry.key)
            seen_in = seen_in or (entry.key if kind != NULL else "")
            if take is not None and taken is not None:
                inside = take[(take >= start) & (take < start + len(values))] - start
                taken.append(values.take(pa.array(inside)))
            start += len(values)
            nulls += values.null_count
            per_code = np.bincount(_codes(values.indices), minlength=len(values.dictionary))
            for name, count in zip(values.dictionary.to_pylist(), per_code.tolist(), strict=True):
                if count:
                    counts[name] = counts.get(name, 0) + count
        return counts, nulls, kinds.get(column, NULL)

    def row_count(self) -> int | None:
        """Rows in every file, from Parquet footers alone; None when a CSV file must be read to know."""
        import pyarrow.parquet as pq

        total = 0
        for entry in self.entries:
            path, where = self._path(entry), self.file_where(entry)
            if path.suffix != ".parquet":
                return None
            try:
                total += pq.read_metadata(path).num_rows
            except (pa.ArrowException, OSError) as error:
                raise DataError(f"{where}: unreadable or corrupt Parquet file: {error}") from None
        return total

    def arrow_schema(self) -> pa.Schema:
        """The first file's column types, for typing columns from the data alone."""
        entry = self.entries[0]
        path, where = self._path(entry), self.file_where(entry)
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            try:
                return pq.read_schema(path)
            except (pa.ArrowException, OSError) as error:
                raise DataError(f"{where}: unreadable or corrupt Parquet file: {error}") from None
        import pyarrow.csv as pacsv

        try:
            with pacsv.open_csv(path) as reader:
                return reader.schema
        except (pa.ArrowException, OSError) as error:
            raise DataError(f"{where}: unreadable or corrupt CSV file: {error}") from None


def _take(values: Any, keep: np.ndarray | None) -> Any:
    if keep is None:
        return values
    if isinstance(values, np.ndarray):
        return values[keep]
    if isinstance(values, pa.Array):
        return values.filter(pa.array(keep))
    return values[keep].reset_index(drop=True)


def _timestamps(array: pa.Array, where: str, column: str, rows: Rows = Rows()) -> pd.Series:
    """UTC timestamps. Text is read as ISO 8601, each value on its own (a date alone, `T` or a space, `Z`
    or an offset, all in one column); text in another format as pandas infers it from the values; numbers
    as date keys (20250131) or epoch time. A value that is none of these is refused: it would otherwise
    count as the oldest row when the holdout is chosen."""
    import pandas as pd
    import pyarrow.compute as pc

    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if pa.types.is_timestamp(array.type) or pa.types.is_date(array.type):
        return pd.to_datetime(pd.Series(array.to_pandas()), utc=True)
    if pa.types.is_integer(array.type) or pa.types.is_floating(array.type) or pa.types.is_null(array.type):
        return _numeric_timestamps(float64_values(array))
    if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
        raise DataError(f"{where}: timestamp column {column} has type {array.type}, not a timestamp, date or text")
    text = _blank_as_null(array)
    try:  # a CSV holds epoch numbers as text
        return _numeric_timestamps(float64_values(pc.cast(text, pa.float64())))
    except pa.ArrowInvalid:
        pass
    values = pd.Series(array.to_pandas(), dtype=object)
    stamps = pd.to_datetime(values, errors="coerce", utc=True, format="ISO8601")
    given = pc.is_valid(text).to_numpy(zero_copy_only=False)
    failed = given & stamps.isna().to_numpy()
    if failed.any():
        stamps = stamps.fillna(pd.to_datetime(values.where(failed), errors="coerce", utc=True))
        failed = given & stamps.isna().to_numpy()
    if failed.any():
        row = _first_row(failed)
        raise DataError(
            f"{where}: timestamp column {column} holds a value that is not a timestamp ({rows.at(row)}: "
            f"{values.iloc[row]!r})"
        )
    return stamps


# Epoch numbers in seconds, milliseconds, microseconds or nanoseconds, told apart by size (as in any year
# from 1973 to 5138), so that files that count in different units still order their rows alike.
EPOCH_UNITS = ((1e11, "s"), (1e14, "ms"), (1e17, "us"))


def _numeric_timestamps(numbers: np.ndarray) -> pd.Series:
    """Numbers as timestamps: a warehouse's date key (20250131) as that date, else epoch time."""
    import pandas as pd

    present = numbers[~np.isnan(numbers)]
    if len(present) and (present == np.floor(present)).all() and ((present >= 1e7) & (present < 1e8)).all():
        keys = pd.Series(numbers).astype("Int64").astype("string")
        dates = pd.to_datetime(keys, format="%Y%m%d", errors="coerce", utc=True)
        if dates.notna().sum() == len(present):
            return dates
    largest = float(np.abs(present).max()) if len(present) else 0.0
    unit = next((unit for bound, unit in EPOCH_UNITS if largest < bound), "ns")
    return pd.Series(pd.to_datetime(numbers, unit=unit, utc=True))


def infer_schema(arrow_schema: pa.Schema) -> Schema:
    """Type columns from the data alone: numbers and durations are numeric; text, booleans and dictionaries
    categorical; timestamps and dates are skipped."""
    numeric, categorical = [], []
    for column in arrow_schema:
        kind = column.type
        if pa.types.is_dictionary(kind):
            kind = kind.value_type
        if pa.types.is_boolean(kind) or pa.types.is_string(kind) or pa.types.is_large_string(kind):
            categorical.append(column.name)
        elif (
            pa.types.is_integer(kind)
            or pa.types.is_floating(kind)
            or pa.types.is_decimal(kind)
            or pa.types.is_duration(kind)
        ):
            numeric.append(column.name)
    return Schema(numeric=tuple(numeric), categorical=tuple(categorical))


def untested_columns(arrow_schema: pa.Schema, schema: Schema) -> dict[str, str]:
    """The columns no drift test covers, with their types: a user reading a table of the others should
    know which columns it leaves out."""
    return {column.name: str(column.type) for column in arrow_schema if column.name not in schema.features}


def read_month(
    root: str,
    month: str,
    schema: Schema,
    *,
    max_null_rate: float = 1.0,
    by_feature: Mapping[str, float] = EMPTY,
    spec: StorageSpec | None = None,
    partitioning: Partitioning = BY_MONTH,
) -> tuple[pd.DataFrame, Snapshot]:
    """Read and validate one month of a dataset, with only the schema's columns."""
    reader = SnapshotReader(month_folder(root, month, partitioning), month=month, spec=spec)
    return reader.frame(schema, max_null_rate=max_null_rate, by_feature=by_feature)


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


def as_category_strings(series: pd.Series) -> pd.Series:
    """Categorical values as Python strings with NaN for missing (what old model files were fitted on)."""
    import pandas as pd

    values = series.astype("object")
    present = values.notna()
    out = pd.Series(np.full(len(values), np.nan, dtype=object), index=series.index, name=series.name)
    out[present] = values[present].map(str)
    return out

"""Converting Arrow columns to what the engine computes on: numbers as float64, the target as 0/1, UTC
timestamps. A value that cannot be converted is one DataError naming the file, the column and the row."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from retrain.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

BOOLEAN_TEXT = {"true": "True", "false": "False"}


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


def class_labels(array: pa.Array) -> np.ndarray:
    """A multiclass target as text labels (an object array, None where a row has no label): 1, 1.0 and "1"
    are the same class, as a CSV and a Parquet file of the same labels must agree."""
    import pyarrow.compute as pc

    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if pa.types.is_floating(array.type):
        whole = pc.fill_null(pc.equal(pc.floor(array), array), True)
        if pc.all(whole).as_py():
            array = pc.cast(array, pa.int64())
    if pa.types.is_boolean(array.type):
        array = pc.cast(array, pa.int8())
    text = (
        array if pa.types.is_string(array.type) or pa.types.is_large_string(array.type) else pc.cast(array, pa.string())
    )
    return np.asarray(_blank_as_null(text).to_numpy(zero_copy_only=False), dtype=object)


def regression_targets(array: pa.Array, where: str, column: str, rows: Rows = Rows()) -> np.ndarray:
    """A regression target as float, NaN where a row has no label; text that is not a number is an error."""
    try:
        return numeric_values(array, where, column, rows)
    except DataError as error:
        raise DataError(f"{error}; model.task is regression, whose target must be numeric") from None


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


def valid_mask(array: pa.Array) -> np.ndarray | None:
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
    valid = valid_mask(array)
    if dtype is not np.float64 or valid is not None:
        values = values.astype(np.float64)
    if valid is not None:
        values[~valid] = np.nan
    return values


def _parse_float(text: str | None) -> float | bool | None:
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return False


def timestamps(array: pa.Array, where: str, column: str, rows: Rows = Rows()) -> pd.Series:
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

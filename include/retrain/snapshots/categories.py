"""Categorical columns: text categories as Arrow dictionaries (never a Python string per row), and the
kind of their values, which must stay the same across the files of a month and the snapshots a run uses."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from retrain.errors import DataError
from retrain.snapshots.values import BOOLEAN_TEXT, valid_mask

if TYPE_CHECKING:
    import pandas as pd

INTEGER_TEXT = re.compile(r"^[+-]?\d+$")

CATEGORIES = pa.dictionary(pa.int32(), pa.string())
# A categorical column's values are one of these kinds in every file of a month and across snapshots;
# "null" (a column with no value at all) agrees with any kind. Text is typed by what it holds: integers
# only, some integers among other codes (MIXED), or none.
TEXT, INTEGER, BOOLEAN, NUMBER, NULL = "text", "integer", "boolean", "number", "null"
MIXED = "integer and text"


def codes(indices: pa.Array) -> np.ndarray:
    """A dictionary array's int32 codes, nulls dropped, as numpy."""
    codes = np.frombuffer(indices.buffers()[1], dtype=np.int32, count=len(indices), offset=indices.offset * 4)
    valid = valid_mask(indices)
    return codes if valid is None else codes[valid]


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


def as_category_strings(series: pd.Series) -> pd.Series:
    """Categorical values as Python strings with NaN for missing (what old model files were fitted on)."""
    import pandas as pd

    values = series.astype("object")
    present = values.notna()
    out = pd.Series(np.full(len(values), np.nan, dtype=object), index=series.index, name=series.name)
    out[present] = values[present].map(str)
    return out

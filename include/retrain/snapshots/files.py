"""Decoding a snapshot's files: Parquet, and CSV as exports leave it. Every failure to read becomes one
DataError naming the file; the columns a read needs are checked first, with near misses pointed out."""

from __future__ import annotations

import contextlib
import csv
import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from retrain.errors import DataError

BATCH_ROWS = 1 << 19
MALFORMED_ROW = re.compile(r"(?:Row #(\d+): )?Expected (\d+) columns, got (\d+): (.*)", re.DOTALL)
NOT_UTF8_COLUMN = re.compile(r"CSV column #(\d+): (?:Row #(\d+): )?CSV conversion error to string: invalid UTF8")


@contextlib.contextmanager
def reading(where: str, kind: str = "Parquet", *others: type[Exception]) -> Iterator[None]:
    """Arrow's and the system's errors (and `others`) while reading a file, as one DataError naming it."""
    try:
        yield
    except (pa.ArrowException, OSError, *others) as error:
        raise DataError(f"{where}: unreadable or corrupt {kind} file: {error}") from None


def check_header(where: str, names: list[str], columns: tuple[str, ...]) -> None:
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

    with reading(where):
        metadata = pq.read_metadata(path)
        schema = metadata.schema.to_arrow_schema()
    check_header(where, schema.names, columns)
    for column in categorical:
        kind = schema.field(column).type
        if pa.types.is_nested(kind):
            raise DataError(f"{where}: column {column} is categorical but has type {kind}")
    with reading(where):
        # pre_buffer (pyarrow's default) keeps every row group it read until the file is closed: a 10 GB
        # month validated batch by batch peaked at 11 GB. Without it memory follows the batch, and local
        # reads are faster too.
        return pq.ParquetFile(path, metadata=metadata, read_dictionary=list(categorical), pre_buffer=False)


def _parquet_batches(
    path: Path, where: str, columns: tuple[str, ...], categorical: tuple[str, ...]
) -> Iterator[pa.RecordBatch]:
    parquet = _open_parquet(path, where, columns, categorical)
    with reading(where):
        yield from parquet.iter_batches(batch_size=BATCH_ROWS, columns=list(columns))


def _csv_header(path: Path, where: str) -> list[str]:
    try:
        # utf-8-sig: spreadsheet exports start with a byte-order mark, which would rename the first column.
        with (
            reading(where, "CSV", csv.Error),
            pa.input_stream(str(path), compression="detect") as raw,
            io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as handle,
        ):
            header = next(csv.reader(handle), None)
    except UnicodeDecodeError as error:
        raise DataError(
            f"{where}: not UTF-8 text (byte 0x{error.object[error.start]:02x} at byte {error.start}); "
            "save or export the file as UTF-8"
        ) from None
    if header is None:
        raise DataError(f"{where}: empty file (no header line)")
    return header


def _csv_batches(path: Path, where: str, columns: tuple[str, ...]) -> Iterator[pa.RecordBatch]:
    """Every configured column as text (typed by retrain.snapshots.values), malformed rows refused."""
    import pyarrow.csv as pacsv

    header = _csv_header(path, where)
    check_header(where, header, columns)
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


def file_batches(
    path: Path, where: str, columns: tuple[str, ...], categorical: tuple[str, ...] = ()
) -> Iterator[pa.RecordBatch]:
    """Every batch of a data file with only `columns`, `categorical` ones as dictionaries where the format
    keeps them (a CSV's columns arrive as text)."""
    if path.stat().st_size == 0:
        raise DataError(f"{where}: empty file (0 bytes)")
    if path.suffix == ".parquet":
        return _parquet_batches(path, where, columns, categorical)
    return _csv_batches(path, where, columns)


def parquet_column_chunks(path: Path, where: str, column: str, *, categorical: bool) -> list[pa.Array]:
    """One column of a Parquet file, straight from its column chunks: no other column is decoded."""
    parquet = _open_parquet(path, where, (column,), (column,) if categorical else ())
    with reading(where):
        return parquet.read(columns=[column]).column(0).chunks


def parquet_column_batches(
    path: Path, where: str, column: str, *, categorical: bool, batch_rows: int
) -> Iterator[pa.Array]:
    """One column of a Parquet file in batches of at most `batch_rows` rows: memory follows the batch (and
    one row group's compressed column chunk), not the file."""
    parquet = _open_parquet(path, where, (column,), (column,) if categorical else ())
    with reading(where):
        for batch in parquet.iter_batches(batch_size=batch_rows, columns=[column], use_threads=False):
            yield batch.column(0)


def parquet_row_count(path: Path, where: str) -> int:
    """Rows in a Parquet file, from its footer alone."""
    import pyarrow.parquet as pq

    with reading(where):
        return pq.read_metadata(path).num_rows


def read_arrow_schema(path: Path, where: str) -> pa.Schema:
    """A data file's column types, for typing columns from the data alone."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        with reading(where):
            return pq.read_schema(path)
    import pyarrow.csv as pacsv

    with reading(where, "CSV"), pacsv.open_csv(path) as reader:
        return reader.schema

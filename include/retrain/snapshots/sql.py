"""Months read from a PostgreSQL table or query (`data.production = "sql:churn_features"`, or
`"sql:SELECT ... FROM ..."`), through Arrow with ADBC: about 1 s for 1M rows x 20 columns, where
`pandas.read_sql` takes about 7.

A month is the rows whose `database.month_column` is that month: a text column holding `YYYY-MM`, or a
date or timestamp column (rows from the month's first day to the next month's). The month only ever
travels as a bind parameter; the table name and the column names are checked identifiers, quoted.

A month is read once per machine and fingerprint, streamed batch by batch into a local Parquet file, and
from there validated and read like any month folder, with the same checks and errors, which name the
table or query and the month. Its fingerprint, recorded in the ledger, is the month's row count and a
checksum computed in the database, where nothing is transferred: the maximum of `database.updated_column`
when one is configured; for a table, the sum of its rows' `xmin` (the transaction that wrote each row, new
on every insert and update); for a query, the sum of a hash of every row's text. Either changes when any
row of the month is added, removed or changed. The fingerprint and the rows are read in one
repeatable-read transaction, so the copy is exactly what was counted.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrain.config import SQL_PREFIX
from retrain.errors import ChangedError, ConfigError, DataError, StorageError
from retrain.months import is_month, shift_month
from retrain.storage import airflow_connection

if TYPE_CHECKING:
    from retrain.config import DatabaseSpec

log = logging.getLogger(__name__)

TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
CACHE = Path(tempfile.gettempdir()) / "retrain-sql"


def is_sql(root: str) -> bool:
    return root.startswith(SQL_PREFIX)


@dataclass(frozen=True)
class Source:
    """A table or a query of the database, and how its rows are assigned to months."""

    root: str
    database: DatabaseSpec

    @property
    def text(self) -> str:
        return self.root.removeprefix(SQL_PREFIX).strip()

    @property
    def is_table(self) -> bool:
        return TABLE.match(self.text) is not None

    @property
    def relation(self) -> str:
        """The FROM clause, aliased `source`: a quoted table, or the query as a subquery."""
        if self.is_table:
            return ".".join(f'"{part}"' for part in self.text.split(".")) + " AS source"
        if not re.match(r"^(select|with)\b", self.text, re.IGNORECASE) or ";" in self.text.rstrip(";").strip():
            raise ConfigError(
                f"{self.root}: a SQL source is a table name (schema.table) or one SELECT query, without ';'"
            )
        return f"({self.text.rstrip(';')}) AS source"

    @property
    def month_column(self) -> str:
        return f'source."{self.database.month_column}"'

    @property
    def shown(self) -> str:
        return f"table {self.text}" if self.is_table else "query"

    def where(self, month: str | None = None) -> str:
        named = self.root if len(self.root) <= 80 else f"{self.root[:77]}..."
        return f"month {month} ({named})" if month else named


def source_of(root: str, database: DatabaseSpec | None) -> Source:
    if database is None or not database.configured:
        raise ConfigError(f"{root}: a SQL source needs a [database] section with conn_id or url")
    return Source(root, database)


def _url(database: DatabaseSpec) -> str:
    """The database URL: from the Airflow connection when one is named (and Airflow is here), else the file's."""
    if database.conn_id:
        connection = airflow_connection(database.conn_id, "database.conn_id")
        if connection is None:
            if database.url:
                return database.url
            raise ConfigError(
                f"database.conn_id = {database.conn_id!r} names an Airflow connection, and Airflow is not "
                "installed here: set database.url for the command line"
            )
        uri = connection.get_uri()
        return re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql://", uri)
    return database.url or ""


def _redacted(url: str) -> str:
    return re.sub(r"://([^:/@]*):[^@/]*@", r"://\1:***@", url)


@contextlib.contextmanager
def _cursor(source: Source, month: str | None = None) -> Iterator[Any]:
    """A cursor on the source's database; every driver error becomes one line naming the source and month."""
    try:
        import adbc_driver_manager
        import adbc_driver_postgresql.dbapi as dbapi
    except ImportError:
        raise ConfigError(
            f"{source.root}: SQL sources read through ADBC: pip install 'retrain[sql]' (adbc-driver-postgresql)"
        ) from None
    url = _url(source.database)
    try:
        connection = dbapi.connect(url)
    except adbc_driver_manager.Error as error:
        raise StorageError(f"{source.where(month)}: cannot connect to {_redacted(url)}: {_first_line(error)}") from None
    try:
        with connection.cursor() as cursor:
            yield cursor
    except adbc_driver_manager.Error as error:
        raise DataError(f"{source.where(month)}: the {source.shown} failed: {_first_line(error)}") from None
    finally:
        connection.close()


def _first_line(error: Exception) -> str:
    """The database's own message ('relation "x" does not exist'), without the driver's wrapping."""
    text = str(error).strip()
    found = re.search(r"(?:ERROR|FATAL):\s+(.+)", text)
    line = found.group(1) if found else next((p.strip() for p in text.splitlines() if p.strip()), "")
    return (line or type(error).__name__).strip()[:300]


def _month_kind(source: Source, cursor: Any) -> str:
    """'text' when the month column holds YYYY-MM, 'time' for a date or timestamp column."""
    import pyarrow as pa

    column = source.database.month_column
    cursor.execute(f'SELECT source."{column}" FROM {source.relation} LIMIT 0')
    kind = cursor.fetch_arrow_table().schema.field(0).type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "text"
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        return "time"
    raise DataError(
        f"{source.where()}: database.month_column {column!r} is {kind}; it must be text (YYYY-MM), a date "
        "or a timestamp"
    )


def _month_rows(source: Source, cursor: Any, month: str) -> tuple[str, tuple[str, ...]]:
    """The WHERE condition that selects a month's rows, and its bind parameters."""
    column = source.month_column
    if _month_kind(source, cursor) == "text":
        return f"{column} = $1", (month,)
    return f"{column} >= $1::date AND {column} < $2::date", (f"{month}-01", f"{shift_month(month, 1)}-01")


def list_months(root: str, database: DatabaseSpec | None) -> list[str]:
    source = source_of(root, database)
    column = source.month_column
    with _cursor(source) as cursor:
        kind = _month_kind(source, cursor)
        shown = f"{column}::text" if kind == "text" else f"to_char(date_trunc('month', {column}), 'YYYY-MM')"
        cursor.execute(f"SELECT DISTINCT {shown} FROM {source.relation} WHERE {column} IS NOT NULL")
        values = cursor.fetch_arrow_table().column(0).to_pylist()
    return sorted(value for value in values if is_month(value))


def month_readiness(root: str, month: str, database: DatabaseSpec | None) -> str | None:
    """None when the month has landed: its rows exist, or the readiness query says so."""
    source = source_of(root, database)
    with _cursor(source, month) as cursor:
        if source.database.readiness_query:
            cursor.execute(source.database.readiness_query, parameters=(month,))
            rows = cursor.fetch_arrow_table().to_pylist()
            ready = bool(rows) and bool(next(iter(rows[0].values())))
            return None if ready else f"{source.where(month)}: the readiness query says not yet"
        condition, parameters = _month_rows(source, cursor, month)
        cursor.execute(f"SELECT 1 FROM {source.relation} WHERE {condition} LIMIT 1", parameters=parameters)
        found = cursor.fetch_arrow_table().num_rows > 0
    return None if found else f"{source.where(month)}: no rows yet"


def _fingerprint(source: Source, cursor: Any, condition: str, parameters: tuple[str, ...]) -> tuple[int, str]:
    updated = source.database.updated_column
    if updated:
        checksum = f'max(source."{updated}")::text'
    elif source.is_table:
        # Every insert or update gives a row a new xmin (the transaction that wrote it), and a delete lowers
        # the count: their sum moves with any change, at a tenth of the cost of hashing each row's text.
        checksum = "coalesce(sum(source.xmin::text::bigint), 0)::text"
    else:
        checksum = "coalesce(sum(hashtext(source::text)::bigint), 0)::text"
    cursor.execute(f"SELECT count(*), {checksum} FROM {source.relation} WHERE {condition}", parameters=parameters)
    rows, check = cursor.fetch_arrow_table().to_pylist()[0].values()
    return int(rows), str(check)


def fingerprint(root: str, month: str, database: DatabaseSpec | None) -> str:
    """The month's fingerprint: its row count and checksum, computed in the database."""
    source = source_of(root, database)
    with _cursor(source, month) as cursor:
        condition, parameters = _month_rows(source, cursor, month)
        rows, check = _fingerprint(source, cursor, condition, parameters)
    return _digest(source, month, rows, check)


def _digest(source: Source, month: str, rows: int, check: str) -> str:
    return hashlib.sha256(f"{source.root}\n{month}\n{rows}\n{check}".encode()).hexdigest()


def materialize(root: str, month: str, database: DatabaseSpec | None) -> tuple[Path, str]:
    """The month as local Parquet files (read once per machine and fingerprint), and its fingerprint."""
    source = source_of(root, database)
    with _cursor(source, month) as cursor:
        # One snapshot of the database for the fingerprint and the rows: what is read is what was counted.
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        condition, parameters = _month_rows(source, cursor, month)
        rows, check = _fingerprint(source, cursor, condition, parameters)
        digest = _digest(source, month, rows, check)
        if rows == 0:
            raise DataError(f"{source.where(month)}: no rows")
        folder = CACHE / digest[:32]
        if (folder / DONE).exists():
            os.utime(folder)  # in use: kept by the pruning below
            return folder, digest
        prune(CACHE)
        shutil.rmtree(folder, ignore_errors=True)
        partial = CACHE / f".{digest[:32]}.{uuid.uuid4().hex}"
        partial.mkdir(parents=True)
        try:
            ranges = _page_ranges(source, cursor)
            if len(ranges) == 1:
                written = [_copy(source, cursor, condition, parameters, partial / FILE)]
            else:
                # A table read in page ranges on parallel connections, all in the snapshot counted above.
                cursor.execute("SELECT pg_export_snapshot()")
                snapshot = cursor.fetch_arrow_table().column(0)[0].as_py()
                if not re.match(r"^[0-9A-F-]+$", snapshot or ""):  # it goes into SQL text (no bind there)
                    raise DataError(f"{source.where(month)}: unexpected snapshot id from the database")
                with ThreadPoolExecutor(len(ranges)) as pool:
                    parts = [
                        pool.submit(_copy_range, source, month, snapshot, condition, parameters, pages, partial / name)
                        for name, pages in zip(PARTS, ranges, strict=False)
                    ]
                    written = [part.result() for part in parts]
            if sum(written) != rows:
                raise ChangedError(f"{source.where(month)}: rows changed while the month was read; re-run the cycle")
            (partial / DONE).touch()
            os.replace(partial, folder)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    log.info("%s: %d rows read from the database", source.where(month), rows)
    return folder, digest


KEPT_SECONDS = 2 * 24 * 3600  # longer than any cycle, so no copy goes while a run reads it


def prune(cache: Path, kept_seconds: float = KEPT_SECONDS) -> None:
    """Remove the local copies nobody used for two days: each month and fingerprint leaves one, and a
    month's rows that changed leave the old one behind."""
    import time

    if not cache.is_dir():
        return
    horizon = time.time() - kept_seconds
    for copy in cache.iterdir():
        with contextlib.suppress(OSError):
            if copy.stat().st_mtime < horizon:
                shutil.rmtree(copy, ignore_errors=True)


DONE = "_COMPLETE"
PARTS = [f"part-{i:04d}.parquet" for i in range(64)]
FILE = PARTS[0]


def _page_ranges(source: Source, cursor: Any) -> list[tuple[int, int | None]]:
    """A table's pages split for one reader per core; a query (or a small table) is read whole."""
    readers = min(4, os.cpu_count() or 1)
    if not source.is_table or readers < 2:
        return [(0, None)]
    quoted = ".".join(f'"{part}"' for part in source.text.split("."))
    cursor.execute(
        "SELECT pg_relation_size($1::regclass) / current_setting('block_size')::bigint", parameters=(quoted,)
    )
    pages = int(cursor.fetch_arrow_table().column(0)[0].as_py() or 0)
    if pages < 1000:  # about 8 MB: not worth a second connection
        return [(0, None)]
    step = -(-pages // readers)
    return [(start, start + step if start + step < pages else None) for start in range(0, pages, step)]


def _copy(source: Source, cursor: Any, condition: str, parameters: tuple[str, ...], path: Path) -> int:
    """Stream the rows a query selects into a Parquet file, batch by batch; the rows written."""
    import pyarrow.parquet as pq

    cursor.execute(f"SELECT * FROM {source.relation} WHERE {condition}", parameters=parameters)
    reader = cursor.fetch_record_batch()
    written = 0
    # A scratch copy, read back at once: speed over size.
    with pq.ParquetWriter(path, reader.schema, compression="none") as writer:
        for batch in reader:
            writer.write_batch(batch)
            written += batch.num_rows
    return written


def _copy_range(
    source: Source,
    month: str,
    snapshot: str,
    condition: str,
    parameters: tuple[str, ...],
    pages: tuple[int, int | None],
    path: Path,
) -> int:
    first, last = pages
    in_range = f"source.ctid >= '({first},0)'::tid" + (f" AND source.ctid < '({last},0)'::tid" if last else "")
    with _cursor(source, month) as cursor:
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        cursor.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
        return _copy(source, cursor, f"{condition} AND {in_range}", parameters, path)

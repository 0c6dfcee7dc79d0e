"""A month read from PostgreSQL beside the same month read from Parquet, as a `sql:` dataset reads it.

    python bench/bench_sql.py                    # 1,000,000 rows x 20 features, twice
    python bench/bench_sql.py --url postgresql://user@host:5432/db

The month (20 numeric features, the issue's workload; then 16 numeric and 4 categorical ones, text in the
database) is written as a Parquet file and loaded into a table of a scratch schema, dropped at the end.
Measured, each from a cold start:

- `retrain` reading the month from the table: the fingerprint query and the streamed ADBC read into the
  local Parquet copy (in page ranges on parallel connections), as a cycle's first step does (target:
  <= 2 s); then that copy read into Arrow, shown beside it;
- reading the same month's Parquet file into Arrow, the file-based dataset's read;
- `pandas.read_sql` through SQLAlchemy, the common `DbApiHook.get_df` path, as the baseline.

Needs a reachable PostgreSQL (the machine's own by default).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "include"))

from results import recorded  # noqa: E402 - the sibling module

MONTH = "2025-06"
TARGET_SECONDS = 2.0


def month_table(rows: int, categorical: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    columns = {f"x{i:02d}": rng.normal(size=rows) for i in range(20 - categorical)}
    for i in range(categorical):
        columns[f"c{i}"] = pa.array(rng.choice([f"level_{k}" for k in range(12)], size=rows))
    columns["month"] = pa.array([MONTH] * rows)
    return pa.table(columns)


def timed(action) -> tuple[float, object]:  # noqa: ANN001
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--results", help="also write the figures, dated, into this Markdown file")
    args = parser.parse_args()

    with recorded(args.results, "bench_sql.py"):
        print(f"One month of {args.rows:,} rows x 20 features, each read cold:")
        for categorical in (0, 4):
            measure(args.rows, categorical, args.url)


def measure(rows: int, categorical: int, url: str) -> None:
    import adbc_driver_postgresql.dbapi as dbapi
    import pandas as pd
    import sqlalchemy

    from retrain.config import DatabaseSpec
    from retrain.snapshots import sql

    schema = f"bench_sql_{uuid.uuid4().hex[:8]}"
    table = month_table(rows, categorical)
    scratch = Path(tempfile.mkdtemp(prefix="retrain-bench-sql-"))
    parquet = scratch / "month.parquet"
    pq.write_table(table, parquet)
    try:
        with dbapi.connect(url) as connection, connection.cursor() as cursor:
            cursor.execute(f"CREATE SCHEMA {schema}")
            cursor.adbc_ingest("month_rows", table, mode="create", db_schema_name=schema)
            connection.commit()
    except Exception as error:  # noqa: BLE001 - no database, no benchmark
        sys.exit(f"bench_sql: PostgreSQL at {url} is not usable: {error}")
    database = DatabaseSpec(url=url, month_column="month")
    root = f"sql:{schema}.month_rows"
    try:
        shutil.rmtree(sql.CACHE, ignore_errors=True)
        database_seconds, (folder, _) = timed(lambda: sql.materialize(root, MONTH, database))
        copy_seconds, read = timed(lambda: pq.read_table(folder))
        assert read.num_rows == rows
        parquet_seconds, _ = timed(lambda: pq.read_table(parquet))
        engine = sqlalchemy.create_engine(url.replace("postgresql://", "postgresql+psycopg2://"))
        query = sqlalchemy.text(f"SELECT * FROM {schema}.month_rows WHERE month = :month")
        pandas_seconds, frame = timed(lambda: pd.read_sql(query, engine, params={"month": MONTH}))
        assert len(frame) == rows
        engine.dispose()
        verdict = "meets" if database_seconds <= TARGET_SECONDS else "misses"
        kinds = f"{20 - categorical} numeric, {categorical} categorical"
        print(f"\n  {kinds}:")
        print(
            f"    the database read (fingerprint, ADBC, local Parquet copy): {database_seconds:6.2f} s"
            f"  ({verdict} the {TARGET_SECONDS:g} s target)"
        )
        print(f"    then that copy into Arrow:                                 {copy_seconds:6.2f} s")
        print(f"    the same month from Parquet into Arrow (pyarrow):          {parquet_seconds:6.2f} s")
        print(
            f"    pandas.read_sql through SQLAlchemy (baseline):             {pandas_seconds:6.2f} s"
            f"  ({pandas_seconds / (database_seconds + copy_seconds):.1f}x the read and the copy into Arrow)"
        )
    finally:
        shutil.rmtree(sql.CACHE, ignore_errors=True)
        with dbapi.connect(url) as connection, connection.cursor() as cursor:
            cursor.execute(f"DROP SCHEMA {schema} CASCADE")
            connection.commit()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()

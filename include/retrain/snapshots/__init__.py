"""Monthly snapshots: locating `<root>/month=YYYY-MM/*.parquet|*.csv[.gz|.bz2|.zst]` (or another
`data.partition`), validating them, reading them.

A snapshot is validated by streaming its files batch by batch, so a month larger than memory is checked
in bounded memory; later steps read back only the columns they need. Categorical columns stay Arrow
dictionaries (pandas categoricals once in a frame) from the file to the model: no Python string per row.
Every problem stops the read with one message that names the file or month and the column.

A snapshot's fingerprint is a SHA-256 over each file's name, size and version (the S3 ETag, or the local
modification time), taken from the listing: a later step compares it without reading any data, and S3
downloads are pinned to the listed ETag.

- `layout`: where a dataset keeps its months, and whether a month has landed;
- `files`: decoding Parquet and CSV files;
- `values`, `categories`: converting their columns, and the kinds of categorical values;
- `reader`: a snapshot listed once, validated, read whole or a column at a time;
- `schema`: which columns a snapshot must have.
"""

from retrain.records import Snapshot
from retrain.snapshots.categories import CATEGORIES, NULL, as_category_strings, combine_kinds
from retrain.snapshots.layout import list_months, month_folder, month_readiness
from retrain.snapshots.reader import SnapshotReader, release_unused_memory, scan_month
from retrain.snapshots.schema import Schema, infer_schema, untested_columns

__all__ = [
    "CATEGORIES",
    "NULL",
    "Schema",
    "Snapshot",
    "SnapshotReader",
    "as_category_strings",
    "combine_kinds",
    "infer_schema",
    "list_months",
    "month_folder",
    "month_readiness",
    "release_unused_memory",
    "scan_month",
    "untested_columns",
]

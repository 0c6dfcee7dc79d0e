"""The two guarantees the registry is built on, checked on the local backend and on a real S3 API."""

from __future__ import annotations

import threading

import pytest

from retrain.errors import NotFoundError, StorageError
from retrain.storage import Store, open_store


def test_write_read_list(store: Store) -> None:
    store.write("a/b.txt", b"one")
    store.write("a/c.txt", b"two")
    store.write("d.txt", b"three")
    assert store.read("a/b.txt") == b"one"
    assert store.list("a/") == ["a/b.txt", "a/c.txt"]
    assert store.list() == ["a/b.txt", "a/c.txt", "d.txt"]
    assert store.exists("d.txt") and not store.exists("nope")
    with pytest.raises(NotFoundError, match="nope: not found"):
        store.read("nope")


def test_conditional_create_never_overwrites(store: Store) -> None:
    assert store.create("k", b"first")
    assert not store.create("k", b"second")
    assert store.read("k") == b"first"
    assert store.create("k", b"first"), "a retried create that already landed counts as written"


def test_compare_and_swap(store: Store) -> None:
    etag = store.swap("pointer", b"v1", None)
    assert etag is not None
    assert store.swap("pointer", b"v2", None) is None, "must not exist"
    assert store.swap("pointer", b"v2", "0" * 32) is None, "wrong etag"
    assert store.read("pointer") == b"v1"
    new_etag = store.swap("pointer", b"v2", etag)
    assert new_etag is not None and new_etag != etag
    assert store.read_with_etag("pointer") == (b"v2", new_etag)
    assert store.swap("pointer", b"v3", etag) is None, "a stale etag loses"


def test_racing_swaps_exactly_one_wins(store: Store) -> None:
    etag = store.swap("pointer", b"start", None)
    barrier = threading.Barrier(8)
    results: list[str | None] = [None] * 8

    def contender(i: int) -> None:
        barrier.wait()
        results[i] = store.swap("pointer", f"winner {i}".encode(), etag)

    threads = [threading.Thread(target=contender, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [i for i, result in enumerate(results) if result is not None]
    assert len(winners) == 1
    assert store.read("pointer") == f"winner {winners[0]}".encode()


def test_racing_creates_exactly_one_wins(store: Store) -> None:
    barrier = threading.Barrier(8)
    results = [False] * 8

    def contender(i: int) -> None:
        barrier.wait()
        results[i] = store.create("once", f"writer {i}".encode())

    threads = [threading.Thread(target=contender, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(results) == 1
    assert store.read("once") == f"writer {results.index(True)}".encode()


def test_unreachable_endpoint_is_one_clear_error() -> None:
    from retrain.config import StorageSpec

    store = open_store(
        "s3://bucket/x", StorageSpec(endpoint_url="http://127.0.0.1:9", max_attempts=2, connect_timeout=0.5)
    )
    with pytest.raises(StorageError, match=r"failed after 2 attempts; storage endpoint http://127.0.0.1:9 unreachable"):
        store.read("k")


def test_missing_bucket_is_named(s3_env: str) -> None:
    with pytest.raises(StorageError, match="bucket 'no-such-bucket' does not exist"):
        open_store("s3://no-such-bucket/x").read("k")


def test_unsupported_scheme() -> None:
    with pytest.raises(StorageError, match="unsupported storage scheme"):
        open_store("gs://bucket/x")


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_a_month_of_parquet_and_compressed_csv_reads_the_same_from_either_backend(
    store: Store, compression: str
) -> None:
    """S3 objects are downloaded under a name of their own: the compression must still be recognised."""
    import io

    import pandas as pd
    import pyarrow as pa

    from retrain.snapshots import Schema, SnapshotReader

    frame = pd.DataFrame({"x": [1.5, 2.5, None, 4.0], "plan": ["a", "b", "a", None], "y": [0, 1, 0, 1]})
    parquet = io.BytesIO()
    frame.to_parquet(parquet, index=False)
    packed = pa.BufferOutputStream()
    with pa.CompressedOutputStream(packed, compression) as out:
        out.write(frame.to_csv(index=False).encode())
    suffix = {"gzip": ".gz", "zstd": ".zst"}[compression]
    store.write("month=2025-01/part-0.parquet", parquet.getvalue())
    store.write(f"month=2025-01/part-1.csv{suffix}", packed.getvalue().to_pybytes())
    reader = SnapshotReader(f"{store.uri_for('')}/month=2025-01", month="2025-01")
    read, snapshot = reader.frame(Schema(numeric=("x",), categorical=("plan",), target="y"))
    assert snapshot.files == ("part-0.parquet", f"part-1.csv{suffix}") and snapshot.rows == 8
    assert read["x"].tolist()[4:6] == [1.5, 2.5] and read["plan"].isna().sum() == 2
    assert read["y"].tolist() == [0, 1, 0, 1] * 2


def test_stores_share_one_client_per_endpoint_and_credentials(s3_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = open_store("s3://bucket-a/x"), open_store("s3://bucket-b/y")
    assert first.client is second.client, "a cycle opens a store per snapshot: one client, not one each"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "rotated")
    rotated = open_store("s3://bucket-a/x")
    assert rotated.client is not first.client, "new credentials, new client"
    assert open_store("s3://bucket-a/x").client is rotated.client
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    assert open_store("s3://bucket-a/x").client is not rotated.client, "another endpoint, another client"

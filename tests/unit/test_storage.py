"""The two guarantees the registry is built on, checked on the local backend and on a real S3 API."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from retrain.errors import NotFoundError, StorageError
from retrain.storage import ObjectInfo, Store, open_store


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


def test_a_retried_swap_whose_first_attempt_landed_finds_its_own_bytes(store: Store) -> None:
    first = store.swap("pointer", b"v1", None)
    assert store.swap("pointer", b"v1", None) == first, "a retried first write sees itself"
    second = store.swap("pointer", b"v2", first)
    assert second is not None
    assert store.swap("pointer", b"v2", first) == second, "the retry's etag is stale, but the bytes are its own"
    assert store.swap("pointer", b"v3", first) is None, "other bytes under a stale etag lose"


def test_a_pointer_deleted_while_a_run_held_its_etag_is_a_lost_swap(store: Store) -> None:
    from retrain.storage import LocalStore

    etag = store.swap("pointer", b"v1", None)
    if isinstance(store, LocalStore):  # the store has no delete of its own: the registry never deletes
        (store.root / "pointer").unlink()
    else:
        store.client.delete_object(Bucket=store.bucket, Key=store._key("pointer"))
    assert store.swap("pointer", b"v2", etag) is None
    assert not store.exists("pointer"), "nothing is written when the condition is lost"


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


@pytest.mark.parametrize(
    ("action", "key", "call"),
    [
        ("list", "", lambda store: store.check_root()),
        ("read", "/runs/k", lambda store: store.read("runs/k")),
        ("write", "/runs/k", lambda store: store.write("runs/k", b"x")),
        ("conditional write", "/runs/k", lambda store: store.create("runs/k", b"x")),
        ("conditional write", "/runs/k", lambda store: store.swap("runs/k", b"x", "etag")),
        ("list", "/runs/k", lambda store: store.list("runs/k")),
        ("download", "/runs/k", lambda store: store.local_path(ObjectInfo("runs/k", 1, "etag"))),
    ],
)
def test_an_unreachable_endpoint_is_one_error_naming_the_object_the_action_and_the_endpoint(
    action: str, key: str, call: Callable[[Store], object]
) -> None:
    from retrain.config import StorageSpec

    store = open_store(
        "s3://bucket/x", StorageSpec(endpoint_url="http://127.0.0.1:9", max_attempts=2, connect_timeout=0.5)
    )
    with pytest.raises(StorageError) as error:
        call(store)
    assert str(error.value).startswith(
        f"s3://bucket/x{key}: {action} failed after 2 attempts; storage endpoint http://127.0.0.1:9 unreachable: "
    )


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


def test_the_s3_client_is_set_up_for_s3_compatible_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    from retrain.config import StorageSpec

    for variable in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(variable, raising=False)
    spec = StorageSpec(endpoint_url="http://127.0.0.1:9000", region="eu-west-3", max_attempts=7, read_timeout=11)
    store = open_store("s3://bucket/some/prefix/", spec)
    config = store.client.meta.config
    assert (config.retries, config.connect_timeout, config.read_timeout) == (
        {"total_max_attempts": 7, "mode": "standard"},
        5.0,
        11.0,
    )
    # Servers other than AWS reject or mangle botocore's default CRC checksums.
    assert (config.request_checksum_calculation, config.response_checksum_validation) == ("when_required",) * 2
    assert (store.client.meta.endpoint_url, store.client.meta.region_name) == ("http://127.0.0.1:9000", "eu-west-3")
    assert (store.bucket, store.prefix, store.uri) == ("bucket", "some/prefix", "s3://bucket/some/prefix")
    assert store.uri_for("a/b.json") == "s3://bucket/some/prefix/a/b.json"
    bare = open_store("s3://bucket", spec)
    assert (bare.prefix, bare.uri, bare.uri_for("k")) == ("", "s3://bucket", "s3://bucket/k")


@pytest.mark.parametrize(
    ("environment", "endpoint", "region"),
    [
        ({"AWS_ENDPOINT_URL": "http://general:1", "AWS_DEFAULT_REGION": "us-west-1"}, "http://general:1", "us-west-1"),
        ({"AWS_ENDPOINT_URL_S3": "http://s3:2", "AWS_ENDPOINT_URL": "http://general:1"}, "http://s3:2", "us-east-1"),
        ({"AWS_REGION": "eu-central-1", "AWS_DEFAULT_REGION": "us-west-1"}, None, "eu-central-1"),
    ],
)
def test_endpoint_and_region_fall_back_to_boto3s_own_variables(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], endpoint: str | None, region: str
) -> None:
    for variable in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for variable, value in environment.items():
        monkeypatch.setenv(variable, value)
    store = open_store("s3://bucket/x")
    assert store.endpoint_url == endpoint and store.client.meta.region_name == region


def test_an_s3_uri_without_a_bucket_is_refused_with_an_example() -> None:
    with pytest.raises(StorageError, match=r"^s3:///x: an S3 URI needs a bucket, as in s3://bucket/prefix$"):
        open_store("s3:///x")


def client_error(code: str, status: int):  # noqa: ANN201 - botocore's ClientError
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")


@pytest.mark.parametrize(
    ("code", "status", "lost"),
    [
        ("PreconditionFailed", 412, True),  # AWS: If-None-Match or If-Match not met
        ("ConditionalRequestConflict", 409, True),  # AWS: a concurrent conditional write to the key won
        ("PreconditionFailed", 400, True),  # a server that says so by its code alone
        ("ConditionalRequestConflict", 400, True),
        ("", 412, True),  # SeaweedFS: a bare 412, also for If-Match on a missing key
        ("SomethingElse", 409, True),
        ("AccessDenied", 403, False),
        ("NoSuchKey", 404, False),
        ("InternalError", 500, False),
    ],
)
def test_a_lost_condition_is_told_from_other_refusals(code: str, status: int, lost: bool) -> None:
    from retrain.storage import S3Store

    assert S3Store._is_precondition_failure(client_error(code, status)) is lost
    assert S3Store._is_precondition_failure(ValueError("not a response")) is False


def test_for_if_match_a_key_gone_is_a_lost_condition_as_aws_answers_it() -> None:
    from botocore.exceptions import ClientError

    from retrain.storage import S3Store

    assert S3Store._is_precondition_failure(client_error("NoSuchKey", 404), if_match=True) is True
    assert S3Store._is_precondition_failure(client_error("NoSuchKey", 404)) is False
    assert S3Store._is_precondition_failure(client_error("AccessDenied", 403), if_match=True) is False
    bare = ClientError({}, "PutObject")  # a response with neither an error code nor a status
    assert S3Store._is_precondition_failure(bare) is False
    assert S3Store._is_precondition_failure(bare, if_match=True) is False


def test_a_downloaded_snapshot_file_is_pinned_to_its_listing_and_fetched_once(s3_bucket: str) -> None:
    from retrain.errors import ChangedError

    store = open_store(f"s3://{s3_bucket}/data")
    store.write("month=2025-01/part-0.csv", b"x\n1\n")
    (entry,) = store.entries("month=2025-01/")
    path = store.local_path(entry)
    assert path.read_bytes() == b"x\n1\n" and path.suffix == ".csv", "the suffix tells the reader the format"
    assert path.parent.name.startswith("retrain-downloads-")
    store.write("month=2025-01/part-0.csv", b"x\n2\n")
    assert store.local_path(entry) == path, "the listed version, downloaded once per process"
    store.write("month=2025-01/part-1.csv", b"x\n3\n")
    (_, listed) = store.entries("month=2025-01/")
    store.write("month=2025-01/part-1.csv", b"x\n4\n")  # rewritten after the listing, before the download
    with pytest.raises(ChangedError, match=r"month=2025-01/part-1.csv: object changed since it was listed"):
        store.local_path(listed)
    (fresh, _) = store.entries("month=2025-01/")
    assert store.local_path(fresh).read_bytes() == b"x\n2\n" and store.local_path(fresh) != path


def test_the_download_folder_goes_when_the_process_does(s3_env: str, s3_bucket: str) -> None:
    import subprocess
    import sys

    probe = (
        "import sys; from retrain.storage import open_store; store = open_store(sys.argv[1]); "
        "store.write('k.csv', b'x'); print(store.local_path(store.entries('k')[0]).parent)"
    )
    result = subprocess.run([sys.executable, "-c", probe, f"s3://{s3_bucket}/p"], capture_output=True, text=True)
    folder = Path(result.stdout.strip())
    assert result.returncode == 0 and folder.name.startswith("retrain-downloads-"), result.stderr
    assert not folder.exists(), "removed at exit: downloads are a process's private copies"


def test_a_local_file_changed_after_it_was_listed_is_refused(tmp_path: Path) -> None:
    from retrain.errors import ChangedError

    store = open_store(str(tmp_path / "data"))
    store.write("month=2025-01/part-0.csv", b"x\n1\n")
    (entry,) = store.entries("month=2025-01/")
    assert store.local_path(entry) == tmp_path / "data" / "month=2025-01" / "part-0.csv"
    store.write("month=2025-01/part-0.csv", b"x\n10\n")
    with pytest.raises(ChangedError, match=r"part-0.csv: file changed since it was listed"):
        store.local_path(entry)
    (tmp_path / "data" / "month=2025-01" / "part-0.csv").unlink()
    with pytest.raises(ChangedError, match=r"part-0.csv: file removed since it was listed"):
        store.local_path(entry)


def test_a_local_listing_leaves_out_unfinished_writes_and_the_lock(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "registry"))
    store.swap("champion.json", b"{}", None)  # takes the lock file
    store.write("runs/a.json", b"{}")
    (tmp_path / "registry" / "runs" / ".tmp-b.json.123").write_bytes(b"half")
    (tmp_path / "registry" / "runsx").mkdir()
    (tmp_path / "registry" / "runsx" / "c.json").write_bytes(b"{}")
    assert store.list() == ["champion.json", "runs/a.json", "runsx/c.json"]
    assert store.list("runs/") == ["runs/a.json"], "a prefix is a folder's prefix, not a name's"
    assert open_store(str(tmp_path / "nowhere")).list() == []


def test_a_local_root_that_cannot_hold_a_registry_is_named(tmp_path: Path) -> None:
    from retrain.errors import RegistryError

    (tmp_path / "file").write_text("x")
    with pytest.raises(RegistryError, match=rf"^{tmp_path / 'file'}: is a file, not a folder; cannot hold"):
        open_store(str(tmp_path / "file" / "registry")).check_root()
    open_store(str(tmp_path / "new" / "registry")).check_root()  # a folder that does not exist yet is fine


def test_a_registry_root_in_a_bucket_that_does_not_exist_is_named_before_anything_is_read(
    s3_env: str, s3_bucket: str
) -> None:
    from retrain.errors import RegistryError

    open_store(f"s3://{s3_bucket}/registry").check_root()  # an empty prefix of a real bucket is fine
    with pytest.raises(RegistryError, match=r"^s3://no-such-bucket/registry: bucket 'no-such-bucket' does not exist$"):
        open_store("s3://no-such-bucket/registry").check_root()


def test_settings_or_credentials_of_their_own_get_a_client_of_their_own(s3_env: str) -> None:
    from retrain.config import StorageSpec

    patient, hasty = (
        open_store("s3://b/x", StorageSpec(max_attempts=5)),
        open_store("s3://b/x", StorageSpec(max_attempts=1)),
    )
    assert patient.client is not hasty.client
    assert hasty.client.meta.config.retries["total_max_attempts"] == 1


def test_a_bucket_without_a_prefix_keeps_keys_as_they_are(s3_env: str, s3_bucket: str) -> None:
    from tests.conftest import s3_client

    bare = open_store(f"s3://{s3_bucket}")
    bare.write("champion.json", b"{}")
    assert bare.read("champion.json") == b"{}" and bare.list() == ["champion.json"]
    listed = s3_client(s3_env).list_objects_v2(Bucket=s3_bucket)["Contents"]
    assert [item["Key"] for item in listed] == ["champion.json"], "not /champion.json"
    assert open_store(f"s3://{s3_bucket}/Xin/outX/").prefix == "Xin/outX"


def test_a_file_uri_is_a_local_folder(tmp_path: Path) -> None:
    from retrain.storage import LocalStore

    store = open_store(f"file://{tmp_path}/registry")
    assert isinstance(store, LocalStore) and store.root == tmp_path / "registry"


def test_a_local_read_the_system_refuses_is_named(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    with pytest.raises(StorageError) as error:
        store.read("x" * 300)
    assert str(error.value) == f"{tmp_path}/{'x' * 300}: cannot read: File name too long"


def test_a_listing_skips_unfinished_writes_and_names_outside_the_prefix_whatever_their_order(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    names = [f"runs/{letter}{i:02d}.json" for i in range(20) for letter in "ab"]
    for name in names:
        store.write(name, b"{}")
    for i in range(5):
        (tmp_path / "runs" / f".tmp-a{i}.json.x").write_bytes(b"half")
    assert store.list("runs/a") == sorted(n for n in names if n.startswith("runs/a"))
    assert store.list("runs/") == sorted(names)


def test_downloads_are_kept_in_one_private_folder_until_they_are_removed(monkeypatch: pytest.MonkeyPatch) -> None:
    from retrain import storage

    monkeypatch.setattr(storage, "_downloads", None)
    folder = storage._download_folder()
    assert folder.is_dir() and folder.name.startswith("retrain-downloads-")
    assert storage._download_folder() == folder, "one folder per process"
    storage.remove_downloads()
    assert not folder.exists() and storage._downloads is None
    storage.remove_downloads()  # twice (exit after an explicit removal) is no error


def test_a_listed_file_deleted_before_its_download_is_refused_as_changed(s3_bucket: str) -> None:
    from retrain.errors import ChangedError

    store = open_store(f"s3://{s3_bucket}/gone")
    store.write("month=2025-02/part-0.csv", b"x\n1\n")
    (entry,) = store.entries("month=2025-02/")
    store.client.delete_object(Bucket=s3_bucket, Key="gone/month=2025-02/part-0.csv")
    with pytest.raises(
        ChangedError, match=r"^s3://.*/gone/month=2025-02/part-0.csv: object changed since it was listed$"
    ):
        store.local_path(entry)


def test_entries_carry_each_objects_size_and_a_version_that_moves_with_its_content(store: Store) -> None:
    store.write("m/a.csv", b"12345")
    store.write("m/b.csv", b"")
    first = {info.key: info for info in store.entries("m/")}
    assert {key: info.size for key, info in first.items()} == {"m/a.csv": 5, "m/b.csv": 0}
    store.write("m/a.csv", b"54321")
    again = {info.key: info for info in store.entries("m/")}
    assert again["m/a.csv"].size == 5 and again["m/a.csv"].version != first["m/a.csv"].version
    assert again["m/b.csv"].version == first["m/b.csv"].version, "an untouched object keeps its version"

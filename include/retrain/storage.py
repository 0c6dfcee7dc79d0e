"""One small storage interface with two backends chosen by URI: `s3://bucket/prefix` or a local folder.

The registry relies on exactly two guarantees, which both backends give:
- `create` writes an object only if it does not exist yet (S3 `If-None-Match: *`; locally a hard link,
  which fails atomically when the name is taken);
- `swap` replaces an object only if it still has the ETag the caller read (S3 `If-Match`; locally a
  compare under an exclusive lock followed by an atomic rename).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import tempfile
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrain.errors import ChangedError, NotFoundError, RegistryError, StorageError

if TYPE_CHECKING:
    from retrain.config import StorageSpec

log = logging.getLogger(__name__)

TEMP_PREFIX = ".tmp-"
LOCK_NAME = ".retrain.lock"
DOWNLOAD_CHUNK = 8 << 20


@dataclass(frozen=True)
class ObjectInfo:
    """An object as listed: enough to tell, without reading it, whether it changed since."""

    key: str
    size: int
    version: str  # the ETag on S3; locally the modification time in nanoseconds

    def fingerprint_part(self) -> bytes:
        return f"{self.key}\0{self.size}\0{self.version}\n".encode()


class Store(ABC):
    """Objects addressed by '/'-separated keys below a root URI."""

    uri: str

    def uri_for(self, key: str) -> str:
        return f"{self.uri.rstrip('/')}/{key}" if key else self.uri

    def read(self, key: str) -> bytes:
        return self.read_with_etag(key)[0]

    @abstractmethod
    def read_with_etag(self, key: str) -> tuple[bytes, str]:
        """The object's bytes and ETag; NotFoundError if it does not exist."""

    @abstractmethod
    def write(self, key: str, data: bytes) -> None:
        """Unconditional write, for scratch objects that are not part of the registry's history."""

    @abstractmethod
    def _create(self, key: str, data: bytes) -> bool:
        """Backend primitive for `create`."""

    @abstractmethod
    def _swap(self, key: str, data: bytes, expected_etag: str | None) -> str | None:
        """Backend primitive for `swap`."""

    @abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """Sorted keys that start with `prefix`."""

    @abstractmethod
    def entries(self, prefix: str) -> list[ObjectInfo]:
        """Objects whose keys start with `prefix`, with size and version, sorted by key."""

    @abstractmethod
    def local_path(self, info: ObjectInfo) -> Path:
        """A local file holding exactly the listed version of an object; ChangedError if it changed since."""

    @abstractmethod
    def check_root(self) -> None:
        """Fail early, naming the root, when it cannot hold objects (a file, a missing bucket)."""

    def exists(self, key: str) -> bool:
        try:
            self.read_with_etag(key)
        except NotFoundError:
            return False
        return True

    def read_optional(self, key: str) -> tuple[bytes, str] | None:
        try:
            return self.read_with_etag(key)
        except NotFoundError:
            return None

    def create(self, key: str, data: bytes) -> bool:
        """Write `key` only if it does not exist. True if this call wrote it.

        A retried request whose first attempt landed sees its own bytes; that counts as written.
        """
        if self._create(key, data):
            return True
        current = self.read_optional(key)
        return current is not None and current[0] == data

    def swap(self, key: str, data: bytes, expected_etag: str | None) -> str | None:
        """Compare-and-swap: replace `key` only if its ETag is `expected_etag` (None: only if absent).

        Returns the new ETag, or None when someone else changed the object first.
        """
        new_etag = self._swap(key, data, expected_etag)
        if new_etag is not None:
            return new_etag
        current = self.read_optional(key)
        if current is not None and current[0] == data:
            return current[1]
        return None


def _content_etag(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


# What S3 answers a request whose signer it does not know, or whose signature does not verify.
REFUSED_CREDENTIALS = ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidToken", "ExpiredToken")


class LocalStore(Store):
    """A folder on a local or shared POSIX filesystem (the embedded default)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.uri = str(self.root)

    def _path(self, key: str) -> Path:
        return self.root / key if key else self.root

    def read_with_etag(self, key: str) -> tuple[bytes, str]:
        try:
            data = self._path(key).read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise NotFoundError(f"{self.uri_for(key)}: not found") from None
        except OSError as error:
            raise StorageError(f"{self.uri_for(key)}: cannot read: {error.strerror}") from None
        return data, _content_etag(data)

    def _write_temp(self, path: Path, data: bytes) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f"{TEMP_PREFIX}{path.name}.{uuid.uuid4().hex}")
        with open(temp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        return temp

    def write(self, key: str, data: bytes) -> None:
        path = self._path(key)
        os.replace(self._write_temp(path, data), path)

    def _create(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        temp = self._write_temp(path, data)
        try:
            os.link(temp, path)
        except FileExistsError:
            return False
        finally:
            temp.unlink()
        return True

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / LOCK_NAME, "a+b") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def _swap(self, key: str, data: bytes, expected_etag: str | None) -> str | None:
        path = self._path(key)
        with self._locked():
            current = self.read_optional(key)
            current_etag = current[1] if current else None
            if current_etag != expected_etag:
                return None
            os.replace(self._write_temp(path, data), path)
        return _content_etag(data)

    def list(self, prefix: str = "") -> list[str]:
        return [info.key for info in self.entries(prefix)]

    def entries(self, prefix: str) -> list[ObjectInfo]:
        if not self.root.is_dir():
            return []
        # Walk only below the prefix's folder: a month folder is listed without visiting its siblings.
        folder, _, _ = prefix.rpartition("/")
        start = self.root / folder if folder else self.root
        found = []
        for directory, _, files in os.walk(start):
            for name in files:
                if name.startswith(TEMP_PREFIX) or name == LOCK_NAME:
                    continue
                path = Path(directory) / name
                key = path.relative_to(self.root).as_posix()
                if not key.startswith(prefix):
                    continue
                try:
                    status = path.stat()
                except FileNotFoundError:
                    continue
                found.append(ObjectInfo(key, status.st_size, str(status.st_mtime_ns)))
        return sorted(found, key=lambda info: info.key)

    def local_path(self, info: ObjectInfo) -> Path:
        path = self._path(info.key)
        try:
            status = path.stat()
        except FileNotFoundError:
            raise ChangedError(f"{self.uri_for(info.key)}: file removed since it was listed") from None
        if (status.st_size, str(status.st_mtime_ns)) != (info.size, info.version):
            raise ChangedError(f"{self.uri_for(info.key)}: file changed since it was listed")
        return path

    def check_root(self) -> None:
        for path in (self.root, *self.root.parents):
            if path.exists():
                if not path.is_dir():
                    raise RegistryError(f"{path}: is a file, not a folder; cannot hold {self.root}")
                if not os.access(path, os.W_OK | os.X_OK):
                    raise RegistryError(f"{path}: not writable; cannot hold {self.root}")
                return


_clients: dict[tuple, Any] = {}
_clients_lock = threading.Lock()
# Credentials boto3 reads from the environment: a change of any of them must give a new client.
CREDENTIAL_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE")


@dataclass(frozen=True)
class AwsConnection:
    """What an Airflow connection of the Amazon provider's type holds for S3."""

    access_key: str | None
    secret_key: str | None = field(repr=False)
    session_token: str | None = field(default=None, repr=False)
    endpoint_url: str | None = None
    region: str | None = None


def airflow_connection(conn_id: str, key: str) -> Any | None:
    """An Airflow connection, resolved by Airflow's own secrets backends (environment `AIRFLOW_CONN_<ID>`,
    metadata DB, Vault...); None where Airflow is not installed. `key` is the config key that names it."""
    try:
        from airflow.sdk import BaseHook
    except ImportError:
        return None
    try:
        return BaseHook.get_connection(conn_id)
    except Exception as error:  # noqa: BLE001 - not found, a secrets backend down: one line either way
        raise StorageError(
            f"{key}: the Airflow connection {conn_id!r} cannot be read ({type(error).__name__})"
        ) from None


def aws_connection(conn_id: str) -> AwsConnection:
    """An Airflow connection read the way the Amazon provider reads it: the key id as its login, the secret
    as its password (or `aws_access_key_id`/`aws_secret_access_key` in its extra), and `endpoint_url` (or
    `service_config.s3.endpoint_url`), `region_name` and `aws_session_token` from its extra."""
    connection = airflow_connection(conn_id, "storage.aws_conn_id")
    if connection is None:
        raise StorageError(
            f"storage.aws_conn_id = {conn_id!r} names an Airflow connection, and Airflow is not installed here: "
            "unset it to use boto3's own credentials (AWS_ACCESS_KEY_ID, a profile, an instance role)"
        )
    extra = connection.extra_dejson or {}
    s3_config = (extra.get("service_config") or {}).get("s3") or {}
    return AwsConnection(
        access_key=connection.login or extra.get("aws_access_key_id"),
        secret_key=connection.password or extra.get("aws_secret_access_key"),
        session_token=extra.get("aws_session_token"),
        endpoint_url=s3_config.get("endpoint_url") or extra.get("endpoint_url"),
        region=extra.get("region_name"),
    )


def _s3_client(
    endpoint_url: str | None, region: str | None, spec: StorageSpec, connection: AwsConnection | None = None
) -> Any:
    """One client per process and settings, shared by every store: a new client loads botocore's JSON models
    (a third of a second each), and a cycle opens a store for every snapshot it reads. Clients are
    thread-safe; a forked process makes its own rather than share its parent's connections."""
    import boto3
    from botocore.config import Config as BotoConfig

    settings = (spec.max_attempts, spec.connect_timeout, spec.read_timeout)
    credentials = (
        (connection.access_key, connection.secret_key, connection.session_token)
        if connection is not None
        else tuple(os.environ.get(v) for v in CREDENTIAL_VARIABLES)
    )
    key = (os.getpid(), endpoint_url, region, settings, credentials)
    with _clients_lock:
        if key not in _clients:
            boto_config = BotoConfig(
                # botocore's "max_attempts" counts the retries alone; storage.max_attempts counts every attempt.
                retries={"total_max_attempts": spec.max_attempts, "mode": "standard"},
                connect_timeout=spec.connect_timeout,
                read_timeout=spec.read_timeout,
                # S3-compatible servers reject or mangle the newer default CRC checksums.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            )
            session = (
                boto3.session.Session(
                    aws_access_key_id=connection.access_key,
                    aws_secret_access_key=connection.secret_key,
                    aws_session_token=connection.session_token,
                )
                if connection is not None
                else boto3.session.Session()
            )
            _clients[key] = session.client("s3", endpoint_url=endpoint_url, region_name=region, config=boto_config)
        return _clients[key]


class S3Store(Store):
    """A bucket and prefix on AWS S3 or an S3-compatible server such as MinIO."""

    def __init__(self, uri: str, spec: StorageSpec | None = None) -> None:
        from retrain.config import StorageSpec

        spec = spec or StorageSpec()
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        if not bucket:
            raise StorageError(f"{uri}: an S3 URI needs a bucket, as in s3://bucket/prefix")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.uri = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.max_attempts = spec.max_attempts
        # The config's own endpoint and region first, then the Airflow connection's, then boto3's chain.
        connection = aws_connection(spec.aws_conn_id) if spec.aws_conn_id else None
        self.endpoint_url = (
            spec.endpoint_url
            or (connection.endpoint_url if connection else None)
            or os.environ.get("AWS_ENDPOINT_URL_S3")
            or os.environ.get("AWS_ENDPOINT_URL")
        )
        region = (
            spec.region
            or (connection.region if connection else None)
            or os.environ.get("AWS_REGION")
            or os.environ.get("AWS_DEFAULT_REGION")
        )
        self.client = _s3_client(self.endpoint_url, region, spec, connection)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    @contextlib.contextmanager
    def _requests(self, action: str, key: str) -> Iterator[None]:
        """Turn botocore's failures into one line that names the object and the endpoint."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("NoSuchKey", "404", "NotFound"):
                raise NotFoundError(f"{self.uri_for(key)}: not found") from None
            if code == "NoSuchBucket":
                raise StorageError(f"{self.uri}: bucket {self.bucket!r} does not exist") from None
            if code in REFUSED_CREDENTIALS or status == 403:
                where = self.endpoint_url or "AWS S3"
                raise StorageError(
                    f"{self.uri_for(key)}: {action} refused by {where} ({code or status}): check the credentials "
                    "(AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile, or the Airflow connection) and "
                    "their access to the bucket"
                ) from None
            raise StorageError(f"{self.uri_for(key)}: {action} failed: {code or status}") from None
        except BotoCoreError as error:
            where = self.endpoint_url or "AWS S3"
            raise StorageError(
                f"{self.uri_for(key)}: {action} failed after {self.max_attempts} attempts; "
                f"storage endpoint {where} unreachable: {error}"
            ) from None

    @staticmethod
    def _is_precondition_failure(error: Exception, *, if_match: bool = False) -> bool:
        """Whether a refused request lost its condition: a 412 (or its code) from any server; a 409
        ConditionalRequestConflict, where a concurrent conditional write to the key won; and for If-Match,
        AWS's 404 NoSuchKey when the key no longer exists (SeaweedFS answers 412 there)."""
        from botocore.exceptions import ClientError

        if not isinstance(error, ClientError):
            return False
        code = error.response.get("Error", {}).get("Code", "")
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        lost = code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412)
        return lost or (if_match and code == "NoSuchKey")

    def read_with_etag(self, key: str) -> tuple[bytes, str]:
        with self._requests("read", key):
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            return response["Body"].read(), response["ETag"].strip('"')

    def write(self, key: str, data: bytes) -> None:
        with self._requests("write", key):
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def _conditional_put(self, key: str, data: bytes, **condition: str) -> str | None:
        from botocore.exceptions import ClientError

        with self._requests("conditional write", key):
            try:
                response = self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **condition)
            except ClientError as error:
                if self._is_precondition_failure(error, if_match="IfMatch" in condition):
                    return None
                raise
            return response["ETag"].strip('"')

    def _create(self, key: str, data: bytes) -> bool:
        return self._conditional_put(key, data, IfNoneMatch="*") is not None

    def _swap(self, key: str, data: bytes, expected_etag: str | None) -> str | None:
        if expected_etag is None:
            return self._conditional_put(key, data, IfNoneMatch="*")
        return self._conditional_put(key, data, IfMatch=f'"{expected_etag}"')

    def list(self, prefix: str = "") -> list[str]:
        return [info.key for info in self.entries(prefix)]

    def entries(self, prefix: str) -> list[ObjectInfo]:
        found = []
        with self._requests("list", prefix):
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
                for item in page.get("Contents", []):
                    full = item["Key"]
                    key = full[len(self.prefix) + 1 :] if self.prefix else full
                    found.append(ObjectInfo(key, int(item["Size"]), item["ETag"].strip('"')))
        return sorted(found, key=lambda info: info.key)

    def local_path(self, info: ObjectInfo) -> Path:
        """Download once per process into a private temp folder; `If-Match` pins the listed version."""
        from botocore.exceptions import ClientError

        name = hashlib.sha256(f"{self.bucket}/{self._key(info.key)}@{info.version}".encode()).hexdigest()
        target = _download_folder() / f"{name}{Path(info.key).suffix}"
        if target.exists():
            return target
        partial = target.with_name(f"{TEMP_PREFIX}{target.name}.{uuid.uuid4().hex}")
        with self._requests("download", info.key):
            try:
                response = self.client.get_object(
                    Bucket=self.bucket, Key=self._key(info.key), IfMatch=f'"{info.version}"'
                )
            except ClientError as error:
                if self._is_precondition_failure(error, if_match=True):
                    raise ChangedError(f"{self.uri_for(info.key)}: object changed since it was listed") from None
                raise
            with open(partial, "wb") as handle:
                for chunk in response["Body"].iter_chunks(DOWNLOAD_CHUNK):
                    handle.write(chunk)
        os.replace(partial, target)
        return target

    def check_root(self) -> None:
        from botocore.exceptions import ClientError

        with self._requests("list", ""):
            try:
                self.client.list_objects_v2(Bucket=self.bucket, Prefix=self._key(""), MaxKeys=1)
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") == "NoSuchBucket":
                    raise RegistryError(f"{self.uri}: bucket {self.bucket!r} does not exist") from None
                raise


_downloads: Path | None = None
_downloads_lock = threading.Lock()


def _download_folder() -> Path:
    """One private folder per process for downloaded snapshot files, removed when the process exits."""
    global _downloads
    with _downloads_lock:
        if _downloads is None:
            _downloads = Path(tempfile.mkdtemp(prefix="retrain-downloads-"))
            atexit.register(remove_downloads)
        return _downloads


def remove_downloads() -> None:
    """Remove this process's downloaded files (at exit); the next download starts a new folder."""
    global _downloads
    with _downloads_lock:
        if _downloads is not None:
            shutil.rmtree(_downloads, ignore_errors=True)
            _downloads = None


def open_store(uri: str, spec: StorageSpec | None = None) -> Store:
    """The store for a location: `s3://bucket/prefix` or a local folder path (or `file://` URI)."""
    if uri.startswith("s3://"):
        return S3Store(uri, spec)
    if "://" in uri and not uri.startswith("file://"):
        raise StorageError(f"{uri}: unsupported storage scheme (use s3:// or a local path)")
    return LocalStore(uri.removeprefix("file://"))

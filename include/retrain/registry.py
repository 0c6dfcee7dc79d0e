"""The model registry on any `Store`: immutable versions, one champion pointer, an append-only ledger.

Layout below `<registry root>/<model name>/`:

    versions/000001/model.joblib     written once (conditional create), never modified
    versions/000001/metadata.json    written once, after the model; a version exists once this exists
    champion.json                    the only mutable object, moved by compare-and-swap on its ETag: the
                                     champion version and the month it was last validated on (the drift
                                     reference of `drift.reference = "validated"`), which move together
    ledger/<YYYY-MM>/<run key>.json  one record per cycle (conditional create: one per run id)
    ledger/operator/<...>.json       operator actions such as rollbacks
    runs/<YYYY-MM>/<run key>/        per-run working files and reports (drift, challenger, evaluation)

Every write is ordered so that a crash between any two leaves a readable registry whose champion is
either the previous one or the new one, and re-running the same run id finishes the job without
writing anything twice.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from retrain.errors import IntegrityError, NotFoundError, RegistryError, StorageError
from retrain.records import (
    Champion,
    ChampionPointer,
    LedgerRecord,
    Outcome,
    ReferenceUse,
    VersionMetadata,
    run_key,
)
from retrain.serial import RecordError, from_jsonable, to_bytes
from retrain.storage import Store, open_store

if TYPE_CHECKING:
    from retrain.config import Config

log = logging.getLogger(__name__)

CHAMPION_KEY = "champion.json"
VERSION_DIGITS = 6
MAX_VERSION_ATTEMPTS = 1000
T = TypeVar("T")


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def version_prefix(version: int) -> str:
    return f"versions/{version:0{VERSION_DIGITS}d}"


class RunFolder:
    """One run's working files (`runs/<month>/<run key>/`): scratch, rewritten freely by a retried task."""

    def __init__(self, store: Store, month: str, key: str) -> None:
        self.store, self.month, self.key = store, month, key
        self.prefix = f"runs/{month}/{key}"

    def path(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    def uri(self, name: str) -> str:
        return self.store.uri_for(self.path(name))

    def write(self, name: str, data: bytes) -> str:
        """Write a file; returns its URI."""
        self.store.write(self.path(name), data)
        return self.uri(name)

    def read(self, name: str) -> bytes:
        return self.store.read(self.path(name))

    def _read_if_written(self, name: str) -> bytes | None:
        """A file's bytes, or None when the run did not get that far."""
        try:
            return self.read(name)
        except NotFoundError:
            return None

    def written(self, name: str) -> bool:
        return self._read_if_written(name) is not None

    def read_record(self, kind: type[T], name: str) -> T | None:
        """A record the run wrote, or None when the run did not get that far."""
        data = self._read_if_written(name)
        return None if data is None else _parse(kind, data, self.uri(name))

    def read_document(self, name: str) -> dict[str, object] | None:
        """A JSON file the run wrote, as parsed, or None when the run did not get that far."""
        data = self._read_if_written(name)
        return None if data is None else _json(data, self.uri(name))

    def claim(self, name: str) -> bool:
        """True for the first claim of `name` by this run, False for every later one (exactly once). The
        token is unique, so only this very call's create, retried, can find its own bytes there."""
        token = f'{{"claimed_by": "{uuid.uuid4().hex}"}}\n'.encode()
        return self.store.create(self.path(name), token)


def _json(data: bytes, where: str) -> Any:
    try:
        return json.loads(data)
    except json.JSONDecodeError:
        raise RegistryError(f"{where}: not valid JSON") from None


def _parse(kind: type[T], data: bytes, where: str) -> T:
    document = _json(data, where)
    try:
        return from_jsonable(kind, document)
    except RecordError as error:
        raise RegistryError(f"{where}: unreadable {kind.__name__}: {error}") from None


class Registry:
    def __init__(self, store: Store, model_name: str) -> None:
        self.store = store
        self.model_name = model_name

    @classmethod
    def for_config(cls, config: Config) -> Registry:
        root = config.registry.root.rstrip("/")
        return cls(open_store(f"{root}/{config.model.name}", config.storage), config.model.name)

    @property
    def uri(self) -> str:
        return self.store.uri

    # -- reading -----------------------------------------------------------------------------------

    def _read(self, kind: type[T], key: str) -> T:
        return _parse(kind, self.store.read(key), self.store.uri_for(key))

    def read_optional(self, kind: type[T], key: str) -> T | None:
        """A record that only saves work (a cache): missing or unreadable is None, never an error."""
        try:
            found = self.store.read_optional(key)
            return _parse(kind, found[0], self.store.uri_for(key)) if found is not None else None
        except (StorageError, RegistryError, UnicodeDecodeError) as error:
            log.warning("%s: not used (%s)", self.store.uri_for(key), error)
            return None

    def check(self) -> None:
        """Fail before any data step when the registry cannot be used (a file as its root, no bucket)."""
        self.store.check_root()

    def champion(self) -> Champion | None:
        found = self.store.read_optional(CHAMPION_KEY)
        if found is None:
            return None
        data, etag = found
        where = self.store.uri_for(CHAMPION_KEY)
        try:
            pointer = from_jsonable(Champion, {**json.loads(data), "etag": etag})
        except (json.JSONDecodeError, RecordError, TypeError):
            raise RegistryError(f"{where}: unreadable champion pointer") from None
        if (pointer.model or self.model_name) != self.model_name:
            raise RegistryError(f"{where}: pointer of model {pointer.model!r}, not {self.model_name!r}")
        # Pointers written before validation was tracked: a champion was validated on its own data month.
        return replace(pointer, validated_month=pointer.validated_month or pointer.data_month)

    def versions(self) -> list[int]:
        """Complete versions (metadata written), oldest first. Half-written ones are not versions."""
        found = set()
        for key in self.store.list("versions/"):
            parts = key.split("/")
            if len(parts) == 3 and parts[2] == "metadata.json" and parts[1].isdigit():
                found.add(int(parts[1]))
        return sorted(found)

    def _highest_version_number(self) -> int:
        numbers = [int(k.split("/")[1]) for k in self.store.list("versions/") if k.split("/")[1].isdigit()]
        return max(numbers, default=0)

    def metadata(self, version: int) -> VersionMetadata:
        try:
            return self._read(VersionMetadata, f"{version_prefix(version)}/metadata.json")
        except NotFoundError:
            raise RegistryError(f"{self.uri}: no version {version}") from None

    def load_model(self, version: int) -> Any:
        """Unpickle a version's model after checking its SHA-256 against the metadata."""
        from retrain.training import deserialize

        metadata = self.metadata(version)
        key = f"{version_prefix(version)}/model.joblib"
        try:
            data = self.store.read(key)
        except NotFoundError:
            raise IntegrityError(f"{self.store.uri_for(key)}: model file missing for version {version}") from None
        return deserialize(data, metadata.model_sha256, source=self.store.uri_for(key))

    def find_version_by_run(self, key: str) -> int | None:
        """The version a run already published, if a previous attempt of it got that far."""
        for version in reversed(self.versions()):
            if self.metadata(version).run_key == key:
                return version
        return None

    def ledger_record(self, month: str, key: str) -> LedgerRecord | None:
        try:
            return self._read(LedgerRecord, f"ledger/{month}/{key}.json")
        except NotFoundError:
            return None

    def ledger_records(self, month: str) -> list[LedgerRecord]:
        """Every cycle record of one month (several when a month was run more than once)."""
        return [self._read(LedgerRecord, k) for k in self.store.list(f"ledger/{month}/") if k.endswith(".json")]

    def ledger(self) -> list[LedgerRecord]:
        """Every record, in the order they were written."""
        records = [self._read(LedgerRecord, k) for k in self.store.list("ledger/") if k.endswith(".json")]
        return sorted(records, key=lambda r: (r.recorded_at, r.month or ""))

    def latest_cycle_records(self) -> list[LedgerRecord]:
        """The cycle records of the latest month that has any, oldest first: one listing and a read or two,
        however long the ledger."""
        keys = [k for k in self.store.list("ledger/") if k.endswith(".json") and not k.startswith("ledger/operator/")]
        if not keys:
            return []
        month = max(key.split("/")[1] for key in keys)
        records = [self._read(LedgerRecord, k) for k in keys if k.split("/")[1] == month]
        return sorted(records, key=lambda r: r.recorded_at)

    def find_run(self, key: str) -> LedgerRecord | None:
        """The ledger record of a run, by its run key, whatever its month."""
        suffix = f"/{key}.json"
        for name in self.store.list("ledger/"):
            if name.endswith(suffix) and not name.startswith("ledger/operator/"):
                return self._read(LedgerRecord, name)
        return None

    def run_folder(self, month: str, key: str) -> RunFolder:
        return RunFolder(self.store, month, key)

    # -- writing -----------------------------------------------------------------------------------

    def publish_version(self, model_bytes: bytes, metadata: VersionMetadata) -> int:
        """Write a new immutable version: the model first, then its metadata. Returns its number.

        Numbers are claimed by conditional create, so concurrent writers never share or reuse one.
        """
        version = self._highest_version_number() + 1
        for _ in range(MAX_VERSION_ATTEMPTS):
            prefix = version_prefix(version)
            document = replace(metadata, version=version, model_file=f"{prefix}/model.joblib")
            if self.store.create(f"{prefix}/model.joblib", model_bytes) and self.store.create(
                f"{prefix}/metadata.json", to_bytes(document)
            ):
                log.info("published %s version %d", self.model_name, version)
                return version
            version += 1
        raise RegistryError(f"{self.uri}: could not claim a version number after {MAX_VERSION_ATTEMPTS} tries")

    def move_champion(
        self,
        version: int,
        *,
        data_month: str,
        expected_etag: str | None,
        run_id: str,
        reason: str,
        validated_month: str | None = None,
        validated_auc: float | None = None,
        validation_profile: str | None = None,
    ) -> bool:
        """Compare-and-swap the champion pointer. False when someone else moved it first.
        `validation_profile` is the key of the calibration the validating run wrote, if any."""
        metadata = self.metadata(version)
        previous = self.champion()
        if previous is not None and previous.etag != expected_etag:
            return False
        pointer = ChampionPointer(
            model=self.model_name,
            version=version,
            data_month=data_month,
            validated_month=validated_month or data_month,
            validated_auc=validated_auc,
            validated_run_id=run_id,
            validation_profile=validation_profile,
            model_sha256=metadata.model_sha256,
            previous_version=previous.version if previous else None,
            run_id=run_id,
            reason=reason,
            updated_at=utc_now(),
        )
        moved = self.store.swap(CHAMPION_KEY, to_bytes(pointer), expected_etag) is not None
        if moved:
            log.info("champion of %s is now version %d", self.model_name, version)
        return moved

    def revalidate(
        self, expected: Champion, *, month: str, auc: float | None, run_id: str, validation_profile: str | None = None
    ) -> bool:
        """Move the champion's validated month forward, by compare-and-swap on the pointer as `expected`
        read it. False when the pointer changed since (a promotion, a rollback, another revalidation)."""
        if expected.validated_run_id == run_id and expected.validated_month == month:
            return True
        pointer = replace(
            expected.pointer(),
            model=self.model_name,
            validated_month=month,
            validated_auc=auc,
            validated_run_id=run_id,
            validation_profile=validation_profile,
            updated_at=utc_now(),
        )
        moved = self.store.swap(CHAMPION_KEY, to_bytes(pointer), expected.etag) is not None
        if not moved:
            current = self.champion()
            # A retried request whose first attempt landed finds its own revalidation in place.
            return bool(current and current.validated_run_id == run_id)
        log.info("champion version %d of %s validated on %s", expected.version, self.model_name, month)
        return True

    def validation_of(self, version: int) -> tuple[str, float | None]:
        """The latest month a version was validated on, and its AUC there: its promotion month, or a later
        month on which a cycle kept it."""
        metadata = self.metadata(version)
        month = metadata.validated_month or metadata.data_month
        auc = metadata.auc
        for record in self.ledger():
            moved = record.moved_reference_to
            if record.champion_version == version and moved and moved > month:
                month = moved
                champion = record.metrics.champion if record.metrics else None
                auc = champion.auc if champion else auc
        return month, auc

    def append_ledger(self, record: LedgerRecord) -> LedgerRecord:
        """Add the record of a run once; a record already there for this run wins and is returned."""
        key = f"ledger/{record.month}/{record.run_key}.json"
        if self.store.create(key, to_bytes(record)):
            return record
        return self._read(LedgerRecord, key)

    def rollback(self, version: int, *, reason: str, run_id: str | None = None) -> LedgerRecord:
        """Point the champion back at an existing version (compare-and-swap) and record why."""
        if not reason.strip():
            raise RegistryError("rollback needs a reason")
        if version not in self.versions():
            raise RegistryError(f"{self.uri}: no version {version} to roll back to")
        current = self.champion()
        if current is not None and current.version == version:
            raise RegistryError(f"version {version} is already the champion")
        run_id = run_id or f"rollback__{utc_now()}"
        metadata = self.metadata(version)
        validated_month, validated_auc = self.validation_of(version)
        if not self.move_champion(
            version,
            data_month=metadata.data_month,
            expected_etag=current.etag if current else None,
            run_id=run_id,
            reason=f"rollback: {reason}",
            validated_month=validated_month,
            validated_auc=validated_auc,
        ):
            raise RegistryError("the champion moved while rolling back; read it again and retry")
        record = LedgerRecord(
            kind="rollback",
            run_id=run_id,
            run_key=run_key(run_id),
            month=None,
            outcome=Outcome.ROLLED_BACK,
            reason=reason,
            champion_version_before=current.version if current else None,
            champion_version=version,
            reference=ReferenceUse(mode="validated", moved_to=validated_month, moved=True),
            recorded_at=utc_now(),
        )
        key = f"ledger/operator/{record.run_key}-{uuid.uuid4().hex[:8]}.json"
        self.store.create(key, to_bytes(record))
        return record

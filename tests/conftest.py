"""Shared fixtures: real servers on 127.0.0.1 (an S3 server process), demo data, configs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from retrain.config import StorageSpec
from retrain.storage import Store, open_store

ROOT = Path(__file__).resolve().parents[1]
S3_SERVER = ROOT / "tests" / "support" / "s3_server.py"

DEMO_MONTHS = 8
DEMO_START = "2025-01"


def start_s3_server() -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, str(S3_SERVER)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    line = process.stdout.readline() if process.stdout else ""
    if not line.startswith("port "):
        process.kill()
        raise RuntimeError(f"S3 server did not start: {line!r}")
    return process, f"http://127.0.0.1:{int(line.split()[1])}"


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server in its own process, for the whole session; or the one RETRAIN_TEST_S3_ENDPOINT names
    (make mutate starts one for its thousands of short test sessions)."""
    if os.environ.get("RETRAIN_TEST_S3_ENDPOINT"):
        yield os.environ["RETRAIN_TEST_S3_ENDPOINT"]
        return
    process, endpoint = start_s3_server()
    yield endpoint
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def s3_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point boto3 at the test server through the standard AWS variables, as a deployment would."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    return s3_endpoint


def s3_client(endpoint: str):  # noqa: ANN201 - boto3 client type is generated
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(request_checksum_calculation="when_required", response_checksum_validation="when_required"),
    )


@pytest.fixture
def s3_bucket(s3_env: str) -> str:
    """A fresh, empty bucket for one test."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    s3_client(s3_env).create_bucket(Bucket=name)
    return name


def upload_tree(endpoint: str, folder: Path, bucket: str, prefix: str, client: object = None) -> None:
    """Upload a folder's files under a prefix (with the test server's credentials unless a client is given)."""
    client = client or s3_client(endpoint)
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            client.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(folder).as_posix()}")


@pytest.fixture(scope="session")
def demo_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Demo snapshots for DEMO_MONTHS months, generated once per session; copy before writing next to them."""
    from retrain.demo_data import write_demo_data

    out = tmp_path_factory.mktemp("demo-source")
    write_demo_data(out, months=DEMO_MONTHS, start=DEMO_START)
    return out


@pytest.fixture
def demo_dir(demo_source: Path, tmp_path: Path) -> Path:
    """A private copy of the demo folder (data plus retrain.toml, registry under it)."""
    target = tmp_path / "demo"
    shutil.copytree(demo_source, target)
    return target


def write_config(
    path: Path,
    *,
    production: str,
    labeled: str,
    registry: str,
    extra: str = "",
    data_extra: str = "",
    endpoint_url: str | None = None,
    name: str = "churn",
    storage_extra: str = "",
) -> Path:
    """A config for the demo data's columns, pointing wherever a test needs."""
    path.write_text(
        f"""
[model]
name = "{name}"
target = "churned"
numeric_features = ["tenure_months", "monthly_charges", "support_calls", "usage_gb"]
categorical_features = ["plan", "region"]
timestamp = "event_time"

[data]
production = "{production}"
labeled = "{labeled}"
reference_month = "{DEMO_START}"
{data_extra}

[registry]
root = "{registry}"

[storage]
{f'endpoint_url = "{endpoint_url}"' if endpoint_url else ""}
max_attempts = 2
connect_timeout = 2
read_timeout = 10
{storage_extra}

[training]
window_months = 3
seed = 7

[promotion]
min_auc = 0.7
min_lift = 0.005
{extra}
"""
    )
    return path


@pytest.fixture
def s3_demo_config(s3_bucket: str, s3_env: str, demo_source: Path, tmp_path: Path) -> Path:
    """The demo snapshots uploaded to a bucket, and a config whose data and registry live there."""
    upload_tree(s3_env, demo_source / "production", s3_bucket, "data/production")
    upload_tree(s3_env, demo_source / "labeled", s3_bucket, "data/labeled")
    return write_config(
        tmp_path / "retrain.toml",
        production=f"s3://{s3_bucket}/data/production",
        labeled=f"s3://{s3_bucket}/data/labeled",
        registry=f"s3://{s3_bucket}/registry",
    )


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """The same tests against both backends: a temp folder and a bucket on the S3 server process."""
    if request.param == "local":
        return open_store(str(tmp_path / "store"))
    bucket = request.getfixturevalue("s3_bucket")
    return open_store(f"s3://{bucket}/prefix", StorageSpec(max_attempts=2))

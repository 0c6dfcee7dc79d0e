from __future__ import annotations

from pathlib import Path

import pytest

from retrain.config import StorageSpec
from retrain.storage import Store, open_store


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """The same tests against both backends: a temp folder and a bucket on the S3 server process."""
    if request.param == "local":
        return open_store(str(tmp_path / "store"))
    bucket = request.getfixturevalue("s3_bucket")
    return open_store(f"s3://{bucket}/prefix", StorageSpec(max_attempts=2))

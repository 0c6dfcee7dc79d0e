"""The README's S3 walk-through: demo data straight into a bucket, cycles and the ledger via the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import write_config

pytestmark = pytest.mark.slow


def retrain(*args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "retrain", *args], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_demo_data_then_cycles_then_the_ledger_against_an_s3_endpoint(s3_bucket: str, tmp_path: Path) -> None:
    prefix = f"s3://{s3_bucket}/demo"
    out = retrain("demo-data", "--out", prefix, "--months", "2", "--rows", "3000")
    assert f'production = "{prefix}/production"' in out
    config = write_config(
        tmp_path / "s3.toml",
        production=f"{prefix}/production",
        labeled=f"{prefix}/labeled",
        registry=f"s3://{s3_bucket}/registry",
    )
    first = json.loads(retrain("cycle", "--config", str(config), "--month", "2025-01", "--json"))
    assert (first["outcome"], first["champion_version"]) == ("BOOTSTRAPPED", 1)
    assert first["report_uri"].startswith(f"s3://{s3_bucket}/registry/churn/runs/2025-01/")
    retrain("cycle", "--config", str(config), "--month", "2025-02")
    ledger = retrain("registry", "ledger", "--config", str(config))
    lines = {line.split()[1]: line.split() for line in ledger.splitlines()[1:] if line[:1].isdigit()}
    assert "BOOTSTRAPPED" in lines["2025-01"] and "NO_DRIFT" in lines["2025-02"]
    assert "month 2025-01" in retrain("registry", "list", "--config", str(config))

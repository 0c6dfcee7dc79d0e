"""The MLflow Model Registry mirror against a real `mlflow server` (SQLite backend store, local artifact
folder) on 127.0.0.1: promotion, rollback, MLflow down and back up."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from retrain.cli import main
from retrain.config import load_config
from retrain.cycle import run_cycle
from retrain.records import Run
from retrain.registry import Registry
from tests.conftest import write_config
from tests.support.local_servers import MlflowServer, closed_port

pytestmark = pytest.mark.slow


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[MlflowServer]:
    server = MlflowServer(tmp_path / "mlflow")
    (tmp_path / "mlflow").mkdir()
    server.start()
    yield server
    server.stop()


def mirrored_config(demo_dir: Path, tmp_path: Path, tracking_uri: str) -> Path:
    return write_config(
        tmp_path / "retrain.toml",
        production=str(demo_dir / "production"),
        labeled=str(demo_dir / "labeled"),
        registry=str(tmp_path / "registry"),
        extra=f'[mlflow]\ntracking_uri = "{tracking_uri}"\nregistered_model = "churn-classifier"\n'
        "timeout_seconds = 5\nmax_retries = 0\n",
    )


def cycle(config_path: Path, month: str) -> dict[str, Any]:
    return run_cycle(load_config(config_path), Run(run_id=f"test__{month}", month=month))


def mlflow_state(uri: str) -> tuple[dict[str, dict[str, str]], str | None]:
    """Each MLflow version's tags by version number, and the version the champion alias points to."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=uri)
    versions = {v.version: dict(v.tags) for v in client.search_model_versions("name = 'churn-classifier'")}
    try:
        alias = client.get_model_version_by_alias("churn-classifier", "champion").version
    except MlflowException:
        alias = None
    return versions, alias


def test_promotions_and_a_rollback_move_the_champion_alias(
    mlflow_server: MlflowServer,
    demo_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config_path = mirrored_config(demo_dir, tmp_path, mlflow_server.uri)
    first = cycle(config_path, "2025-01")
    assert first.outcome == "BOOTSTRAPPED" and first.mlflow.synced is True
    versions, alias = mlflow_state(mlflow_server.uri)
    assert list(versions) == ["1"] and alias == "1"
    tags = versions["1"]
    assert tags["retrain.version"] == "1" and tags["retrain.data_month"] == "2025-01"
    assert tags["retrain.run_id"] == "test__2025-01" and float(tags["retrain.auc"]) > 0.7
    registry = Registry.for_config(load_config(config_path))
    assert tags["retrain.sha256"] == registry.metadata(1).model_sha256
    assert tags["retrain.registry_uri"].endswith("churn/versions/000001/model.joblib")

    assert cycle(config_path, "2025-02").outcome == "NO_DRIFT"
    assert mlflow_state(mlflow_server.uri) == (versions, "1"), "nothing new to mirror: nothing logged twice"

    import retrain.cycle.run

    record_step, alias_when_recording = retrain.cycle.run.record, []

    def record(*args: Any) -> Any:
        alias_when_recording.append(mlflow_state(mlflow_server.uri)[1])
        return record_step(*args)

    monkeypatch.setattr(retrain.cycle.run, "record", record)
    capsys.readouterr()
    assert main(["cycle", "--config", str(config_path), "--month", "2025-07", "--json"]) == 0
    printed = capsys.readouterr()
    assert json.loads(printed.out)["outcome"] == "PROMOTED", "stdout is the JSON alone"
    assert "View run" in printed.err, "what MLflow prints goes to stderr"
    promoted = Registry.for_config(load_config(config_path)).ledger()[-1]
    assert promoted.outcome == "PROMOTED"
    assert alias_when_recording == ["2"], "the alias moved in the promote step, before its asset event"
    versions, alias = mlflow_state(mlflow_server.uri)
    assert sorted(versions) == ["1", "2"] and alias == "2"
    assert versions["2"]["retrain.drifted_features"] == "tenure_months,usage_gb"
    assert versions["2"]["retrain.lift"] != "none" and versions["2"]["retrain.lift_interval"].startswith("[")

    import mlflow.pyfunc
    import mlflow.sklearn
    import numpy as np

    model = mlflow.sklearn.load_model(f"models:/churn-classifier@champion")  # noqa: F541 - the alias URI
    assert hasattr(model, "predict_proba"), "the scikit-learn flavour loads back"
    served = mlflow.pyfunc.load_model("models:/churn-classifier@champion")
    info = served.metadata
    inputs = {c["name"]: c["type"] for c in info.get_input_schema().to_dict()}
    assert inputs["tenure_months"] == "double" and inputs["plan"] == "string"
    example = info.load_input_example("models:/churn-classifier@champion")
    assert example is not None and len(example) == 5
    probabilities = np.asarray(served.predict(example))
    assert probabilities.shape == (5,) and ((probabilities > 0) & (probabilities < 1)).all()
    assert len(set(np.round(probabilities, 6))) > 2, "probabilities, not classes"
    bare = Registry.for_config(load_config(config_path)).load_model(2)
    np.testing.assert_allclose(probabilities, bare.predict_proba(example)[:, 1], rtol=1e-12)

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server.uri)
    run = client.get_run(client.get_model_version("churn-classifier", "2").run_id)
    assert run.data.metrics["challenger_auc"] == pytest.approx(promoted.metrics.challenger.auc, rel=1e-9)
    assert run.data.metrics["lift"] == pytest.approx(promoted.metrics.lift.lift, rel=1e-9)
    assert run.data.params["promotion.min_lift"] == str(promoted.thresholds.promotion.min_lift)
    assert run.data.params["task"] == "binary" and run.data.params["data_month"] == "2025-07"
    report = client.download_artifacts(run.info.run_id, "report.html", str(tmp_path))
    assert "PROMOTED" in Path(report).read_text(), "the run report travels with the version"
    local = Path(mlflow.artifacts.download_artifacts("models:/churn-classifier@champion"))
    requirements = (local / "requirements.txt").read_text().split()
    assert {r.split("==")[0] for r in requirements} >= {"scikit-learn", "skops", "pandas", "pyarrow"}
    assert "pytest" not in " ".join(requirements), "pinned to what loading needs, not to what was imported"
    assert (local / "code" / "retrain" / "training.py").exists(), "the package's own steps travel with the model"

    capsys.readouterr()
    assert main(["registry", "rollback", "1", "--reason", "v2 misbehaves", "--config", str(config_path)]) == 0
    assert "MLflow churn-classifier@champion -> version 1" in capsys.readouterr().out
    assert mlflow_state(mlflow_server.uri)[1] == "1"


def test_an_unreachable_mlflow_never_blocks_a_promotion_and_is_caught_up_later(
    mlflow_server: MlflowServer, demo_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    config_path = mirrored_config(demo_dir, tmp_path, mlflow_server.uri)
    cycle(config_path, "2025-01")
    mlflow_server.stop()
    promoted = cycle(config_path, "2025-07")
    assert promoted.outcome == "PROMOTED" and promoted.champion_version == 2, "the registry moved on"
    assert promoted.mlflow.synced is False and promoted.mlflow.error
    ledger = Registry.for_config(load_config(config_path)).ledger()
    assert ledger[-1].mlflow.synced is False, "the ledger says MLflow is behind"

    mlflow_server.start()
    assert mlflow_state(mlflow_server.uri)[1] == "1", "MLflow still has the old champion"
    capsys.readouterr()
    for _ in range(2):  # catching up is idempotent
        assert main(["registry", "sync-mlflow", "--config", str(config_path)]) == 0
    assert "churn-classifier@champion -> version 2 (registry version 2)" in capsys.readouterr().out
    versions, alias = mlflow_state(mlflow_server.uri)
    assert sorted(versions) == ["1", "2"] and alias == "2"

    cycle(config_path, "2025-08")
    assert mlflow_state(mlflow_server.uri) == (versions, "2"), "a later cycle keeps it in step, adding nothing"


def test_a_closed_port_fails_fast(demo_dir: Path, tmp_path: Path) -> None:
    import time

    config_path = mirrored_config(demo_dir, tmp_path, f"http://127.0.0.1:{closed_port()}")
    started = time.monotonic()
    entry = cycle(config_path, "2025-01")
    assert entry.outcome == "BOOTSTRAPPED" and entry.mlflow.synced is False
    assert time.monotonic() - started < 60


def test_a_model_in_mlflows_registry_is_adopted_by_its_alias(
    mlflow_server: MlflowServer, demo_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A team's own pipeline, registered in MLflow with the alias `production`, becomes the champion; the
    first cycle then challenges it instead of bootstrapping a model of its own."""
    import mlflow
    import mlflow.sklearn
    import pandas as pd
    from sklearn.compose import make_column_transformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    config_path = mirrored_config(demo_dir, tmp_path, mlflow_server.uri)
    config = load_config(config_path)
    history = pd.read_parquet(demo_dir / "labeled" / "month=2025-01")
    numeric, categorical = list(config.model.numeric_features), list(config.model.categorical_features)
    pipeline = make_pipeline(
        make_column_transformer(
            (SimpleImputer(strategy="median"), numeric),
            (OneHotEncoder(handle_unknown="ignore"), categorical),
        ),
        LogisticRegression(max_iter=1000),
    ).fit(history[numeric + categorical], history["churned"])
    mlflow.set_tracking_uri(mlflow_server.uri)
    mlflow.set_experiment("pricing-team")  # not an experiment an earlier test made active on another server
    with mlflow.start_run():
        logged = mlflow.sklearn.log_model(pipeline, name="model", serialization_format="cloudpickle")
    registered = mlflow.register_model(logged.model_uri, "churn-in-production")
    mlflow.MlflowClient(mlflow_server.uri).set_registered_model_alias(
        "churn-in-production", "production", registered.version
    )

    capsys.readouterr()  # what this test's own MLflow calls printed
    command = ["registry", "adopt", "--config", str(config_path), "--month", "2025-01", "--json"]
    assert main([*command, "--model", "models:/churn-in-production@production"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["kind"] == "adopt" and record["outcome"] == "ADOPTED" and record["champion_version"] == 1
    registry = Registry.for_config(config)
    origin = registry.metadata(1).origin
    assert origin.source == "models:/churn-in-production@production" and origin.source_sha256 is None
    adopted_auc = registry.metadata(1).metrics.challenger.auc
    assert adopted_auc == pytest.approx(record["metrics"]["champion"]["auc"]) and adopted_auc > 0.7

    first = cycle(config_path, "2025-02")
    assert first.champion_version_before == 1 and first.outcome != "BOOTSTRAPPED"
    assert first.performance is not None and first.performance.champion_version == 1

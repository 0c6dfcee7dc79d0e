"""Whole retraining cycles through the registry, on a local folder and on a real S3 API."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from retrain.config import load_config
from retrain.cycle import Cycle, run_cycle
from retrain.cycle.drift import check_drift
from retrain.cycle.evaluate import evaluate
from retrain.cycle.promote import promote, version_metadata
from retrain.cycle.pull import pull_snapshots
from retrain.cycle.record import record
from retrain.cycle.train import train_challenger
from retrain.errors import IntegrityError, StorageError
from retrain.records import DriftCheck, Evaluation, LedgerRecord, PerformanceEstimate, Pulled, Run, Trained, run_key
from retrain.registry import Registry
from retrain.serial import to_jsonable
from tests.conftest import write_config
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.slow


@pytest.fixture(params=["local", "s3"])
def config_path(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    if request.param == "s3":
        return request.getfixturevalue("s3_demo_config")
    demo = request.getfixturevalue("demo_dir")
    return write_config(
        tmp_path / "retrain.toml",
        production=str(demo / "production"),
        labeled=str(demo / "labeled"),
        registry=str(tmp_path / "registry"),
    )


def cycle(config_path: Path, month: str, run_id: str | None = None, **flags: Any) -> LedgerRecord:
    return run_cycle(load_config(config_path), Run(run_id=run_id or f"test__{month}", month=month, **flags))


def test_month_after_month(config_path: Path) -> None:
    months = [f"2025-0{m}" for m in range(1, 8)]
    outcomes = [cycle(config_path, month).outcome for month in months]
    assert outcomes == [
        "BOOTSTRAPPED",
        "NO_DRIFT",
        "NO_DRIFT",
        "KEPT_CHAMPION",  # usage jumps, churn does not care: the champion holds up on April...
        "NO_DRIFT",  # ...so April is the reference now, and May's usage is no alarm
        "REJECTED",  # tenure jumps and the market turns: a challenger with two old months is not good enough
        "PROMOTED",  # one more month of the new world, and it is
    ]

    registry = Registry.for_config(load_config(config_path))
    assert registry.versions() == [1, 2]
    champion = registry.champion()
    assert (champion.version, champion.data_month, champion.validated_month) == (2, "2025-07", "2025-07")
    assert champion.previous_version == 1
    assert champion.validation_profile == f"runs/2025-07/{run_key('test__2025-07')}/validation.json"

    ledger = registry.ledger()
    assert [r.month for r in ledger] == months
    assert [r.champion_version for r in ledger] == [1, 1, 1, 1, 1, 1, 2]
    assert [r.reference.months for r in ledger] == [("2025-01",)] * 4 + [("2025-04",)] * 3
    assert [r.reference.moved_to for r in ledger] == ["2025-01", None, None, "2025-04", None, None, "2025-07"]
    kept = ledger[3]
    assert kept.drift.drifted_features == ("usage_gb",)
    assert kept.metrics.lift.low <= 0 and "not significant" in kept.reason
    assert ledger[4].drift.drifted_features == ()
    april = json.loads(registry.store.read(f"runs/2025-04/{run_key('test__2025-04')}/validation.json"))
    assert (april["month"], april["model_sha256"]) == ("2025-04", registry.metadata(1).model_sha256)
    for entry in ledger[1:5]:  # before the market turns, the covariate shifts leave the estimate right
        performance = entry.performance
        assert performance.realized_month == entry.month and performance.validated_month <= entry.month
        assert performance.estimated_value == pytest.approx(performance.realized_value, abs=0.02)
    june = ledger[5].performance
    assert june.estimated_value - june.realized_value > 0.2, "a concept change is what only labels reveal"

    metadata = registry.metadata(2)
    assert metadata.data_month == "2025-07" and metadata.run_id == "test__2025-07"
    assert [s.month for s in metadata.lineage.training] == ["2025-05", "2025-06", "2025-07"]
    assert all(len(s.fingerprint) == 64 and s.rows == 20000 for s in metadata.lineage.training)
    assert metadata.lineage.reference[0].month == "2025-04", "the month v1 was last validated on"
    assert metadata.thresholds.promotion.min_lift == 0.005
    assert metadata.metrics.lift.low > 0
    assert metadata.drift.drifted is True
    assert {"python", "scikit-learn", "numpy", "pandas"} <= set(metadata.libraries)
    model_bytes = registry.store.read("versions/000002/model.joblib")
    assert hashlib.sha256(model_bytes).hexdigest() == metadata.model_sha256


def test_the_estimate_starts_from_the_validating_runs_profile_exactly_as_scoring_again_would(
    config_path: Path,
) -> None:
    """The run that validates a model writes its calibration on that holdout; a later estimate reads it
    instead of scoring the holdout again, and only while it still describes that model on those rows."""
    import dataclasses

    cycle(config_path, "2025-01")
    config = load_config(config_path)
    registry = Registry.for_config(config)
    key = registry.champion().validation_profile
    assert key == f"runs/2025-01/{run_key('test__2025-01')}/validation.json"
    stored = json.loads(registry.store.read(key))
    assert stored["model_sha256"] == registry.metadata(1).model_sha256 and stored["month"] == "2025-01"

    def estimate(profile_key: str | None) -> PerformanceEstimate:
        step = Cycle.open(config, Run(run_id=f"estimate-{profile_key}", month="2025-02"))
        pulled = pull_snapshots(step)
        pulled = dataclasses.replace(
            pulled, champion=dataclasses.replace(pulled.champion, validation_profile=profile_key)
        )
        return check_drift(step, pulled).performance

    scored_again = estimate(None)
    assert estimate(key) == scored_again, "the stored profile is what scoring the holdout again gives"
    raised = {**stored, "profile": {**stored["profile"], "validated_auc": stored["profile"]["validated_auc"] + 0.1}}
    registry.store.write("runs/raised.json", json.dumps(raised).encode())
    assert estimate("runs/raised.json").estimated_value == pytest.approx(scored_again.estimated_value + 0.1)
    stale = {**raised, "fingerprint": "0" * 64}  # the labeled month was rewritten since
    registry.store.write("runs/stale.json", json.dumps(stale).encode())
    registry.store.write("runs/garbled.json", b"{not json")
    assert estimate("runs/stale.json") == estimate("runs/garbled.json") == estimate("runs/missing.json") == scored_again


def test_rerunning_a_run_id_writes_nothing_twice(config_path: Path) -> None:
    first = cycle(config_path, "2025-01", run_id="scheduled__2025-01")
    registry = Registry.for_config(load_config(config_path))
    history = [k for k in registry.store.list() if not k.startswith("runs/")]
    again = cycle(config_path, "2025-01", run_id="scheduled__2025-01")
    assert again == first
    assert [k for k in registry.store.list() if not k.startswith("runs/")] == history
    assert len(registry.ledger()) == 1 and registry.versions() == [1]


def test_dry_run_writes_only_its_ledger_record(config_path: Path) -> None:
    entry = cycle(config_path, "2025-01", dry_run=True)
    assert entry.outcome == "BOOTSTRAPPED" and entry.dry_run is True and "dry run" in entry.reason
    registry = Registry.for_config(load_config(config_path))
    assert registry.champion() is None and registry.versions() == []
    assert [r.dry_run for r in registry.ledger()] == [True]


def test_forced_retrain_without_drift(config_path: Path) -> None:
    cycle(config_path, "2025-01")
    entry = cycle(config_path, "2025-02", force=True)
    assert entry.drift.drifted is False and entry.forced is True
    assert entry.metrics.champion is not None, "retrained and compared although nothing drifted"
    assert "retraining forced" in entry.reason


def steps_until_promotion(config_path: Path, run: Run) -> tuple:
    step = Cycle.open(load_config(config_path), run)
    pulled = pull_snapshots(step)
    drift = check_drift(step, pulled)
    trained = train_challenger(step, pulled)
    return step, pulled, drift, trained, evaluate(step, pulled, drift, trained)


def test_a_backfill_over_history_never_replaces_a_newer_champion(config_path: Path) -> None:
    # By 2025-08 support calls have turned from a churn signal to a loyalty one, so a model of 2025-02
    # wins on 2025-02.
    assert cycle(config_path, "2025-08").outcome == "BOOTSTRAPPED"
    entry = cycle(config_path, "2025-02", run_id="backfill__2025-02")
    assert entry.decision == "PROMOTED", "the challenger wins on its own month..."
    assert entry.outcome == "SUPERSEDED" and "holds newer data (2025-08 > 2025-02)" in entry.reason
    registry = Registry.for_config(load_config(config_path))
    assert registry.champion().version == 1 and registry.versions() == [1]
    assert [r.outcome for r in registry.ledger()] == ["BOOTSTRAPPED", "SUPERSEDED"]


@pytest.mark.parametrize("crash_after", ["model_file", "metadata", "champion_pointer"])
def test_a_crash_between_writes_leaves_a_readable_registry_and_a_rerun_finishes(
    config_path: Path, crash_after: str
) -> None:
    cycle(config_path, "2025-01")
    run = Run(run_id="test__2025-07", month="2025-07")
    step, pulled, drift, trained, evaluation = steps_until_promotion(config_path, run)
    registry = step.registry
    model_bytes = step.folder.read("challenger.joblib")
    # Replay the promotion's writes up to the crash point, exactly as `promote` orders them.
    if crash_after == "model_file":
        registry.store.create("versions/000002/model.joblib", model_bytes)
    else:
        version = registry.publish_version(model_bytes, version_metadata(step, pulled, drift, trained, evaluation))
        if crash_after == "champion_pointer":
            registry.move_champion(
                version,
                data_month=run.month,
                expected_etag=pulled.champion.etag,
                run_id=run.run_id,
                reason="crash test",
            )

    champion = registry.champion()
    assert champion.version == (2 if crash_after == "champion_pointer" else 1), "old or new, never broken"
    registry.load_model(champion.version)
    assert registry.ledger_record(run.month, run.key) is None

    # The re-run is a new process running the whole cycle again under the same run id.
    entry = cycle(config_path, "2025-07", run_id="test__2025-07")
    expected_version = 3 if crash_after == "model_file" else 2  # an orphaned number is never reused
    assert entry.outcome == "PROMOTED" and entry.version == expected_version
    assert registry.champion().version == expected_version
    assert registry.versions() == [1, expected_version]
    assert [r.month for r in registry.ledger()] == ["2025-01", "2025-07"]


def test_a_killed_cycle_is_finished_by_its_rerun(config_path: Path) -> None:
    cycle(config_path, "2025-01")
    registry = Registry.for_config(load_config(config_path))
    command = [
        sys.executable,
        "-m",
        "retrain",
        "cycle",
        "--config",
        str(config_path),
        "--month",
        "2025-07",
        "--run-id",
        "killed-run",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    evaluation_key = f"runs/2025-07/{run_key('killed-run')}/evaluation.json"
    deadline = time.monotonic() + 120
    while not registry.store.exists(evaluation_key) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()

    champion = registry.champion()
    assert champion.version in (1, 2)
    registry.load_model(champion.version)
    entry = cycle(config_path, "2025-07", run_id="killed-run")
    assert entry.outcome == "PROMOTED"
    # Killed inside the publication, the version number it had claimed stays orphaned and is never reused.
    versions = registry.versions()
    assert versions in ([1, 2], [1, 3]) and registry.champion().version == versions[-1]
    assert [r.run_id for r in registry.ledger()].count("killed-run") == 1


def _promote_in_process(
    config_path: str,
    run_id: str,
    pulled: Pulled,
    drift: DriftCheck,
    trained: Trained,
    evaluation: Evaluation,
    barrier: Any,
    results: Any,
) -> None:
    step = Cycle.open(load_config(config_path), Run(run_id=run_id, month="2025-07"))
    barrier.wait()
    outcome = promote(step, pulled, drift, trained, evaluation)
    record(step, pulled, drift, evaluation, outcome)
    results[run_id] = to_jsonable(outcome)


def race_promotions(config_path: Path, racers: list[str]) -> dict[str, dict[str, Any]]:
    """Runs evaluated in turn for 2025-07, then promoted at once from processes of their own; each run's
    promotion record."""
    prepared = {run_id: steps_until_promotion(config_path, Run(run_id=run_id, month="2025-07")) for run_id in racers}
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        barrier, results = manager.Barrier(len(racers)), manager.dict()
        processes = [
            context.Process(
                target=_promote_in_process, args=(str(config_path), run_id, *prepared[run_id][1:], barrier, results)
            )
            for run_id in racers
        ]
        for process in processes:
            process.start()
        for process in processes:
            process.join(timeout=120)
        return dict(results)


def test_two_processes_promoting_at_once_exactly_one_wins(config_path: Path) -> None:
    cycle(config_path, "2025-01")
    outcomes = race_promotions(config_path, ["racer-a", "racer-b"])
    assert sorted(o["outcome"] for o in outcomes.values()) == ["CONFLICT", "PROMOTED"]
    winner = next(run_id for run_id, o in outcomes.items() if o["outcome"] == "PROMOTED")
    loser = next(run_id for run_id, o in outcomes.items() if o["outcome"] == "CONFLICT")
    registry = Registry.for_config(load_config(config_path))
    assert registry.champion().version == outcomes[winner]["version"]
    assert registry.versions() == [1, 2, 3], "both versions kept, numbers distinct"
    assert outcomes[loser]["version"] != outcomes[winner]["version"]
    assert "champion moved" in outcomes[loser]["reason"]
    assert sorted(r.outcome for r in registry.ledger()) == ["BOOTSTRAPPED", "CONFLICT", "PROMOTED"]


def test_a_tampered_champion_is_refused(config_path: Path) -> None:
    cycle(config_path, "2025-01")
    registry = Registry.for_config(load_config(config_path))
    key = "versions/000001/model.joblib"
    registry.store.write(key, registry.store.read(key)[:-100])
    with pytest.raises(IntegrityError, match="does not match the recorded .* refusing to load it"):
        cycle(config_path, "2025-04")
    assert registry.champion().version == 1 and len(registry.ledger()) == 1


def test_storage_outage_mid_cycle_ends_in_one_clear_error_and_an_intact_registry(
    s3_bucket: str, s3_env: str, demo_source: Path, tmp_path: Path
) -> None:
    from tests.conftest import upload_tree

    upload_tree(s3_env, demo_source / "production", s3_bucket, "data/production")
    upload_tree(s3_env, demo_source / "labeled", s3_bucket, "data/labeled")
    proxy = TcpProxy(int(s3_env.rsplit(":", 1)[1])).start()
    config_path = write_config(
        tmp_path / "retrain.toml",
        production=f"s3://{s3_bucket}/data/production",
        labeled=f"s3://{s3_bucket}/data/labeled",
        registry=f"s3://{s3_bucket}/registry",
        endpoint_url=f"http://127.0.0.1:{proxy.port}",
    )

    cycle(config_path, "2025-01")
    run = Run(run_id="outage", month="2025-07")
    step, pulled, drift, trained, evaluation = steps_until_promotion(config_path, run)
    proxy.stop()
    try:
        with pytest.raises(
            StorageError, match=r"failed after 2 attempts; storage endpoint http://127.0.0.1:\d+ unreachable"
        ):
            promote(step, pulled, drift, trained, evaluation)
    finally:
        proxy.start()
    registry = step.registry
    assert registry.champion().version == 1 and registry.versions() == [1]
    assert [r.month for r in registry.ledger()] == ["2025-01"]
    entry = record(step, pulled, drift, evaluation, promote(step, pulled, drift, trained, evaluation))
    assert entry.outcome == "PROMOTED" and registry.champion().version == 2
    proxy.stop()


def test_ledger_json_is_the_chain_of_decisions(config_path: Path) -> None:
    for month in ("2025-01", "2025-02"):
        cycle(config_path, month)
    result = subprocess.run(
        [sys.executable, "-m", "retrain", "registry", "ledger", "--json", "--config", str(config_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    records = json.loads(result.stdout)
    assert [(r["month"], r["outcome"]) for r in records] == [("2025-01", "BOOTSTRAPPED"), ("2025-02", "NO_DRIFT")]


def test_a_snapshot_rewritten_between_steps_is_refused_without_rereading_it(config_path: Path) -> None:
    from retrain.errors import ChangedError
    from retrain.storage import open_store

    config = load_config(config_path)
    step = Cycle.open(config, Run(run_id="changed", month="2025-02"))
    pulled = pull_snapshots(step)
    import io

    import pandas as pd

    store = open_store(config.data.production, config.storage)
    key = "month=2025-02/part-0000.parquet"
    buffer = io.BytesIO()
    pd.read_parquet(io.BytesIO(store.read(key))).iloc[:-1].to_parquet(buffer)
    store.write(key, buffer.getvalue())  # a late correction of the month: a new ETag, size and mtime
    with pytest.raises(ChangedError, match=r"month 2025-02 .* changed since it was validated"):
        check_drift(step, pulled)
    assert Registry.for_config(config).ledger() == []


def test_models_sharing_a_bucket_never_read_or_move_each_others_champion(
    s3_bucket: str, s3_env: str, demo_source: Path, tmp_path: Path
) -> None:
    from retrain.errors import RegistryError
    from tests.conftest import upload_tree

    upload_tree(s3_env, demo_source / "production", s3_bucket, "data/production")
    upload_tree(s3_env, demo_source / "labeled", s3_bucket, "data/labeled")
    paths = {
        name: write_config(
            tmp_path / f"{name}.toml",
            name=name,
            production=f"s3://{s3_bucket}/data/production",
            labeled=f"s3://{s3_bucket}/data/labeled",
            registry=f"s3://{s3_bucket}/registry",
        )
        for name in ("churn", "churn2")  # one name the prefix of the other
    }
    cycle(paths["churn2"], "2025-01")
    other = Registry.for_config(load_config(paths["churn2"]))
    before = {key: other.store.read(key) for key in other.store.list()}
    for month in ("2025-01", "2025-07"):
        cycle(paths["churn"], month)
    churn = Registry.for_config(load_config(paths["churn"]))
    assert churn.champion().version == 2 and other.champion().version == 1
    assert {key: other.store.read(key) for key in other.store.list()} == before, "nothing of churn2 changed"
    assert all(r.model == "churn" for r in churn.ledger()) and all(r.model == "churn2" for r in other.ledger())
    # A pointer copied across prefixes is refused, never followed to the other model's versions.
    other.store.write("champion.json", churn.store.read("champion.json"))
    with pytest.raises(RegistryError, match="pointer of model 'churn', not 'churn2'"):
        cycle(paths["churn2"], "2025-02")
    assert churn.champion().version == 2


def test_training_max_rows_trains_on_a_stratified_sample_and_says_so(demo_dir: Path, tmp_path: Path) -> None:
    path = write_config(
        tmp_path / "retrain.toml",
        production=str(demo_dir / "production"),
        labeled=str(demo_dir / "labeled"),
        registry=str(tmp_path / "registry"),
    )
    config = load_config(path).with_overrides(**{"training.max_rows": 5000})
    assert run_cycle(config, Run(run_id="capped", month="2025-01")).outcome == "BOOTSTRAPPED"
    rows = Registry.for_config(config).metadata(1).rows
    assert rows.window == 14000, "the month minus its 30% holdout"
    assert abs(rows.train - 5000) <= 2 and rows.sampled is True and rows.max_rows == 5000
    assert Registry.for_config(config).metadata(1).thresholds.training.max_rows == 5000
    # Below the default cap (2,000,000 rows) nothing is sampled, and 0 turns the cap off for any size.
    for max_rows in (None, 0):
        uncapped = load_config(path).with_overrides(**{"registry.root": str(tmp_path / f"registry-{max_rows}")})
        if max_rows is not None:
            uncapped = uncapped.with_overrides(**{"training.max_rows": max_rows})
        assert run_cycle(uncapped, Run(run_id=f"uncapped-{max_rows}", month="2025-01")).outcome == "BOOTSTRAPPED"
        rows = Registry.for_config(uncapped).metadata(1).rows
        assert (rows.train, rows.sampled) == (14000, False)


def test_csv_snapshots_give_the_same_cycles_as_parquet(demo_dir: Path, tmp_path: Path) -> None:
    """Real exports are often CSV, often compressed: the same months as CSV files (production's gzipped)
    give the same decisions and statistics."""
    import pandas as pd

    csv_demo = tmp_path / "csv"
    for parquet in demo_dir.glob("*/month=*/*.parquet"):
        suffix = ".csv.gz" if parquet.relative_to(demo_dir).parts[0] == "production" else ".csv"
        target = csv_demo / parquet.relative_to(demo_dir).with_suffix(suffix)
        target.parent.mkdir(parents=True, exist_ok=True)
        pd.read_parquet(parquet).to_csv(target, index=False)
    results = {}
    for kind, root in (("parquet", demo_dir), ("csv", csv_demo)):
        config_path = write_config(
            tmp_path / f"{kind}.toml",
            production=str(root / "production"),
            labeled=str(root / "labeled"),
            registry=str(tmp_path / f"registry-{kind}"),
        )
        entries = [cycle(config_path, f"2025-0{m}") for m in range(1, 5)]
        results[kind] = [
            (
                e.outcome,
                [
                    (f["name"], f["statistic"], f["p_value"], f["n_reference"], f["n_current"])
                    for f in json.loads(Path(e.drift.report_uri).read_text())["features"]
                ],
                e.performance.estimated_value,
                e.metrics,
            )
            for e in entries[1:]
        ]
    assert all(len(features) == 6 for _, features, _, _ in results["csv"]), "every feature tested each month"
    assert [outcome for outcome, *_ in results["csv"]] == ["NO_DRIFT", "NO_DRIFT", "KEPT_CHAMPION"]
    assert results["csv"] == results["parquet"]


def test_a_month_past_drift_stream_above_rows_is_tested_batch_by_batch_with_the_same_outcome(
    demo_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cycle streams a month larger than drift.stream_above_rows (here every month): the same drift
    report, estimate and decision as a month read whole, from reads of drift.batch_rows rows."""
    from retrain.cycle.drift import DRIFT_FILE
    from retrain.drift import DriftReport
    from retrain.snapshots import SnapshotReader

    batches: list[int] = []
    whole_reads = SnapshotReader.numeric_batches

    def counted(self: SnapshotReader, column: str, batch_rows: int | None):  # noqa: ANN202
        for batch in whole_reads(self, column, batch_rows):
            batches.append(len(batch))
            yield batch

    monkeypatch.setattr(SnapshotReader, "numeric_batches", counted)
    path = write_config(
        tmp_path / "retrain.toml",
        production=str(demo_dir / "production"),
        labeled=str(demo_dir / "labeled"),
        registry=str(tmp_path / "unused"),
    )
    seen = []
    for name, overrides in (("whole", {}), ("streamed", {"drift.stream_above_rows": 0, "drift.batch_rows": 1000})):
        config = load_config(path).with_overrides(**{"registry.root": str(tmp_path / name), **overrides})
        run_cycle(config, Run(run_id="first", month="2025-01"))
        batches.clear()
        entry = run_cycle(config, Run(run_id="june", month="2025-06"))
        folder = Registry.for_config(config).run_folder("2025-06", run_key("june"))
        seen.append((entry.outcome, entry.performance, folder.read_record(DriftReport, DRIFT_FILE), list(batches)))
    (whole_outcome, whole_estimate, whole_report, whole_batches), streamed = seen
    assert not whole_batches and streamed[3] and max(streamed[3]) == 1000, "only the streamed cycle read batches"
    assert streamed[:3] == (whole_outcome, whole_estimate, whole_report)
    assert whole_report.drifted_features == ["tenure_months", "usage_gb"]

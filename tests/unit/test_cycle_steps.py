"""Which months a run uses, which drift reference, and when the reference moves: known answers on tiny data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from retrain.config import load_config
from retrain.cycle import Cycle, run_cycle
from retrain.cycle.keep import keep
from retrain.cycle.pull import pull_snapshots
from retrain.cycle.window import missing_inputs
from retrain.errors import DataError, RegistryError
from retrain.records import (
    Decision,
    Evaluation,
    EvaluationMetrics,
    LedgerRecord,
    Lineage,
    Metrics,
    Outcome,
    PerformanceEstimate,
    Pulled,
    Reference,
    ReferenceUse,
    Run,
    Snapshot,
    VersionMetadata,
)
from retrain.registry import Registry
from tests.conftest import write_config

MONTHS = ["2025-01", "2025-02", "2025-03", "2025-04", "2025-05"]


def month_frame(rows: int, seed: int, labeled: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "tenure_months": rng.normal(24, 5, rows),
            "monthly_charges": rng.normal(70, 20, rows),
            "support_calls": rng.poisson(1.5, rows).astype(float),
            "usage_gb": rng.lognormal(3, 0.6, rows),
            "plan": rng.choice(["basic", "premium"], rows),
            "region": rng.choice(["north", "south"], rows),
            "event_time": pd.Timestamp("2025-01-01", tz="UTC"),
        }
    )
    if labeled:
        frame["churned"] = np.arange(rows) % 2
    return frame


def write_months(root: Path, months: list[str], labeled: bool) -> None:
    for i, month in enumerate(months):
        folder = root / f"month={month}"
        folder.mkdir(parents=True)
        month_frame(200, i, labeled).to_parquet(folder / "part-0.parquet")


@pytest.fixture
def data(tmp_path: Path) -> Path:
    write_months(tmp_path / "production", MONTHS, labeled=False)
    write_months(tmp_path / "labeled", MONTHS, labeled=True)
    return tmp_path


def config_for(data: Path, *, drift: str = "", delay: int = 0, window: int = 3):  # noqa: ANN201
    path = write_config(
        data / "retrain.toml",
        production=str(data / "production"),
        labeled=str(data / "labeled"),
        registry=str(data / "registry"),
        data_extra=f"label_delay_months = {delay}",
        extra=f"[drift]\n{drift}\n",
    )
    config = load_config(path)
    return config.with_overrides(**{"training.window_months": window})


def pull(config, run: Run) -> Pulled:  # noqa: ANN001
    return pull_snapshots(Cycle.open(config, run))


def install_champion(config, *, data_month: str, validated_month: str, training: list[str]) -> Registry:  # noqa: ANN001
    """A champion as a promotion leaves it: an immutable version whose lineage names its training months."""
    registry = Registry.for_config(config)
    lineage = Lineage(training=tuple(Snapshot(f"{config.data.labeled}/month={m}", m) for m in training))
    version = registry.publish_version(
        b"model bytes", VersionMetadata(data_month=data_month, model_sha256="0" * 64, lineage=lineage)
    )
    registry.move_champion(
        version,
        data_month=data_month,
        expected_etag=None,
        run_id=f"run-{data_month}",
        reason="test",
        validated_month=validated_month,
        validated_auc=0.8,
    )
    return registry


# -- label delay: which labeled months a run trains and evaluates on ---------------------------------------


@pytest.mark.parametrize(
    ("delay", "window", "month", "expected"),
    [
        (0, 3, "2025-05", ["2025-03", "2025-04", "2025-05"]),
        (1, 3, "2025-05", ["2025-02", "2025-03", "2025-04"]),
        (2, 2, "2025-05", ["2025-02", "2025-03"]),
        (0, 3, "2025-02", ["2025-01", "2025-02"]),  # the window starts at the first labeled month
        (2, 3, "2025-03", ["2025-01"]),
    ],
)
def test_the_labeled_window_ends_label_delay_months_before_the_run(
    data: Path, delay: int, window: int, month: str, expected: list[str]
) -> None:
    pulled = pull(config_for(data, delay=delay, window=window), Run("r", month))
    assert pulled.training_months == tuple(expected)
    assert pulled.labeled_month == expected[-1]
    assert pulled.production.month == month, "drift is always checked on the run's own production month"


def test_a_delay_that_leaves_no_labeled_month_is_one_clear_error(data: Path) -> None:
    with pytest.raises(DataError) as error:
        pull(config_for(data, delay=1), Run("r", "2025-01"))
    message = str(error.value)
    assert "no labeled month up to 2024-12" in message and "the first labeled month is 2025-01" in message
    assert "data.label_delay_months=1: the run for 2025-01 uses labels up to 2024-12" in message


def test_a_missing_labeled_month_inside_the_window_is_named(data: Path) -> None:
    (data / "labeled" / "month=2025-03" / "part-0.parquet").unlink()
    with pytest.raises(DataError, match=r"month 2025-03 .*labeled month missing inside the 3-month training window"):
        pull(config_for(data), Run("r", "2025-04"))
    with pytest.raises(DataError, match=r"month 2025-03 .*no labeled data files for this month"):
        pull(config_for(data, delay=1), Run("r", "2025-04"))


def test_readiness_names_the_missing_partitions_and_markers(data: Path) -> None:
    config = config_for(data, delay=1)
    assert missing_inputs(config, "2025-05") == []
    missing = missing_inputs(config, "2025-06")
    assert len(missing) == 1 and missing[0].startswith("production month 2025-06") and "no data files yet" in missing[0]
    marked = config.with_overrides(**{"data.success_marker": "_SUCCESS"})
    assert [m.split(" (")[0] for m in missing_inputs(marked, "2025-05")] == [
        "production month 2025-05",
        "labeled month 2025-04",
    ]
    (data / "production" / "month=2025-05" / "_SUCCESS").touch()
    (data / "labeled" / "month=2025-04" / "_SUCCESS").touch()
    assert missing_inputs(marked, "2025-05") == []


def test_a_month_before_the_first_partition_is_an_error_not_a_wait(data: Path) -> None:
    with pytest.raises(DataError) as error:
        missing_inputs(config_for(data, delay=1), "2025-01")
    assert str(error.value).startswith(
        f"labeled month 2024-12 ({data}/labeled/month=2024-12): before the first labeled month, 2025-01, so it "
        "never lands; the run for 2025-01 uses labels up to 2024-12 (data.label_delay_months=1); the first month "
        "a run can use is 2025-02"
    )
    with pytest.raises(
        DataError,
        match=r"^production month 2024-06 .*before the first production month, 2025-01.*"
        r"the first month a run can use is 2025-01$",
    ):
        missing_inputs(config_for(data), "2024-06")


def test_a_spark_style_partition_layout_is_read_through_data_partition(tmp_path: Path) -> None:
    for kind, labeled in (("production", False), ("labeled", True)):
        for i, month in enumerate(MONTHS[:3]):
            year, number = month.split("-")
            folder = tmp_path / kind / f"year={year}" / f"month={int(number)}"  # partitionBy("year", "month")
            folder.mkdir(parents=True)
            month_frame(200, i, labeled).to_parquet(folder / "part-00000-c000.snappy.parquet")
    config = config_for(tmp_path).with_overrides(**{"data.partition": "year={year}/month={m}"})
    pulled = pull(config, Run("r", "2025-03"))
    assert pulled.training_months == ("2025-01", "2025-02", "2025-03")
    assert pulled.production.uri.endswith("production/year=2025/month=3")
    assert [m.split(" (")[0] for m in missing_inputs(config, "2025-04")] == [
        "production month 2025-04",
        "labeled month 2025-04",
    ]
    assert "labeled/year=2025/month=4): no data files yet" in missing_inputs(config, "2025-04")[1]


# -- the drift reference ---------------------------------------------------------------------------------


def test_before_any_champion_every_mode_uses_the_reference_month(data: Path) -> None:
    for mode in ("validated", "training", "fixed"):
        pulled = pull(config_for(data, drift=f'reference = "{mode}"'), Run("r", "2025-03"))
        assert pulled.reference.months == ("2025-01",) and pulled.reference.mode == "fixed"
        assert "data.reference_month" in pulled.reference.source


@pytest.mark.parametrize(
    ("mode", "months", "source"),
    [
        ("validated", ["2025-03"], "production month 2025-03, on which champion version 1 was last validated"),
        ("training", ["2025-01", "2025-02"], "labeled months 2025-01, 2025-02, champion version 1's training data"),
        ("fixed", ["2025-01"], "production month 2025-01 (data.reference_month)"),
    ],
)
def test_each_reference_mode_with_a_champion(data: Path, mode: str, months: list[str], source: str) -> None:
    config = config_for(data, drift=f'reference = "{mode}"')
    install_champion(config, data_month="2025-02", validated_month="2025-03", training=["2025-01", "2025-02"])
    pulled = pull(config, Run("r", "2025-05"))
    assert (pulled.reference.mode, list(pulled.reference.months), pulled.reference.source) == (mode, months, source)
    uris = [s.uri for s in pulled.reference.snapshots]
    dataset = "labeled" if mode == "training" else "production"
    assert all(f"/{dataset}/month=" in uri for uri in uris)


def evaluation(
    outcome: str, champion_auc: float | None, holdout_month: str = "2025-04", positives: int = 300
) -> Evaluation:
    champion = None if champion_auc is None else Metrics(champion_auc, 0.5, 0.2, 1000, positives)
    return Evaluation(
        decision=Decision(Outcome(outcome), "test"),
        outcome=Outcome(outcome),
        reason="test",
        metrics=EvaluationMetrics(challenger=Metrics(0.7, 0.5, 0.2, 1000, positives), champion=champion),
        holdout_month=holdout_month,
        evaluation_uri="x",
    )


def started_from(registry: Registry) -> Pulled:
    reference = Reference("fixed", "test", (), ())
    return Pulled(
        "r", "k", "2025-04", "2025-04", registry.champion(), reference, Snapshot("p", "2025-04"), (), None, None
    )


@pytest.mark.parametrize(
    ("outcome", "auc", "positives", "dry_run", "moves", "note"),
    [
        ("KEPT_CHAMPION", 0.75, 300, False, True, "validated on 2025-04"),
        ("KEPT_CHAMPION", 0.65, 300, False, False, "below min_auc=0.7"),
        ("KEPT_CHAMPION", 0.7, 300, False, True, "validated on 2025-04"),  # at min_auc exactly: it held up
        ("KEPT_CHAMPION", 0.75, 20, False, True, "validated on 2025-04"),  # exactly min_holdout_per_class
        ("KEPT_CHAMPION", 0.75, 19, False, False, "the holdout has 19 positives"),
        ("KEPT_CHAMPION", 0.75, 300, True, False, "dry run"),
        ("KEPT_CHAMPION", 0.75, 5, False, False, "the holdout has 5 positives and 995 negatives"),
        ("REJECTED", 0.75, 300, False, False, "REJECTED: the champion was not shown to hold up"),
        ("SUPERSEDED", 0.75, 300, False, False, "SUPERSEDED"),
    ],
)
def test_a_kept_champion_moves_its_validated_month_only_when_it_held_up(
    data: Path, outcome: str, auc: float, positives: int, dry_run: bool, moves: bool, note: str
) -> None:
    config = config_for(data)
    registry = install_champion(config, data_month="2025-01", validated_month="2025-01", training=["2025-01"])
    held_up = evaluation(outcome, auc, positives=positives)
    kept = keep(Cycle.open(config, Run("r", "2025-04", dry_run=dry_run)), started_from(registry), held_up)
    assert kept.moved is moves and note in kept.note
    assert registry.champion().validated_month == ("2025-04" if moves else "2025-01")
    if moves:
        assert registry.champion().validated_auc == auc and registry.champion().version == 1


def test_the_reference_moves_by_compare_and_swap_and_never_backwards(data: Path) -> None:
    config = config_for(data)
    registry = install_champion(config, data_month="2025-01", validated_month="2025-01", training=["2025-01"])
    stale = started_from(registry)
    assert keep(Cycle.open(config, Run("first", "2025-04")), stale, evaluation("KEPT_CHAMPION", 0.8)).moved
    assert keep(Cycle.open(config, Run("first", "2025-04")), stale, evaluation("KEPT_CHAMPION", 0.8)).moved, (
        "a retry: same answer"
    )
    older = keep(
        Cycle.open(config, Run("backfill", "2025-03")),
        started_from(registry),
        evaluation("KEPT_CHAMPION", 0.8, "2025-03"),
    )
    assert not older.moved and "already validated on 2025-04" in older.note
    registry.move_champion(1, data_month="2025-05", expected_etag=registry.champion().etag, run_id="x", reason="x")
    raced = keep(Cycle.open(config, Run("late", "2025-05")), stale, evaluation("KEPT_CHAMPION", 0.8, "2025-05"))
    assert not raced.moved and registry.champion().validated_month == "2025-05"


def test_a_rollback_resets_the_reference_to_the_versions_last_validation(data: Path) -> None:
    config = config_for(data)
    registry = install_champion(config, data_month="2025-01", validated_month="2025-01", training=["2025-01"])
    assert keep(
        Cycle.open(config, Run("kept", "2025-04")), started_from(registry), evaluation("KEPT_CHAMPION", 0.81)
    ).moved
    registry.append_ledger(
        LedgerRecord(
            run_id="kept",
            run_key="kept",
            month="2025-04",
            outcome=Outcome.KEPT_CHAMPION,
            reason="held up",
            champion_version=1,
            reference=ReferenceUse(mode="validated", moved=True, moved_to="2025-04"),
            metrics=EvaluationMetrics(champion=Metrics(0.81, 0.5, 0.2, 1000, 300)),
            recorded_at="2025-05-01",
        )
    )
    version = registry.publish_version(b"v2", VersionMetadata(data_month="2025-05", model_sha256="1" * 64))
    registry.move_champion(
        version,
        data_month="2025-05",
        expected_etag=registry.champion().etag,
        run_id="promo",
        reason="x",
        validated_month="2025-05",
    )
    registry.rollback(1, reason="v2 misbehaves")
    champion = registry.champion()
    assert (champion.version, champion.validated_month, champion.validated_auc) == (1, "2025-04", 0.81)


def test_a_registry_root_that_is_a_file_stops_the_run_before_any_data_step(data: Path) -> None:
    (data / "registry").write_text("not a folder")
    with pytest.raises(RegistryError, match=r"registry: is a file, not a folder"):
        pull(config_for(data), Run("r", "2025-02"))


def write_world(root: Path, month: str, spread: float, seed: int) -> None:
    """Two features; churn depends on `signal`. A narrower `signal` leaves the relation as it was but makes
    the classes harder to tell apart: the AUC a model can reach falls, with no feature drifting past its floor."""
    rng = np.random.default_rng(seed)
    rows = 20000
    signal = rng.normal(0, spread, rows)
    frame = pd.DataFrame({"signal": signal, "noise": rng.normal(0, 1, rows)})
    write_month_pair(root, month, frame, (rng.random(rows) < 1 / (1 + np.exp(-2 * signal))).astype(int))


def write_month_pair(root: Path, month: str, features: pd.DataFrame, labels: np.ndarray) -> None:
    """A month's production snapshot (the features) and its labeled snapshot (the features and y)."""
    for name, data in (("production", features), ("labeled", features.assign(y=labels))):
        folder = root / name / f"month={month}"
        folder.mkdir(parents=True)
        data.to_parquet(folder / "part-0.parquet")


def world_document(root: Path, **sections: dict) -> dict:
    """A config for the worlds above: y from `signal` and `noise`, data and registry under `root`."""
    return {
        "model": {"name": "m", "target": "y", "numeric_features": ["signal", "noise"]},
        "data": {"production": str(root / "production"), "labeled": str(root / "labeled")},
        "registry": {"root": str(root / "registry")},
        **sections,
    }


@pytest.mark.slow
def test_an_estimated_auc_drop_triggers_a_retrain_without_feature_drift(tmp_path: Path) -> None:
    from retrain.config import parse_config

    write_world(tmp_path, "2025-01", spread=1.0, seed=0)
    write_world(tmp_path, "2025-02", spread=0.85, seed=1)
    document = world_document(tmp_path, drift={"max_estimated_auc_drop": 0.01}, promotion={"min_auc": 0.6})
    config = parse_config(document)
    assert run_cycle(config, Run("boot", "2025-01")).outcome == "BOOTSTRAPPED"
    entry = run_cycle(config, Run("next", "2025-02"))
    assert entry.drift.drifted is False, "no feature drifted past its floor"
    performance = entry.performance
    assert performance.validated_value - performance.estimated_value > 0.01
    assert performance.estimated_value == pytest.approx(performance.realized_value, abs=0.02)
    assert entry.drift.triggers == ("estimated_performance",)
    assert entry.reason.startswith("estimated AUC 0.") and "below the champion's validated AUC" in entry.reason
    assert entry.metrics.challenger is not None, "a challenger was trained and evaluated"
    untriggered = parse_config({**document, "drift": {}})
    assert run_cycle(untriggered, Run("again", "2025-02")).outcome == "NO_DRIFT", "off by default"


def test_a_cycle_warns_once_about_a_months_unlabeled_rows(data: Path, caplog: pytest.LogCaptureFixture) -> None:

    path = data / "labeled" / "month=2025-01" / "part-0.parquet"
    labeled = pd.read_parquet(path).astype({"churned": float})
    labeled.loc[:19, "churned"] = np.nan
    labeled.to_parquet(path)
    with caplog.at_level("WARNING", logger="retrain"):
        entry = run_cycle(config_for(data), Run("boot", "2025-01"))
    assert entry.outcome == "REJECTED", "labels unrelated to the features: no model beats min_auc"
    warnings = [r.getMessage() for r in caplog.records if "without a label" in r.getMessage()]
    where = data / "labeled" / "month=2025-01"
    assert warnings == [f"month 2025-01 ({where}): dropping 20 rows without a label in churned"], "once, not per read"


def test_text_labels_train_a_model_for_the_named_positive_label(tmp_path: Path) -> None:
    from retrain.config import parse_config

    write_world(tmp_path, "2025-01", spread=1.0, seed=0)
    folder = tmp_path / "labeled" / "month=2025-01"
    labeled = pd.read_parquet(folder / "part-0.parquet")
    (folder / "part-0.parquet").unlink()
    labeled.assign(y=np.where(labeled["y"] == 1, "churned", "stayed")).to_csv(folder / "part-0.csv", index=False)
    document = world_document(tmp_path)
    document["model"]["positive_label"] = "churned"
    entry = run_cycle(parse_config(document), Run("boot", "2025-01"))
    assert entry.outcome == "BOOTSTRAPPED"
    # P(churned) = sigmoid(2 * signal): a model of the right class ranks by signal, AUC well above 0.5.
    assert entry.metrics.challenger.auc > 0.75
    metadata = Registry.for_config(parse_config(document)).metadata(1)
    assert metadata.target == "y" and metadata.positive_label == "churned"


def test_a_feature_missing_by_nature_passes_with_its_own_null_limit(data: Path) -> None:
    for dataset in ("production", "labeled"):
        path = data / dataset / "month=2025-01" / "part-0.parquet"
        frame = pd.read_parquet(path)
        frame.loc[:139, "usage_gb"] = np.nan  # 70% of 200 rows
        frame.to_parquet(path)
    with pytest.raises(DataError) as error:
        pull(config_for(data), Run("boot", "2025-01"))
    assert f"month 2025-01 ({data / 'production' / 'month=2025-01'}" in str(error.value)
    assert "column usage_gb is 70% null, above data.max_null_rate=50%" in str(error.value)
    assert not (data / "registry").exists() or not any((data / "registry").rglob("*.json"))
    config = config_for(data).with_overrides(**{"data.max_null_rate_by_feature": {"usage_gb": 0.8}})
    pulled = pull(config, Run("boot", "2025-01"))
    assert (pulled.production.rows, pulled.labeled[0].rows) == (200, 200)


def test_months_whose_code_list_gained_a_text_code_run_together_but_two_encodings_do_not(data: Path) -> None:
    def recode(month: str, codes: list) -> None:
        for dataset in ("production", "labeled"):
            path = data / dataset / f"month={month}" / "part-0.parquet"
            pd.read_parquet(path).assign(plan=codes * (200 // len(codes))).to_parquet(path)

    recode("2025-01", [1, 2])
    recode("2025-02", ["1", "2", "2", "A7"])
    assert pull(config_for(data), Run("r", "2025-02")).production.kinds["plan"] == "integer and text"
    recode("2025-02", ["basic", "premium"])
    with pytest.raises(DataError, match="column plan holds integer values in month 2025-01 .* but text values in"):
        pull(config_for(data), Run("r", "2025-02"))


def test_a_month_with_a_handful_of_positives_ends_in_a_decision_and_a_window_of_one_class_is_named(
    tmp_path: Path,
) -> None:
    from retrain.config import parse_config

    rng = np.random.default_rng(11)
    for month, positives in (("2025-01", None), ("2025-02", 1)):
        signal = rng.normal(0, 1, 600)
        labels = (rng.random(600) < 1 / (1 + np.exp(-3 * signal))).astype(int)
        if positives is not None:  # a rare-event month: all but the first few positives become negatives
            labels[np.flatnonzero(labels)[positives:]] = 0
        write_month_pair(tmp_path, month, pd.DataFrame({"signal": signal, "noise": rng.normal(0, 1, 600)}), labels)
    document = world_document(tmp_path, promotion={"min_auc": 0.6, "bootstrap_resamples": 200})
    config = parse_config(document)
    assert run_cycle(config, Run("boot", "2025-01")).outcome == "BOOTSTRAPPED"
    # 0.3 x 1 positive rounds to 0, yet the lone positive is held out (2025-01 has positives to train on):
    # an AUC exists, on far too few positives to decide anything.
    entry = run_cycle(config, Run("rare", "2025-02", force=True))
    assert entry.outcome == "KEPT_CHAMPION"
    assert "the holdout has 1 positive and " in entry.reason and "too few to judge a model on" in entry.reason
    assert entry.champion_version == 1
    # With a one-month window, the month's lone positive goes to the holdout and training has none.
    alone = parse_config({**document, "training": {"window_months": 1}})
    with pytest.raises(DataError) as error:
        run_cycle(alone, Run("lone", "2025-02", force=True))
    assert str(error.value) == (
        f"{tmp_path / 'labeled'}: labeled months 2025-02 hold a single class of y once the holdout of 2025-02 is "
        "set aside (its only row of the other class): nothing to train on; a longer training.window_months "
        "reaches months that hold both"
    )
    assert [r.month for r in Registry.for_config(config).ledger()] == ["2025-01", "2025-02"], "nothing recorded"


@pytest.mark.parametrize(
    ("limit", "estimated", "fires"),
    [(None, 0.5, False), (0.25, 0.5, False), (0.25, 0.4999999, True), (0.0, 0.75, False), (0.0, 0.7499999, True)],
)
def test_the_estimate_triggers_a_retrain_only_past_its_limit(
    data: Path, limit: float | None, estimated: float, fires: bool
) -> None:
    """drift.max_estimated_auc_drop: a drop of exactly the limit does not fire; off when unset."""
    from retrain.cycle.estimate import performance_drop

    config = config_for(data).with_overrides(**{"drift.max_estimated_auc_drop": limit})
    estimate = PerformanceEstimate(
        champion_version=1, estimated_value=estimated, validated_value=0.75, validated_month="m"
    )
    reason = performance_drop(config, estimate)
    assert (reason is not None) == fires
    if fires:
        assert reason == (
            f"estimated AUC {estimated:.4f} is {0.75 - estimated:.4f} below the champion's validated AUC 0.7500 "
            f"(drift.max_estimated_auc_drop={limit})"
        )
    assert performance_drop(config, None) is None

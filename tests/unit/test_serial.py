"""The one serialiser: every record survives the trip to JSON and back, old documents read, bad ones are named."""

from __future__ import annotations

import json

import numpy as np
import pytest

from retrain.config import DriftSpec, PromotionSpec, TrainingSpec
from retrain.drift import Distribution
from retrain.records import (
    Champion,
    Decision,
    DriftCheck,
    Evaluation,
    EvaluationMetrics,
    Kept,
    LedgerMonths,
    LedgerRecord,
    LiftInterval,
    Metrics,
    Outcome,
    PerformanceEstimate,
    Promotion,
    Pulled,
    Reference,
    ReferenceUse,
    Snapshot,
    Thresholds,
    Trained,
)
from retrain.serial import RecordError, dumps, from_jsonable, loads, project, to_jsonable

SNAPSHOT = Snapshot(
    "s3://b/p/month=2025-01", "2025-01", ("part-0.parquet",), 10, "f" * 64, {"x": 0.1}, {"plan": "text"}, {"0": 4}
)
METRICS = Metrics(auc=0.8, log_loss=0.4, brier=0.15, rows=100, positives=40)
LIFT = LiftInterval(lift=0.02, low=0.01, high=0.03, confidence=0.95, resamples=1000, share_not_positive=0.0)
ESTIMATE = PerformanceEstimate(champion_version=1, estimated_value=0.78, validated_value=0.8, validated_month="2024-12")
RECORDS = [
    Pulled(
        run_id="manual__1",
        run_key="manual__1-abc",
        month="2025-01",
        labeled_month="2025-01",
        champion=Champion(version=1, data_month="2024-12", etag="e", validated_month="2024-12", validated_auc=0.8),
        reference=Reference("validated", "production month 2024-12", ("2024-12",), (SNAPSHOT,)),
        production=SNAPSHOT,
        labeled=(SNAPSHOT, SNAPSHOT),
        validation=None,
        recorded_outcome=Outcome.NO_DRIFT,
    ),
    DriftCheck(
        drifted=True,
        share_drifted=0.5,
        drifted_features=("x",),
        effects={"x": 0.3, "y": None},
        effect_floors={"x": 0.1, "y": 0.1},
        report_uri="r",
        triggers=("drift",),
        n_features=2,
        train=True,
        gate="drift in x",
        performance=ESTIMATE,
    ),
    Trained("u", "s" * 64, "hist_gradient_boosting", 700, 300, 1000, None),
    Evaluation(
        decision=Decision(Outcome.PROMOTED, "better"),
        outcome=Outcome.SUPERSEDED,
        reason="newer champion",
        metrics=EvaluationMetrics(challenger=METRICS, champion=METRICS, lift=LIFT),
        holdout_month="2025-01",
        evaluation_uri="e",
    ),
    Promotion(Outcome.CONFLICT, 3, 2, "raced"),
    Kept(True, "2025-01", "validated"),
    LedgerRecord(
        run_id="r",
        run_key="k",
        month="2025-01",
        outcome=Outcome.KEPT_CHAMPION,
        reason="why",
        thresholds=Thresholds(DriftSpec(correction="bh"), PromotionSpec(min_lift=0.01), TrainingSpec(max_rows=500)),
        months=LedgerMonths("2025-01", "2025-01", ("2024-12", "2025-01"), "2025-01", ("2024-12",)),
        reference=ReferenceUse("validated", "s", ("2024-12",), True, "2025-01"),
    ),
]


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
def test_every_record_comes_back_equal_from_its_json(record: object) -> None:
    text = dumps(record)
    assert loads(type(record), text) == record
    assert json.loads(text) == to_jsonable(record), "what the registry stores is plain JSON"


def test_a_smaller_record_takes_exactly_its_own_fields_from_a_larger_one() -> None:
    from retrain.records import ChampionPointer, DriftSummary, SnapshotSummary

    drift = RECORDS[1]
    assert (
        drift.summary()
        == project(drift, DriftSummary)
        == DriftSummary(
            drifted=True,
            share_drifted=0.5,
            drifted_features=("x",),
            effects={"x": 0.3, "y": None},
            effect_floors={"x": 0.1, "y": 0.1},
            report_uri="r",
            triggers=("drift",),
        )
    )
    champion = Champion(version=2, data_month="2025-01", etag="e", validated_month="2025-02", run_id="r")
    assert champion.pointer() == ChampionPointer(version=2, data_month="2025-01", validated_month="2025-02", run_id="r")
    assert "etag" not in to_jsonable(champion.pointer()), "the ETag is the store's, never written into the pointer"
    assert SNAPSHOT.summary() == SnapshotSummary("s3://b/p/month=2025-01", 10, "f" * 64)


def test_derived_values_are_written_for_readers_and_recomputed_on_reading() -> None:
    assert to_jsonable(ESTIMATE)["estimated_drop"] == pytest.approx(0.02)
    assert to_jsonable(Decision(Outcome.BOOTSTRAPPED, "first"))["promotes"] is True
    assert to_jsonable(Decision(Outcome.KEPT_CHAMPION, "no"))["promotes"] is False
    document = {**to_jsonable(ESTIMATE), "estimated_drop": 99}
    assert from_jsonable(PerformanceEstimate, document).estimated_drop == pytest.approx(0.02), "never read back"


def test_in_memory_fields_stay_out_of_the_json() -> None:
    with_samples = LiftInterval(0.02, 0.01, 0.03, 0.95, 10, 0.0, samples=np.arange(10))
    assert "samples" not in to_jsonable(with_samples)
    assert from_jsonable(LiftInterval, to_jsonable(with_samples)) == LIFT.__class__(0.02, 0.01, 0.03, 0.95, 10, 0.0)


def test_a_picture_writes_only_the_keys_of_its_kind() -> None:
    """Readers before the typed records told a numeric picture by its `edges` key."""
    categorical = Distribution(reference=(0.5, 0.5), current=(0.4, 0.6), categories=("a", "b"))
    assert set(to_jsonable(categorical)) == {"reference", "current", "categories"}
    numeric = Distribution(reference=(1.0,), current=(1.0,), edges=(0.0, 1.0), scale="linear")
    assert set(to_jsonable(numeric)) == {"reference", "current", "edges", "scale"}
    assert from_jsonable(Distribution, to_jsonable(categorical)) == categorical


def test_numpy_scalars_become_json_numbers() -> None:
    document = to_jsonable(Metrics(np.float64(0.8), np.float32(0.5), 0.1, np.int64(10), np.int32(3)))
    assert json.dumps(document) and document["rows"] == 10 and isinstance(document["rows"], int)


def test_older_documents_read_with_defaults_and_newer_keys_are_ignored() -> None:
    older = {"run_id": "r", "run_key": "k", "month": "2025-01", "outcome": "NO_DRIFT", "reason": "quiet"}
    record = from_jsonable(LedgerRecord, {**older, "written_by_a_later_release": {"x": 1}})
    assert record.kind == "cycle" and record.drift is None and record.dry_run is False and record.recorded_at == ""


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"outcome": "PROMOTED"}, r"^Decision: missing field reason$"),
        ({"outcome": "PROMOTD", "reason": "x"}, r"^Decision\.outcome: 'PROMOTD' is not one of \['NO_DRIFT'"),
        ({"outcome": "PROMOTED", "reason": 3}, r"^Decision\.reason: expected str, got 3$"),
        ([], r"^Decision: expected an object, got \[\]$"),
    ],
)
def test_a_document_that_does_not_fit_its_record_is_named(document: object, message: str) -> None:
    with pytest.raises(RecordError, match=message):
        from_jsonable(Decision, document)


def test_nested_errors_name_the_path_down_to_the_field() -> None:
    document = to_jsonable(RECORDS[1])
    document["performance"]["validated_value"] = "high"
    with pytest.raises(RecordError, match=r"^DriftCheck\.performance\.validated_value: expected float, got 'high'$"):
        from_jsonable(DriftCheck, document)
    document = to_jsonable(RECORDS[0])
    document["labeled"][1]["rows"] = True
    with pytest.raises(RecordError, match=r"^Pulled\.labeled\[1\]\.rows: expected int, got True$"):
        from_jsonable(Pulled, document)


def test_integers_are_accepted_where_floats_are_expected_but_not_booleans() -> None:
    assert from_jsonable(Metrics, {"auc": 1, "log_loss": 0, "brier": 0, "rows": 2, "positives": 1}).auc == 1.0
    with pytest.raises(RecordError, match="Metrics.auc: expected float, got True"):
        from_jsonable(Metrics, {"auc": True, "log_loss": 0, "brier": 0, "rows": 2, "positives": 1})


def test_one_outcome_type_lists_every_outcome_with_its_tone() -> None:
    assert [o.value for o in Outcome.of_cycles()] == [
        "NO_DRIFT",
        "BOOTSTRAPPED",
        "PROMOTED",
        "KEPT_CHAMPION",
        "REJECTED",
        "SUPERSEDED",
        "CONFLICT",
        "REJECTED_BY_REVIEWER",
        "APPROVAL_EXPIRED",
    ]
    assert Outcome.ADOPTED.tone == "operator" and Outcome.AWAITING_APPROVAL not in Outcome.of_cycles()
    assert {o for o in Outcome if o.promotes} == {Outcome.BOOTSTRAPPED, Outcome.PROMOTED}
    assert Outcome("ROLLED_BACK").tone == "operator" and Outcome.PROMOTED.tone == Outcome.BOOTSTRAPPED.tone

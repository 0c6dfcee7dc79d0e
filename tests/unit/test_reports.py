"""Run reports and histories: every section for every outcome, self-contained, and hostile text escaped."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from retrain.config import DriftSpec, PromotionSpec, TrainingSpec
from retrain.drift import Distribution, DriftReport, detect_drift
from retrain.evaluation import lift_histogram, paired_bootstrap_lift, roc_points, score_metrics
from retrain.records import (
    DriftSummary,
    EvaluationDetails,
    EvaluationMetrics,
    Importances,
    LedgerMonths,
    LedgerRecord,
    LedgerSnapshots,
    LiftInterval,
    Outcome,
    PerformanceEstimate,
    ReferenceUse,
    SnapshotSummary,
    Thresholds,
)
from retrain.reports import FailedTask, drift_grid, render_history, render_run_report, render_run_status
from retrain.reports.charts import _compact, distribution
from retrain.snapshots import Schema

HOSTILE = '<script>alert("x")</script>'
SECTIONS = ["decision", "drift", "distributions", "evaluation", "importances", "data"]
OUTCOMES = [o for o in Outcome.of_cycles()]


def drift_report(feature: str = "spend") -> DriftReport:
    rng = np.random.default_rng(0)
    reference = pd.DataFrame({feature: rng.normal(0, 1, 3000), "plan": rng.choice(["a", "b", HOSTILE], 3000)})
    current = pd.DataFrame({feature: rng.normal(0.5, 1, 3000), "plan": rng.choice(["a", "b"], 3000)})
    schema = Schema(numeric=(feature,), categorical=("plan",))
    return detect_drift(reference, current, schema, DriftSpec())


def evaluation_details() -> tuple[EvaluationMetrics, EvaluationDetails]:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 2000)
    champion, challenger = labels * 0.4 + rng.normal(size=2000), labels * 0.6 + rng.normal(size=2000)
    lift = paired_bootstrap_lift(labels, champion, challenger, resamples=200, confidence=0.95, seed=0)
    metrics = EvaluationMetrics(
        champion=score_metrics(labels, 1 / (1 + np.exp(-champion))),
        challenger=score_metrics(labels, 1 / (1 + np.exp(-challenger))),
        lift=lift,
    )
    details = EvaluationDetails(
        roc={"champion": roc_points(labels, champion), "challenger": roc_points(labels, challenger)},
        lift_histogram=lift_histogram(lift.samples),
        importances=Importances(features=("spend", HOSTILE), means=(0.12, 0.01), stds=(0.01, 0.002)),
    )
    return metrics, details


def entry(outcome: str, metrics: EvaluationMetrics | None) -> LedgerRecord:
    return LedgerRecord(
        model="churn",
        month="2025-04",
        run_id=f"manual__{HOSTILE}",
        run_key="k",
        outcome=Outcome(outcome),
        reason=f"drift in spend; {HOSTILE}",
        champion_version_before=1,
        champion_version=1,
        recorded_at="2025-05-01T00:00:00+00:00",
        metrics=metrics,
        performance=PerformanceEstimate(
            champion_version=1,
            estimated_value=0.81,
            validated_value=0.83,
            validated_month="2025-03",
            realized_value=0.8,
            realized_month="2025-04",
        ),
        months=LedgerMonths(
            production="2025-04",
            labels_up_to="2025-04",
            training=("2025-03", "2025-04"),
            holdout="2025-04",
            reference=("2025-03",),
        ),
        reference=ReferenceUse(mode="validated", source="production month 2025-03", months=("2025-03",)),
        snapshots=LedgerSnapshots(
            reference=(SnapshotSummary(f"s3://b/{HOSTILE}", 10, "f"),), production=SnapshotSummary("p", 5, "f")
        ),
        thresholds=Thresholds(drift=DriftSpec(), promotion=PromotionSpec(), training=TrainingSpec()),
    )


def assert_self_contained_and_escaped(page: str) -> None:
    assert "<script" not in page.lower(), "no script, and hostile text is escaped"
    assert "&lt;script&gt;" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:|//)""", page), "no network resource"
    assert "@import" not in page and "url(" not in page


@pytest.mark.parametrize("outcome", OUTCOMES)
def test_every_section_for_every_outcome(outcome: str) -> None:
    evaluated = outcome != "NO_DRIFT"
    metrics, details = evaluation_details()
    page = render_run_report(
        entry(outcome, metrics if evaluated else None), drift_report(), details if evaluated else None
    )
    for section in SECTIONS:
        assert f'<section id="{section}">' in page
    decision = page.index('id="decision"')
    assert page.index(outcome, decision) < page.index('id="drift"'), "the decision and its reason come first"
    assert_self_contained_and_escaped(page)
    if evaluated:
        charts = page[page.index('id="evaluation"') :].count("data:image/svg+xml;base64,")
        assert charts >= 3, "ROC curves, the lift's distribution and the importances"
    else:
        assert "Not evaluated" in page and "No challenger was trained" in page


def test_a_first_model_shows_its_auc_interval_against_chance() -> None:
    metrics, details = evaluation_details()
    over_chance = LiftInterval(lift=0.31, low=0.29, high=0.33, confidence=0.95, resamples=200, share_not_positive=0)
    first = replace(metrics, champion=None, lift=None, over_chance=over_chance)
    page = render_run_report(entry("BOOTSTRAPPED", first), drift_report(), details)
    assert "95% interval\n[0.7900, 0.8300] over 200 resamples, is judged against chance (0.5)" in page


def test_the_drift_table_is_sorted_by_effect_and_drifted_features_are_charted_first() -> None:
    report = drift_report()
    page = render_run_report(entry("NO_DRIFT", None), report, None)
    table = page[page.index('id="drift"') : page.index('id="distributions"')]
    by_effect = sorted(report.features, key=lambda f: -f.effect)
    assert [table.index(f">{f.name}<") for f in by_effect] == sorted(table.index(f">{f.name}<") for f in by_effect)
    assert 'alt="distribution of spend"' in page and 'alt="distribution of plan"' in page
    assert "production month 2025-03" in page and "alpha = 0.05" in page


def test_thresholds_read_as_they_are_written_in_the_config() -> None:
    thresholds = Thresholds(drift=DriftSpec(correction="bh"), promotion=PromotionSpec(), training=TrainingSpec())
    page = render_run_report(replace(entry("NO_DRIFT", None), thresholds=thresholds))
    for written in (
        "alpha = 0.05",
        "correction = &#34;bh&#34;",
        "max_estimated_auc_drop unset",
        "require_significant_lift = true",
        "min_holdout_per_class = 20",
    ):
        assert f'<code class="setting">{written}</code>' in page
    assert "None" not in page and "True" not in page


def test_a_run_without_stored_evidence_still_renders() -> None:
    page = render_run_report(entry("NO_DRIFT", None))
    assert "No drift report was stored" in page and "BOOTSTRAPPED" not in page


def test_history_has_its_charts_and_links_each_month_to_its_report() -> None:
    metrics, _ = evaluation_details()
    report = drift_report()
    effects = {f.name: f.effect for f in report.features}
    records = []
    for i, (month, outcome) in enumerate(
        [("2025-01", "BOOTSTRAPPED"), ("2025-02", "NO_DRIFT"), ("2025-03", "PROMOTED")]
    ):
        drifted = ("spend",) if i == 2 else ()
        record = replace(
            entry(outcome, metrics if outcome != "NO_DRIFT" else None),
            month=month,
            recorded_at=f"2025-0{i + 2}-01",
            run_id=f"run-{i}",
            champion_version=1 + (i == 2),
            drift=DriftSummary(drifted=i == 2, share_drifted=0.5 * (i == 2), drifted_features=drifted, effects=effects),
        )
        records.append(record)
    rollback = LedgerRecord(
        kind="rollback",
        run_id="rollback__1",
        run_key="rollback",
        month=None,
        outcome=Outcome.ROLLED_BACK,
        reason=HOSTILE,
        champion_version=1,
        recorded_at="2025-05-01",
    )
    records.append(rollback)
    page = render_history(
        "churn", records, champion=1, link_for=lambda r: f"/reports/{r.run_id}" if r.is_cycle else None
    )
    for section in ("auc", "timeline", "heatmap", "ledger"):
        assert f'<section id="{section}">' in page
    assert page.count("data:image/svg+xml;base64,") == 3
    assert '<a href="/reports/run-0" target="_top">2025-01</a>' in page and "ROLLED_BACK" in page
    assert_self_contained_and_escaped(page)


def test_the_drift_heatmap_puts_ks_and_psi_on_one_scale_by_their_floors() -> None:
    drifts = [
        DriftSummary(True, 0.5, ("plan",), effects={"plan": 0.9, "age": 0.15}, effect_floors={"plan": 0.3, "age": 0.1}),
        None,  # a run that stopped before the drift test
        DriftSummary(False, 0.0, (), effects={"plan": 0.05, "age": 0.2}),  # written before floors were kept
        DriftSummary(True, 0.5, ("age",), effects={"age": 0.3}, effect_floors={"age": 0.0}),
    ]
    records = [replace(entry("NO_DRIFT", None), drift=drift) for drift in drifts]
    features, ratios, drifted = drift_grid(records)
    assert features == ["age", "plan"]
    assert ratios == [pytest.approx([1.5, None, 2.0, 3.0]), pytest.approx([3.0, None, 0.5, None])]
    assert drifted == [[False, False, False, True], [True, False, False, False]]


def test_charts_of_a_wide_model_show_its_largest_features_only() -> None:
    import base64

    from retrain.reports import charts

    names = [f"f{i:03d}" for i in range(300)]
    means = [i / 1000 for i in range(300)]

    def svg(uri: str) -> str:
        return base64.b64decode(uri.split(",", 1)[1]).decode()

    assert charts.largest_features([0.1, 0.5, 0.2, 0.5, 0.0], limit=3) == [1, 2, 3]
    assert charts.largest_features(means) == list(range(275, 300))
    importance = svg(charts.importances(names, means, [0.0] * 300))
    height_pt = float(re.search(r'<svg[^>]*height="([\d.]+)pt"', importance).group(1))
    assert height_pt < 0.35 * 26 * 72 + 72, "25 bars tall, not 300"
    effects = [[i / 300, None] for i in range(300)]
    drifted = [[i % 2 == 0, False] for i in range(300)]
    heatmap = svg(charts.drift_heatmap(names, ["2025-01", "2025-02"], effects, drifted))
    assert float(re.search(r'<svg[^>]*height="([\d.]+)pt"', heatmap).group(1)) < 0.35 * 26 * 72 + 120


def test_a_heavy_tailed_feature_is_charted_on_a_log_axis_with_round_ticks() -> None:
    edges = tuple(np.expm1(np.linspace(np.log1p(5), np.log1p(40_000), 31)).tolist())
    picture = Distribution(reference=(1 / 30,) * 30, current=(1 / 30,) * 30, edges=edges, scale="log1p")
    feature = replace(drift_report().features[0], name="votes", distribution=picture)
    assert distribution(feature).startswith("data:image/svg+xml;base64,")
    assert [_compact(t) for t in (0, 10, 1_000, 25_000, 3e6, 1e9)] == ["0", "10", "1k", "25k", "3M", "1G"]


def test_a_run_without_a_decision_says_where_it_is() -> None:
    failed = render_run_status(
        "churn",
        "scheduled__2025-04",
        "failed",
        month="2025-04",
        failed=[FailedTask("pull_snapshots", 1, f"missing column {HOSTILE}", "/dags/d/runs/r/tasks/pull_snapshots")],
    )
    assert "FAILED" in failed and "failed on month 2025-04 before it recorded a decision" in failed
    assert '<tr><td>pull_snapshots</td><td class="num">1</td><td>missing column &lt;script&gt;' in failed
    assert '<a href="/dags/d/runs/r/tasks/pull_snapshots" target="_top">open its log</a>' in failed
    assert "yet" not in failed
    running = render_run_status(
        "churn", "manual__1", "running", month="2025-04", tasks=[("wait_for_data", "success"), ("pull_snapshots", None)]
    )
    assert "RUNNING" in running and "has not recorded a decision yet for month 2025-04" in running
    assert "<tr><td>pull_snapshots</td><td>not started</td></tr>" in running
    waiting = render_run_status("churn", "manual__1", "running", waiting_for_review=True)
    assert "waits for a reviewer" in waiting
    unknown = render_run_status("churn", HOSTILE, None)
    assert "NOT FOUND" in unknown and HOSTILE not in unknown

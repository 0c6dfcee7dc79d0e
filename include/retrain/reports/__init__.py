"""Human-readable reports: one self-contained HTML page per run, and a model's history.

Pages come from Jinja2 templates with autoescape on; charts from `retrain.reports.charts` (matplotlib,
embedded as SVG data URIs). A run report needs only what the run stored in the registry (its ledger record,
drift.json and evaluation.json), so it renders the same from the CLI, the DAG and the Airflow plugin.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from retrain.records import EvaluationDetails, EvaluationMetrics, Metrics, Outcome
from retrain.reports import charts
from retrain.serial import to_jsonable
from retrain.tasks import metric_label

if TYPE_CHECKING:
    from retrain.drift import DriftReport, FeatureDrift
    from retrain.overview import ModelStatus
    from retrain.records import EvaluationDetails, LedgerRecord, Snapshot, SnapshotSummary

# Airflow frames a plugin's page in a sandbox without allow-top-navigation, so a link marked target=_top
# cannot move the UI by itself. The UI is a single-page app on the same origin that follows its history:
# a pushed entry and a popstate event take it to the link's page, with the address bar to match.
TOP_NAVIGATION = (
    'document.addEventListener("click", function (event) {'
    ' var link = event.target.closest && event.target.closest("a[target=_top]");'
    " if (!link || window.top === window || event.button !== 0 || event.ctrlKey || event.metaKey) return;"
    " try {"
    ' window.top.history.pushState(null, "", link.href);'
    ' window.top.dispatchEvent(new PopStateEvent("popstate", {state: null}));'
    " event.preventDefault();"
    " } catch (error) {}"
    " });"
)


def top_navigation_hash() -> str:
    """The script's Content-Security-Policy source: it alone may run on the pages that carry it."""
    import base64
    import hashlib

    return "'sha256-" + base64.b64encode(hashlib.sha256(TOP_NAVIGATION.encode()).digest()).decode() + "'"


MAX_DISTRIBUTIONS = 6  # every drifted feature, then the largest effects, up to this many charts


@functools.cache
def _environment() -> Any:
    """One environment per process: it keeps its compiled templates (compiling the run page costs 25 ms,
    a sixth of a quiet month's cycle)."""
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    environment = Environment(
        loader=PackageLoader("retrain", "reports/templates"),
        autoescape=select_autoescape(["html", "j2"], default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.globals.update(number=_number, pvalue=_pvalue, setting=_setting, top_navigation=None)
    return environment


def _number(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _setting(key: str, value: Any) -> str:
    """A threshold as it is written in the TOML config (true, "bonferroni", [..]); an unset one says so."""
    if value is None:
        return f"{key} unset"
    return f"{key} = {value if isinstance(value, int | float) and not isinstance(value, bool) else json.dumps(value)}"


def _pvalue(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _effect(feature: FeatureDrift) -> float:
    return -1.0 if feature.effect is None else feature.effect


@dataclass(frozen=True)
class SnapshotRow:
    role: str
    uri: str
    rows: int


def _snapshot_rows(entry: LedgerRecord) -> list[SnapshotRow]:
    snapshots = entry.snapshots
    if snapshots is None:
        return []
    roles: list[tuple[str, Iterable[Snapshot | SnapshotSummary]]] = [
        ("reference", snapshots.reference),
        ("production", [snapshots.production] if snapshots.production else []),
        ("labeled", snapshots.labeled),
    ]
    return [SnapshotRow(role, s.uri, s.rows) for role, group in roles for s in group]


def render_run_report(
    entry: LedgerRecord,
    drift_report: DriftReport | None = None,
    details: EvaluationDetails | None = None,
    *,
    undrifted_charts: bool = True,
) -> str:
    """The run's page: decision and reason first, then the evidence, then the data and thresholds.

    Distributions are charted for every drifted feature, then (with `undrifted_charts`) the largest effects
    among the others. The report a cycle stores leaves those out: a chart costs about 60 ms, more than a
    quiet 10k-row month's whole drift test, and nobody looks at them in a month where nothing moved; the
    report view draws them from the stored drift results when the page is opened.
    """
    features = sorted(drift_report.features if drift_report else [], key=_effect, reverse=True)
    charted = [f for f in features if f.drifted] + ([f for f in features if not f.drifted] if undrifted_charts else [])
    distribution_charts = [
        (f.name, chart) for f in charted[:MAX_DISTRIBUTIONS] if (chart := charts.distribution(f)) is not None
    ]
    metrics = entry.metrics
    lift = metrics.lift if metrics else None
    thresholds = to_jsonable(entry.thresholds) if entry.thresholds else {}
    importances = details.importances if details else None
    drifted = [f.name for f in features if f.drifted]
    verdict = (
        f"Drift in {len(drifted)} of {len(features)} features: {', '.join(drifted)}."
        if drifted
        else f"No drift in any of the {len(features)} features."
    )
    return (
        _environment()
        .get_template("run.html.j2")
        .render(
            entry=entry,
            tone=entry.outcome.tone,
            performance=entry.performance,
            features=features,
            drift_verdict=verdict,
            distribution_charts=distribution_charts,
            undrifted_charts=undrifted_charts,
            metrics=metrics or EvaluationMetrics(),
            metric_rows=_metric_rows(metrics),
            metric_label=_metric_label(metrics),
            roc_chart=charts.roc_curves(details.roc if details else {}),
            task_charts=_task_charts(details),
            lift_chart=(
                charts.lift_distribution(
                    details.lift_histogram, lift, entry.thresholds.promotion.min_lift, _metric_label(metrics)
                )
                if details and details.lift_histogram and lift and entry.thresholds
                else None
            ),
            importance_chart=(
                charts.importances(importances.features, importances.means, importances.stds) if importances else None
            ),
            months=entry.months,
            reference=entry.reference,
            snapshots=_snapshot_rows(entry),
            thresholds=thresholds,
        )
    )


@dataclass(frozen=True)
class HistoryRow:
    month: str
    link: str | None
    outcome: str
    champion: int | None
    version: int | None
    drifted: str
    estimated: str
    aucs: str
    reason: str
    recorded_at: str


def render_history(
    model: str,
    records: list[LedgerRecord],
    *,
    champion: int | None = None,
    link_for: Callable[[LedgerRecord], str | None] = lambda record: None,
    top_navigation: bool = False,
) -> str:
    """A model's history from its ledger: AUC per month, outcomes and champion versions over time, drift
    effect per feature and month, and the ledger itself with each month linking to its run report."""
    latest: dict[str, LedgerRecord] = {}
    for record in sorted((r for r in records if r.is_cycle), key=lambda r: r.recorded_at):
        latest[record.month or ""] = record  # the latest run of a month speaks for it in the charts
    months = sorted(latest)
    by_month = [latest[m] for m in months]
    metric = next((m.metric for r in reversed(by_month) for m in _scored(r)), "roc_auc")
    # The estimate is the promotion metric's, except a classifier judged on another metric than its AUC.
    estimates = [
        r.performance if r.performance and _estimate_fits(r.performance.metric, metric) else None for r in by_month
    ]
    realized = {p.realized_month: p.realized_value for p in estimates if p}
    series = {
        "champion (holdout)": [_auc(r, "champion") for r in by_month],
        "champion (estimated)": [p.estimated_value if p else None for p in estimates],
        "champion (realized)": [realized.get(m) for m in months],
        "challenger (holdout)": [_auc(r, "challenger") for r in by_month],
    }
    features, ratios, drifted = drift_grid(by_month)
    rows = []
    for record in sorted(records, key=lambda r: r.recorded_at):
        champion_auc, challenger_auc = _auc(record, "champion"), _auc(record, "challenger")
        drift = record.drift
        rows.append(
            HistoryRow(
                month=record.month or "operator",
                link=link_for(record),
                outcome=str(record.outcome),
                champion=record.champion_version,
                version=record.version,
                drifted=", ".join(drift.drifted_features) or "no" if drift else "-",
                estimated=_number(record.performance.estimated_value if record.performance else None),
                aucs=f"{_number(champion_auc)} / {_number(challenger_auc)}" if record.metrics else "-",
                reason=record.reason,
                recorded_at=record.recorded_at,
            )
        )
    return (
        _environment()
        .get_template("history.html.j2")
        .render(
            model=model,
            records=records,
            champion=champion,
            generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            auc_chart=charts.auc_history(months, series, ylabel=metric_label(metric)),
            metric_label=metric_label(metric),
            timeline_chart=charts.outcome_timeline(
                months, [r.outcome for r in by_month], [r.champion_version for r in by_month]
            ),
            heatmap_chart=charts.drift_heatmap(features, months, ratios, drifted),
            rows=rows,
            top_navigation=TOP_NAVIGATION if top_navigation else None,
        )
    )


@dataclass(frozen=True)
class FailedTask:
    task: str
    try_number: int | None
    error: str | None
    log_link: str


def render_run_status(
    model: str,
    run_id: str,
    state: str | None,
    *,
    month: str | None = None,
    failed: list[FailedTask] | None = None,
    tasks: list[tuple[str, str | None]] | None = None,
    waiting_for_review: bool = False,
) -> str:
    """The page of a run that has no decision: still running (each task's state), failed (which task, its
    error, a link to its log), or unknown (state None)."""
    return (
        _environment()
        .get_template("run_status.html.j2")
        .render(
            model=model,
            run_id=run_id,
            state=state,
            month=month,
            failed=failed or [],
            tasks=tasks or [],
            waiting_for_review=waiting_for_review,
            top_navigation=TOP_NAVIGATION,
        )
    )


def render_fleet(
    statuses: list[ModelStatus],
    *,
    history_link: Callable[[ModelStatus], str],
    report_link: Callable[[ModelStatus], str | None],
    failure_link: Callable[[ModelStatus], str | None],
) -> str:
    """One row per model, in the order given (see `retrain.overview.ordered`)."""
    rows = [
        {
            **{name: getattr(s, name) for name in s.__dataclass_fields__},
            "champion_age_months": s.champion_age_months,
            "tone": Outcome(s.last_outcome).tone if s.last_outcome in Outcome.__members__ else "quiet",
            "history_link": history_link(s),
            "report_link": report_link(s) if s.last_run_id else None,
            "failure_link": failure_link(s) if s.failure else None,
        }
        for s in statuses
    ]
    return (
        _environment()
        .get_template("fleet.html.j2")
        .render(
            rows=rows,
            attention=sum(1 for s in statuses if s.attention),
            generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            top_navigation=TOP_NAVIGATION,
        )
    )


FLOOR_OF_OLDER_RECORDS = 0.1  # records written before floors were kept: both tests' default floor


def drift_grid(records: list[LedgerRecord]) -> tuple[list[str], list[list[float | None]], list[list[bool]]]:
    """Features (sorted), and per feature and record: the drift effect over the floor it had to reach (a
    zero or unrecorded floor counts as the default one), and whether the feature drifted."""
    drifts = [r.drift for r in records]
    features = sorted({name for drift in drifts if drift for name in drift.effects})
    ratios: list[list[float | None]] = []
    for feature in features:
        row = []
        for drift in drifts:
            effect = drift.effects.get(feature) if drift else None
            floor = (drift.effect_floors.get(feature) if drift else None) or FLOOR_OF_OLDER_RECORDS
            row.append(None if effect is None else effect / floor)
        ratios.append(row)
    drifted = [[bool(drift) and f in drift.drifted_features for drift in drifts] for f in features]
    return features, ratios, drifted


def _auc(record: LedgerRecord, model: str) -> float | None:
    """The promotion metric's value of one model in a record (its AUC in records older than metrics)."""
    metrics = getattr(record.metrics, model, None) if record.metrics else None
    return metrics.score if metrics else None


def _scored(record: LedgerRecord) -> list[Metrics]:
    metrics = record.metrics
    return [m for m in (metrics.challenger, metrics.champion) if m is not None] if metrics else []


def _estimate_fits(estimated: str, metric: str) -> bool:
    return estimated == metric or (estimated.startswith("roc_auc") and metric.startswith("roc_auc"))


def _metric_label(metrics: EvaluationMetrics | None) -> str:
    scored = metrics.challenger if metrics else None
    return scored.label if scored else "ROC AUC"


def _metric_rows(metrics: EvaluationMetrics | None) -> list[tuple[str, str]]:
    """The table of a run's metrics: the promotion metric first, then the others its task has."""
    scored = metrics.challenger if metrics else None
    if scored is None:
        return []
    if scored.rmse is not None or scored.mae is not None:
        rows = [("RMSE", "rmse"), ("MAE", "mae"), ("rows", "rows")]
    else:
        positives = (
            "positives" if scored.metric in ("roc_auc",) or scored.average_precision is None else "rarest class rows"
        )
        rows = [
            ("ROC AUC", "auc"),
            ("average precision", "average_precision"),
            ("log loss", "log_loss"),
            ("Brier score", "brier"),
            ("rows", "rows"),
            (positives, "positives"),
        ]
    label = scored.label
    first = [(f"{label} (promotion metric)", "score")]
    return first + [row for row in rows if row[0] != label]


def _task_charts(details: EvaluationDetails | None) -> list[tuple[str, str]]:
    """A multiclass model's confusion matrices, a regressor's predicted against actual and residuals."""
    if details is None:
        return []
    drawn = [(f"confusion matrix of the {name}", charts.confusion(name, m)) for name, m in details.confusion.items()]
    if details.residuals:
        drawn.append(("predicted against actual", charts.predicted_against_actual(details.residuals)))
        drawn.append(("residuals", charts.residual_distribution(details.residuals)))
    return [(name, chart) for name, chart in drawn if chart]

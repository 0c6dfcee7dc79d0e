"""Human-readable reports: one self-contained HTML page per run, and a model's history.

Pages come from Jinja2 templates with autoescape on; charts from `retrain.reports.charts` (matplotlib,
embedded as SVG data URIs). A run report needs only what the run stored in the registry (its ledger record,
drift.json and evaluation.json), so it renders the same from the CLI, the DAG and the Airflow plugin.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from retrain.reports import charts

MAX_DISTRIBUTIONS = 6  # every drifted feature, then the largest effects, up to this many charts
OUTCOME_CLASSES = {
    "BOOTSTRAPPED": "good",
    "PROMOTED": "good",
    "KEPT_CHAMPION": "kept",
    "NO_DRIFT": "none",
    "REJECTED": "bad",
}


def _environment() -> Any:
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    environment = Environment(
        loader=PackageLoader("retrain", "reports/templates"),
        autoescape=select_autoescape(["html", "j2"], default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.globals.update(number=_number, pvalue=_pvalue, setting=_setting)
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


def _effect(feature: dict[str, Any]) -> float:
    return -1.0 if feature.get("effect") is None else feature["effect"]


def render_run_report(
    entry: dict[str, Any], drift_report: dict[str, Any] | None = None, evaluation: dict[str, Any] | None = None
) -> str:
    """The run's page: decision and reason first, then the evidence, then the data and thresholds."""
    features = sorted((drift_report or {}).get("features", []), key=_effect, reverse=True)
    charted = [f for f in features if f["drifted"]] + [f for f in features if not f["drifted"]]
    distribution_charts = [
        (f["name"], chart) for f in charted[:MAX_DISTRIBUTIONS] if (chart := charts.distribution(f)) is not None
    ]
    details = (evaluation or {}).get("details") or {}
    metrics = entry.get("metrics") or {}
    thresholds = entry.get("thresholds") or {}
    snapshots = entry.get("snapshots") or {}
    rows = [{"role": "reference", **s} for s in snapshots.get("reference", [])]
    if snapshots.get("production"):
        rows.append({"role": "production", **snapshots["production"]})
    rows += [{"role": "labeled", **s} for s in snapshots.get("labeled", [])]
    importances = details.get("importances") or {}
    drifted = [f["name"] for f in features if f["drifted"]]
    verdict = (
        f"Drift in {len(drifted)} of {len(features)} features: {', '.join(drifted)}."
        if drifted
        else f"No drift in any of the {len(features)} features."
    )
    return (
        _environment()
        .get_template("run.html.j2")
        .render(
            entry={**entry, "model": entry.get("model", "")},
            outcome_class=OUTCOME_CLASSES.get(entry["outcome"], "other"),
            performance=entry.get("performance"),
            features=features,
            drift_verdict=verdict,
            distribution_charts=distribution_charts,
            metrics={
                "champion": metrics.get("champion"),
                "challenger": metrics.get("challenger"),
                "lift": metrics.get("lift"),
                "over_chance": metrics.get("over_chance"),
            },
            roc_chart=charts.roc_curves(details.get("roc") or {}),
            lift_chart=(
                charts.lift_distribution(
                    details["lift_histogram"], metrics["lift"], thresholds.get("promotion", {}).get("min_lift", 0.0)
                )
                if details.get("lift_histogram") and metrics.get("lift")
                else None
            ),
            importance_chart=charts.importances(
                importances.get("features", []), importances.get("means", []), importances.get("stds", [])
            ),
            months=entry.get("months"),
            reference=entry.get("reference") or {},
            snapshots=rows,
            thresholds=thresholds,
        )
    )


def render_history(
    model: str,
    records: list[dict[str, Any]],
    *,
    champion: int | None = None,
    link_for: Callable[[dict[str, Any]], str | None] = lambda record: None,
) -> str:
    """A model's history from its ledger: AUC per month, outcomes and champion versions over time, drift
    effect per feature and month, and the ledger itself with each month linking to its run report."""
    cycles = [r for r in records if r.get("kind", "cycle") == "cycle" and r.get("month")]
    latest: dict[str, dict[str, Any]] = {}
    for record in sorted(cycles, key=lambda r: r.get("recorded_at", "")):
        latest[record["month"]] = record  # the latest run of a month speaks for it in the charts
    months = sorted(latest)
    by_month = [latest[m] for m in months]
    realized = {
        (r.get("performance") or {}).get("realized_month"): (r.get("performance") or {}).get("realized_auc")
        for r in by_month
    }
    series = {
        "champion (holdout)": [_auc(r, "champion") for r in by_month],
        "champion (estimated)": [(r.get("performance") or {}).get("estimated_auc") for r in by_month],
        "champion (realized)": [realized.get(m) for m in months],
        "challenger (holdout)": [_auc(r, "challenger") for r in by_month],
    }
    features, ratios, drifted = drift_grid(by_month)
    rows = []
    for record in sorted(records, key=lambda r: r.get("recorded_at", "")):
        metrics = record.get("metrics") or {}
        champion_auc, challenger_auc = _auc(record, "champion"), _auc(record, "challenger")
        drift = record.get("drift") or {}
        rows.append(
            {
                "month": record.get("month") or "operator",
                "link": link_for(record),
                "outcome": record["outcome"],
                "champion": record.get("champion_version"),
                "version": record.get("version"),
                "drifted": ", ".join(drift.get("drifted_features") or []) or ("no" if drift else "-"),
                "estimated": _number((record.get("performance") or {}).get("estimated_auc")),
                "aucs": f"{_number(champion_auc)} / {_number(challenger_auc)}" if metrics else "-",
                "reason": record.get("reason", ""),
                "recorded_at": record.get("recorded_at", ""),
            }
        )
    return (
        _environment()
        .get_template("history.html.j2")
        .render(
            model=model,
            records=records,
            champion=champion,
            generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            auc_chart=charts.auc_history(months, series),
            timeline_chart=charts.outcome_timeline(
                months, [r["outcome"] for r in by_month], [r.get("champion_version") for r in by_month]
            ),
            heatmap_chart=charts.drift_heatmap(features, months, ratios, drifted),
            rows=rows,
        )
    )


FLOOR_OF_OLDER_RECORDS = 0.1  # records written before floors were kept: both tests' default floor


def drift_grid(records: list[dict[str, Any]]) -> tuple[list[str], list[list[float | None]], list[list[bool]]]:
    """Features (sorted), and per feature and record: the drift effect over the floor it had to reach (a
    zero or unrecorded floor counts as the default one), and whether the feature drifted."""
    drifts = [r.get("drift") or {} for r in records]
    features = sorted({name for drift in drifts for name in drift.get("effects") or {}})
    ratios: list[list[float | None]] = []
    for feature in features:
        row = []
        for drift in drifts:
            effect = (drift.get("effects") or {}).get(feature)
            floor = (drift.get("effect_floors") or {}).get(feature) or FLOOR_OF_OLDER_RECORDS
            row.append(None if effect is None else effect / floor)
        ratios.append(row)
    drifted = [[f in (drift.get("drifted_features") or []) for drift in drifts] for f in features]
    return features, ratios, drifted


def _auc(record: dict[str, Any], model: str) -> float | None:
    metrics = (record.get("metrics") or {}).get(model)
    return metrics["auc"] if metrics else None

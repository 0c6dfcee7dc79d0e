"""Human-readable reports: one self-contained HTML page per run, written next to its drift and evaluation."""

from __future__ import annotations

from html import escape
from typing import Any


def _number(value: Any, digits: int = 4) -> str:
    if value is None:
        return "&ndash;"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return escape(str(value))


def _rows(pairs: list[tuple[str, Any]]) -> str:
    return "".join(f"<tr><th>{escape(k)}</th><td>{v}</td></tr>" for k, v in pairs)


def render_run_report(entry: dict[str, Any]) -> str:
    """A page an operator can open from the ledger: decision, reason, metrics, drift and data used."""
    metrics = entry.get("metrics") or {}
    challenger, champion, lift = metrics.get("challenger") or {}, metrics.get("champion") or {}, metrics.get("lift")
    drift = entry.get("drift") or {}
    metric_rows = "".join(
        f"<tr><th>{name}</th><td>{_number(champion.get(key))}</td><td>{_number(challenger.get(key))}</td></tr>"
        for name, key in (("ROC AUC", "auc"), ("log loss", "log_loss"), ("Brier score", "brier"), ("rows", "rows"))
    )
    lift_text = (
        f"{lift['lift']:+.4f} ({lift['confidence']:.0%} interval [{lift['low']:+.4f}, {lift['high']:+.4f}], "
        f"{lift['resamples']} paired resamples)"
        if lift
        else "&ndash;"
    )
    snapshots = entry.get("snapshots") or {}
    reference = entry.get("reference") or {}
    data_rows = [("reference", escape(str(reference.get("source", ""))))]
    if snapshots.get("production"):
        production = snapshots["production"]
        data_rows.append(("production", f"{escape(production['uri'])} ({production['rows']} rows)"))
    data_rows += [("labeled", f"{escape(s['uri'])} ({s['rows']} rows)") for s in snapshots.get("labeled", [])]
    drifted = ", ".join(drift.get("drifted_features") or []) or "none"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{escape(str(entry.get("model", "")))} {escape(str(entry["month"]))}: {escape(entry["outcome"])}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; max-width: 60rem; }}
table {{ border-collapse: collapse; margin-bottom: 1.5rem; }}
th, td {{ border: 1px solid #ccc; padding: .3rem .6rem; text-align: left; }}
.outcome {{ font-size: 1.4rem; font-weight: bold; }}
</style></head><body>
<h1>{escape(str(entry.get("model", "")))} &middot; {escape(str(entry["month"]))}</h1>
<p class="outcome">{escape(entry["outcome"])}{" (dry run)" if entry.get("dry_run") else ""}</p>
<p>{escape(entry["reason"])}</p>
<table>{
        _rows(
            [
                ("run id", escape(entry["run_id"])),
                ("champion before", _number(entry.get("champion_version_before"))),
                ("champion after", _number(entry.get("champion_version"))),
                ("new version", _number(entry.get("version"))),
                ("recorded at", escape(str(entry.get("recorded_at", "")))),
            ]
        )
    }</table>
<h2>Drift</h2>
<table>{
        _rows(
            [
                ("dataset drift", "yes" if drift.get("drifted") else "no"),
                ("drifted features", escape(drifted)),
                ("share drifted", _number(drift.get("share_drifted"), 2)),
                ("full report", escape(str(drift.get("report_uri", "")))),
            ]
        )
    }</table>
<h2>Champion vs challenger (same holdout)</h2>
<table><tr><th></th><th>champion</th><th>challenger</th></tr>{metric_rows}</table>
<p>AUC lift: {lift_text}</p>
<h2>Data</h2>
<table>{_rows(data_rows)}</table>
</body></html>
"""

"""Charts for the reports: matplotlib figures rendered to SVG and embedded as data URIs.

A data URI keeps a report one self-contained file with no network resource, and keeps the SVG out of the
page's own markup (text inside it is drawn as paths, so no label can become markup either). The figure API
is used directly (no pyplot), so rendering needs no display and no global state.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from retrain.drift import FeatureDrift
    from retrain.records import ConfusionMatrix, Histogram, LiftInterval, Outcome, Residuals, RocCurve

CHAMPION, CHALLENGER, REFERENCE, CURRENT = "#4c72b0", "#dd8452", "#8c8c8c", "#c44e52"
MODEL_COLOURS = {"champion": CHAMPION, "challenger": CHALLENGER}
MAX_CLASS_CURVES = 12  # one ROC curve per class reads up to about a dozen classes
TONE_COLOURS = {
    "promoted": "#55a868",
    "kept": "#4c72b0",
    "quiet": "#b0b0b0",
    "rejected": "#c44e52",
    "superseded": "#8172b3",
    "conflict": "#937860",
    "operator": "#da8bc3",
    "pending": "#ccb974",
}


MARGINS = {"left": 0.14, "right": 0.97, "top": 0.88, "bottom": 0.2}


def _figure(width: float = 6.0, height: float = 3.0, **margins: float) -> Any:
    """A figure with fixed margins: a layout engine would double the time each chart takes."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    figure.subplots_adjust(**{**MARGINS, **margins})
    return figure


def _data_uri(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode()


def distribution(feature: FeatureDrift) -> str | None:
    """Reference against current: a step histogram of shares for a numeric feature, paired bars for a
    categorical one. None when the drift report holds no distribution for it."""
    shown = feature.distribution
    if not shown:
        return None
    numeric = shown.edges is not None
    # Category names are long ("Professional_and_Related Service"): on a vertical axis they read whole.
    figure = _figure(4.2, 2.6, left=0.17) if numeric else _figure(4.2, 2.6, left=0.4, bottom=0.17)
    axes = figure.add_subplot()
    if numeric:
        edges = shown.edges
        for counts, colour, label in (
            (shown.reference, REFERENCE, "reference"),
            (shown.current, CURRENT, "current"),
        ):
            axes.stairs(counts, edges, color=colour, label=label, linewidth=1.6)
        if shown.scale == "log1p":
            axes.set_xscale("function", functions=(np.log1p, np.expm1))
            ticks = [t for t in (0, *(10.0**k for k in range(19))) if edges[0] <= t <= edges[-1]]
            axes.set_xticks(ticks, [_compact(t) for t in ticks])
            axes.set_xlabel("log scale", fontsize=7)
        axes.set_ylabel("share of rows")
        axes.legend(fontsize=7, frameon=False, loc="upper right")
    else:
        labels = shown.categories or ()
        positions = range(len(labels))
        height = 0.4
        axes.barh([p - height / 2 for p in positions], shown.reference, height, color=REFERENCE, label="reference")
        axes.barh([p + height / 2 for p in positions], shown.current, height, color=CURRENT, label="current")
        axes.set_yticks(list(positions), [_short(label) for label in labels], fontsize=7)
        axes.invert_yaxis()  # the most common category on top
        axes.set_xlabel("share of rows", fontsize=8)
        # Bars can fill every corner of the axes; above the category names there is always room.
        figure.legend(fontsize=7, frameon=False, loc="upper left", borderaxespad=0.2)
    axes.set_title(_short(feature.name, 40), fontsize=10)
    return _data_uri(figure)


def roc_curves(curves: dict[str, RocCurve]) -> str | None:
    """ROC curves of champion and challenger on the same holdout, or of each class against the rest."""
    if not curves:
        return None
    figure = _figure(4.0, 3.6, left=0.16, bottom=0.14, top=0.95)
    axes = figure.add_subplot()
    for name, curve in list(curves.items())[:MAX_CLASS_CURVES]:
        axes.plot(curve.fpr, curve.tpr, color=MODEL_COLOURS.get(name), label=f"{_short(name)} (AUC {curve.auc:.4f})")
    axes.plot([0, 1], [0, 1], color="#cccccc", linestyle=":", linewidth=1)
    axes.set_xlabel("false positive rate")
    axes.set_ylabel("true positive rate")
    axes.legend(fontsize=8, frameon=False, loc="lower right")
    return _data_uri(figure)


def lift_distribution(
    histogram: Histogram | None, lift: LiftInterval, min_lift: float, metric: str = "ROC AUC"
) -> str | None:
    """The paired bootstrap's lifts in the promotion metric, with the interval and promotion.min_lift marked."""
    if not histogram:
        return None
    figure = _figure(5.0, 2.8, bottom=0.18, top=0.95)
    axes = figure.add_subplot()
    axes.stairs(histogram.counts, histogram.edges, fill=True, color="#c6d4e8")
    axes.axvspan(lift.low, lift.high, color=CHALLENGER, alpha=0.15, label=f"{lift.confidence:.0%} interval")
    axes.axvline(lift.lift, color=CHALLENGER, label=f"observed lift {lift.lift:+.4f}")
    axes.axvline(min_lift, color="#222222", linestyle="--", label=f"min_lift {min_lift:g}")
    axes.axvline(0.0, color="#999999", linewidth=0.8)
    axes.set_xlabel(f"challenger's improvement in {metric}")
    axes.set_ylabel("resamples")
    axes.legend(fontsize=7, frameon=False, loc="upper left")
    return _data_uri(figure)


def confusion(name: str, matrix: ConfusionMatrix) -> str | None:
    """A multiclass model's holdout rows by true and predicted class, each row shaded by its share."""

    counts = np.asarray(matrix.counts, dtype=float)
    if not counts.size:
        return None
    k = len(matrix.classes)
    size = min(2.5 + 0.35 * k, 7.0)
    figure = _figure(size, size, left=0.22, bottom=0.2, top=0.9)
    axes = figure.add_subplot()
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    if k <= 12:
        for i in range(k):
            for j in range(k):
                colour = "white" if shares[i, j] > 0.6 else "#222222"
                axes.text(j, i, _compact(counts[i, j]), ha="center", va="center", fontsize=7, color=colour)
    labels = [_short(c, 12) for c in matrix.classes]
    axes.set_xticks(range(k), labels, rotation=45, ha="right", fontsize=7)
    axes.set_yticks(range(k), labels, fontsize=7)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title(f"{name}: rows by true and predicted class", fontsize=9)
    return _data_uri(figure)


def predicted_against_actual(residuals: dict[str, Residuals]) -> str | None:
    """A regressor's predictions against the truth on a sample of the holdout, the diagonal marked."""
    if not residuals:
        return None
    figure = _figure(4.0, 3.6, left=0.18, bottom=0.14, top=0.95)
    axes = figure.add_subplot()
    values = []
    for name, points in residuals.items():
        axes.scatter(points.actual, points.predicted, s=6, alpha=0.5, color=MODEL_COLOURS.get(name), label=name)
        values.extend(points.actual)
        values.extend(points.predicted)
    if values:
        low, high = min(values), max(values)
        axes.plot([low, high], [low, high], color="#999999", linestyle=":", linewidth=1)
    axes.set_xlabel("actual")
    axes.set_ylabel("predicted")
    axes.legend(fontsize=8, frameon=False, loc="upper left")
    return _data_uri(figure)


def residual_distribution(residuals: dict[str, Residuals]) -> str | None:
    """Every holdout row's residual (predicted minus actual), per model."""
    if not residuals:
        return None
    figure = _figure(5.0, 2.8, bottom=0.18, top=0.95)
    axes = figure.add_subplot()
    for name, points in residuals.items():
        histogram = points.histogram
        axes.stairs(histogram.counts, histogram.edges, color=MODEL_COLOURS.get(name), label=name)
    axes.axvline(0.0, color="#999999", linewidth=0.8)
    axes.set_xlabel("predicted - actual")
    axes.set_ylabel("rows")
    axes.legend(fontsize=8, frameon=False, loc="upper left")
    return _data_uri(figure)


# A model of hundreds of features would give charts metres tall: they show the features that matter most.
MAX_CHART_FEATURES = 25


def largest_features(scores: Sequence[float], limit: int = MAX_CHART_FEATURES) -> list[int]:
    """Positions of the `limit` largest scores (the first on ties), in their original order."""
    ranked = sorted(range(len(scores)), key=lambda i: -scores[i])
    return sorted(ranked[:limit])


def importances(names: Sequence[str], means: Sequence[float], stds: Sequence[float]) -> str | None:
    """Permutation importances, largest first: the AUC lost when a feature is shuffled."""
    if not names:
        return None
    # barh draws upwards: the largest ends on top.
    order = sorted(largest_features(means), key=lambda i: means[i])
    height = 0.35 * len(order) + 0.9
    figure = _figure(5.0, height, left=0.32, bottom=0.55 / height, top=1 - 0.15 / height)
    axes = figure.add_subplot()
    axes.barh(
        [_short(names[i]) for i in order], [means[i] for i in order], xerr=[stds[i] for i in order], color=CHALLENGER
    )
    shown = f" ({len(order)} largest of {len(names)})" if len(order) < len(names) else ""
    axes.set_xlabel(f"AUC lost when the feature is shuffled{shown}")
    axes.tick_params(axis="y", labelsize=8)
    return _data_uri(figure)


def auc_history(months: list[str], series: dict[str, list[float | None]], *, ylabel: str = "ROC AUC") -> str | None:
    """The promotion metric per month: the champion as evaluated, estimated and realized, and each challenger."""
    if not months:
        return None
    figure = _figure(7.5, 3.2, left=0.1, bottom=0.25, top=_top_below_legend(3.2, len(series)))
    axes = figure.add_subplot()
    styles = {
        "champion (holdout)": {"color": CHAMPION, "marker": "o"},
        "champion (estimated)": {"color": CHAMPION, "linestyle": "--", "marker": "."},
        "champion (realized)": {"color": CHAMPION, "linestyle": ":", "marker": "x"},
        "challenger (holdout)": {"color": CHALLENGER, "linestyle": "none", "marker": "s"},
    }
    positions = list(range(len(months)))
    for name, values in series.items():
        points = [(p, v) for p, v in zip(positions, values, strict=True) if v is not None]
        if points:
            axes.plot([p for p, _ in points], [v for _, v in points], label=name, **styles.get(name, {}))
    _month_ticks(axes, months)
    axes.set_ylabel(ylabel)
    _legend_above(axes)
    return _data_uri(figure)


def outcome_timeline(months: list[str], outcomes: list[Outcome], champions: list[int | None]) -> str | None:
    """One mark per month, coloured by outcome, at the height of the champion version after it."""
    if not months:
        return None
    figure = _figure(7.5, 2.4, left=0.1, bottom=0.32, top=_top_below_legend(2.4, len(set(outcomes))))
    axes = figure.add_subplot()
    positions = list(range(len(months)))
    heights = [c if c is not None else 0 for c in champions]
    axes.step(positions, heights, where="mid", color="#cccccc", linewidth=1)
    for outcome in dict.fromkeys(outcomes):
        chosen = [i for i, o in enumerate(outcomes) if o == outcome]
        axes.scatter(chosen, [heights[i] for i in chosen], color=TONE_COLOURS[outcome.tone], label=str(outcome), s=40)
    _month_ticks(axes, months)
    axes.set_ylabel("champion version")
    axes.yaxis.get_major_locator().set_params(integer=True)
    _legend_above(axes)
    return _data_uri(figure)


HEATMAP_CEILING = 3.0  # effects this many times their floor or more share the darkest shade


def drift_heatmap(
    features: list[str], months: list[str], ratios: list[list[float | None]], drifted: list[list[bool]]
) -> str | None:
    """Features by months, shaded by drift effect over the floor it had to reach (KS statistic and PSI have
    different scales), a dot where the feature drifted; blank where not tested. With more than
    MAX_CHART_FEATURES features, those with the largest effect in any month."""
    if not features or not months:
        return None
    kept = largest_features([max((v for v in row if v is not None), default=-1.0) for row in ratios])
    features, ratios, drifted = [features[i] for i in kept], [ratios[i] for i in kept], [drifted[i] for i in kept]
    height = 0.35 * len(features) + 1.3
    figure = _figure(7.5, height, left=0.2, right=0.9, bottom=0.8 / height, top=_top_below_legend(height, 1))
    axes = figure.add_subplot()
    grid = np.array([[math.nan if v is None else v for v in row] for row in ratios], dtype=float)
    image = axes.imshow(np.ma.masked_invalid(grid), aspect="auto", cmap="Reds", vmin=0, vmax=HEATMAP_CEILING)
    rows, columns = np.nonzero(np.array(drifted, dtype=bool))
    if len(rows):
        axes.scatter(columns, rows, s=10, color="black", label="drifted")
        _legend_above(axes)
    _month_ticks(axes, months)
    axes.set_yticks(range(len(features)), [_short(f) for f in features], fontsize=8)
    figure.colorbar(image, ax=axes, extend="max", label="effect ÷ its floor (1: large enough)")
    return _data_uri(figure)


MAX_MONTH_LABELS = 24  # more would overlap on a chart this wide


def _month_ticks(axes: Any, months: list[str]) -> None:
    """A label for every month while they fit, otherwise for every k-th month, always the latest."""
    step = math.ceil(len(months) / MAX_MONTH_LABELS)
    shown = list(range(len(months) - 1, -1, -step))[::-1]
    axes.set_xticks(shown, [months[i] for i in shown], rotation=45, ha="right", fontsize=8)


LEGEND_COLUMNS = 4
LEGEND_ROW_INCHES = 0.2


def _top_below_legend(height: float, entries: int) -> float:
    """The axes' top margin that leaves room above them for a legend of this many entries."""
    rows = max(1, math.ceil(entries / LEGEND_COLUMNS))
    return 1 - (0.08 + rows * LEGEND_ROW_INCHES) / height


def _legend_above(axes: Any) -> None:
    """A legend over the axes rather than in them: monthly points reach every corner of a history chart."""
    axes.legend(
        fontsize=7, frameon=False, ncols=LEGEND_COLUMNS, loc="lower left", bbox_to_anchor=(0, 1), borderaxespad=0.2
    )


def _compact(value: float) -> str:
    """A tick label with an SI prefix (25k, 3M)."""
    from matplotlib.ticker import EngFormatter

    return EngFormatter(sep="").format_eng(value)


def _short(text: str, limit: int = 24) -> str:
    """A label as matplotlib should draw it: shortened, and with `$` escaped (it would start mathtext)."""
    text = str(text)
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text.replace("$", r"\$")

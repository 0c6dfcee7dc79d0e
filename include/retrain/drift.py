"""Drift tests on every feature, multiple-testing correction, and the dataset-level verdict.

One small function per statistical test, each returning a `StatTestResult`; `TESTS` maps a column kind to
its test. Data comes from a `Columns` source one feature at a time, so a snapshot far larger than memory
is tested column by column: KS (`retrain.ks`) on the numeric values, chi-square and PSI on category counts
(from dictionary codes, never one Python string per row). Features are read and tested concurrently.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from retrain.ks import StatTestResult, ks_p_values, ks_statistic, ks_test, without_nan
from retrain.snapshots import NULL, Schema, SnapshotReader, combine_kinds

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from retrain.config import DriftSpec

__all__ = ["StatTestResult", "ks_test", "psi", "chi_square_test", "detect_drift", "adjust_p_values"]

PSI_FLOOR = 1e-4  # keeps PSI finite for categories absent on one side
PICTURE_SAMPLE = 50_000  # values of each side a report's distribution chart is drawn from
PICTURE_BINS = 30
# A non-negative feature is charted on log1p when its central 99% spans more than this many times the
# distance from its 0.5th percentile to its median (plus 1, so that a median at zero counts too).
HEAVY_TAIL_RATIO = 20
PICTURE_CATEGORIES = 12  # the categories whose share changed most are shown; the rest are summed as "(other)"


class Columns(Protocol):
    """Where a drift test gets its data: one feature at a time."""

    where: str

    def numeric(self, name: str) -> np.ndarray:
        """float64 values, NaN for missing."""

    def numeric_batches(self, name: str, *, first: bool = False) -> Iterator[np.ndarray]:
        """The same values batch by batch (`first`: the first of several reads of this column)."""

    def category_counts(self, name: str) -> tuple[dict[str, int], int, str]:
        """Rows per category (named as text), null rows, and the kind of the values."""

    @property
    def streamed(self) -> bool:
        """Whether a test reads this source batch by batch rather than a whole column at once."""

    @property
    def identity(self) -> tuple[tuple[str, str | None], ...] | None:
        """What the data is (snapshots and fingerprints), when known: equal sources are equal samples."""


class FrameColumns:
    """A pandas DataFrame as a drift source. Its categories have no kind to disagree on (`null`)."""

    where = "a data frame"
    streamed = False
    identity = None

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame

    def numeric(self, name: str) -> np.ndarray:
        return self.frame[name].to_numpy(dtype=np.float64, na_value=np.nan)

    def numeric_batches(self, name: str, *, first: bool = False) -> Iterator[np.ndarray]:
        yield self.numeric(name)

    def category_counts(self, name: str) -> tuple[dict[str, int], int, str]:
        from retrain.snapshots import as_category_strings

        values = as_category_strings(self.frame[name])
        counts = values.value_counts(dropna=True)
        return {str(k): int(v) for k, v in counts.items()}, int(values.isna().sum()), NULL


class SnapshotColumns:
    """One or more snapshots read as one sample (a reference of several months is their union).

    With `sample_rows` (sorted row positions in a single snapshot), each column read keeps its values at
    those rows: the rows the champion's estimate scores come out of the drift test's own reads.
    With `batch_rows`, columns are read in batches of at most that many rows and tests stream over them, so
    memory follows the batch, not the month.
    """

    def __init__(
        self,
        readers: Sequence[SnapshotReader],
        sample_rows: np.ndarray | None = None,
        *,
        batch_rows: int | None = None,
    ) -> None:
        if sample_rows is not None and len(readers) != 1:
            raise ValueError("sample_rows are positions in one snapshot")
        self.readers = list(readers)
        self.where = " + ".join(reader.where for reader in self.readers)
        self.sample_rows = sample_rows
        self.batch_rows = batch_rows
        # Per column read so far: its sampled numbers, or its sampled categories chunk by chunk.
        self.sampled: dict[str, np.ndarray | list[pa.Array]] = {}

    @property
    def streamed(self) -> bool:
        return self.batch_rows is not None

    @property
    def identity(self) -> tuple[tuple[str, str | None], ...]:
        return tuple((reader.uri, reader.fingerprint) for reader in self.readers)

    def numeric_batches(self, name: str, *, first: bool = False) -> Iterator[np.ndarray]:
        """One column batch by batch over every snapshot; the first read keeps the sampled rows' values."""
        taken: list[np.ndarray] = []
        start = 0
        for reader in self.readers:
            for values in reader.numeric_batches(name, self.batch_rows):
                if first and self.sample_rows is not None:
                    rows = self.sample_rows
                    inside = rows[(rows >= start) & (rows < start + len(values))] - start
                    taken.append(values[inside])
                start += len(values)
                yield values
        if first and self.sample_rows is not None:
            self.sampled[name] = np.concatenate(taken) if taken else np.empty(0)

    def numeric(self, name: str) -> np.ndarray:
        parts = [reader.numeric(name) for reader in self.readers]
        values = parts[0] if len(parts) == 1 else np.concatenate(parts)
        if self.sample_rows is not None:
            self.sampled[name] = values[self.sample_rows]
        return values

    def sample_frame(self, columns: Sequence[str]) -> pd.DataFrame:
        """The sampled rows of the columns read so far, as a frame (categoricals as pandas categoricals)."""
        import pandas as pd
        import pyarrow as pa

        from retrain.snapshots import CATEGORIES

        frame = {}
        for name in columns:
            values = self.sampled[name]
            frame[name] = pa.chunked_array(values, type=CATEGORIES).to_pandas() if isinstance(values, list) else values
        return pd.DataFrame(frame)

    def category_counts(self, name: str) -> tuple[dict[str, int], int, str]:
        counts: dict[str, int] = {}
        nulls, kind = 0, NULL
        taken: list[Any] | None = [] if self.sample_rows is not None else None
        if taken is not None:
            self.sampled[name] = taken
        for reader in self.readers:
            part, part_nulls, part_kind = reader.category_counts(
                name, take=self.sample_rows, taken=taken, batch_rows=self.batch_rows
            )
            kind = combine_kinds(kind, part_kind, name, self.where, reader.where)
            nulls += part_nulls
            for category, count in part.items():
                counts[category] = counts.get(category, 0) + count
        return counts, nulls, kind


def _proportions(counts: np.ndarray) -> np.ndarray:
    return np.maximum(counts / counts.sum(), PSI_FLOOR)


def psi(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """Population stability index over aligned category counts, floored so absent categories count."""
    p, q = _proportions(reference_counts), _proportions(current_counts)
    return float(np.sum((q - p) * np.log(q / p)))


def chi_square_from_counts(reference: dict[str, int], current: dict[str, int]) -> StatTestResult:
    """Chi-square test of homogeneity on category counts; categories new in `current` are kept.

    The statistic and p-value are scipy's `chi2_contingency(table, correction=False)`. Effect size: PSI.
    """
    if not sum(reference.values()) or not sum(current.values()):
        return StatTestResult(math.nan, math.nan, math.nan)
    categories = sorted(set(reference) | set(current))
    table = np.array(
        [[reference.get(c, 0) for c in categories], [current.get(c, 0) for c in categories]], dtype=np.float64
    )
    if table.shape[1] == 1:
        return StatTestResult(0.0, 1.0, 0.0)
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    statistic = float(((table - expected) ** 2 / expected).sum())
    from scipy import special

    p_value = float(special.chdtrc(table.shape[1] - 1, statistic))
    return StatTestResult(statistic, p_value, psi(table[0], table[1]))


def chi_square_test(reference: pd.Series, current: pd.Series) -> StatTestResult:
    """`chi_square_from_counts` on two series of categories; nulls are left out (the report tracks them)."""
    return chi_square_from_counts(
        FrameColumns(reference.to_frame("x")).category_counts("x")[0],
        FrameColumns(current.to_frame("x")).category_counts("x")[0],
    )


OMITTED_WHEN_NONE = {"json_omit_none": True}  # a picture holds edges or categories, never both keys


@dataclass(frozen=True)
class Distribution:
    """A small picture of both samples for a report: shares of each in common bins (numeric features,
    `edges` and the axis `scale`) or per category (categorical ones, `categories`)."""

    reference: tuple[float, ...]
    current: tuple[float, ...]
    edges: tuple[float, ...] | None = field(default=None, metadata=OMITTED_WHEN_NONE)
    scale: str | None = field(default=None, metadata=OMITTED_WHEN_NONE)
    categories: tuple[str, ...] | None = field(default=None, metadata=OMITTED_WHEN_NONE)


@dataclass(frozen=True)
class _Measured:
    """One feature's test result with its sample sizes, null rates, and a picture of both samples."""

    result: StatTestResult
    n_reference: int
    n_current: int
    null_reference: float
    null_current: float
    distribution: Distribution | None = None


def _numeric_picture(reference: np.ndarray, current: np.ndarray) -> Distribution | None:
    """Shares of each sample in common bins over the central 99% of both, from evenly strided samples:
    enough for a chart, at a cost that does not grow with the month."""
    if not len(reference) or not len(current):
        return None
    ref = reference[:: max(1, len(reference) // PICTURE_SAMPLE)]
    cur = current[:: max(1, len(current) // PICTURE_SAMPLE)]
    with np.errstate(invalid="ignore"):  # infinite values make a NaN quantile, refused just below
        low, median, high = np.quantile(np.concatenate([ref, cur]), [0.005, 0.5, 0.995])
    if not np.isfinite([low, high]).all():
        return None
    # Whole numbers (counts, years, ages) get bins centred on them: bins holding no whole number draw a comb.
    whole = bool(np.all(np.mod(ref, 1) == 0) and np.all(np.mod(cur, 1) == 0))
    if whole:
        low, high = math.floor(low), math.ceil(high)
    elif low == high:
        low, high = low - 0.5, high + 0.5
    # Counts, amounts and durations are heavy-tailed: on even bins their whole body falls in the first one.
    # Bins even in log1p(x) show the body and the tail alike; the chart draws its axis the same way.
    scale = "log1p" if low >= 0 and high - low > HEAVY_TAIL_RATIO * (median - low + 1) else "linear"
    if scale == "log1p":
        edges = np.expm1(np.linspace(np.log1p(low), np.log1p(high), PICTURE_BINS + 1))
        if whole:
            edges = np.unique(np.concatenate([[low - 0.5], np.floor(edges[1:-1]) + 0.5, [high + 0.5]]))
    elif whole:
        # Bins of one common whole width: widths alternating between 2 and 3 values would draw a zig-zag.
        width = math.ceil((high - low + 1) / PICTURE_BINS)
        edges = np.arange(low - 0.5, high + 0.5 + width, width)
    else:
        edges = np.linspace(low, high, PICTURE_BINS + 1)
    shares = [np.histogram(np.clip(v, low, high), edges)[0] / len(v) for v in (ref, cur)]
    return Distribution(
        reference=tuple(shares[0].tolist()), current=tuple(shares[1].tolist()), edges=tuple(edges.tolist()), scale=scale
    )


def _categorical_picture(reference: dict[str, int], current: dict[str, int]) -> Distribution | None:
    ref_total, cur_total = sum(reference.values()), sum(current.values())
    if not ref_total or not cur_total:
        return None

    def share_change(category: str) -> float:
        return abs(current.get(category, 0) / cur_total - reference.get(category, 0) / ref_total)

    def combined_share(category: str) -> float:
        return reference.get(category, 0) / ref_total + current.get(category, 0) / cur_total

    # With many categories (stores, teams, product codes) the change is often in a small or new one:
    # choose the categories that changed most, then draw them most common first.
    ranked = sorted(set(reference) | set(current), key=lambda c: (-share_change(c), -combined_share(c), c))
    shown = sorted(ranked[:PICTURE_CATEGORIES], key=lambda c: (-combined_share(c), c))
    ref = [reference.get(c, 0) / ref_total for c in shown]
    cur = [current.get(c, 0) / cur_total for c in shown]
    if len(ranked) > len(shown):
        shown = [*shown, "(other)"]
        ref.append(1 - sum(ref))
        cur.append(1 - sum(cur))
    return Distribution(reference=tuple(ref), current=tuple(cur), categories=tuple(shown))


class _StridedSample:
    """Every k-th value of a sample seen batch by batch, k doubling whenever the sample outgrows its
    limit: a picture of any size of month in bounded memory."""

    def __init__(self, limit: int = PICTURE_SAMPLE) -> None:
        self.limit, self.stride, self.seen = limit, 1, 0
        self.parts: list[np.ndarray] = []
        self.kept = 0

    def __call__(self, values: np.ndarray) -> None:
        part = values[(-self.seen) % self.stride :: self.stride]
        self.seen += len(values)
        self.parts.append(part.copy())
        self.kept += len(part)
        if self.kept > 2 * self.limit:
            # Values kept so far sit at multiples of the stride: halving keeps the multiples of twice it.
            whole = np.concatenate(self.parts)
            self.parts, self.stride = [whole[::2]], self.stride * 2
            self.kept = len(self.parts[0])

    @property
    def values(self) -> np.ndarray:
        return np.concatenate(self.parts) if self.parts else np.empty(0)


def _ks_feature_streamed(reference: Columns, current: Columns, name: str, method: str, pictures: bool) -> _Measured:
    """One numeric feature read batch by batch, several times: memory follows the batch size, and the
    statistic and p-value are those of the whole samples."""
    from retrain.ks import ks_statistic_streamed, sample_extent

    ref_picture, cur_picture = _StridedSample(), _StridedSample()
    ref = sample_extent(reference.numeric_batches(name, first=True), ref_picture if pictures else None)
    cur = sample_extent(current.numeric_batches(name, first=True), cur_picture if pictures else None)
    if reference.identity is not None and reference.identity == current.identity:
        statistic = 0.0 if ref.present else math.nan  # the month the champion was first validated on, itself
    else:
        statistic = ks_statistic_streamed(
            lambda: reference.numeric_batches(name), lambda: current.numeric_batches(name), ref, cur
        )
    p_value = math.nan
    if not math.isnan(statistic):
        statistics, p_values = ks_p_values(
            np.array([statistic]), np.array([ref.present]), np.array([cur.present]), method
        )
        statistic, p_value = float(statistics[0]), float(p_values[0])
    rows_ref, rows_cur = ref.present + ref.missing, cur.present + cur.missing
    return _Measured(
        StatTestResult(statistic, p_value, statistic),
        ref.present,
        cur.present,
        1 - ref.present / rows_ref if rows_ref else 0.0,
        1 - cur.present / rows_cur if rows_cur else 0.0,
        _numeric_picture(ref_picture.values, cur_picture.values) if pictures else None,
    )


def _ks_feature(reference: Columns, current: Columns, name: str, method: str, pictures: bool) -> _Measured:
    if reference.streamed or current.streamed:
        return _ks_feature_streamed(reference, current, name, method, pictures)
    ref, cur = reference.numeric(name), current.numeric(name)
    ref_present, cur_present = without_nan(ref), without_nan(cur)
    null_ref = 1 - len(ref_present) / len(ref) if len(ref) else 0.0
    null_cur = 1 - len(cur_present) / len(cur) if len(cur) else 0.0
    n1, n2 = len(ref_present), len(cur_present)
    statistic, p_value = ks_statistic(ref_present, cur_present), math.nan
    if not math.isnan(statistic):
        statistics, p_values = ks_p_values(np.array([statistic]), np.array([n1]), np.array([n2]), method)
        statistic, p_value = float(statistics[0]), float(p_values[0])
    picture = _numeric_picture(ref_present, cur_present) if pictures else None
    return _Measured(StatTestResult(statistic, p_value, statistic), n1, n2, null_ref, null_cur, picture)


def _ks_batch(
    reference: Columns, current: Columns, names: list[str], spec: DriftSpec, pictures: bool
) -> list[_Measured]:
    # Each worker reads its feature's two columns and resolves the statistic and its p-value; Arrow and
    # numpy release the GIL, so reading and testing overlap, and only a few columns are in memory at once.
    with ThreadPoolExecutor(max_workers=min(len(names), os.cpu_count() or 1)) as pool:
        return list(pool.map(lambda name: _ks_feature(reference, current, name, spec.ks_method, pictures), names))


def _chi_square_batch(
    reference: Columns, current: Columns, names: list[str], spec: DriftSpec, pictures: bool
) -> list[_Measured]:
    measured = []
    for name in names:
        ref_counts, ref_nulls, ref_kind = reference.category_counts(name)
        cur_counts, cur_nulls, cur_kind = current.category_counts(name)
        combine_kinds(ref_kind, cur_kind, name, f"the reference ({reference.where})", f"{current.where}")
        n_ref, n_cur = sum(ref_counts.values()), sum(cur_counts.values())
        measured.append(
            _Measured(
                chi_square_from_counts(ref_counts, cur_counts),
                n_ref,
                n_cur,
                ref_nulls / (n_ref + ref_nulls) if n_ref + ref_nulls else 0.0,
                cur_nulls / (n_cur + cur_nulls) if n_cur + cur_nulls else 0.0,
                _categorical_picture(ref_counts, cur_counts) if pictures else None,
            )
        )
    return measured


@dataclass(frozen=True)
class DriftTest:
    name: str
    effect_name: str
    run: Callable[[Columns, Columns, list[str], DriftSpec, bool], list[_Measured]]


TESTS: dict[str, DriftTest] = {
    "numeric": DriftTest("ks", "ks_statistic", _ks_batch),
    "categorical": DriftTest("chi2", "psi", _chi_square_batch),
}


def adjust_p_values(p_values: Sequence[float], correction: str) -> list[float]:
    """Bonferroni or Benjamini-Hochberg adjusted p-values; NaNs stay NaN and are not counted."""
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.shape, np.nan)
    present = ~np.isnan(p)
    m = int(present.sum())
    if not m:
        return adjusted.tolist()
    values = p[present]
    if correction == "bonferroni":
        adjusted[present] = np.minimum(values * m, 1.0)
    elif correction == "bh":
        order = np.argsort(values)
        scaled = values[order] * m / np.arange(1, m + 1)
        monotone = np.minimum.accumulate(scaled[::-1])[::-1]
        result = np.empty(m)
        result[order] = np.minimum(monotone, 1.0)
        adjusted[present] = result
    else:
        raise ValueError(f"unknown correction {correction!r}")
    return adjusted.tolist()


@dataclass(frozen=True)
class FeatureDrift:
    name: str
    kind: str
    test: str
    statistic: float | None
    p_value: float | None
    p_adjusted: float | None
    effect: float | None
    effect_name: str
    effect_floor: float
    null_rate_reference: float
    null_rate_current: float
    null_rate_change: float
    n_reference: int
    n_current: int
    drifted: bool
    reason: str
    distribution: Distribution | None = None


@dataclass(frozen=True)
class DriftReport:
    drifted: bool
    share_drifted: float
    drifted_features: list[str]
    features: list[FeatureDrift]
    alpha: float
    correction: str
    n_reference: int
    n_current: int


def _finite_or_none(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def feature_verdict(
    result: StatTestResult, p_adjusted: float, null_change: float, effect_floor: float, spec: DriftSpec
) -> tuple[bool, str]:
    """Whether one feature drifted, and why in words: its null rate moved more than allowed, or its adjusted
    p-value is below alpha and its effect reaches the floor."""
    if null_change > spec.max_null_rate_increase:
        return True, f"null rate rose by {null_change:.1%} (> {spec.max_null_rate_increase:.1%})"
    # A field that upstream starts filling in is as much a new input as one it stops filling: the model
    # learned what its nulls meant, and the test below sees only the values.
    if -null_change > spec.max_null_rate_decrease:
        return True, f"null rate fell by {-null_change:.1%} (> {spec.max_null_rate_decrease:.1%})"
    if math.isnan(p_adjusted):
        return False, "no values on one side to compare"
    if p_adjusted >= spec.alpha:
        return False, f"adjusted p={p_adjusted:.3g} >= alpha={spec.alpha}"
    if result.effect < effect_floor:
        return False, f"significant but effect {result.effect:.4g} below floor {effect_floor}"
    return True, f"adjusted p={p_adjusted:.3g} < alpha={spec.alpha} and effect {result.effect:.3g} >= {effect_floor}"


def _as_columns(data: Any) -> Columns:
    return data if hasattr(data, "category_counts") else FrameColumns(data)


def detect_drift(
    reference: Columns | pd.DataFrame,
    current: Columns | pd.DataFrame,
    schema: Schema,
    spec: DriftSpec,
    *,
    rows: tuple[int, int] | None = None,
    pictures: bool = True,
) -> DriftReport:
    """Test every feature of the schema (never stopping at the first drifted one) and decide dataset drift.

    `rows` gives the two samples' row counts when the sources are not frames; `pictures` keeps a small
    picture of both samples per feature, for reports.
    """
    if rows is None:
        rows = (len(reference), len(current))
    reference, current = _as_columns(reference), _as_columns(current)
    kinds = {"numeric": list(schema.numeric), "categorical": list(schema.categorical)}
    floors = {"numeric": spec.min_ks_statistic, "categorical": spec.min_psi}
    measured: list[tuple[str, str, _Measured]] = []
    for kind, columns in kinds.items():
        if columns:
            results = TESTS[kind].run(reference, current, columns, spec, pictures)
            measured.extend((kind, column, m) for column, m in zip(columns, results, strict=True))
    adjusted = adjust_p_values([m.result.p_value for _, _, m in measured], spec.correction)
    features = []
    for (kind, column, m), p_adjusted in zip(measured, adjusted, strict=True):
        null_change = m.null_current - m.null_reference
        drifted, reason = feature_verdict(m.result, p_adjusted, null_change, floors[kind], spec)
        features.append(
            FeatureDrift(
                name=column,
                kind=kind,
                test=TESTS[kind].name,
                statistic=_finite_or_none(m.result.statistic),
                p_value=_finite_or_none(m.result.p_value),
                p_adjusted=_finite_or_none(p_adjusted),
                effect=_finite_or_none(m.result.effect),
                effect_name=TESTS[kind].effect_name,
                effect_floor=floors[kind],
                null_rate_reference=m.null_reference,
                null_rate_current=m.null_current,
                null_rate_change=null_change,
                n_reference=m.n_reference,
                n_current=m.n_current,
                drifted=drifted,
                reason=reason,
                distribution=m.distribution,
            )
        )
    drifted_names = [f.name for f in features if f.drifted]
    share = len(drifted_names) / len(features) if features else 0.0
    return DriftReport(
        drifted=bool(drifted_names) and share >= spec.dataset_drift_share,
        share_drifted=share,
        drifted_features=drifted_names,
        features=features,
        alpha=spec.alpha,
        correction=spec.correction,
        n_reference=rows[0],
        n_current=rows[1],
    )

"""Where the drift tests get their data: snapshots read a column at a time (a reference of several months
as one sample), the rows the estimate scores taken on the way, and frames; and the small pictures of both
samples that a report draws."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from retrain.config import DriftSpec
from retrain.drift import FrameColumns, SnapshotColumns, _categorical_picture, detect_drift
from retrain.errors import DataError
from retrain.snapshots import Schema, SnapshotReader

SCHEMA = Schema(numeric=("x",), categorical=("plan",))


def month(folder: Path, x: list[float | None], plan: list[object], *, csv: bool = False) -> SnapshotReader:
    folder.mkdir(parents=True)
    frame = pd.DataFrame({"x": x, "plan": plan})
    if csv:
        frame.to_csv(folder / "part-0.csv", index=False)
    else:
        frame.to_parquet(folder / "part-0.parquet")
    return SnapshotReader(str(folder), month=folder.name)


def test_several_months_are_one_sample(tmp_path: Path) -> None:
    january = month(tmp_path / "2025-01", [1.0, 2.0, None], ["a", "b", None])
    february = month(tmp_path / "2025-02", [3.0, None, None, 4.0], ["a", None, "c", "a"])
    both = SnapshotColumns([january, february])
    assert both.where == f"month 2025-01 ({tmp_path / '2025-01'}) + month 2025-02 ({tmp_path / '2025-02'})"
    np.testing.assert_array_equal(both.numeric("x"), [1.0, 2.0, np.nan, 3.0, np.nan, np.nan, 4.0])
    assert both.category_counts("plan") == ({"a": 3, "b": 1, "c": 1}, 2, "text")


def test_the_rows_the_estimate_scores_come_from_the_drift_tests_own_reads(tmp_path: Path) -> None:
    reader = month(tmp_path / "2025-03", [10.0, 11.0, 12.0, 13.0, 14.0], ["a", "b", "c", "d", "e"])
    sampled = SnapshotColumns([reader], sample_rows=np.array([0, 3, 4]))
    sampled.numeric("x")
    assert sampled.category_counts("plan") == ({"a": 1, "b": 1, "c": 1, "d": 1, "e": 1}, 0, "text")
    frame = sampled.sample_frame(["x", "plan"])
    assert frame["x"].tolist() == [10.0, 13.0, 14.0]
    assert frame["plan"].tolist() == ["a", "d", "e"] and isinstance(frame["plan"].dtype, pd.CategoricalDtype)
    with pytest.raises(ValueError, match="sample_rows are positions in one snapshot"):
        SnapshotColumns([reader, reader], sample_rows=np.array([0]))
    whole = SnapshotColumns([reader])
    whole.category_counts("plan")
    assert whole.sampled == {}, "nothing is kept without a sample to take"


def test_a_column_whose_values_change_kind_across_months_is_named_with_both(tmp_path: Path) -> None:
    codes = month(tmp_path / "2025-01", [1.0, 2.0], [1, 2])
    names = month(tmp_path / "2025-02", [1.0, 2.0], ["basic", "premium"])
    with pytest.raises(DataError) as error:
        SnapshotColumns([codes, names]).category_counts("plan")
    assert "column plan holds integer values in month 2025-01" in str(error.value)
    assert f"but text values in month 2025-02 ({tmp_path / '2025-02'})" in str(error.value)
    with pytest.raises(DataError) as error:
        detect_drift(SnapshotColumns([codes]), SnapshotColumns([names]), SCHEMA, DriftSpec(), rows=(2, 2))
    assert str(error.value) == (
        f"column plan holds integer values in the reference (month 2025-01 ({tmp_path / '2025-01'})) but text "
        f"values in month 2025-02 ({tmp_path / '2025-02'}); a categorical column must keep one type"
    )


def test_a_frame_gives_its_missing_values_as_nan() -> None:
    frame = pd.DataFrame({"x": pd.array([1, None, 3], dtype="Int64"), "plan": ["a", None, "a"]})
    source = FrameColumns(frame)
    values = source.numeric("x")
    assert values.dtype == np.float64 and np.isnan(values[1]) and values[[0, 2]].tolist() == [1.0, 3.0]
    assert source.category_counts("plan") == ({"a": 2}, 1, "null")


def test_a_category_picture_shows_each_sides_shares_most_common_first() -> None:
    picture = _categorical_picture({"a": 6, "b": 3, "c": 1}, {"a": 4, "b": 4, "d": 2})
    assert picture.categories == ("a", "b", "d", "c"), "by combined share: 1.0, 0.7, 0.2, 0.1"
    assert picture.reference == pytest.approx((0.6, 0.3, 0.0, 0.1), abs=1e-12)
    assert picture.current == pytest.approx((0.4, 0.4, 0.2, 0.0), abs=1e-12)
    assert picture.edges is None and picture.scale is None
    assert _categorical_picture({}, {"a": 1}) is None and _categorical_picture({"a": 1}, {}) is None


def test_a_many_category_picture_shows_the_largest_changes_and_sums_the_rest() -> None:
    reference = {f"c{i:02d}": 10 for i in range(20)}  # 200 rows
    current = {**reference, "c05": 30, "c17": 0, "c18": 30, "new": 30}  # 260 rows
    picture = _categorical_picture(reference, current)
    # Every category's share changed; new, c05 and c18 gained most, c17 lost its share, the rest shrank alike
    # (ties broken by the larger combined share, then by name).
    assert picture.categories[-1] == "(other)" and len(picture.categories) == 13
    shown = set(picture.categories[:-1])
    assert {"new", "c05", "c18", "c17"} <= shown and {"c00", "c01", "c02", "c03", "c04", "c06"} <= shown
    assert "c19" not in shown, "ties in change and share go by name: c19 is the last"
    assert picture.categories[:3] == ("c05", "c18", "new"), "drawn most common first, ties by name"
    assert picture.reference[-1] == pytest.approx(1 - sum(picture.reference[:-1]), abs=1e-12)
    assert picture.current[-1] == pytest.approx(10 * 9 / 260, abs=1e-12), "the rows of the nine stores not shown"
    assert picture.current[picture.categories.index("new")] == pytest.approx(30 / 260, abs=1e-12)
    assert picture.reference[picture.categories.index("new")] == 0


def numeric_picture(values: np.ndarray):  # noqa: ANN201 - a Distribution
    from retrain.drift import _numeric_picture

    return _numeric_picture(values, values)


def test_a_constant_feature_is_pictured_in_one_bin_of_a_unit_wide_axis() -> None:
    picture = numeric_picture(np.full(10, 2.5))
    assert picture.scale == "linear" and picture.edges == tuple(np.linspace(2.0, 3.0, 31).tolist())
    assert picture.reference == picture.current == (0.0,) * 15 + (1.0,) + (0.0,) * 14


def test_values_beyond_the_central_99_percent_are_drawn_in_the_end_bins() -> None:
    values = np.concatenate([np.random.default_rng(0).normal(size=1000), [-1e6, 1e6]])
    picture = numeric_picture(values)
    low, high = np.quantile(np.concatenate([values, values]), [0.005, 0.995])  # over both samples
    assert picture.edges == tuple(np.linspace(low, high, 31).tolist())
    assert sum(picture.reference) == pytest.approx(1.0, abs=1e-12), "no value is left out"
    assert picture.reference[0] >= 6 / 1002 and picture.reference[-1] >= 6 / 1002


def test_whole_numbers_on_one_side_only_get_even_bins() -> None:
    from retrain.drift import _numeric_picture

    counts = np.tile(np.arange(10.0), 10)
    picture = _numeric_picture(counts, counts + 0.5)
    low, high = np.quantile(np.concatenate([counts, counts + 0.5]), [0.005, 0.995])
    assert picture.edges == tuple(np.linspace(low, high, 31).tolist())


@pytest.mark.parametrize(
    ("values", "scale"),
    [
        # At the edge: a span of exactly 20 times the distance from the low end to the median, plus one.
        (np.concatenate([np.zeros(600), np.tile(np.arange(1.0, 21.0), 20)]), "linear"),
        (np.concatenate([np.zeros(600), np.tile(np.arange(1.0, 22.0), 20)]), "log1p"),
        (np.concatenate([np.full(600, 10.25), np.random.default_rng(0).uniform(10.25, 200, 400)]), "log1p"),
        (np.concatenate([np.full(600, 100.5), np.random.default_rng(0).uniform(100.5, 110, 400)]), "linear"),
    ],
    ids=["span-at-the-limit", "span-past-the-limit", "long-tail-above-zero", "short-span-far-from-zero"],
)
def test_a_feature_is_pictured_on_log1p_bins_only_when_its_tail_is_long(values: np.ndarray, scale: str) -> None:
    assert numeric_picture(values).scale == scale


def test_whole_numbers_on_log1p_bins_have_edges_halfway_between_them() -> None:
    values = np.repeat([5.0, 6.0, 7.0, 10.0, 50.0, 200.0, 1000.0], [300, 200, 100, 100, 100, 100, 100])
    picture = numeric_picture(values)
    assert picture.scale == "log1p"
    assert picture.edges == (
        4.5, 6.5, 7.5, 9.5, 10.5, 13.5, 15.5, 18.5, 22.5, 26.5, 32.5, 38.5, 45.5, 54.5, 64.5, 76.5,
        90.5, 108.5, 128.5, 152.5, 180.5, 214.5, 254.5, 302.5, 358.5, 425.5, 504.5, 599.5, 710.5, 843.5, 1000.5,
    )  # fmt: skip
    assert picture.reference[:4] == (0.5, 0.1, 0.0, 0.1) and picture.reference[-1] == 0.1


def test_a_reports_every_figure_for_a_known_pair_of_samples() -> None:
    from scipy import stats

    from retrain.drift import DriftReport, FeatureDrift

    reference = pd.DataFrame({"x": [1, 2, 3, 4, None], "plan": ["a", "a", "b", None, None]})
    current = pd.DataFrame({"x": [3, 4, 5, 6, 7, 8, None, None], "plan": ["a", "b", "b", "b", None, "c", "c", "c"]})
    report = detect_drift(reference, current, SCHEMA, DriftSpec(), pictures=False)
    ks = stats.ks_2samp([1, 2, 3, 4], [3, 4, 5, 6, 7, 8])
    chi2 = stats.chi2_contingency(np.array([[2, 1, 0], [1, 3, 3]]), correction=False)
    x, plan = report.features
    assert x == FeatureDrift(
        name="x",
        kind="numeric",
        test="ks",
        statistic=pytest.approx(2 / 3, rel=1e-12),
        p_value=pytest.approx(ks.pvalue, rel=1e-9),
        p_adjusted=pytest.approx(2 * ks.pvalue, rel=1e-9),
        effect=pytest.approx(2 / 3, rel=1e-12),
        effect_name="ks_statistic",
        effect_floor=0.1,
        null_rate_reference=pytest.approx(0.2, rel=1e-12),
        null_rate_current=pytest.approx(0.25, rel=1e-12),
        null_rate_change=pytest.approx(0.05, rel=1e-9),
        n_reference=4,
        n_current=6,
        drifted=False,
        reason=f"adjusted p={2 * ks.pvalue:.3g} >= alpha=0.05",
        distribution=None,
    )
    assert plan == FeatureDrift(
        name="plan",
        kind="categorical",
        test="chi2",
        statistic=pytest.approx(chi2.statistic, rel=1e-12),
        p_value=pytest.approx(chi2.pvalue, rel=1e-9),
        p_adjusted=pytest.approx(min(1.0, 2 * chi2.pvalue), rel=1e-9),
        effect=pytest.approx(plan.effect, rel=1e-12),
        effect_name="psi",
        effect_floor=0.1,
        null_rate_reference=pytest.approx(0.4, rel=1e-12),
        null_rate_current=pytest.approx(0.125, rel=1e-12),
        null_rate_change=pytest.approx(-0.275, rel=1e-9),
        n_reference=3,
        n_current=7,
        drifted=True,
        reason="null rate fell by 27.5% (> 10.0%)",
        distribution=None,
    )
    assert report == DriftReport(
        drifted=True,
        share_drifted=0.5,
        drifted_features=["plan"],
        features=[x, plan],
        alpha=0.05,
        correction="bonferroni",
        n_reference=5,
        n_current=8,
    )


def test_no_feature_is_no_drift_and_a_feature_without_values_has_no_null_rate() -> None:
    empty = detect_drift(pd.DataFrame(), pd.DataFrame(), Schema(), DriftSpec())
    assert (empty.drifted, empty.share_drifted, empty.features) == (False, 0.0, [])
    blank = pd.DataFrame({"x": pd.Series([], dtype=float), "plan": pd.Series([], dtype=object)})
    (x, plan) = detect_drift(blank, blank, SCHEMA, DriftSpec()).features
    assert (x.null_rate_reference, x.null_rate_current, x.statistic, x.distribution) == (0.0, 0.0, None, None)
    assert (plan.null_rate_reference, plan.null_rate_current, plan.distribution) == (0.0, 0.0, None)
    assert x.reason == plan.reason == "no values on one side to compare"


def test_pictures_are_drawn_for_reports_and_left_out_of_the_cli() -> None:
    frame = pd.DataFrame({"x": [1.5, 2.5, 3.5], "plan": ["a", "b", "a"]})
    drawn = detect_drift(frame, frame, SCHEMA, DriftSpec()).features
    assert all(f.distribution is not None for f in drawn)
    assert all(f.distribution is None for f in detect_drift(frame, frame, SCHEMA, DriftSpec(), pictures=False).features)


def test_whole_numbers_on_even_bins_share_one_whole_width() -> None:
    picture = numeric_picture(np.arange(100.0))
    assert picture.scale == "linear"
    assert picture.edges == tuple(np.arange(-0.5, 100.0, 4.0).tolist()), "100 values in 30 bins: 4 to a bin"
    assert picture.reference == picture.current == (0.04,) * 25


def test_no_picture_without_values_on_both_sides_or_with_infinite_ends() -> None:
    from retrain.drift import _numeric_picture

    assert _numeric_picture(np.array([]), np.array([1.0])) is None
    assert _numeric_picture(np.array([1.0]), np.array([])) is None
    assert _numeric_picture(np.full(10, np.inf), np.full(10, np.inf)) is None


def test_a_category_picture_breaks_ties_in_change_by_share_then_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    from retrain import drift

    monkeypatch.setattr(drift, "PICTURE_CATEGORIES", 3)
    # a and b change by a quarter each; c and d not at all, and tie on their share: c wins by name.
    picture = _categorical_picture({"a": 2, "b": 2, "c": 2, "d": 2}, {"a": 4, "b": 0, "c": 2, "d": 2})
    assert picture.categories == ("a", "c", "b", "(other)"), "drawn by combined share: 0.75, 0.5, 0.25"
    assert picture.reference == pytest.approx((0.25, 0.25, 0.25, 0.25), abs=1e-12)
    assert picture.current == pytest.approx((0.5, 0.25, 0.0, 0.25), abs=1e-12)

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
    source = FrameColumns(frame, "frame")
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

"""Drift on months larger than memory: every column read batch by batch, several times, and the statistics
still those of the whole samples. A small month read in many batches stands in for a large one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy import stats

import retrain.ks as ks
from retrain.config import DriftSpec
from retrain.drift import SnapshotColumns, detect_drift
from retrain.errors import DataError
from retrain.snapshots import Schema, SnapshotReader

NUMERIC = ("normal", "shifted", "lognormal", "counts", "sparse", "wide_ints", "outlier", "constant")
SCHEMA = Schema(numeric=NUMERIC, categorical=("plan",))


def month_columns(rows: int, rng: np.random.Generator, shift: float) -> dict[str, np.ndarray]:
    sparse = rng.normal(shift, 1, rows)
    sparse[rng.random(rows) < 0.3] = np.nan
    outlier = rng.normal(size=rows)
    outlier[7] = 1e12 if shift else -1e12
    return {
        "normal": rng.normal(size=rows),
        "shifted": rng.normal(shift, 1, rows),
        "lognormal": rng.lognormal(shift, 3, rows),
        "counts": rng.poisson(3 + shift, rows).astype(float),
        "sparse": sparse,
        "wide_ints": rng.integers(0, 10**6, rows).astype(float),
        "outlier": outlier,
        "constant": np.full(rows, 2.5),
    }


def write_month(folder: Path, rows: int, seed: int, shift: float, files: int = 2) -> dict[str, np.ndarray]:
    """A month in `files` Parquet files of small row groups; returns its columns, as a reference to check against."""
    rng = np.random.default_rng(seed)
    columns = month_columns(rows, rng, shift)
    plans = np.array(["basic", "plus", "pro", None], dtype=object)
    columns["plan"] = plans[rng.choice(4, rows, p=[0.5 - shift / 10, 0.3, 0.15 + shift / 10, 0.05])]
    folder.mkdir(parents=True)
    bounds = np.linspace(0, rows, files + 1).astype(int)
    for part, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        table = pa.table({name: values[start:stop] for name, values in columns.items()})
        pq.write_table(table, folder / f"part-{part}.parquet", row_group_size=1_500)
    return columns


def counted_reads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[int]]]:
    """Every streamed read of a numeric column from here on: the column, and the size of each batch."""
    reads: list[tuple[str, list[int]]] = []
    original = SnapshotReader.numeric_batches

    def counted(self: SnapshotReader, column: str, batch_rows: int | None):  # noqa: ANN202
        sizes: list[int] = []
        reads.append((column, sizes))
        for batch in original(self, column, batch_rows):
            sizes.append(len(batch))
            yield batch

    monkeypatch.setattr(SnapshotReader, "numeric_batches", counted)
    return reads


@pytest.fixture(scope="module")
def months(tmp_path_factory: pytest.TempPathFactory) -> tuple[SnapshotReader, SnapshotReader, dict, dict]:
    root = tmp_path_factory.mktemp("streamed")
    reference = write_month(root / "2025-01", 24_000, 1, 0.0)
    current = write_month(root / "2025-02", 19_000, 2, 0.04, files=3)
    return (
        SnapshotReader(str(root / "2025-01"), month="2025-01"),
        SnapshotReader(str(root / "2025-02"), month="2025-02"),
        reference,
        current,
    )


def test_a_month_read_in_many_batches_gives_scipys_statistics_on_the_whole_samples(
    months: tuple[SnapshotReader, SnapshotReader, dict, dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    reference, current, reference_values, current_values = months
    # Few bins and a small gathering limit make every feature take several passes, as a large month does.
    monkeypatch.setattr(ks, "STREAM_KEYS", 256)
    monkeypatch.setattr(ks, "STREAM_GATHER", 3_000)
    reads = counted_reads(monkeypatch)
    streamed = detect_drift(
        SnapshotColumns([reference], batch_rows=1_000),
        SnapshotColumns([current], batch_rows=1_000),
        SCHEMA,
        DriftSpec(),
        rows=(24_000, 19_000),
    )
    seen_batches = [size for _, sizes in reads for size in sizes]
    assert max(seen_batches) == 1_000 and len(seen_batches) > 43 * len(NUMERIC) * 3, "many batches, many passes"
    whole = detect_drift(SnapshotColumns([reference]), SnapshotColumns([current]), SCHEMA, DriftSpec(), rows=(1, 1))
    for name in NUMERIC:
        x, y = reference_values[name], current_values[name]
        expected = stats.ks_2samp(x[~np.isnan(x)], y[~np.isnan(y)])
        feature = next(f for f in streamed.features if f.name == name)
        assert feature.statistic == pytest.approx(expected.statistic, abs=1e-15), name
        assert feature.p_value == pytest.approx(expected.pvalue, abs=1e-9), name
        in_memory = next(f for f in whole.features if f.name == name)
        assert (feature.statistic, feature.p_value, feature.n_reference, feature.n_current) == (
            in_memory.statistic,
            in_memory.p_value,
            in_memory.n_reference,
            in_memory.n_current,
        ), name
        assert feature.null_rate_current == in_memory.null_rate_current, name
    by_name = {f.name: f for f in streamed.features}
    assert by_name["sparse"].null_rate_reference == pytest.approx(np.isnan(reference_values["sparse"]).mean())
    assert by_name["constant"].statistic == 0.0 and by_name["constant"].p_value == 1.0
    assert by_name["plan"] == next(f for f in whole.features if f.name == "plan")
    assert streamed.drifted_features == whole.drifted_features


def test_the_estimates_sample_and_the_pictures_come_from_the_first_pass(
    months: tuple[SnapshotReader, SnapshotReader, dict, dict],
) -> None:
    reference, current, _, current_values = months
    rows = np.sort(np.random.default_rng(0).choice(19_000, 500, replace=False))
    streamed = SnapshotColumns([current], sample_rows=rows, batch_rows=1_000)
    report = detect_drift(SnapshotColumns([reference], batch_rows=1_000), streamed, SCHEMA, DriftSpec(), rows=(1, 1))
    sample = streamed.sample_frame(["shifted", "plan"])
    np.testing.assert_array_equal(sample["shifted"].to_numpy(), current_values["shifted"][rows])
    assert sample["plan"].astype(object).where(sample["plan"].notna(), None).tolist() == list(
        current_values["plan"][rows]
    )
    picture = next(f for f in report.features if f.name == "lognormal").distribution
    assert picture is not None and picture.scale == "log1p" and sum(picture.current) == pytest.approx(1.0)


def test_a_month_tested_against_itself_is_not_read_pass_after_pass(
    months: tuple[SnapshotReader, SnapshotReader, dict, dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    reference, _, _, _ = months
    reads = counted_reads(monkeypatch)
    report = detect_drift(
        SnapshotColumns([reference], batch_rows=5_000),
        SnapshotColumns([reference], batch_rows=5_000),
        SCHEMA,
        DriftSpec(),
        rows=(1, 1),
    )
    assert not report.drifted and {f.statistic for f in report.features if f.kind == "numeric"} == {0.0}
    assert len(reads) == 2 * len(NUMERIC), "one read of each side, for the counts, nulls and pictures"


def test_a_bad_value_in_a_late_batch_is_named_as_in_a_whole_read(tmp_path: Path) -> None:
    folder = tmp_path / "2025-03"
    folder.mkdir()
    values = np.arange(5_000, dtype=float)
    values[4_321] = np.inf
    pq.write_table(pa.table({"x": values}), folder / "part-0.parquet", row_group_size=1_000)
    reader = SnapshotReader(str(folder), month="2025-03")
    with pytest.raises(DataError) as streamed:
        detect_drift(
            SnapshotColumns([reader], batch_rows=1_000),
            SnapshotColumns([reader], batch_rows=1_000),
            Schema(numeric=("x",)),
            DriftSpec(),
            rows=(1, 1),
        )
    with pytest.raises(DataError) as whole:
        reader.numeric("x")
    assert str(streamed.value) == str(whole.value)
    assert "column x holds an infinite value (row 4321: inf)" in str(streamed.value)


@pytest.mark.parametrize("seed", range(4))
def test_an_outlier_left_behind_by_the_first_cut_still_counts_below_the_rest(seed: int) -> None:
    """Far outliers put the whole body of both samples in one bin; the values below it that the first cut
    resolved must still count once that bin is split again (the in-memory test missed one here)."""
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=24_000), rng.normal(size=19_000)
    x[7], y[7] = -1e12, 1e12
    assert ks.ks_statistic(x, y) == stats.ks_2samp(x, y).statistic


def bad_months(root: Path) -> dict[str, tuple[Path, Schema]]:
    """Months whose fault sits in a late batch: an infinity, text among numbers, too many nulls, a
    categorical column whose type changes from one file to the next."""
    rows = np.arange(6_000, dtype=float)
    cases: dict[str, tuple[Path, Schema]] = {}
    for name in ("infinite", "text", "nulls", "kinds"):
        (root / name).mkdir(parents=True)
    infinite = rows.copy()
    infinite[5_432] = -np.inf
    pq.write_table(pa.table({"x": infinite}), root / "infinite" / "part-0.parquet", row_group_size=700)
    cases["infinite"] = (root / "infinite", Schema(numeric=("x",)))
    text = rows.astype(str).astype(object)
    text[4_999] = "n/a?"
    pq.write_table(pa.table({"x": pa.array(text, pa.string())}), root / "text" / "part-0.parquet", row_group_size=700)
    cases["text"] = (root / "text", Schema(numeric=("x",)))
    nulls = rows.copy()
    nulls[3_000:] = np.nan
    pq.write_table(pa.table({"x": nulls}), root / "nulls" / "part-0.parquet", row_group_size=700)
    cases["nulls"] = (root / "nulls", Schema(numeric=("x",)))
    pq.write_table(pa.table({"plan": ["a", "b"] * 1_500}), root / "kinds" / "part-0.parquet", row_group_size=700)
    pq.write_table(pa.table({"plan": [1, 2] * 1_500}), root / "kinds" / "part-1.parquet", row_group_size=700)
    cases["kinds"] = (root / "kinds", Schema(categorical=("plan",)))
    return cases


def test_validation_reads_a_month_batch_by_batch_and_names_a_late_fault_as_a_whole_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import retrain.snapshots.files as files

    messages = {}
    for batch_rows in (files.BATCH_ROWS, 1_000):
        monkeypatch.setattr(files, "BATCH_ROWS", batch_rows)
        for name, (folder, schema) in bad_months(tmp_path / str(batch_rows)).items():
            with pytest.raises(DataError) as error:
                SnapshotReader(str(folder), month="2025-05").scan(schema, max_null_rate=0.4)
            messages.setdefault(name, []).append(str(error.value).replace(f"/{batch_rows}/", "/"))
    for name, (whole, batched) in messages.items():
        assert whole == batched, name
    assert "column x holds an infinite value (row 5432: -inf)" in messages["infinite"][0]
    assert "column x is numeric but holds text (row 4999: 'n/a?')" in messages["text"][0]
    assert "column x is 50% null, above data.max_null_rate=40%" in messages["nulls"][0]
    assert "column plan holds text values in" in messages["kinds"][0] and "part-1.parquet" in messages["kinds"][0]


def test_values_on_a_range_too_narrow_to_divide_into_bins_are_tested_exactly() -> None:
    """bins / range overflows for subnormal ranges: the values are scaled by division instead."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 1_000, 40_000) * 5e-324
    y = rng.integers(0, 1_000, 30_000) * 5e-324 + 15e-324
    expected = stats.ks_2samp(x, y).statistic

    def batches(values: np.ndarray):  # noqa: ANN202
        return lambda: (values[i : i + 7_000] for i in range(0, len(values), 7_000))

    streamed = ks.ks_statistic_streamed(
        batches(x), batches(y), ks.sample_extent(batches(x)()), ks.sample_extent(batches(y)())
    )
    assert ks.ks_statistic(x, y) == expected and streamed == expected

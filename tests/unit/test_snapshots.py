from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from retrain.errors import ChangedError, DataError
from retrain.months import Partitioning
from retrain.snapshots import Schema, SnapshotReader, infer_schema, list_months, month_folder, scan_month


def read_month(root: str, month: str, schema: Schema, *, partitioning: Partitioning | None = None, **limits):  # noqa: ANN003, ANN201
    """A month read whole, as a cycle's steps read a validated snapshot back: (frame, snapshot)."""
    folder = month_folder(root, month, partitioning or Partitioning())
    return SnapshotReader(folder, month=month).frame(schema, **limits)


SCHEMA = Schema(numeric=("age", "spend"), categorical=("plan",), target="label")


def good_frame(rows: int = 100) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "age": rng.integers(18, 80, rows),
            "spend": rng.normal(50, 10, rows),
            "plan": rng.choice(["a", "b"], rows),
            "label": np.arange(rows) % 2,
            "ignored": "x",
        }
    )


def write(root: Path, month: str, frame: pd.DataFrame, name: str = "part-0.parquet") -> Path:
    folder = root / f"month={month}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if ".csv" in name:  # compressed by the extension, as pyarrow decompresses it
        with pa.output_stream(str(path), compression="detect") as out:
            out.write(frame.to_csv(index=False).encode())
    else:
        frame.to_parquet(path, index=False)
    return path


def test_reads_only_the_schema_columns_from_every_file_of_a_month(tmp_path: Path) -> None:
    write(tmp_path, "2025-03", good_frame(60), "part-0.parquet")
    write(tmp_path, "2025-03", good_frame(40), "part-1.csv")
    frame, snapshot = read_month(str(tmp_path), "2025-03", SCHEMA)
    assert list(frame.columns) == ["age", "spend", "plan", "label"]
    assert snapshot.rows == 100 and snapshot.files == ("part-0.parquet", "part-1.csv")
    assert frame["age"].dtype == np.float64
    assert isinstance(frame["plan"].dtype, pd.CategoricalDtype), "categories stay compact, not Python strings"
    assert sorted(frame["plan"].cat.categories) == ["a", "b"]
    assert snapshot.kinds == {"plan": "text"}
    again = read_month(str(tmp_path), "2025-03", SCHEMA)[1]
    assert again.fingerprint == snapshot.fingerprint and len(snapshot.fingerprint) == 64


@pytest.mark.parametrize(
    ("template", "folder"),
    [
        ("month={month}", "month=2025-01"),
        ("year={year}/month={m}", "year=2025/month=1"),
        ("{year}/{mm}", "2025/01"),
        ("dt={year}-{mm}-01", "dt=2025-01-01"),
    ],
)
def test_months_are_found_and_read_in_any_partition_layout(tmp_path: Path, template: str, folder: str) -> None:
    layout = Partitioning(template)
    assert layout.folder("2025-01") == folder
    for month in ("2025-01", "2025-11"):
        (tmp_path / layout.folder(month)).mkdir(parents=True)
        good_frame(10).to_parquet(tmp_path / layout.folder(month) / "part-0.parquet")
    # Files elsewhere are not months: nested a level deeper, not data, or a month that cannot be.
    (tmp_path / layout.folder("2025-03") / "region=eu").mkdir(parents=True)
    good_frame(10).to_parquet(tmp_path / layout.folder("2025-03") / "region=eu" / "part-0.parquet")
    (tmp_path / layout.folder("2025-04")).mkdir(parents=True)
    (tmp_path / layout.folder("2025-04") / "part-0.parquet.crc").write_text("x")
    assert list_months(str(tmp_path), partitioning=layout) == ["2025-01", "2025-11"]
    frame, snapshot = read_month(str(tmp_path), "2025-11", SCHEMA, partitioning=layout)
    assert len(frame) == 10 and snapshot.month == "2025-11"


def test_a_month_number_out_of_range_is_no_month() -> None:
    layout = Partitioning("year={year}/month={m}")
    assert layout.month_of("year=2025/month=13/part-0.parquet") is None
    assert layout.month_of("year=2025/month=01/part-0.parquet") is None, "{m} is the unpadded number"
    assert layout.month_of("year=2025/month=12/part-0.parquet") == "2025-12"


def test_streaming_validation_finds_what_reading_finds(tmp_path: Path) -> None:
    frame = good_frame(100).astype({"label": float})
    frame.loc[:9, "spend"] = np.nan
    frame.loc[:19, "label"] = np.nan
    write(tmp_path, "2025-01", frame.iloc[:60], "part-0.parquet")
    write(tmp_path, "2025-01", frame.iloc[60:], "part-1.csv")
    scanned = scan_month(str(tmp_path), "2025-01", SCHEMA)
    read = read_month(str(tmp_path), "2025-01", SCHEMA)[1]
    assert scanned == read
    assert scanned.rows == 80 and scanned.null_rates["spend"] == pytest.approx(0.1)
    assert scanned.classes == {"0": 40, "1": 40}


def test_a_file_changed_after_validation_is_refused_without_reading_it(tmp_path: Path) -> None:
    path = write(tmp_path, "2025-01", good_frame())
    snapshot = scan_month(str(tmp_path), "2025-01", SCHEMA)
    SnapshotReader.of(snapshot)  # unchanged: fine
    write(tmp_path, "2025-01", good_frame(120))
    with pytest.raises(ChangedError, match="month 2025-01 .* changed since it was validated"):
        SnapshotReader.of(snapshot)
    assert path.exists()


def test_integer_categories_are_text_categories(tmp_path: Path) -> None:
    frame = good_frame()
    frame["plan"] = np.arange(len(frame)) % 3
    write(tmp_path, "2025-01", frame)
    typed, snapshot = read_month(str(tmp_path), "2025-01", SCHEMA)
    assert sorted(typed["plan"].cat.categories) == ["0", "1", "2"] and snapshot.kinds == {"plan": "integer"}


@pytest.mark.parametrize("suffix", [".csv.gz", ".csv.bz2", ".csv.zst"])
def test_compressed_csv_reads_as_the_plain_csv(tmp_path: Path, suffix: str) -> None:
    frame = good_frame()
    write(tmp_path / "plain", "2025-01", frame, "part-0.csv")
    write(tmp_path / "packed", "2025-02", frame, f"part-0{suffix}")
    plain, plain_snapshot = read_month(str(tmp_path / "plain"), "2025-01", SCHEMA)
    packed, packed_snapshot = read_month(str(tmp_path / "packed"), "2025-02", SCHEMA)
    assert list_months(str(tmp_path / "packed")) == ["2025-02"]
    assert packed_snapshot.files == (f"part-0{suffix}",) and packed_snapshot.rows == 100
    pd.testing.assert_frame_equal(packed, plain)
    with_text = frame.assign(age=frame["age"].astype(object).where(frame.index != 3, "old"))
    message = _error(tmp_path / "bad", with_text, name=f"part-0{suffix}")
    assert f"part-0{suffix}): column age is numeric but holds text (line 5: 'old')" in message


def test_a_corrupt_or_empty_compressed_csv_names_the_file(tmp_path: Path) -> None:
    message = _error(tmp_path, raw=b"age,spend,plan,label\n30,1.5,a,0\n", name="part-0.csv.gz")
    assert "part-0.csv.gz): unreadable or corrupt CSV file" in message
    with pa.output_stream(str(tmp_path / "month=2025-01" / "part-0.csv.gz"), compression="gzip") as out:
        out.write(b"")
    assert "part-0.csv.gz): empty file (no header line)" in _error(tmp_path)


def test_list_months_sees_only_folders_with_data_files(tmp_path: Path) -> None:
    write(tmp_path, "2025-01", good_frame())
    write(tmp_path, "2025-02", good_frame())
    (tmp_path / "month=2025-03").mkdir()
    (tmp_path / "month=2025-04").mkdir()
    (tmp_path / "month=2025-04" / "_SUCCESS").write_text("")
    assert list_months(str(tmp_path)) == ["2025-01", "2025-02"]


def test_nulls_at_a_normal_rate_are_kept_and_counted(tmp_path: Path) -> None:
    frame = good_frame(100)
    frame.loc[:9, "spend"] = np.nan
    frame.loc[:4, "plan"] = None
    write(tmp_path, "2025-01", frame)
    typed, snapshot = read_month(str(tmp_path), "2025-01", SCHEMA, max_null_rate=0.5)
    assert snapshot.null_rates == {"age": 0.0, "spend": 0.1, "plan": 0.05}
    assert typed["plan"].isna().sum() == 5


def test_rows_without_a_label_are_dropped(tmp_path: Path) -> None:
    frame = good_frame(100).astype({"label": float})
    frame.loc[:19, "label"] = np.nan
    write(tmp_path, "2025-01", frame)
    assert read_month(str(tmp_path), "2025-01", SCHEMA)[1].rows == 80


def _error(
    tmp_path: Path,
    frame: pd.DataFrame | None = None,
    *,
    name: str = "part-0.parquet",
    raw: bytes | None = None,
    month: str = "2025-01",
    max_null_rate: float = 1.0,
    by_feature: dict[str, float] | None = None,
) -> str:
    if raw is not None:
        folder = tmp_path / f"month={month}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(raw)
    elif frame is not None:
        write(tmp_path, month, frame, name)
    with pytest.raises(DataError) as error:
        read_month(str(tmp_path), "2025-01", SCHEMA, max_null_rate=max_null_rate, by_feature=by_feature or {})
    return str(error.value)


@pytest.mark.parametrize("column", ["spend", "plan"])
def test_missing_column_names_the_file_and_column(tmp_path: Path, column: str) -> None:
    message = _error(tmp_path, good_frame().drop(columns=[column]))
    assert "month=2025-01/part-0.parquet" in message and f"missing column {column}" in message
    reader = SnapshotReader(str(tmp_path / "month=2025-01"))  # the drift step reads column by column
    with pytest.raises(DataError, match=f"part-0.parquet: missing column {column}"):
        reader.category_counts(column) if column == "plan" else reader.numeric(column)


@pytest.mark.parametrize("name", ["part-0.parquet", "part-0.csv"])
def test_a_column_renamed_upstream_is_pointed_out(tmp_path: Path, name: str) -> None:
    message = _error(tmp_path, good_frame().rename(columns={"spend": "Spend ", "plan": "PLAN"}), name=name)
    assert message.endswith(
        "missing columns spend, plan (the file has 'Spend ' for spend, 'PLAN' for plan: names must match exactly)"
    )


def test_a_nested_column_is_no_category(tmp_path: Path) -> None:
    frame = good_frame().assign(plan=[[1, 2]] * 100)
    assert "part-0.parquet): column plan is categorical but has type list<element: int64>" in _error(tmp_path, frame)


def test_missing_target_names_it(tmp_path: Path) -> None:
    assert "missing column label" in _error(tmp_path, good_frame().drop(columns=["label"]))


def test_text_in_a_numeric_column_names_column_row_and_value(tmp_path: Path) -> None:
    frame = good_frame().astype({"spend": object})
    frame.loc[7, "spend"] = "twelve"
    message = _error(tmp_path, frame, name="part-0.csv")
    assert "month 2025-01" in message
    # Row 7 of the frame is line 9 of the CSV: the header is line 1, as in any editor.
    assert "column spend is numeric but holds text (line 9: 'twelve')" in message


def test_all_null_column(tmp_path: Path) -> None:
    frame = good_frame()
    frame["spend"] = np.nan
    assert "column spend is entirely null" in _error(tmp_path, frame)


def test_null_rate_above_the_limit(tmp_path: Path) -> None:
    frame = good_frame()
    frame.loc[:59, "age"] = np.nan
    message = _error(tmp_path, frame, max_null_rate=0.5)
    assert "column age is 60% null, above data.max_null_rate=50%" in message
    assert "its own: data.max_null_rate_by_feature = { age = ... }" in message


def test_a_feature_null_by_nature_has_its_own_limit(tmp_path: Path) -> None:
    frame = good_frame()
    frame.loc[:59, "age"] = np.nan
    frame.loc[:9, "spend"] = np.nan
    write(tmp_path, "2025-01", frame)
    snapshot = read_month(str(tmp_path), "2025-01", SCHEMA, max_null_rate=0.05, by_feature={"age": 0.6, "spend": 0.1})
    assert snapshot[1].null_rates == {"age": 0.6, "spend": 0.1, "plan": 0.0}
    message = _error(tmp_path, max_null_rate=0.9, by_feature={"age": 0.5})
    assert message.endswith("column age is 60% null, above data.max_null_rate_by_feature.age=50%")


def test_empty_snapshot(tmp_path: Path) -> None:
    assert "month 2025-01" in (m := _error(tmp_path, good_frame().iloc[:0])) and "empty snapshot (0 rows)" in m


def test_non_binary_target(tmp_path: Path) -> None:
    frame = good_frame()
    frame["label"] = np.arange(len(frame)) % 3
    assert "target column label must be binary 0/1, found 0, 1, 2; for a two-valued label such as -1/1" in _error(
        tmp_path, frame
    )


def test_single_class_target(tmp_path: Path) -> None:
    frame = good_frame()
    frame["label"] = 1
    assert "holds a single class" in _error(tmp_path, frame)


def test_blank_cells_in_a_csv_numeric_column_are_missing_values(tmp_path: Path) -> None:
    folder = tmp_path / "month=2025-01"
    folder.mkdir()
    rows = "".join(f"{i},{' ' if i % 4 == 0 else 10.5 + i},a,{i % 2}\n" for i in range(8))
    (folder / "part-0.csv").write_text("age,spend,plan,label\n" + rows)
    frame, snapshot = read_month(str(tmp_path), "2025-01", SCHEMA)
    assert frame["spend"].isna().tolist() == [True, False, False, False, True, False, False, False]
    assert snapshot.null_rates["spend"] == 0.25


def test_the_missing_value_tokens_pandas_knows_are_missing_in_a_csv_and_text_in_parquet(tmp_path: Path) -> None:
    tokens = ["NA", "NULL", "null", "N/A", "NaN", "#N/A"]
    rows = "".join(f"{i},{token},{token},{i % 2}\n" for i, token in enumerate(tokens))
    folder = tmp_path / "csv" / "month=2025-01"
    folder.mkdir(parents=True)
    (folder / "part-0.csv").write_text("age,spend,plan,label\n" + rows + "6,1.5,b,0\n7,2.5,NAM,1\n")
    frame = read_month(str(tmp_path / "csv"), "2025-01", SCHEMA)[0]
    assert frame["spend"].isna().sum() == 6 and frame["plan"].isna().sum() == 6
    categories = good_frame(4).assign(plan=["NA", "NULL", "b", "NA"])
    write(tmp_path / "parquet", "2025-01", categories)
    assert read_month(str(tmp_path / "parquet"), "2025-01", SCHEMA)[0]["plan"].tolist() == ["NA", "NULL", "b", "NA"]


TIMED = Schema(numeric=("age",), target="label", timestamp="at")


def _timed(tmp_path: Path, stamps: list) -> pd.DataFrame:
    frame = good_frame(len(stamps))[["age", "label"]].assign(at=stamps)
    write(tmp_path, "2025-01", frame, "part-0.csv")
    return read_month(str(tmp_path), "2025-01", TIMED)[0]


def test_iso_timestamps_in_every_form_a_csv_export_writes_them(tmp_path: Path) -> None:
    frame = _timed(tmp_path, ["2025-01-03T10:00:00Z", "2025-01-04", "2025-01-05 10:00:00+01:00", ""])
    assert frame["at"].tolist()[:3] == [
        pd.Timestamp("2025-01-03 10:00", tz="UTC"),
        pd.Timestamp("2025-01-04 00:00", tz="UTC"),  # a date alone is midnight, not a missing value
        pd.Timestamp("2025-01-05 09:00", tz="UTC"),
    ]
    assert frame["at"].isna().tolist() == [False, False, False, True]


def test_a_value_that_is_not_a_timestamp_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError) as raised:
        _timed(tmp_path, ["2025-01-03T10:00:00Z", "2025-01-04", "soon", "2025-01-06"])
    message = str(raised.value)
    assert "part-0.csv): timestamp column at holds a value that is not a timestamp (line 4: 'soon')" in message


def test_numbers_are_date_keys_or_epoch_time_in_the_unit_their_size_shows(tmp_path: Path) -> None:
    seconds = [1735689600, 1735693200, None, 1735696800]  # 2025-01-01 00:00, 01:00, missing, 02:00 UTC
    frame = _timed(tmp_path / "s", seconds)
    expected = [pd.Timestamp(f"2025-01-01 0{h}:00", tz="UTC") for h in (0, 1)]
    assert frame["at"].tolist()[:2] == expected and frame["at"].isna().tolist() == [False, False, True, False]
    milliseconds = [None if s is None else s * 1000 for s in seconds]
    assert _timed(tmp_path / "ms", milliseconds)["at"].tolist()[:2] == expected
    keys = _timed(tmp_path / "keys", [20250131, 20250201, None, 20250202])["at"].tolist()
    assert keys[:2] == [pd.Timestamp("2025-01-31", tz="UTC"), pd.Timestamp("2025-02-01", tz="UTC")]


def test_a_timestamp_column_of_another_type_is_refused(tmp_path: Path) -> None:
    frame = good_frame(4)[["age", "label"]].assign(at=[True, False, True, True])
    write(tmp_path, "2025-01", frame)
    with pytest.raises(DataError, match="part-0.parquet.: timestamp column at has type bool, not a timestamp"):
        read_month(str(tmp_path), "2025-01", TIMED)


def test_single_class_target_says_which_class_is_missing(tmp_path: Path) -> None:
    frame = good_frame()
    frame["label"] = 1
    assert "target column label holds a single class; no row is 0" in _error(tmp_path, frame)


def _labels(tmp_path: Path, values: list, *, positive_label: str | None = None, name: str = "part-0.csv") -> list:
    frame = good_frame(len(values))[["age"]].assign(label=values)
    write(tmp_path, "2025-01", frame, name)
    schema = Schema(numeric=("age",), target="label", positive_label=positive_label)
    return read_month(str(tmp_path), "2025-01", schema)[0]["label"].tolist()


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["True", "False", "True", None], [1.0, 0.0, 1.0]),  # what pandas writes for booleans
        (["true", " FALSE ", "false", "true"], [1.0, 0.0, 0.0, 1.0]),
        (["1", "0", "1.0", ""], [1.0, 0.0, 1.0]),  # the blank row has no label
    ],
)
def test_a_csv_target_may_hold_true_false_or_numbers_as_text(tmp_path: Path, values: list, expected: list) -> None:
    assert _labels(tmp_path, values) == expected


def test_text_labels_need_the_positive_label_named(tmp_path: Path) -> None:
    with pytest.raises(DataError) as raised:
        _labels(tmp_path, ["No", "Yes", "No", "No"])
    message = str(raised.value)
    assert "part-0.csv): target column label must be binary 0/1 or true/false (line 2: 'No')" in message
    assert "set model.positive_label" in message


@pytest.mark.parametrize(
    ("values", "positive_label", "name", "expected"),
    [
        (["No", "Yes", " Yes ", None, "No"], "Yes", "part-0.csv", [0.0, 1.0, 1.0, 0.0]),
        (["No", "Yes", "Yes", None, "No"], "Yes", "part-0.parquet", [0.0, 1.0, 1.0, 0.0]),
        ([1, 2, 2, 1], "2", "part-0.parquet", [0.0, 1.0, 1.0, 0.0]),  # integers compare as their text
        ([True, False, False, True], "true", "part-0.parquet", [1.0, 0.0, 0.0, 1.0]),
    ],
)
def test_the_positive_label_is_one_and_the_other_value_zero(
    tmp_path: Path, values: list, positive_label: str, name: str, expected: list
) -> None:
    assert _labels(tmp_path, values, positive_label=positive_label, name=name) == expected


def test_a_third_label_value_is_refused_not_counted_as_negative(tmp_path: Path) -> None:
    frame = good_frame(4)[["age"]]
    write(tmp_path, "2025-01", frame.assign(label=["No", "Yes", "No", "Yes"]), "part-0.csv")
    write(tmp_path, "2025-01", frame.assign(label=["Yes", "Unknown", "No", "Yes"]), "part-1.csv")
    schema = Schema(numeric=("age",), target="label", positive_label="Yes")
    with pytest.raises(DataError) as raised:
        read_month(str(tmp_path), "2025-01", schema)
    assert "part-1.csv): target column label holds 'No', 'Unknown' besides model.positive_label 'Yes'" in str(
        raised.value
    )


def test_a_positive_label_no_row_has_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"holds a single class; no row is 'Yes' \(model.positive_label\)"):
        _labels(tmp_path, ["No", "No", "No"], positive_label="Yes")


def test_month_with_no_files(tmp_path: Path) -> None:
    message = _error(tmp_path)
    assert "month 2025-01" in message and "no data files" in message


def test_corrupt_parquet_and_empty_file_name_the_file(tmp_path: Path) -> None:
    message = _error(tmp_path, raw=b"PAR1 this is not parquet")
    assert "part-0.parquet): unreadable or corrupt Parquet file" in message
    (tmp_path / "month=2025-01" / "part-0.parquet").write_bytes(b"")
    assert "part-0.parquet): empty file (0 bytes)" in _error(tmp_path)


def test_truncated_parquet_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "2025-01", good_frame())
    path.write_bytes(path.read_bytes()[:-40])
    assert "unreadable or corrupt Parquet file" in _error(tmp_path)


def test_a_single_file_is_a_snapshot_and_its_types_are_inferred(tmp_path: Path) -> None:
    path = write(tmp_path, "2025-01", good_frame())
    reader = SnapshotReader(str(path))
    assert reader.files == ("part-0.parquet",)
    schema = infer_schema(reader.arrow_schema())
    assert schema.numeric == ("age", "spend", "label") and schema.categorical == ("plan", "ignored")


def test_a_time_span_is_a_numeric_feature_in_seconds(tmp_path: Path) -> None:
    frame = good_frame(4).assign(spend=pd.to_timedelta([90, None, 1.5, 3600], unit="s"))
    path = write(tmp_path, "2025-01", frame)
    typed, snapshot = read_month(str(tmp_path), "2025-01", SCHEMA)
    np.testing.assert_array_equal(typed["spend"], [90.0, np.nan, 1.5, 3600.0])
    assert snapshot.null_rates["spend"] == 0.25
    reader = SnapshotReader(str(path))
    assert "spend" in infer_schema(reader.arrow_schema()).numeric
    np.testing.assert_array_equal(reader.numeric("spend"), [90.0, np.nan, 1.5, 3600.0])


# -- strict input: what a new user's files get wrong ---------------------------------------------------


def test_a_csv_row_with_more_fields_than_the_header_is_refused(tmp_path: Path) -> None:
    text = "age,spend,plan,label\n30,1.5,a,0\n31,2.5,b,1,surprise\n32,3.5,a,0\n"
    message = _error(tmp_path, raw=text.encode(), name="part-0.csv")
    assert "month 2025-01" in message and "month=2025-01/part-0.csv" in message
    assert "line 3: 5 fields where the header has 4" in message


def test_a_csv_row_with_fewer_fields_than_the_header_is_refused(tmp_path: Path) -> None:
    message = _error(tmp_path, raw=b"age,spend,plan,label\n30,1.5,a,0\n31,2.5\n", name="part-0.csv")
    assert "line 3: 2 fields where the header has 4" in message


def test_a_byte_order_mark_from_a_spreadsheet_export_is_no_part_of_the_first_column(tmp_path: Path) -> None:
    folder = tmp_path / "month=2025-01"
    folder.mkdir()
    (folder / "part-0.csv").write_bytes(b"\xef\xbb\xbfage,spend,plan,label\n30,1.5,a,0\n31,2.5,b,1\n")
    frame = read_month(str(tmp_path), "2025-01", SCHEMA)[0]
    assert frame["age"].tolist() == [30.0, 31.0]


def test_text_that_is_not_utf8_is_named_near_the_header_and_by_column_further_down(tmp_path: Path) -> None:
    latin1 = "age,spend,plan,label\n30,1.5,café,0\n".encode("latin-1")
    message = _error(tmp_path, raw=latin1, name="part-0.csv")
    assert "part-0.csv): not UTF-8 text (byte 0xe9 at byte 31); save or export the file as UTF-8" in message
    rows = "".join(f"{i},1.5,b,{i % 2}\n" for i in range(5000))
    late = ("age,spend,plan,label\n" + rows + "31,2.5,café,1\n").encode("latin-1")
    message = _error(tmp_path, raw=late, name="part-0.csv")
    assert "part-0.csv): column plan is not UTF-8 text (line 5002); save or export the file as UTF-8" in message


@pytest.mark.parametrize("separator", [";", "\t"])
def test_a_csv_separated_otherwise_says_so(tmp_path: Path, separator: str) -> None:
    text = separator.join(["age", "spend", "plan", "label"]) + "\n" + separator.join(["30", "1,5", "a", "0"]) + "\n"
    message = _error(tmp_path, raw=text.encode(), name="part-0.csv")
    assert "missing columns age, spend, plan, label (the header is one field holding" in message
    assert f"{separator!r}: retrain reads comma-separated CSV)" in message


def test_a_boolean_numeric_feature_reads_the_same_from_csv_as_from_parquet(tmp_path: Path) -> None:
    flags = [None if i == 4 else i % 3 == 0 for i in range(100)]
    frame = good_frame().assign(spend=pd.array(flags, dtype="boolean"))  # pandas writes True/False to a CSV
    write(tmp_path / "parquet", "2025-01", frame)
    write(tmp_path / "csv", "2025-01", frame, "part-0.csv")
    from_parquet = read_month(str(tmp_path / "parquet"), "2025-01", SCHEMA)[0]
    from_csv = read_month(str(tmp_path / "csv"), "2025-01", SCHEMA)[0]
    np.testing.assert_array_equal(from_csv["spend"][:6], [1.0, 0.0, 0.0, 1.0, np.nan, 0.0])
    pd.testing.assert_frame_equal(from_csv, from_parquet)
    mixed = "age,spend,plan,label\n30,2.5,a,0\n31,true,b,1\n"
    message = _error(tmp_path / "mixed", raw=mixed.encode(), name="part-0.csv")
    assert "column spend is numeric but holds text (line 3: 'true')" in message


def test_a_boolean_category_is_the_same_category_from_csv_and_from_parquet(tmp_path: Path) -> None:
    frame = good_frame(8).assign(plan=[True, False, True, True, False, None, True, False])
    write(tmp_path, "2025-01", frame)
    csv_text = "age,spend,plan,label\n30,1.5,true,0\n31,2.5,TRUE,1\n32,3.5,False,0\n33,4.5,,1\n"
    (tmp_path / "month=2025-01" / "part-1.csv").write_text(csv_text)
    typed, snapshot = read_month(str(tmp_path), "2025-01", SCHEMA)
    assert snapshot.kinds == {"plan": "boolean"}, "one type across both files"
    assert typed["plan"].value_counts().to_dict() == {"True": 6, "False": 4}
    assert typed["plan"].isna().sum() == 2


def test_a_duplicated_column_name_is_refused(tmp_path: Path) -> None:
    text = "age,spend,plan,spend,label\n30,1.5,a,9,0\n31,2.5,b,8,1\n"
    message = _error(tmp_path, raw=text.encode(), name="part-0.csv")
    assert "part-0.csv): column spend appears 2 times in the header" in message


@pytest.mark.parametrize("name", ["part-0.parquet", "part-0.csv"])
@pytest.mark.parametrize("value", [np.inf, -np.inf])
def test_infinity_in_a_numeric_feature_is_refused(tmp_path: Path, name: str, value: float) -> None:
    frame = good_frame()
    frame.loc[5, "spend"] = value
    message = _error(tmp_path, frame, name=name)
    assert "month 2025-01" in message and name in message
    position = "line 7" if name.endswith(".csv") else "row 5"  # a Parquet file's rows count from 0, as in pandas
    assert f"column spend holds an infinite value ({position}: " in message


def test_infinity_in_the_labeled_target_is_refused(tmp_path: Path) -> None:
    frame = good_frame().astype({"label": float})
    frame.loc[3, "label"] = np.inf
    assert "column label holds an infinite value (row 3" in _error(tmp_path, frame)


def test_files_of_a_month_that_disagree_on_a_categorical_type_are_refused(tmp_path: Path) -> None:
    text_codes = good_frame(50)
    integer_codes = good_frame(50)
    integer_codes["plan"] = np.arange(50) % 2
    write(tmp_path, "2025-01", text_codes, "part-0.parquet")
    write(tmp_path, "2025-01", integer_codes, "part-1.parquet")
    message = _error(tmp_path)
    assert "month 2025-01" in message
    assert "column plan holds text values in part-0.parquet but integer values in part-1.parquet" in message


def test_csv_files_that_disagree_on_a_categorical_type_are_refused(tmp_path: Path) -> None:
    integer_codes = good_frame(50)
    integer_codes["plan"] = np.arange(50) % 2
    write(tmp_path, "2025-01", good_frame(50), "part-0.csv")
    write(tmp_path, "2025-01", integer_codes, "part-1.csv")
    assert "column plan holds text values in part-0.csv but integer values in part-1.csv" in _error(tmp_path)


def test_a_code_list_that_gains_a_text_code_keeps_its_integer_codes(tmp_path: Path) -> None:
    integer_codes = good_frame(50).assign(plan=np.arange(50) % 3 + 100)
    gained = good_frame(50).assign(plan=[*(np.arange(49) % 3 + 100), "A7"])
    write(tmp_path, "2025-01", integer_codes, "part-0.csv")
    write(tmp_path, "2025-01", gained, "part-1.csv")
    frame, snapshot = read_month(str(tmp_path), "2025-01", SCHEMA)
    assert snapshot.kinds == {"plan": "integer and text"}
    assert sorted(frame["plan"].unique()) == ["100", "101", "102", "A7"]


def test_integer_codes_stored_as_text_are_the_same_categories_as_integers(tmp_path: Path) -> None:
    write(tmp_path, "2025-01", good_frame(50).assign(plan=np.arange(50) % 2), "part-0.parquet")
    write(tmp_path, "2025-01", good_frame(50).assign(plan=(np.arange(50) % 2).astype(str)), "part-1.parquet")
    frame, snapshot = read_month(str(tmp_path), "2025-01", SCHEMA)
    assert snapshot.kinds == {"plan": "integer"} and sorted(frame["plan"].unique()) == ["0", "1"]


def test_no_labels_at_all_is_one_error_without_a_warning_first(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    frame = good_frame().astype({"label": float})
    frame["label"] = np.nan
    with caplog.at_level("WARNING"):
        message = _error(tmp_path, frame)
    assert "target column label has no labels" in message
    assert caplog.records == [], "no 'dropping unlabeled rows' warning before the error"


def test_a_categorical_column_of_an_unsupported_type_is_refused(tmp_path: Path) -> None:
    frame = good_frame()
    frame["plan"] = pd.Timestamp("2025-01-01")
    assert "column plan is categorical but has type timestamp" in _error(tmp_path, frame)


def test_local_copies_of_sql_months_unused_for_two_days_are_pruned(tmp_path: Path) -> None:
    import os
    import time

    from retrain.snapshots.sql import prune

    old, fresh = tmp_path / "old", tmp_path / "fresh"
    for copy in (old, fresh):
        copy.mkdir()
        (copy / "part-0000.parquet").write_bytes(b"x")
    three_days_ago = time.time() - 3 * 24 * 3600
    os.utime(old, (three_days_ago, three_days_ago))
    prune(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh"]
    prune(tmp_path / "absent")

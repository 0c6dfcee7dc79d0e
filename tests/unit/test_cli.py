from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from retrain.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "retrain", *args], capture_output=True, text=True)


def test_drift_between_two_demo_months_as_a_table_and_as_json(demo_source: Path, capsys: pytest.CaptureFixture) -> None:
    january, june = (str(demo_source / "production" / f"month=2025-0{m}") for m in (1, 6))
    assert main(["drift", january, june, "--config", str(demo_source / "retrain.toml")]) == 0
    table = capsys.readouterr().out
    assert "tenure_months" in table and "dataset drift: yes (2 of 6 features: tenure_months, usage_gb" in table

    assert main(["drift", january, june, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {"drifted", "features"} <= set(report)
    feature = report["features"][0]
    assert {"name", "test", "statistic", "p_value", "p_adjusted", "effect", "drifted"} <= set(feature)
    assert "event_time" not in [f["name"] for f in report["features"]], "timestamps are not features"
    assert report["untested_columns"] == {"event_time": "timestamp[ns, tz=UTC]"}, "and the report says so"


def test_drift_without_a_config_names_the_columns_it_leaves_out(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import datetime

    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = 100
    table = pa.table(
        {
            "x": pa.array(np.arange(rows, dtype=float)),
            "tags": pa.array([["a"]] * rows),
            "day": pa.array([datetime.date(2025, 1, 1)] * rows),
            "plan": pa.array(["a", "b"] * (rows // 2)),
        }
    )
    pq.write_table(table, tmp_path / "a.parquet")
    assert main(["drift", str(tmp_path / "a.parquet"), str(tmp_path / "a.parquet")]) == 0
    out = capsys.readouterr().out
    assert "dataset drift: no (0 of 2 features;" in out
    assert out.rstrip().endswith(
        "not tested (no drift test for their type): tags (list<element: string>), day (date32[day])"
    )


def test_drift_on_single_files(demo_source: Path, capsys: pytest.CaptureFixture) -> None:
    files = [str(demo_source / "production" / f"month=2025-0{m}" / "part-0000.parquet") for m in (1, 2)]
    assert main(["drift", *files, "--json", "--config", str(demo_source / "retrain.toml")]) == 0
    assert json.loads(capsys.readouterr().out)["drifted"] is False


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["drift", "/nowhere/a", "/nowhere/b"], "retrain: error: /nowhere/a: no data files"),
        (["cycle", "--config", "/nowhere.toml", "--month", "2025-01"], "/nowhere.toml: config file not found"),
        (["demo-data", "--out", "x", "--months", "0"], "--months must be at least 1"),
        (["demo-data", "--out", "x", "--months", "2", "--start", "2025-1"], "--start must be YYYY-MM"),
    ],
)
def test_errors_are_one_line_without_a_traceback(args: list[str], message: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_bad_month_and_missing_month_name_the_month(demo_dir: Path) -> None:
    config = str(demo_dir / "retrain.toml")
    result = run_cli("cycle", "--config", config, "--month", "2025-13")
    assert result.returncode == 2 and "month must be YYYY-MM, got '2025-13'" in result.stderr
    result = run_cli("cycle", "--config", config, "--month", "2026-01")
    assert result.returncode == 2 and "month 2026-01" in result.stderr and "no data files" in result.stderr
    assert not (demo_dir / "registry").exists(), "nothing written"


def test_check_validates_what_a_run_reads_and_writes_nothing(demo_dir: Path, capsys: pytest.CaptureFixture) -> None:
    config = str(demo_dir / "retrain.toml")
    assert main(["check", "--config", config, "--month", "2025-03"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "2025-03: the snapshots a run reads pass validation (nothing was written)"
    assert [line.split(":")[0].split() for line in lines[1:]] == [
        ["production", "2025-03"],
        ["labeled", "2025-01"],
        ["labeled", "2025-02"],
        ["labeled", "2025-03"],
    ]
    assert lines[1].startswith("  production 2025-03: 1 file, 20,000 rows; nulls: ")
    assert main(["check", "--config", config, "--month", "2025-03", "--json"]) == 0
    checked = json.loads(capsys.readouterr().out)
    assert checked["production"]["rows"] == 20000 and sum(checked["labeled"][0]["classes"].values()) == 20000
    assert not (demo_dir / "registry").exists(), "nothing written, not even the registry's folder"

    path = demo_dir / "labeled" / "month=2025-02" / "part-0000.parquet"
    pd.read_parquet(path).drop(columns=["plan"]).to_parquet(path)
    result = run_cli("check", "--config", config, "--month", "2025-03")
    assert result.returncode == 2
    assert result.stderr == f"retrain: error: month 2025-02 ({path}): missing column plan\n"
    result = run_cli("check", "--config", config, "--month", "2025-13")
    assert result.returncode == 2 and "month must be YYYY-MM, got '2025-13'" in result.stderr


def test_demo_data_then_cycle_then_registry_commands(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "demo"
    assert main(["demo-data", "--out", str(out), "--months", "2", "--rows", "3000", "--start", "2024-11"]) == 0
    assert sorted(p.name for p in (out / "labeled").iterdir()) == ["month=2024-11", "month=2024-12"]
    config = str(out / "retrain.toml")
    capsys.readouterr()

    assert main(["cycle", "--config", config, "--month", "2024-11", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert {"outcome", "month", "champion_version", "drift", "metrics", "reason"} <= set(summary)
    assert (summary["outcome"], summary["champion_version"]) == ("BOOTSTRAPPED", 1)

    assert main(["cycle", "--config", config, "--month", "2024-12", "--force", "--min-lift", "0"]) == 0
    assert "2024-12:" in capsys.readouterr().out

    assert main(["registry", "list", "--config", config]) == 0
    listing = capsys.readouterr().out
    assert "month 2024-11" in listing

    assert main(["registry", "show", "--config", config]) == 0
    assert json.loads(capsys.readouterr().out)["version"] >= 1

    assert main(["registry", "ledger", "--config", config]) == 0
    ledger = capsys.readouterr().out
    assert "2024-11" in ledger and "BOOTSTRAPPED" in ledger and "2024-12" in ledger

    history = tmp_path / "pages" / "history.html"
    assert main(["report", "history", "--config", config, "--out", str(history)]) == 0
    page = history.read_text()
    assert "churn &middot; model history" in page and page.count("data:image/svg+xml") == 3
    links = re.findall(r'<a href="([^"]+)" target="_top">2024-1[12]</a>', page)
    assert len(links) == 2 and all((history.parent / link).is_file() for link in links), "relative links to reports"


def test_rollback_moves_the_champion_back_and_is_recorded(demo_dir: Path, capsys: pytest.CaptureFixture) -> None:
    config = str(demo_dir / "retrain.toml")
    for month in ("2025-01", "2025-07"):
        assert main(["cycle", "--config", config, "--month", month, "--force"]) == 0
    capsys.readouterr()
    assert main(["registry", "rollback", "1", "--reason", "bad predictions", "--config", config]) == 0
    assert "champion is now version 1 (was 2)" in capsys.readouterr().out
    assert main(["registry", "ledger", "--json", "--config", config]) == 0
    last = json.loads(capsys.readouterr().out)[-1]
    assert (last["outcome"], last["reason"], last["champion_version"]) == ("ROLLED_BACK", "bad predictions", 1)
    assert main(["registry", "rollback", "7", "--reason", "x", "--config", config]) == 2
    assert "no version 7" in capsys.readouterr().err


IMPORT_PROBE = """
import sys
from retrain.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
heavy = ["pandas", "sklearn", "scipy.stats", "boto3", "retrain.cycle", "matplotlib", "airflow"]
print(" ".join(m for m in heavy if m in sys.modules) or "-")
print("numpy" in sys.modules)
"""


def imported_by(*args: str) -> tuple[str, bool]:
    result = subprocess.run([sys.executable, "-c", IMPORT_PROBE, *args], capture_output=True, text=True, check=True)
    heavy, numpy = result.stdout.strip().splitlines()[-2:]
    return heavy, numpy == "True"


def test_help_and_drift_import_only_what_they_use(demo_source: Path, tmp_path: Path) -> None:
    assert imported_by("--help") == ("-", False), "--help needs no numerical library at all"
    january, june = (str(demo_source / "production" / f"month=2025-0{m}") for m in (1, 6))
    heavy, _ = imported_by("drift", january, june, "--json")
    # Samples this small take branches of the KS distribution only scipy.stats implements.
    assert heavy == "scipy.stats", f"retrain drift imported {heavy}"
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    for name, shift in (("a", 0.0), ("b", 0.02)):
        values = {"same": rng.normal(size=250_000), "shifted": rng.normal(shift, 1, 250_000)}
        values["same"][::50] = np.nan
        pd.DataFrame(values).to_parquet(tmp_path / f"{name}.parquet")
    heavy, _ = imported_by("drift", str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet"), "--json")
    assert heavy == "-", f"retrain drift on large samples imported {heavy}"


def test_drift_on_csv_files_equals_drift_on_the_same_data_in_parquet(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    for name, shift in (("a", 0.0), ("b", 0.5)):
        frame = pd.DataFrame({"x": rng.normal(shift, 1, 3000), "city": rng.choice(["paris", "lyon", "nice"], 3000)})
        frame.loc[::10, "x"] = np.nan
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
        frame.to_parquet(tmp_path / f"{name}.parquet")
    reports = {}
    for suffix in ("csv", "parquet"):
        result = run_cli("drift", str(tmp_path / f"a.{suffix}"), str(tmp_path / f"b.{suffix}"), "--json")
        assert result.returncode == 0, result.stderr
        reports[suffix] = json.loads(result.stdout)
    assert reports["csv"]["drifted_features"] == ["x"]
    assert reports["csv"]["features"] == reports["parquet"]["features"]


def test_drift_refuses_bad_input_in_one_line(tmp_path: Path) -> None:
    good = tmp_path / "good.csv"
    good.write_text("a,b\n1,2\n3,4\n")
    extra = tmp_path / "extra.csv"
    extra.write_text("a,b\n1,2\n3,4,5\n")
    result = run_cli("drift", str(good), str(extra))
    assert result.returncode == 2 and "extra.csv: line 3: 3 fields where the header has 2" in result.stderr
    infinite = tmp_path / "inf.csv"
    infinite.write_text("a,b\n1,2\ninf,4\n")
    result = run_cli("drift", str(good), str(infinite))
    assert result.returncode == 2 and "column a holds an infinite value (line 3: inf)" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_registry_root_that_is_a_file_fails_before_any_data_step(demo_dir: Path) -> None:
    (demo_dir / "registry").write_text("oops")
    result = run_cli("cycle", "--config", str(demo_dir / "retrain.toml"), "--month", "2025-01")
    assert result.returncode == 2, result.stderr
    assert f"{demo_dir / 'registry'}: is a file, not a folder" in result.stderr
    assert "internal error" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


WITHOUT_AIRFLOW = """
import sys
sys.modules["airflow"] = None  # any import of Airflow now fails
from retrain.cli import main
code = main(sys.argv[1:])
import retrain.cycle, retrain.records, retrain.registry, retrain.reports, retrain.snapshots  # noqa: E401
sys.exit(code)
"""


def test_a_whole_cycle_runs_where_airflow_is_not_installed(demo_dir: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            WITHOUT_AIRFLOW,
            "cycle",
            "--config",
            str(demo_dir / "retrain.toml"),
            "--month",
            "2025-01",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("2025-01: BOOTSTRAPPED")


def test_drift_streams_months_past_drift_stream_above_rows_with_the_same_report(
    demo_source: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    january, june = (str(demo_source / "production" / f"month=2025-0{m}") for m in (1, 6))
    text = (demo_source / "retrain.toml").read_text()
    config = tmp_path / "streamed.toml"
    config.write_text(text + "\n[drift]\nstream_above_rows = 0\nbatch_rows = 1000\n")
    reports = []
    for path in (demo_source / "retrain.toml", config):
        assert main(["drift", january, june, "--config", str(path), "--json"]) == 0
        reports.append(json.loads(capsys.readouterr().out))
    assert reports[0]["drifted_features"] == ["tenure_months", "usage_gb"]
    assert reports[1] == reports[0]

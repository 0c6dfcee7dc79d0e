"""Whole-process benchmarks at production scale: each figure against a baseline measured in this same run.

    python bench/bench_scale.py              # everything (about fifteen minutes, ~6 GB of data on disk)
    python bench/bench_scale.py --skip-10m   # without the 10,000,000-row month

1. `retrain drift` as a whole process on two 1,000,000 x 20 numeric Parquet files, against a plain script
   that reads the same files with pandas and loops scipy.stats.ks_2samp (target: >= 10x, identical
   statistics).
2. A whole cycle (forced, so it trains and evaluates) on a 1,000,000-row production month with 200,000
   labeled rows a month and 20 features (16 numeric, 4 categorical), once with a 1,000,000-row drift
   reference (the production month the champion was validated on) and once with the champion's
   200,000-row training window as the reference: the issue's workload, a one-month window (targets:
   engine time <= 6 s, peak RSS <= 1.2 GB each). Then the first again with the default 3-month window
   (600,000 labeled rows, three times the fitting), reported without a target. Baseline: reading the
   same snapshots once with pandas.
   The same 1M-row cycle with the one-month window for a 3-class model (weighted one-vs-rest AUC) and a
   regression model (RMSE), each with the same targets.
3. A whole cycle on a 10,000,000-row production month, 1,000,000 labeled rows a month, 3-month window
   (targets: <= 3 minutes, peak RSS <= 8 GB).
4. Memory of each step as its own process, as Airflow runs them, at 1,000,000 and 10,000,000 rows.

Every measured cycle runs in a fresh process; peak RSS is that process's maximum resident set size.
Data are generated once into --data (default .bench-data/) and re-used.
"""

from __future__ import annotations

import argparse
import compileall
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from results import recorded

ROOT = Path(__file__).resolve().parents[1]
NUMERIC = [f"x{i:02d}" for i in range(16)]
CATEGORIES = {"channel": 3, "segment": 12, "city": 60, "product": 400}
MONTHS = ["2025-01", "2025-02", "2025-03", "2025-04"]  # labels for all; production for the last two
TARGETS = {"binary": "churned", "multiclass": "grade", "regression": "spend"}
GRADES = np.array(["low", "mid", "high"])
CHUNK = 1_000_000

BASELINE_DRIFT = """
import json, sys
import pandas as pd
from scipy import stats
reference, current = pd.read_parquet(sys.argv[1]), pd.read_parquet(sys.argv[2])
out = {}
for column in reference.columns:
    result = stats.ks_2samp(reference[column].dropna().to_numpy(), current[column].dropna().to_numpy())
    out[column] = [float(result.statistic), float(result.pvalue)]
print(json.dumps(out))
"""


# -- data ------------------------------------------------------------------------------------------------


def month_chunk(rows: int, index: int, rng: np.random.Generator, *, labeled: bool, task: str = "binary") -> pa.Table:
    """Rows of one month: most features stable, a few shifted in later months; a churn-like label, a grade
    of three classes, or an amount, by `task`."""
    columns: dict[str, pa.Array] = {}
    signal = np.zeros(rows)
    for j, name in enumerate(NUMERIC):
        shift = 0.15 * index if j % 5 == 4 else 0.0
        if j % 4 == 1:
            values = rng.lognormal(shift, 1.0, rows)
        elif j % 4 == 2:
            values = rng.poisson(3 + shift, rows).astype(np.float64)
        else:
            values = rng.normal(shift, 1.0, rows)
        if j % 7 == 3:
            values[rng.random(rows) < 0.02] = np.nan
        if j < 6:
            signal += (0.6 - 0.1 * j) * np.nan_to_num((values - values.mean()) / (values.std() or 1))
        columns[name] = pa.array(values)
    for name, cardinality in CATEGORIES.items():
        weights = 1.0 / np.arange(1, cardinality + 1) ** 1.1  # skewed: a few common, many rare categories
        codes = rng.choice(cardinality, rows, p=weights / weights.sum())
        labels = pa.array([f"{name}_{c:03d}" for c in range(cardinality)])
        columns[name] = pa.DictionaryArray.from_arrays(pa.array(codes, pa.int32()), labels)
        signal += 0.3 * (codes % 3 == 0)
    if labeled and task == "binary":
        columns["churned"] = pa.array((rng.random(rows) < 1 / (1 + np.exp(-(signal - 1.0)))).astype(np.int8))
    elif labeled and task == "multiclass":
        columns["grade"] = pa.array(GRADES[np.digitize(signal + rng.logistic(0, 1, rows), [0.5, 1.5])])
    elif labeled:
        columns["spend"] = pa.array(50 + 10 * signal + rng.normal(0, 5, rows))
    if labeled:
        columns["event_time"] = pa.array(
            np.datetime64(f"{MONTHS[index]}-01") + np.sort(rng.integers(0, 27 * 86400, rows)).astype("timedelta64[s]")
        )
    return pa.table(columns)


def write_month(path: Path, rows: int, index: int, seed: int, *, labeled: bool, task: str = "binary") -> None:
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    partial = path.with_suffix(".partial")
    writer = None
    for start in range(0, rows, CHUNK):
        table = month_chunk(min(CHUNK, rows - start), index, rng, labeled=labeled, task=task)
        writer = writer or pq.ParquetWriter(partial, table.schema)
        writer.write_table(table)
    writer.close()
    partial.rename(path)


def dataset(data: Path, production_rows: int, labeled_rows: int, task: str = "binary") -> Path:
    """Production months 2025-03 and 2025-04, labeled months 2025-01 .. 2025-04, under one folder (the
    production months are the same for every task)."""
    folder = data / f"p{production_rows}_l{labeled_rows}"
    labeled = folder / ("labeled" if task == "binary" else f"labeled-{task}")
    for index, month in enumerate(MONTHS):
        write_month(
            labeled / f"month={month}" / "part-0.parquet", labeled_rows, index, 100 + index, labeled=True, task=task
        )
        if index >= 2:
            write_month(
                folder / "production" / f"month={month}" / "part-0.parquet",
                production_rows,
                index,
                200 + index,
                labeled=False,
            )
    return folder


def write_config(folder: Path, registry: Path, reference: str, window_months: int = 3, task: str = "binary") -> Path:
    path = registry.parent / f"{registry.name}.toml"
    labeled = folder / ("labeled" if task == "binary" else f"labeled-{task}")
    path.write_text(
        f"""
[model]
name = "bench"
task = "{task}"
target = "{TARGETS[task]}"
numeric_features = {json.dumps(NUMERIC)}
categorical_features = {json.dumps(list(CATEGORIES))}
timestamp = "event_time"
[data]
production = "{(folder / "production").resolve()}"
labeled = "{labeled.resolve()}"
reference_month = "2025-03"
[registry]
root = "{registry.resolve()}"
[drift]
reference = "{reference}"
[training]
window_months = {window_months}
"""
    )
    return path


# -- workers (run in their own process) ------------------------------------------------------------------


def import_engine() -> float:
    """Import every module a cycle uses (scikit-learn is most of it), so engine time is the cycle's work."""
    started = time.perf_counter()
    import matplotlib.figure  # noqa: F401 - the reports' charts

    import retrain.cycle
    import retrain.drift
    import retrain.estimation
    import retrain.evaluation
    import retrain.reports
    import retrain.training  # noqa: F401

    return time.perf_counter() - started


def cycle_worker(config_path: str, month: str, force: bool, dry_run: bool) -> None:
    imports = import_engine()
    from retrain.config import load_config
    from retrain.cycle import run_cycle
    from retrain.records import Run

    config = load_config(config_path)
    started = time.perf_counter()
    entry = run_cycle(config, Run(f"bench-{month}-{time.time_ns()}", month, force=force, dry_run=dry_run))
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "imports": imports, "peak_rss": peak_rss(), "outcome": entry.outcome}))


def step_worker(config_path: str, month: str, step: str, state_path: str) -> None:
    """One cycle step, as an Airflow task runs it: its inputs from the previous steps' JSON records."""
    import_engine()
    from retrain.config import load_config
    from retrain.cycle import Cycle
    from retrain.cycle.drift import check_drift
    from retrain.cycle.evaluate import evaluate
    from retrain.cycle.keep import keep
    from retrain.cycle.pull import pull_snapshots
    from retrain.cycle.record import record
    from retrain.cycle.train import train_challenger
    from retrain.records import DriftCheck, Evaluation, Kept, Pulled, Run, Trained
    from retrain.serial import from_jsonable, to_jsonable

    state = json.loads(Path(state_path).read_text()) if Path(state_path).exists() else {}
    run = Run(state.get("run_id", f"bench-steps-{time.time_ns()}"), month, force=True, dry_run=True)
    cycle = Cycle.open(load_config(config_path), run)
    kinds = {"pulled": Pulled, "drift": DriftCheck, "trained": Trained, "evaluation": Evaluation, "kept": Kept}
    records = {name: from_jsonable(kind, state[name]) if name in state else None for name, kind in kinds.items()}
    started = time.perf_counter()
    if step == "pull_snapshots":
        result = pull_snapshots(cycle)
    elif step == "check_drift":
        result = check_drift(cycle, records["pulled"])
    elif step == "train_challenger":
        result = train_challenger(cycle, records["pulled"])
    elif step == "evaluate":
        result = evaluate(cycle, records["pulled"], records["drift"], records["trained"])
    elif step == "keep_champion":
        result = keep(cycle, records["pulled"], records["evaluation"])
    else:
        record(cycle, records["pulled"], records["drift"], records["evaluation"], None, records["kept"])
        result = None
    seconds = time.perf_counter() - started
    names = {
        "pull_snapshots": "pulled",
        "check_drift": "drift",
        "train_challenger": "trained",
        "evaluate": "evaluation",
    }
    if result is not None:
        state[names.get(step, "kept")] = to_jsonable(result)
    state["run_id"] = run.run_id
    Path(state_path).write_text(json.dumps(state))
    print(json.dumps({"seconds": seconds, "peak_rss": peak_rss()}))


def peak_rss() -> int:
    """This process's own peak resident set size (VmHWM). Not getrusage's ru_maxrss: Linux carries that
    over from the parent at fork and across exec, so a child of this big benchmark would inherit its peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def in_process(*args: str) -> dict:
    result = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"{' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# -- benchmarks ------------------------------------------------------------------------------------------


def gb(size: int) -> str:
    return f"{size / 1e9:.2f} GB"


def compile_engine() -> None:
    """Write the engine's bytecode before any measured process starts. pip compiles an installed package,
    and an editable install's bytecode is written on its first import, but not where
    PYTHONDONTWRITEBYTECODE is set (as on the build machines): there every measured process compiled the
    engine's source again (about 0.1 s of a 2 s `retrain drift`), which no user's second run does, while
    the baseline's libraries load the bytecode pip wrote."""
    compileall.compile_dir(ROOT / "include" / "retrain", quiet=1)


def timed_process(command: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return time.perf_counter() - started, result.stdout


def bench_drift_process(data: Path, repeats: int = 3) -> None:
    folder = data / "drift_1m_x20"
    files = []
    for index, name in enumerate(("reference", "current")):
        path = folder / f"{name}.parquet"
        files.append(str(path))
        if not path.exists():
            folder.mkdir(parents=True, exist_ok=True)
            rng = np.random.default_rng(index)
            columns = {}
            for j in range(20):
                shift = 0.004 * j * index if j % 5 in (1, 2) else (0.5 * index if j % 5 == 4 else 0.0)
                kind = j % 5
                if kind == 2:
                    values = rng.lognormal(shift, 1.5, 1_000_000)
                elif kind == 3:
                    values = rng.poisson(3 + shift, 1_000_000).astype(float)
                else:
                    values = rng.normal(shift, 1.0, 1_000_000)
                columns[f"f{j:02d}"] = values
            pq.write_table(pa.table(columns), path)
    ours_times, theirs_times = [], []
    for _ in range(repeats):
        seconds, ours = timed_process([sys.executable, "-m", "retrain", "drift", *files, "--json"])
        ours_times.append(seconds)
        seconds, theirs = timed_process([sys.executable, "-c", BASELINE_DRIFT, *files])
        theirs_times.append(seconds)
    report, baseline = json.loads(ours), json.loads(theirs)
    stat_error = max(abs(f["statistic"] - baseline[f["name"]][0]) for f in report["features"])
    p_error = max(abs(f["p_value"] - baseline[f["name"]][1]) for f in report["features"])
    ours_median, theirs_median = statistics.median(ours_times), statistics.median(theirs_times)
    print("`retrain drift` as a whole process, 1,000,000 rows x 20 numeric features, two Parquet files")
    print(f"  pandas + ks_2samp loop script {theirs_median:7.2f} s   (median of {repeats})")
    print(
        f"  retrain drift --json          {ours_median:7.2f} s   {theirs_median / ours_median:5.1f}x faster "
        "(target >= 10x)"
    )
    print(f"  max |statistic diff| {stat_error:.1e}, max |p-value diff| {p_error:.1e} (identical: 0 and <= 1e-9)")


def baseline_read(
    folder: Path, months: list[str], reference_production: bool, window_months: int, labeled: str = "labeled"
) -> float:
    """Seconds to read, once, with pandas, the snapshots a cycle uses."""
    import pandas as pd

    started = time.perf_counter()
    pd.read_parquet(folder / "production" / f"month={months[-1]}")
    if reference_production:
        pd.read_parquet(folder / "production" / f"month={months[-2]}")
    # The run's window, and the champion's window a month earlier when that is the drift reference.
    labeled_months = window_months if reference_production else window_months + 1
    for month in months[-labeled_months:]:
        pd.read_parquet(folder / labeled / f"month={month}")
    return time.perf_counter() - started


def bench_cycles(
    data: Path,
    production_rows: int,
    labeled_rows: int,
    *,
    cycles: list[tuple[str, int, tuple | None]],
    repeats: int = 3,
    task: str = "binary",
) -> None:
    """Each cycle is (drift reference mode, training window in months, (seconds, bytes) targets or None)."""
    folder = dataset(data, production_rows, labeled_rows, task)
    model = {"binary": "", "multiclass": " of a 3-class model", "regression": " of a regression model"}[task]
    print(
        f"Whole cycle{model} (forced: drift, estimate, training, evaluation), {production_rows:,} production rows, "
        f"{labeled_rows:,} labeled rows a month, 20 features"
    )
    for reference, window_months, targets in cycles:
        with tempfile.TemporaryDirectory(dir=data) as scratch:
            config = write_config(folder, Path(scratch) / "registry", reference, window_months, task)
            in_process("--cycle-worker", str(config), "2025-03")  # bootstraps the champion
            # Dry runs leave the registry as it was, so each repeat measures the same cycle.
            runs = [
                in_process("--cycle-worker", str(config), "2025-04", "--force", "--dry-run") for _ in range(repeats)
            ]
            measured = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]
        window = f"{window_months}-month training window ({window_months * labeled_rows:,} labeled rows)"
        described = {
            "validated": f"reference: the {production_rows:,}-row production month the champion was validated on",
            "training": "reference: the champion's training window",
        }[reference]
        labeled = "labeled" if task == "binary" else f"labeled-{task}"
        read = baseline_read(folder, MONTHS, reference == "validated", window_months, labeled)
        print(f"  {window}, {described} (median of {repeats} runs, each in a fresh process)")
        seconds, rss = measured["seconds"], measured["peak_rss"]
        against_time = f"{seconds / targets[0]:.2f} of the {targets[0]:g} s target; " if targets else ""
        against_memory = f"({rss / targets[1]:.2f} of the {gb(targets[1])} target)" if targets else "(no target)"
        print(
            f"    engine time {seconds:7.2f} s  ({against_time}{seconds / read:.1f}x the time pandas takes to read "
            f"the same snapshots once, {read:.2f} s), after {measured['imports']:.2f} s of imports"
        )
        print(f"    peak RSS    {gb(rss):>9}  {against_memory}   outcome {measured['outcome']}")


def bench_steps(data: Path, production_rows: int, labeled_rows: int) -> None:
    folder = dataset(data, production_rows, labeled_rows)
    print(
        f"Each step as its own process (as Airflow runs it), {production_rows:,} production rows, the default "
        "3-month window:"
    )
    with tempfile.TemporaryDirectory(dir=data) as scratch:
        config = write_config(folder, Path(scratch) / "registry", "validated")
        in_process("--cycle-worker", str(config), "2025-03")
        state = str(Path(scratch) / "state.json")
        for step in ("pull_snapshots", "check_drift", "train_challenger", "evaluate", "keep_champion", "record"):
            measured = in_process("--step-worker", str(config), "2025-04", step, state)
            print(f"  {step:<17} {measured['seconds']:7.2f} s   peak RSS {gb(measured['peak_rss'])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT / ".bench-data"))
    parser.add_argument("--skip-10m", action="store_true")
    parser.add_argument("--tasks-only", action="store_true", help="only the 1M-row cycles of each task")
    parser.add_argument("--cycle-worker", nargs=2, metavar=("CONFIG", "MONTH"))
    parser.add_argument("--step-worker", nargs=4, metavar=("CONFIG", "MONTH", "STEP", "STATE"))
    parser.add_argument("--force", action="store_true")
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--results", help="also write the figures, dated, into this Markdown file")
    args = parser.parse_args()
    if args.cycle_worker:
        cycle_worker(*args.cycle_worker, force=args.force, dry_run=args.dry_run)
        return
    if args.step_worker:
        step_worker(*args.step_worker)
        return
    data = Path(args.data)
    data.mkdir(parents=True, exist_ok=True)
    compile_engine()
    if args.tasks_only:
        with recorded(args.results, "bench_scale.py --tasks-only"):
            for task in ("binary", "multiclass", "regression"):
                bench_cycles(data, 1_000_000, 200_000, cycles=[("validated", 1, (6.0, 1.2e9))], task=task)
                print()
        return
    with recorded(args.results, "bench_scale.py"):
        bench_drift_process(data)
        print()
        # The 1M-row cycles train on one month (a 200k-row training window); the default 3-month window
        # fits three times the rows, and is shown beside them without a target.
        targets = (6.0, 1.2e9)
        bench_cycles(
            data,
            1_000_000,
            200_000,
            cycles=[("validated", 1, targets), ("training", 1, targets), ("validated", 3, None)],
        )
        for task in ("multiclass", "regression"):
            print()
            bench_cycles(data, 1_000_000, 200_000, cycles=[("validated", 1, targets)], task=task)
        print()
        bench_steps(data, 1_000_000, 200_000)
        if not args.skip_10m:
            print()
            bench_cycles(data, 10_000_000, 1_000_000, cycles=[("validated", 3, (180.0, 8e9))], repeats=1)
            print()
            bench_steps(data, 10_000_000, 1_000_000)


if __name__ == "__main__":
    main()

"""Small months cost almost nothing: the fixed costs a fleet of small models pays every month.

    python bench/bench_small.py

1. A 10,000-row month with no drift, in-process (target: at most 0.3 s), and the share of it spent on
   charts (target: at most 20%); a 10,000-row month that drifted beside it, which draws its charts.
2. The engine's imports in a task process, on top of Airflow's own (target: at most 0.5 s): a fresh
   process that imports Airflow's task runner, against one that then imports what the retraining tasks
   import, median of 5 each. scikit-learn, which only the steps that score or fit a model load, is shown
   apart.
3. The first, bootstrapping month at 1,000,000 rows as `retrain cycle` runs it, process start included
   (target: at most 6 s), median of 3, each on a fresh registry.
4. What the estimate's sample costs in accuracy: the spread of the estimated AUC over seeded samples of
   10,000, 50,000 and 200,000 rows of a 2,000,000-row month, against the whole month's estimate.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from bench_scale import MONTHS, compile_engine, dataset, month_chunk, write_config
from results import recorded

ROOT = Path(__file__).resolve().parents[1]
AIRFLOW_TASK = "import airflow.sdk.execution_time.task_runner"
# What a task process imports to run any step: the DAG file's factory, the tasks, every step's module.
ENGINE_TASK = (
    "import retrain.airflow.factory, retrain.airflow.tasks, retrain.cycle, retrain.drift, retrain.evaluation, "
    "retrain.estimation, retrain.reports, retrain.snapshots, pyarrow.parquet"
)


def quiet_month(folder: Path, rows: int, index: int, *, labeled: bool, shifted: bool = False) -> None:
    """A month drawn from the same distribution as every other (or, `shifted`, one whose shifted
    features moved), dated `MONTHS[index]`."""
    rng = np.random.default_rng(1000 + 10 * index + labeled)
    table = month_chunk(rows, 3 if shifted else 0, rng, labeled=labeled)
    if labeled:
        stamps = np.datetime64(f"{MONTHS[index]}-01") + np.sort(rng.integers(0, 27 * 86400, rows)).astype(
            "timedelta64[s]"
        )
        table = table.set_column(table.schema.get_field_index("event_time"), "event_time", pa.array(stamps))
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / "part-0.parquet")


def small_dataset(root: Path, rows: int) -> Path:
    for index, month in enumerate(MONTHS):
        quiet_month(root / "labeled" / f"month={month}", rows, index, labeled=True)
        quiet_month(root / "production" / f"month={month}", rows, index, labeled=False, shifted=index == 3)
    return root


def bench_small_month(rows: int = 10_000, repeats: int = 7) -> None:
    import retrain.reports.charts as charts
    from retrain.config import load_config
    from retrain.cycle import run_cycle
    from retrain.records import Run

    charting = [0.0]
    for name in ("distribution", "roc_curves", "lift_distribution", "importances", "confusion"):
        draw = getattr(charts, name)

        def timed(*args: object, _draw=draw, **kwargs: object) -> object:  # noqa: ANN001
            started = time.perf_counter()
            try:
                return _draw(*args, **kwargs)
            finally:
                charting[0] += time.perf_counter() - started

        setattr(charts, name, timed)
    with tempfile.TemporaryDirectory() as scratch:
        folder = small_dataset(Path(scratch) / "data", rows)
        config = load_config(write_config(folder, Path(scratch) / "registry", "validated", window_months=1))
        run_cycle(config, Run("bootstrap", "2025-02"))
        print(f"A {rows:,}-row month, 20 features, with a champion, in-process (median of {repeats})")
        for label, month in (("no drift", "2025-03"), ("drifted ", "2025-04")):
            runs = []
            for repeat in range(repeats):
                charting[0] = 0.0
                started = time.perf_counter()
                entry = run_cycle(config, Run(f"{month}-{repeat}", month, dry_run=True))
                runs.append((time.perf_counter() - started, charting[0], entry.outcome))
            seconds, charted, outcome = sorted(runs)[len(runs) // 2]
            quiet = label == "no drift"
            target = f"  ({seconds / 0.3:.2f} of the 0.3 s target)" if quiet else ""
            # A month that drifted draws its drifted features and its evaluation: where a person will look.
            share = "target <= 20%" if quiet else "drifted features and evaluation"
            print(
                f"  {label}  {seconds:6.3f} s{target}, charts {charted:6.3f} s ({charted / seconds:4.0%} of the cycle; "
                f"{share})  {outcome}"
            )


def wall(code: str, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bench_imports() -> None:
    with_pandas = f"{AIRFLOW_TASK}; {ENGINE_TASK}; import pandas"
    with_sklearn = f"{with_pandas}; import retrain.training"
    wall(with_sklearn, repeats=1)  # compiled bytecode and a warm page cache for every measured run
    airflow, engine = wall(AIRFLOW_TASK), wall(f"{AIRFLOW_TASK}; {ENGINE_TASK}")
    pandas, sklearn = wall(with_pandas), wall(with_sklearn)
    print("Imports in a task process, as a worker pays them (fresh processes, median of 5)")
    print(f"  Airflow's task runner alone                      {airflow:6.2f} s")
    print(
        f"  + the engine (retrain, numpy, pyarrow)            {engine - airflow:6.2f} s  "
        f"({(engine - airflow) / 0.5:.2f} of the 0.5 s target)"
    )
    print(f"  + pandas, loaded by the steps that read frames    {pandas - engine:6.2f} s")
    print(f"  + scikit-learn, by the steps that score or fit    {sklearn - pandas:6.2f} s")


def bench_bootstrap(data: Path, repeats: int = 3) -> None:
    folder = dataset(data, 1_000_000, 200_000)
    times = []
    with tempfile.TemporaryDirectory(dir=data) as scratch:
        registry = Path(scratch) / "registry"
        config = write_config(folder, registry, "validated", window_months=1)
        command = [sys.executable, "-m", "retrain", "cycle", "--config", str(config), "--month", "2025-03"]
        for _ in range(repeats):
            shutil.rmtree(registry, ignore_errors=True)
            started = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            times.append(time.perf_counter() - started)
    seconds = statistics.median(times)
    print("The first month of a model: `retrain cycle` bootstrapping a champion, process start included")
    print(
        f"  1,000,000 production rows, 200,000 labeled  {seconds:6.2f} s  ({seconds / 6:.2f} of the 6 s target; "
        f"median of {repeats}, each on a fresh registry)"
    )


def bench_estimate_sample(data: Path, sizes: tuple[int, ...] = (10_000, 50_000, 200_000), seeds: int = 20) -> None:
    """How far the estimated AUC of a seeded uniform sample of the month lands from the whole month's: a
    model fitted on one labeled month, calibrated on the next as a validation holdout is, estimating a
    2,000,000-row production month."""
    import pandas as pd
    from sklearn.ensemble import HistGradientBoostingClassifier

    from retrain.estimation import expected_auc, fit_calibration

    folder = dataset(data, 10_000_000, 1_000_000)
    numeric = [f"x{i:02d}" for i in range(16)]
    train = pd.read_parquet(folder / "labeled" / "month=2025-01", columns=[*numeric, "churned"]).head(200_000)
    holdout = pd.read_parquet(folder / "labeled" / "month=2025-02", columns=[*numeric, "churned"]).head(100_000)
    month = pd.read_parquet(folder / "production" / "month=2025-04", columns=numeric).head(2_000_000)
    model = HistGradientBoostingClassifier(random_state=0).fit(train[numeric], train["churned"])
    calibration = fit_calibration(model.predict_proba(holdout[numeric])[:, 1], holdout["churned"].to_numpy())
    scores = model.predict_proba(month[numeric])[:, 1]
    probabilities = calibration.apply(scores)
    whole = expected_auc(scores, probabilities)
    print(f"The estimate's sample: expected AUC of {len(month):,} production rows {whole:.4f}; over {seeds} seeds")
    for size in sizes:
        errors = []
        for seed in range(seeds):
            rows = np.sort(np.random.default_rng(seed).choice(len(month), size, replace=False))
            errors.append(expected_auc(scores[rows], probabilities[rows]) - whole)
        print(
            f"  {size:>8,} rows   spread (sd) {np.std(errors):.4f}   largest miss {np.max(np.abs(errors)):.4f}"
            + ("   (drift.estimate_sample_rows, the default)" if size == 50_000 else "")
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT / ".bench-data"))
    parser.add_argument("--results", help="also write the figures, dated, into this Markdown file")
    args = parser.parse_args()
    data = Path(args.data)
    data.mkdir(parents=True, exist_ok=True)
    compile_engine()
    with recorded(args.results, "bench_small.py"):
        bench_small_month()
        print()
        bench_imports()
        print()
        bench_bootstrap(data)
        print()
        bench_estimate_sample(data)


if __name__ == "__main__":
    main()

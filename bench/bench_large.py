"""Months larger than memory: a whole cycle on a 100M-row production month against a 100M-row validated
reference, with 1M labeled rows a month, beside the same cycle at 10M and 1M rows so that a regression at
any size shows.

    python bench/bench_large.py                 # 1M, 10M and 100M (the 100M months take about 27 GB of
                                                # disk, written once under .bench-data, removed by make clean)
    python bench/bench_large.py --sizes 1 10    # millions of production rows

Each cycle runs in a fresh process, as a worker runs it: first the month the champion is bootstrapped on
(2025-03, which becomes the validated reference), then a forced dry run on 2025-04 (drift, estimate,
training, evaluation), which is the figure with the targets: at most 10 minutes and 8 GB peak RSS at 100M
rows on a 2-core machine. Times exclude the imports (printed beside them). Throughput is production rows
per second per core: the month's rows over the cycle's (or the step's) seconds, over the cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_scale import CATEGORIES, NUMERIC, compile_engine, dataset, gb, import_engine, peak_rss, write_config
from results import recorded

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {100_000_000: (600.0, 8e9)}
LABELED_ROWS = {1_000_000: 200_000}  # the 1M-row cycle of bench_scale; larger months have 1M labeled rows
STEPS = ("pull_snapshots", "check_drift", "train_challenger", "evaluate", "keep", "record")


def cycle_worker(config_path: str, month: str, force: bool) -> None:
    """One cycle in this process, each step timed, after the imports (scikit-learn's, matplotlib's): a
    step's time is its work."""
    imports = import_engine()
    import retrain.cycle.run as run_module
    from retrain.config import load_config
    from retrain.records import Run

    steps: dict[str, float] = {}
    for name in STEPS:
        step = getattr(run_module, name)

        def timed(*args: object, _step=step, _name=name, **kwargs: object) -> object:  # noqa: ANN001
            started = time.perf_counter()
            try:
                return _step(*args, **kwargs)
            finally:
                steps[_name] = steps.get(_name, 0.0) + time.perf_counter() - started

        setattr(run_module, name, timed)
    config = load_config(config_path)
    started = time.perf_counter()
    entry = run_module.run_cycle(config, Run(f"bench-{month}-{time.time_ns()}", month, force=force, dry_run=force))
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {"seconds": seconds, "imports": imports, "steps": steps, "peak_rss": peak_rss(), "outcome": entry.outcome}
        )
    )


def in_process(*args: str) -> dict:
    result = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"{' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def per_core(rows: int, seconds: float) -> str:
    return f"{rows / seconds / (os.cpu_count() or 1) / 1e6:6.2f}M rows/s/core"


def bench_size(data: Path, production_rows: int) -> None:
    labeled_rows = LABELED_ROWS.get(production_rows, 1_000_000)
    started = time.perf_counter()
    folder = dataset(data, production_rows, labeled_rows)
    written = time.perf_counter() - started
    print(
        f"{production_rows:,} production rows against a {production_rows:,}-row validated reference, "
        f"{labeled_rows:,} labeled rows a month, 20 features (16 numeric, 4 categorical), 3-month window"
        + (f" (data written in {written:.0f} s)" if written > 5 else "")
    )
    with tempfile.TemporaryDirectory(dir=data) as scratch:
        config = write_config(folder, Path(scratch) / "registry", "validated", window_months=3)
        for label, month, force in (("bootstrap, 2025-03", "2025-03", False), ("cycle, 2025-04  ", "2025-04", True)):
            measured = in_process("--cycle-worker", str(config), month, *(["--force"] if force else []))
            seconds, rss = measured["seconds"], measured["peak_rss"]
            targets = TARGETS.get(production_rows) if force else None
            against = (
                f"  ({seconds / targets[0]:.2f} of the {targets[0]:.0f} s target, {rss / targets[1]:.2f} of the "
                f"{gb(int(targets[1]))} target)"
                if targets
                else ""
            )
            print(
                f"  {label} {seconds:8.1f} s  peak RSS {gb(rss):>8}  {per_core(production_rows, seconds)}  "
                f"{measured['outcome']}{against}, after {measured['imports']:.1f} s of imports"
            )
            for step, step_seconds in measured["steps"].items():
                reads_month = step in ("pull_snapshots", "check_drift")
                rate = f"  {per_core(production_rows, step_seconds)}" if reads_month else ""
                print(f"      {step:<17} {step_seconds:8.1f} s{rate}")


def bench_drift_scaling(data: Path, production_rows: int = 10_000_000) -> None:
    """Drift alone on one month and its reference, in memory and streamed, on one core and on all: what a
    larger worker buys, and what streaming costs where a month still fits in memory."""
    import retrain.ks as ks_module
    from retrain.config import DriftSpec
    from retrain.drift import SnapshotColumns, detect_drift
    from retrain.snapshots import Schema, SnapshotReader

    folder = dataset(data, production_rows, LABELED_ROWS.get(production_rows, 1_000_000)) / "production"
    reference = SnapshotReader(str(folder / "month=2025-03"), month="2025-03")
    current = SnapshotReader(str(folder / "month=2025-04"), month="2025-04")
    schema = Schema(numeric=tuple(NUMERIC), categorical=tuple(CATEGORIES))
    passes = [0]
    count_pass = ks_module._count_pass

    def counted(*args: object) -> object:
        passes[0] += 1
        return count_pass(*args)

    ks_module._count_pass = counted
    # drift's threads follow os.cpu_count(); it is the os module's own, so it is put back as it was.
    cpu_count = os.cpu_count
    cores = cpu_count() or 1
    print(f"Drift alone, {production_rows:,} rows against {production_rows:,}, 20 features (fresh reads, warm cache)")
    detect_drift(SnapshotColumns([reference]), SnapshotColumns([current]), schema, DriftSpec(), rows=(1, 1))
    for label, batch_rows, workers in (
        ("in memory, all cores", None, cores),
        ("streamed, all cores ", 1_000_000, cores),
        ("streamed, one core  ", 1_000_000, 1),
    ):
        os.cpu_count = lambda workers=workers: workers
        passes[0] = 0
        started = time.perf_counter()
        detect_drift(
            SnapshotColumns([reference], batch_rows=batch_rows),
            SnapshotColumns([current], batch_rows=batch_rows),
            schema,
            DriftSpec(),
            rows=(1, 1),
        )
        seconds = time.perf_counter() - started
        streamed = f", {passes[0]} counting passes over {len(NUMERIC)} numeric features" if batch_rows else ""
        print(
            f"  {label} {seconds:6.2f} s  {2 * production_rows / seconds / workers / 1e6:5.2f}M rows read/s/core"
            f"{streamed}"
        )
    os.cpu_count, ks_module._count_pass = cpu_count, count_pass


def bench_training_rows(data: Path, sizes: tuple[int, ...] = (250_000, 500_000, 1_000_000, 2_000_000)) -> None:
    """What `training.max_rows` gives up: the default estimator fitted on growing stratified samples of a
    3M-row labeled window, scored on the same 300,000-row holdout of the next month."""
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    from retrain.config import ModelSpec, TrainingSpec
    from retrain.training import predict_scores, stratified_sample, train

    folder = dataset(data, 10_000_000, 1_000_000) / "labeled"
    columns = [*NUMERIC, *CATEGORIES, "churned"]
    window = pd.concat(
        [pd.read_parquet(folder / f"month={month}", columns=columns) for month in ("2025-01", "2025-02", "2025-03")],
        ignore_index=True,
    )
    holdout = pd.read_parquet(folder / "month=2025-04", columns=columns).sample(300_000, random_state=0)
    model = ModelSpec(
        name="bench", target="churned", numeric_features=tuple(NUMERIC), categorical_features=tuple(CATEGORIES)
    )
    print(f"Training on a sample of a {len(window):,}-row window (training.max_rows), scored on 300,000 later rows")
    for rows in sizes:
        sample = stratified_sample(window, "churned", rows, 42)
        started = time.perf_counter()
        pipeline = train(sample, model, TrainingSpec())
        seconds = time.perf_counter() - started
        auc = roc_auc_score(holdout["churned"], predict_scores(pipeline, holdout, model, None))
        default = "  (the default)" if rows == TrainingSpec().max_rows else ""
        print(f"  {rows:>9,} rows   fit {seconds:6.1f} s   holdout AUC {auc:.4f}{default}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT / ".bench-data"))
    parser.add_argument("--sizes", nargs="+", type=int, default=[1, 10, 100], help="millions of production rows")
    parser.add_argument("--cycle-worker", nargs=2, metavar=("CONFIG", "MONTH"))
    parser.add_argument("--force", action="store_true")
    parser.add_argument("--results", help="also write the figures, dated, into this Markdown file")
    args = parser.parse_args()
    if args.cycle_worker:
        cycle_worker(*args.cycle_worker, force=args.force)
        return
    data = Path(args.data)
    data.mkdir(parents=True, exist_ok=True)
    compile_engine()
    with recorded(args.results, "bench_large.py"):
        for millions in args.sizes:
            bench_size(data, millions * 1_000_000)
            print()
        bench_drift_scaling(data)
        print()
        bench_training_rows(data)


if __name__ == "__main__":
    sys.exit(main())

"""Engine benchmarks: each figure is a ratio against a baseline run in this same process.

    python bench/bench_engine.py            # full sizes from the issue (about two minutes)
    python bench/bench_engine.py --quick    # a smaller smoke run

1. KS drift on every feature vs a per-feature scipy.stats.ks_2samp loop (target: >= 10x, identical
   statistics), with the time to sort both samples of every feature shown as the floor a sort-based method
   cannot beat.
2. Paired bootstrap CI of the AUC lift vs the naive loop of roc_auc_score per resample (target: < 5 s at
   200,000 rows x 1,000 resamples).
3. Training time of the default estimator (HistGradientBoosting) vs the classic GradientBoosting.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from results import recorded
from scipy import stats
from sklearn.metrics import roc_auc_score

from retrain.config import ModelSpec, TrainingSpec
from retrain.evaluation import paired_bootstrap_lift
from retrain.ks import ks_test
from retrain.training import predict_scores, train


def timed(function, *args, **kwargs):  # noqa: ANN001, ANN201
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - start, result


def drift_features(rows: int, features: int, rng: np.random.Generator) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A realistic mix: most features unchanged, some shifted a little or a lot, skewed and tied ones."""
    reference, current = [], []
    for j in range(features):
        kind = j % 5
        if kind == 0:
            x, y = rng.normal(size=rows), rng.normal(size=rows)
        elif kind == 1:
            x, y = rng.normal(size=rows), rng.normal(0.004 * j, 1, size=rows)
        elif kind == 2:
            x, y = rng.lognormal(0, 1.5, rows), rng.lognormal(0.01 * j, 1.5, rows)
        elif kind == 3:
            x, y = rng.poisson(3, rows).astype(float), rng.poisson(3 + 0.01 * j, rows).astype(float)
        else:
            x, y = rng.normal(size=rows), rng.normal(0.5, 1.2, size=rows)
        reference.append(x)
        current.append(y)
    return reference, current


def bench_drift(rows: int, features: int) -> None:
    reference, current = drift_features(rows, features, np.random.default_rng(0))
    ks_test(reference[:1], current[:1])  # warm caches and imports for both sides
    stats.ks_2samp(reference[0][:1000], current[0][:1000])
    ours_time, ours = timed(ks_test, reference, current)
    scipy_time, theirs = timed(lambda: [stats.ks_2samp(x, y) for x, y in zip(reference, current, strict=True)])
    sort_time, _ = timed(lambda: [(np.sort(x), np.sort(y)) for x, y in zip(reference, current, strict=True)])
    stat_error = max(abs(a.statistic - b.statistic) for a, b in zip(ours, theirs, strict=True))
    p_error = max(abs(a.p_value - b.pvalue) for a, b in zip(ours, theirs, strict=True))
    print(f"KS drift, {rows:,} rows x {features} features (reference and current)")
    print(f"  scipy ks_2samp loop      {scipy_time:7.2f} s")
    print(f"  retrain ks_test          {ours_time:7.2f} s   {scipy_time / ours_time:5.1f}x faster (target >= 10x)")
    print(f"  floor: sort both samples {sort_time:7.2f} s   retrain takes {ours_time / sort_time:.2f}x the sort time")
    print(f"  max |statistic diff| {stat_error:.1e}, max |p-value diff| {p_error:.1e} (target <= 1e-9)")


def bench_bootstrap(rows: int, resamples: int) -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, rows)
    champion = labels * 0.5 + rng.normal(size=rows)
    challenger = labels * 0.55 + rng.normal(size=rows)
    ours_time, lift = timed(
        paired_bootstrap_lift, labels, champion, challenger, resamples=resamples, confidence=0.95, seed=0
    )
    naive_resamples = max(10, resamples // 40)

    def naive() -> None:
        draw = np.random.default_rng(2)
        for _ in range(naive_resamples):
            rows_drawn = draw.integers(0, rows, rows)
            roc_auc_score(labels[rows_drawn], challenger[rows_drawn]) - roc_auc_score(
                labels[rows_drawn], champion[rows_drawn]
            )

    naive_time = timed(naive)[0] * resamples / naive_resamples
    print(f"Paired bootstrap of the AUC lift, {rows:,} rows x {resamples:,} resamples")
    print(f"  roc_auc_score loop       {naive_time:7.2f} s   (timed on {naive_resamples} resamples, scaled)")
    print(f"  retrain                  {ours_time:7.2f} s   {naive_time / ours_time:5.1f}x faster (target < 5 s)")
    print(f"  lift {lift.lift:+.4f}, 95% interval [{lift.low:+.4f}, {lift.high:+.4f}]")


def bench_training(rows: int) -> None:
    model = ModelSpec(
        name="bench", target="y", numeric_features=("a", "b", "c", "d"), categorical_features=("plan", "region")
    )
    rng = np.random.default_rng(3)

    def frame(n: int) -> pd.DataFrame:
        data = pd.DataFrame({c: rng.normal(size=n) for c in ("a", "b", "c", "d")})
        data["plan"] = rng.choice(["basic", "standard", "premium"], n).astype(object)
        data["region"] = rng.choice(["n", "s", "e", "w"], n).astype(object)
        logit = data["a"] - 0.5 * data["b"] + 0.8 * (data["plan"] == "basic") + 0.3 * data["c"] * data["d"]
        data["y"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
        return data

    training, test = frame(rows), frame(20_000)
    results = {}
    for estimator in ("hist_gradient_boosting", "gradient_boosting"):
        seconds, fitted = timed(train, training, model, TrainingSpec(estimator=estimator, seed=0))
        results[estimator] = (seconds, roc_auc_score(test["y"], predict_scores(fitted, test, model)))
    (fast, fast_auc), (classic, classic_auc) = results["hist_gradient_boosting"], results["gradient_boosting"]
    print(f"Training at {rows:,} rows x 6 features")
    print(f"  GradientBoosting (classic, n_estimators=200) {classic:7.2f} s   test AUC {classic_auc:.4f}")
    print(f"  HistGradientBoosting (default)               {fast:7.2f} s   test AUC {fast_auc:.4f}")
    print(f"  default is {classic / fast:.1f}x faster")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10x smaller inputs")
    parser.add_argument("--results", help="also write the figures, dated, into this Markdown file")
    args = parser.parse_args()
    scale = 10 if args.quick else 1
    with recorded(args.results, "bench_engine.py"):
        bench_drift(1_000_000 // scale, 20)
        print()
        bench_bootstrap(200_000 // scale, 1_000)
        print()
        bench_training(100_000 // scale)


if __name__ == "__main__":
    main()

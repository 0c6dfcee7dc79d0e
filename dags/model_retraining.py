"""# Model retraining: `{model}`

Keeps the `{model}` classifier fresh (config `{config}`). For one month of data it:

1. **wait_for_data**: waits, in reschedule mode (no worker slot held), until the month's production
   partition and its last labeled partition have landed (and their `data.success_marker` files, when
   configured). After `data.wait_timeout_minutes` the run fails with one message naming what is missing.
2. **pull_snapshots**: validates every snapshot the run uses (drift reference, production, labeled
   window); bad data stops the run here with one message naming the file, month and column.
3. **check_drift**: tests every feature against the reference (by default the production month on
   which the champion was last validated) and estimates the champion's AUC on the month before labels
   arrive. No trigger fired and a champion in place: recorded as `NO_DRIFT`. Drift, an estimated-AUC
   drop past `drift.max_estimated_auc_drop`, a forced retrain, or no champion yet: on to training.
4. **train_challenger** (pool `retrain_training`): fits the challenger on the labeled window.
5. **evaluate** (pool `retrain_training`): scores champion and challenger on the same holdout and decides:
   `BOOTSTRAPPED`, `PROMOTED`, `KEPT_CHAMPION`, `REJECTED`, or `SUPERSEDED` when the champion already holds
   newer data (a backfill over history).
6. **promote** (publishes an immutable version, moves the champion by compare-and-swap, emits the model's
   champion asset) or **keep_champion** (a kept champion's validated month, the drift reference, moves
   forward to the month it just held up on).
7. **record_decision**: appends the run's ledger record, whatever the path.

## Which month

- Scheduled runs process the last month complete when their data interval ends: on the default
  monthly cron, the interval itself (the whole previous month).
- Manual runs take the `month` param; without it, the data interval if the run has one, else the last
  complete month.
- Backfills: `airflow backfill create --dag-id {dag_id} --from-date 2025-02-01 --to-date 2025-07-01
  --max-active-runs 1` creates one run per month, oldest first. Re-running a month reuses its run id,
  so nothing is written twice, and a run for an older month never replaces a newer champion.

## Params

`month` (YYYY-MM), `force_retrain`, `dry_run` (decide and record, never promote), and threshold overrides
`alpha` (drift significance) and `min_lift` (AUC lift a challenger needs). Any other key in a run's conf
fails the run at its first task.

Reports and the ledger live in the registry: `retrain registry ledger --config {config}`.
"""

# The docstring above is every model's DAG documentation; the models are config/models/*.toml, or the
# folder RETRAIN_CONFIG_DIR names.
from retrain.airflow import build_fleet

globals().update(build_fleet(doc_md=__doc__))

"""Synthetic monthly snapshots for a churn model, with a real signal and a drift that grows over time.

The story, month by month (month 0 is `start`):
- months 0-2: a stable world. The first cycle bootstraps a champion, the next ones find no drift.
- month 3 on: heavy users arrive (`usage_gb` shifts); churn does not depend on usage, so a challenger
  trained on the new data is no better and the champion is kept.
- month 4 on: newer customers (`tenure_months` shifts down) and a changing market: the effect of support
  calls on churn fades and then reverses, so the old champion degrades and challengers get promoted.
- after month 7 the world settles again, and challengers stop being measurably better.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from retrain.months import shift_month

log = logging.getLogger(__name__)

PLANS = np.array(["basic", "standard", "premium"])
REGIONS = np.array(["north", "south", "east", "west"])
PLAN_EFFECT = {"basic": 0.5, "standard": 0.0, "premium": -0.6}


@dataclass(frozen=True)
class MonthlyWorld:
    usage_shift: float
    tenure_shift: float
    support_effect: float


def world(month_index: int) -> MonthlyWorld:
    usage_shift = 0.8 if month_index >= 3 else 0.0
    tenure_shift = -4.0 * max(0, min(month_index, 7) - 3)
    support_effect = 1.2 - 0.6 * max(0, min(month_index, 7) - 3)
    return MonthlyWorld(usage_shift=usage_shift, tenure_shift=tenure_shift, support_effect=support_effect)


def generate_month(month: str, month_index: int, rows: int, rng: np.random.Generator) -> pd.DataFrame:
    """One month of customers with their churn label; a few values are missing, as in real data."""
    w = world(month_index)
    tenure = np.clip(rng.gamma(2.0, 12.0, rows) + w.tenure_shift, 0, 72).round()
    charges = rng.normal(70, 20, rows).clip(15, 150).round(2)
    support_calls = rng.poisson(1.5, rows).astype(float)
    usage = rng.lognormal(3.0 + w.usage_shift, 0.6, rows).round(2)
    plan = rng.choice(PLANS, rows, p=[0.5, 0.3, 0.2])
    region = rng.choice(REGIONS, rows)
    logit = (
        -0.8
        - 0.05 * (tenure - 24)
        + 0.03 * (charges - 70)
        + w.support_effect * (support_calls - 1.5)
        + np.vectorize(PLAN_EFFECT.get)(plan)
        + 0.3 * (region == "south")
    )
    churned = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    start = pd.Timestamp(f"{month}-01", tz="UTC")
    seconds = (start + pd.offsets.MonthBegin(1) - start).total_seconds()
    event_time = start + pd.to_timedelta(np.sort(rng.uniform(0, seconds, rows)), unit="s")
    frame = pd.DataFrame(
        {
            "customer_id": np.arange(rows) + month_index * 1_000_000,
            "event_time": event_time,
            "tenure_months": tenure,
            "monthly_charges": charges,
            "support_calls": support_calls,
            "usage_gb": usage,
            "plan": plan,
            "region": region,
            "churned": churned,
        }
    )
    frame.loc[rng.random(rows) < 0.02, "usage_gb"] = np.nan
    frame.loc[rng.random(rows) < 0.01, "region"] = None
    return frame


CONFIG_TEMPLATE = """\
# retrain config for the demo data (written by `retrain demo-data`). Paths are relative to this file.
[model]
name = "churn"
target = "churned"
numeric_features = ["tenure_months", "monthly_charges", "support_calls", "usage_gb"]
categorical_features = ["plan", "region"]
timestamp = "event_time"

[data]
production = "production"
labeled = "labeled"
reference_month = "{start}"

[registry]
root = "registry"

[training]
window_months = 3
seed = 7

[promotion]
min_auc = 0.7
min_lift = 0.005
"""


def write_demo_data(
    out: str | Path, *, months: int, start: str = "2025-01", rows: int = 20000, seed: int = 0
) -> Path | None:
    """Write production and labeled snapshots for `months` months under a folder or an s3:// prefix.

    For a folder, also writes `retrain.toml` next to the data and returns its path; an S3 prefix gets only
    the data (point a config's [data] at `<prefix>/production` and `<prefix>/labeled`).
    """
    import io

    from retrain.storage import open_store

    store = open_store(str(out))
    rng = np.random.default_rng(seed)
    for index in range(months):
        month = shift_month(start, index)
        for dataset in ("production", "labeled"):
            frame = generate_month(month, index, rows, rng)
            if dataset == "production":
                frame = frame.drop(columns=["churned"])
            buffer = io.BytesIO()
            frame.to_parquet(buffer, index=False)
            store.write(f"{dataset}/month={month}/part-0000.parquet", buffer.getvalue())
        log.info("wrote demo month %s", month)
    if str(out).startswith("s3://"):
        return None
    config_path = Path(out) / "retrain.toml"
    config_path.write_text(CONFIG_TEMPLATE.format(start=start))
    return config_path

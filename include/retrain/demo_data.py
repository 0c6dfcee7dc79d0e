"""Synthetic monthly snapshots for the demo models, with a real signal and shifts that last: a churn
classifier and a home-price regressor (`generate_price_month`, whose story is in its docstring).

The story, month by month (month 0 is `start`); every shift, once it happens, stays:
- months 0-2: a stable world. The first cycle bootstraps a champion, the next ones find no drift.
- month 3: heavy users arrive (`usage_gb` jumps). Churn does not depend on usage, so a challenger is no
  better: the champion is kept, and validated on month 3, which becomes the drift reference.
- month 4: the new normal is the reference now: no drift, no retraining.
- month 5: newer customers (`tenure_months` drops) and a changed market: support calls, which used to
  drive churn, now come with loyalty. The champion degrades and a challenger is promoted.
- month 8: the plan mix moves to premium plans: drift in `plan`, a retrain on the settled world.
- every other month: no drift against the month the champion was last validated on.

With `label_delay` d, labels lag production by d months: the labeled months run from `start - d` and the
last d production months have no labels yet.
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
    plan_shares: tuple[float, float, float]


def world(month_index: int) -> MonthlyWorld:
    return MonthlyWorld(
        usage_shift=0.8 if month_index >= 3 else 0.0,
        tenure_shift=-10.0 if month_index >= 5 else 0.0,
        support_effect=-0.6 if month_index >= 5 else 1.2,
        plan_shares=(0.25, 0.3, 0.45) if month_index >= 8 else (0.5, 0.3, 0.2),
    )


def generate_month(month: str, month_index: int, rows: int, rng: np.random.Generator) -> pd.DataFrame:
    """One month of customers with their churn label; a few values are missing, as in real data."""
    w = world(month_index)
    tenure = np.clip(rng.gamma(2.0, 12.0, rows) + w.tenure_shift, 0, 72).round()
    charges = rng.normal(70, 20, rows).clip(15, 150).round(2)
    support_calls = rng.poisson(1.5, rows).astype(float)
    usage = rng.lognormal(3.0 + w.usage_shift, 0.6, rows).round(2)
    plan = rng.choice(PLANS, rows, p=list(w.plan_shares))
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


DISTRICTS = np.array(["old_town", "riverside", "harbour", "hills", "suburbs"])
DISTRICT_PRICE = {"old_town": 5200.0, "riverside": 4600.0, "harbour": 4100.0, "hills": 3600.0, "suburbs": 2900.0}


def generate_price_month(month: str, month_index: int, rows: int, rng: np.random.Generator) -> pd.DataFrame:
    """One month of home sales with their price (in thousands), for a regression model. The story:

    - months 0-3: a stable market. The first cycle bootstraps a champion, the next ones find no drift.
    - month 4: mortgage rates jump from about 3% to about 6% and stay there; prices fall with them. The
      champion never saw such rates and prices too high: its RMSE doubles, and a challenger trained on the
      new month is promoted.
    - month 8: the city grows in the suburbs (`district` shifts); what a home is worth does not change, so a
      challenger is no better and the champion is kept, validated on the new mix.
    """
    high_rates = month_index >= 4
    suburbs_grow = month_index >= 8
    area = np.clip(rng.lognormal(4.4, 0.35, rows), 25, 400).round()
    rooms = np.clip(np.round(area / 25 + rng.normal(0, 0.7, rows)), 1, 10)
    age = np.clip(rng.gamma(2.0, 15.0, rows), 0, 120).round()
    rate = rng.normal(6.0 if high_rates else 3.0, 0.4, rows).round(2)
    shares = [0.12, 0.15, 0.18, 0.15, 0.40] if suburbs_grow else [0.2, 0.2, 0.2, 0.2, 0.2]
    district = rng.choice(DISTRICTS, rows, p=shares)
    per_m2 = np.vectorize(DISTRICT_PRICE.get)(district) * (1 - 0.003 * age) * np.exp(-0.12 * (rate - 3.0))
    price = (area * per_m2 / 1000 + 8 * rooms + rng.normal(0, 25, rows)).round(1)
    start = pd.Timestamp(f"{month}-01", tz="UTC")
    seconds = (start + pd.offsets.MonthBegin(1) - start).total_seconds()
    frame = pd.DataFrame(
        {
            "sale_id": np.arange(rows) + month_index * 1_000_000,
            "sold_at": start + pd.to_timedelta(np.sort(rng.uniform(0, seconds, rows)), unit="s"),
            "floor_area_m2": area,
            "rooms": rooms,
            "age_years": age,
            "mortgage_rate": rate,
            "district": district,
            "price_k": price,
        }
    )
    frame.loc[rng.random(rows) < 0.02, "age_years"] = np.nan
    return frame


WORLDS = {"churn": (generate_month, "churned"), "home_prices": (generate_price_month, "price_k")}


CONFIG_TEMPLATE = """\
# retrain config for the demo data (written by `retrain demo-data`). Paths are relative to this file.
[model]
name = "{name}"
target = "churned"
numeric_features = ["tenure_months", "monthly_charges", "support_calls", "usage_gb"]
categorical_features = ["plan", "region"]
timestamp = "event_time"

[data]
production = "{data}production"
labeled = "{data}labeled"
reference_month = "{start}"
label_delay_months = {label_delay}

[registry]
root = "{registry}"

[training]
window_months = 3
seed = 7

[promotion]
min_auc = 0.7
min_lift = 0.005
"""


def write_demo_data(
    out: str | Path,
    *,
    months: int,
    start: str = "2025-01",
    rows: int = 20000,
    seed: int = 0,
    label_delay: int = 0,
    name: str = "churn",
    config_path: Path | None = None,
    registry: str | None = None,
    config: bool = True,
    world: str = "churn",
) -> Path | None:
    """Write production and labeled snapshots for `months` months under a folder or an s3:// prefix.

    For a folder, also writes a config (`retrain.toml` next to the data unless `config_path` says where;
    none with `config=False`) and returns its path; an S3 prefix gets only the data (point a config's [data] at
    `<prefix>/production` and `<prefix>/labeled`).
    """
    import io
    import os

    from retrain.storage import open_store

    store = open_store(str(out))
    rng = np.random.default_rng(seed)
    generate, target = WORLDS[world]
    for index in range(-label_delay, months):
        month = shift_month(start, index)
        datasets = (["production"] if index >= 0 else []) + (["labeled"] if index < months - label_delay else [])
        for dataset in ("production", "labeled"):
            # Both datasets draw every month, so a month's data does not depend on the label delay.
            frame = generate(month, index, rows, rng)
            if dataset not in datasets:
                continue
            if dataset == "production":
                frame = frame.drop(columns=[target])
            buffer = io.BytesIO()
            frame.to_parquet(buffer, index=False)
            store.write(f"{dataset}/month={month}/part-0000.parquet", buffer.getvalue())
        log.info("wrote demo month %s", month)
    if str(out).startswith("s3://") or not config:
        return None
    config_path = Path(config_path) if config_path else Path(out) / "retrain.toml"
    config_path.parent.mkdir(parents=True, exist_ok=True)
    data = os.path.relpath(Path(out).resolve(), config_path.parent.resolve())
    config_path.write_text(
        CONFIG_TEMPLATE.format(
            name=name,
            start=start,
            label_delay=label_delay,
            data="" if data == "." else f"{data}/",
            registry=registry or "registry",
        )
    )
    return config_path

"""Which months a run for month M uses, and whether they have landed.

- drift: production month M against the reference (`retrain.cycle.reference`);
- training and evaluation: the labeled window ending at month M - `data.label_delay_months`, the holdout
  being a share of that last labeled month.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from retrain.errors import DataError
from retrain.months import shift_month
from retrain.snapshots import list_months, month_folder, month_readiness

if TYPE_CHECKING:
    from retrain.config import Config


def labeled_month_for(config: Config, month: str) -> str:
    """The last month whose labels a run for `month` may use."""
    return shift_month(month, -config.data.label_delay_months)


def training_window(config: Config, month: str) -> list[str]:
    """The labeled months to train on, oldest first: the window ending at the labeled month, from the
    first labeled month on; the labeled month itself and every month inside the window must exist."""
    root, delay = config.data.labeled, config.data.label_delay_months
    last = labeled_month_for(config, month)
    parts = config.data.partitioning
    available = set(list_months(root, config.storage, parts))
    delayed = f" (data.label_delay_months={delay}: the run for {month} uses labels up to {last})" if delay else ""
    if not available or min(available) > last:
        first = f"the first labeled month is {min(available)}" if available else "there are no labeled months yet"
        raise DataError(f"{root}: no labeled month up to {last} to train or evaluate on; {first}{delayed}")
    if last not in available:
        where = month_folder(root, last, parts)
        raise DataError(f"month {last} ({where}): no labeled data files for this month{delayed}")
    wanted = [shift_month(last, -offset) for offset in range(config.training.window_months - 1, -1, -1)]
    window = [m for m in wanted if m >= min(available)]
    gaps = [m for m in window if m not in available]
    if gaps:
        raise DataError(
            f"month {gaps[0]} ({month_folder(root, gaps[0], parts)}): labeled month missing inside the "
            f"{config.training.window_months}-month training window ending {last}"
        )
    return window


def missing_inputs(config: Config, month: str) -> list[str]:
    """What a run for `month` still waits for: the production partition, the last labeled partition,
    and their `data.success_marker` files when one is configured. Empty once everything has landed.

    A partition older than the first one present never lands (history starts somewhere): that is a
    DataError at once, not days of waiting, as when a backfill or a label delay reaches before the data.
    """
    marker = config.data.success_marker
    needs = [
        ("production", config.data.production, month),
        ("labeled", config.data.labeled, labeled_month_for(config, month)),
    ]
    firsts = {
        name: min(list_months(root, config.storage, config.data.partitioning), default=None) for name, root, _ in needs
    }
    for name, root, wanted in needs:
        if firsts[name] is not None and wanted < firsts[name]:
            raise DataError(_before_history(config, month, name, root, wanted, firsts))
    missing = []
    for name, root, wanted in needs:
        problem = month_readiness(
            root, wanted, marker=marker, spec=config.storage, partitioning=config.data.partitioning
        )
        if problem:
            missing.append(f"{name} {problem}")
    return missing


def _before_history(
    config: Config, month: str, name: str, root: str, wanted: str, firsts: dict[str, str | None]
) -> str:
    delay = config.data.label_delay_months
    uses = (
        f"; the run for {month} uses labels up to {wanted} (data.label_delay_months={delay})"
        if name == "labeled" and delay
        else ""
    )
    earliest = [firsts["production"], shift_month(firsts["labeled"], delay) if firsts["labeled"] else None]
    first_run = max(m for m in earliest if m is not None)
    return (
        f"{name} month {wanted} ({month_folder(root, wanted, config.data.partitioning)}): before the first "
        f"{name} month, {firsts[name]}, so it never lands{uses}; the first month a run can use is {first_run}"
    )

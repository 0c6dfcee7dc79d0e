"""The fleet at a glance: each model's row from its registry at a bounded cost however long its ledger,
the models needing a person first, and the page rendered from those rows."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from retrain.config import load_config
from retrain.months import shift_month
from retrain.overview import RunFailure, model_status, ordered, with_scheduler
from retrain.records import ChampionPointer, DriftSummary, LedgerRecord, Outcome, PerformanceEstimate
from retrain.registry import CHAMPION_KEY, Registry
from retrain.reports import TOP_NAVIGATION, render_fleet
from retrain.serial import to_bytes
from retrain.storage import open_store
from tests.conftest import write_config

HOSTILE = '<script>alert("x")</script>'


def cycle_record(
    month: str, outcome: Outcome, *, drifted: tuple[str, ...] = (), estimated: float = 0.8
) -> LedgerRecord:
    return LedgerRecord(
        model="churn",
        month=month,
        run_id=f"scheduled__{month}",
        run_key=f"scheduled__{month}",
        outcome=outcome,
        reason="r",
        champion_version=1,
        recorded_at=f"{month}-28T00:00:00+00:00",
        drift=DriftSummary(drifted=bool(drifted), share_drifted=0.1, drifted_features=drifted, effects={}),
        performance=PerformanceEstimate(
            champion_version=1, estimated_value=estimated, validated_value=0.8, validated_month="2024-01"
        ),
    )


def registry_with_history(
    root: Path, months: int, *, champion: bool = True, last: LedgerRecord | None = None
) -> Registry:
    registry = Registry(open_store(str(root)), "churn")
    if champion:
        registry.store.write(CHAMPION_KEY, to_bytes(ChampionPointer(version=3, data_month="2024-02")))
    for i in range(months):
        registry.append_ledger(cycle_record(shift_month("2024-01", i), Outcome.NO_DRIFT))
    if last is not None:
        registry.append_ledger(last)
    return registry


class Counted:
    """Counts a store's reads and listings."""

    def __init__(self, registry: Registry) -> None:
        self.reads = self.lists = 0
        store = registry.store
        read, listing = store.read_with_etag, store.list

        def counted_read(key: str) -> tuple[bytes, str]:
            self.reads += 1
            return read(key)

        def counted_list(prefix: str = "") -> list[str]:
            self.lists += 1
            return listing(prefix)

        store.read_with_etag, store.list = counted_read, counted_list  # type: ignore[method-assign]


def test_a_row_costs_a_few_reads_however_long_the_ledger(tmp_path: Path) -> None:
    """Fifty models of four years each: one champion read, one listing and the latest month's record."""
    config = load_config(write_config(tmp_path / "churn.toml", production="p", labeled="l", registry="r"))
    statuses, counters = [], []
    for n in range(50):
        registry = registry_with_history(tmp_path / f"registry-{n}", 48)
        counter = Counted(registry)
        statuses.append(model_status(config, registry, f"retrain__m{n}"))
        counters.append(counter)
    assert {(c.reads, c.lists) for c in counters} == {(2, 1)}
    assert {s.last_month for s in statuses} == {"2027-12"} and {s.champion_version for s in statuses} == {3}
    assert statuses[0].champion_age_months == 46, "2024-02 to 2027-12"


def test_models_needing_a_person_come_first_and_say_why(tmp_path: Path) -> None:
    config = load_config(
        write_config(
            tmp_path / "churn.toml",
            production="p",
            labeled="l",
            registry="r",
            extra="[drift]\nmax_estimated_auc_drop = 0.05\n",
        )
    )

    def status(name: str, **kwargs: object) -> object:
        registry = registry_with_history(tmp_path / name, 3, **kwargs)  # type: ignore[arg-type]
        return replace(model_status(config, registry, f"retrain__{name}"), model=name)

    failed = RunFailure(run_id="scheduled__x", ended_at="2025-01-02 03:04 UTC", tasks=("pull_snapshots",))
    rows = [
        with_scheduler(status("healthy"), failure=None, awaiting_approval=0),
        with_scheduler(status("recovered"), failure=replace(failed, current=False), awaiting_approval=0),
        with_scheduler(
            status("drifting", last=cycle_record("2024-05", Outcome.REJECTED, drifted=("spend",))),
            failure=None,
            awaiting_approval=0,
        ),
        with_scheduler(
            status("falling", last=cycle_record("2024-05", Outcome.NO_DRIFT, estimated=0.7)),
            failure=None,
            awaiting_approval=0,
        ),
        with_scheduler(status("unborn", champion=False), failure=None, awaiting_approval=0),
        with_scheduler(status("reviewing"), failure=None, awaiting_approval=2),
        with_scheduler(status("broken"), failure=failed, awaiting_approval=0),
        with_scheduler(
            status("conflicted", last=cycle_record("2024-05", Outcome.CONFLICT)), failure=None, awaiting_approval=0
        ),
    ]
    ranked = ordered(rows)
    assert [r.model for r in ranked] == [
        "broken",
        "reviewing",
        "unborn",
        "conflicted",
        "falling",
        "drifting",
        "healthy",
        "recovered",
    ]
    why = {r.model: [reason for _, reason in r.attention] for r in ranked}
    assert why["broken"] == ["last run failed in pull_snapshots"]
    assert why["reviewing"] == ["2 promotion(s) awaiting approval"]
    assert why["falling"] == ["estimated AUC 0.100 worse than validated"]
    assert why["drifting"] == ["drifted and the champion was kept"]
    assert why["healthy"] == why["recovered"] == [], "a failure a later run made good needs nobody"

    page = render_fleet(
        ranked,
        history_link=lambda s: f"/dags/{s.dag_id}/plugin/retrain-history",
        report_link=lambda s: f"/dags/{s.dag_id}/runs/{s.last_run_id}/plugin/retrain-report",
        failure_link=lambda s: f"/dags/{s.dag_id}/runs/x/plugin/retrain-report",
    )
    assert [line.split('"')[3] for line in page.splitlines() if line.startswith("<tr class=")] == [
        r.model for r in ranked
    ]
    assert "8 models you may read; 6 need a look, listed first" in page
    assert '<a href="/dags/retrain__broken/plugin/retrain-history" target="_top">broken</a>' in page
    assert "v3, trained on 2024-02 (1 month old)" in page
    assert f"<script>{TOP_NAVIGATION}</script>" in page


def test_hostile_names_are_escaped_in_the_fleet_page(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path / "churn.toml", production="p", labeled="l", registry="r"))
    row = replace(model_status(config, registry_with_history(tmp_path / "r", 1), "retrain__x"), model=HOSTILE)
    page = render_fleet(
        [with_scheduler(row, failure=None, awaiting_approval=0)],
        history_link=lambda s: HOSTILE,
        report_link=lambda s: None,
        failure_link=lambda s: None,
    )
    assert HOSTILE not in page and "&lt;script&gt;" in page

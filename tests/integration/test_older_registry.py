"""A registry written before the typed records still reads, record by record, and a cycle carries on from it;
what this release writes keeps every key the earlier one wrote, so the earlier release can read it too.

`tests/fixtures/registry-before-records` was written by the release before `retrain.records` existed
(`retrain demo-data --months 8 --rows 4000 --seed 3`, cycles for 2025-01 to 2025-07, a forced dry run of
2025-07 and a rollback to version 1), its reports and parked challengers left out to keep it small.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from retrain.cli import main
from retrain.config import load_config
from retrain.cycle import run_cycle
from retrain.cycle.estimate import StoredProfile
from retrain.cycle.record import stored_evidence
from retrain.demo_data import write_demo_data
from retrain.records import Outcome, Pulled, Run
from retrain.registry import Registry
from retrain.reports import render_history, render_run_report
from tests.conftest import write_config

pytestmark = pytest.mark.slow

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "registry-before-records"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The months the fixture's runs read, written again (the same seed gives the same values)."""
    out = tmp_path_factory.mktemp("older-data")
    write_demo_data(out, months=8, start="2025-01", rows=4000, seed=3, config=False)
    return out


@pytest.fixture
def older(data: Path, tmp_path: Path) -> Path:
    """A config over a private copy of the older registry."""
    shutil.copytree(FIXTURE, tmp_path / "registry")
    return write_config(
        tmp_path / "retrain.toml",
        production=str(data / "production"),
        labeled=str(data / "labeled"),
        registry=str(tmp_path / "registry"),
    )


def key_paths(document: Any, prefix: str = "", found: dict[str, set[str]] | None = None) -> dict[str, set[str]]:
    """Every key path of a JSON document (list items share one path), with the kinds of its values."""
    found = {} if found is None else found
    if isinstance(document, dict):
        kind = "object"
        for key, value in document.items():
            key_paths(value, f"{prefix}.{key}", found)
    elif isinstance(document, list):
        kind = "list"
        for item in document:
            key_paths(item, f"{prefix}[]", found)
    elif document is None:
        kind = "null"
    else:
        kind = (
            "number"
            if isinstance(document, int | float) and not isinstance(document, bool)
            else type(document).__name__
        )
    found.setdefault(prefix, set()).add(kind)
    return found


def lost(before: Any, after: Any) -> list[str]:
    """What a reader of `before` finds no longer there, or of another kind, in `after`. A value that may be
    null may be null or anything else in either; the items of a list that is empty in `after` are not asked."""
    old, new = key_paths(before), key_paths(after)

    def asked(path: str) -> bool:
        items = path.find("[]")
        return items < 0 or any(p.startswith(path[: items + 2]) for p in new)

    return sorted(
        path
        for path, kinds in old.items()
        if asked(path) and (path not in new or not (kinds - {"null"} <= new[path] | {"null"} or "null" in new[path]))
    )


def test_every_record_of_the_older_registry_reads_typed(older: Path) -> None:
    registry = Registry.for_config(load_config(older))
    champion = registry.champion()
    assert (champion.version, champion.validated_month, champion.previous_version) == (1, "2025-04", 2)
    assert registry.versions() == [1, 2]
    promoted = registry.metadata(2)
    assert promoted.decision.outcome is Outcome.PROMOTED and promoted.metrics.lift.low > 0
    assert [s.month for s in promoted.lineage.training] == ["2025-05", "2025-06", "2025-07"]
    assert promoted.lineage.holdout.share == 0.3 and promoted.thresholds.promotion.min_lift == 0.005
    for version in (1, 2):
        registry.load_model(version)  # its SHA-256 still matches the metadata
    ledger = registry.ledger()
    assert [r.outcome for r in ledger] == [
        Outcome.BOOTSTRAPPED,
        Outcome.NO_DRIFT,
        Outcome.NO_DRIFT,
        Outcome.KEPT_CHAMPION,
        Outcome.NO_DRIFT,
        Outcome.REJECTED,
        Outcome.PROMOTED,
        Outcome.KEPT_CHAMPION,
        Outcome.ROLLED_BACK,
    ]
    assert [r.dry_run for r in ledger].count(True) == 1 and ledger[-1].kind == "rollback"
    assert ledger[3].reference.moved_to == "2025-04" and ledger[3].drift.drifted_features == ("usage_gb",)
    assert ledger[1].performance.estimated_drop == pytest.approx(0.8116 - 0.8151, abs=1e-3)
    for record in ledger:
        if not record.is_cycle:
            continue
        folder = registry.run_folder(record.month, record.run_key)
        pulled = folder.read_record(Pulled, "pulled.json")
        assert pulled.month == record.month and pulled.production.rows == 4000
        drift, details = stored_evidence(folder, evaluated=record.metrics is not None)
        assert [f.name for f in drift.features] and (details is None) == (record.metrics is None)
        page = render_run_report(record, drift, details)
        assert record.outcome in page
    stored = registry.run_folder("2025-04", ledger[3].run_key).read_record(StoredProfile, "validation.json")
    assert stored.month == "2025-04" and stored.profile.validated_auc == pytest.approx(champion.validated_auc)
    assert "model history" in render_history("churn", ledger, champion=1)


def test_the_cli_reads_the_older_registry(older: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["registry", "ledger", "--config", str(older)]) == 0
    table = capsys.readouterr().out
    assert "ROLLED_BACK" in table and "KEPT_CHAMPION*" in table
    assert main(["registry", "list", "--config", str(older)]) == 0
    assert capsys.readouterr().out.startswith("*    1  month 2025-01  AUC 0.8116")


def test_a_cycle_carries_on_from_the_older_registry_and_writes_what_it_could_read(older: Path) -> None:
    config = load_config(older)
    registry = Registry.for_config(config)
    entry = run_cycle(config, Run(run_id="after-the-change", month="2025-08"))
    assert entry.outcome is Outcome.PROMOTED and entry.champion_version == 3
    assert entry.reference.months == ("2025-04",), "the rolled-back champion's validation month, as it recorded it"
    assert registry.champion().previous_version == 1 and registry.ledger()[-1] == entry

    def document(path: Path) -> Any:
        return json.loads(path.read_text())

    root = Path(config.registry.root) / "churn"
    before_run = root / "runs" / "2025-07" / next(r.run_key for r in registry.ledger() if r.run_id == "fixture-07")
    after_run = root / "runs" / "2025-08" / entry.run_key
    pairs = [
        (FIXTURE / "churn" / "versions" / "000002" / "metadata.json", root / "versions" / "000003" / "metadata.json"),
        (
            FIXTURE / "churn" / "ledger" / "2025-07" / f"{before_run.name}.json",
            root / "ledger" / "2025-08" / f"{entry.run_key}.json",
        ),
        *(
            (before_run / name, after_run / name)
            for name in ("pulled.json", "drift.json", "evaluation.json", "validation.json")
        ),
    ]
    pairs.append((FIXTURE / "churn" / "champion.json", root / "champion.json"))
    for before, after in pairs:
        assert not lost(document(before), document(after)), f"{after} no longer writes what {before.name} had"

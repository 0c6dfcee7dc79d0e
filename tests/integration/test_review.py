"""Segment guardrails and the reviewer's sign-off, through whole cycles and the CLI: a challenger better on
average but worse for one region is not promoted, and with `[approval] required` nothing is promoted until
a named person approves."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest

from retrain.adopt import adopt
from retrain.cli import main
from retrain.config import load_config
from retrain.cycle import run_cycle
from retrain.errors import RegistryError
from retrain.records import Outcome, Run
from retrain.registry import Registry

REGIONS = np.array(["north", "east", "west"])


def month_frame(
    month: str, rows: int, rng: np.random.Generator, *, south_share: float, south_late: bool
) -> pd.DataFrame:
    """Churn driven by `usage` everywhere but in the south, where `tenure` drives it. With `south_late`, the
    south region opens in the last quarter of the month: its rows all fall in the holdout (the latest 30%),
    so a challenger trained on the month's earlier rows has never seen one."""
    moment = np.sort(rng.uniform(0, 1, rows))
    window = moment > 0.72 if south_late else np.ones(rows, dtype=bool)
    south = window & (rng.random(rows) < south_share / (0.28 if south_late else 1.0))
    usage, tenure = rng.normal(size=rows), rng.normal(size=rows)
    logit = np.where(south, 2.5 * tenure, 2.5 * usage)
    start = pd.Timestamp(f"{month}-01", tz="UTC")
    return pd.DataFrame(
        {
            "usage": usage,
            "tenure": tenure,
            "region": np.where(south, "south", rng.choice(REGIONS, rows)),
            "channel": rng.choice(["web", "shop"], rows),
            "at": start + pd.to_timedelta(moment * 27 * 86400, unit="s"),
            "churned": (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int),
        }
    )


def write_world(root: Path) -> None:
    rng = np.random.default_rng(11)
    for month, late in (("2025-01", False), ("2025-02", True), ("2025-03", True)):
        frame = month_frame(month, 6000, rng, south_share=0.04, south_late=late)
        for dataset, data in (("labeled", frame), ("production", frame.drop(columns=["churned", "channel"]))):
            folder = root / dataset / f"month={month}"
            folder.mkdir(parents=True)
            data.to_parquet(folder / "part-0.parquet")


def config_file(root: Path, *, promotion: str = "", extra: str = "") -> Path:
    path = root / "model.toml"
    path.write_text(
        f"""
[model]
name = "churn"
target = "churned"
numeric_features = ["usage", "tenure"]
categorical_features = ["region"]
timestamp = "at"

[data]
production = "production"
labeled = "labeled"

[registry]
root = "registry"

[training]
window_months = 1
seed = 5

[promotion]
bootstrap_resamples = 300
{promotion}

{extra}
"""
    )
    return path


@pytest.fixture
def world(tmp_path: Path) -> Path:
    return make_world(tmp_path)


def make_world(tmp_path: Path) -> Path:
    """The world, and a champion in production that knows the south: adopted, trained on an older,
    noisier sample where every region was there from the start."""
    from retrain.training import train

    write_world(tmp_path)
    config = load_config(config_file(tmp_path))
    rng = np.random.default_rng(3)
    history = month_frame("2024-06", 500, rng, south_share=0.3, south_late=False)
    flipped = rng.random(len(history)) < 0.3
    history.loc[flipped, "churned"] = 1 - history.loc[flipped, "churned"]
    history["region"] = history["region"].astype("category")
    joblib.dump(train(history, config.model, config.training), tmp_path / "champion.joblib")
    return tmp_path


def adopted(root: Path, config_path: Path):
    config = load_config(config_path)
    adopt(config, Registry.for_config(config), model_source=str(root / "champion.joblib"), month="2025-01")
    return config


def test_a_challenger_better_on_average_but_worse_in_one_region_keeps_the_champion(world: Path) -> None:
    without = adopted(world, config_file(world))
    promoted = run_cycle(without, Run("no-segments", "2025-02", force=True, dry_run=True))
    assert promoted.decision == Outcome.PROMOTED, "without the guardrail it would be promoted"
    assert promoted.metrics.lift.low > 0

    guarded = dataclasses.replace(
        without,
        promotion=dataclasses.replace(
            without.promotion, segments=("region", "channel"), max_segment_drop=0.05, min_segment_rows=100
        ),
    )
    entry = run_cycle(guarded, Run("segments", "2025-02", force=True))
    assert entry.outcome == Outcome.KEPT_CHAMPION
    segments = {(s.column, s.value): s for s in entry.metrics.segments}
    south = segments[("region", "south")]
    assert south.status == "fail" and south.difference < -0.1 and south.rows > 150
    assert f"segment region=south ({south.rows} rows): AUC" in entry.reason
    assert "(> max_segment_drop=0.05)" in entry.reason
    assert all(s.status == "pass" for key, s in segments.items() if key != ("region", "south"))
    assert {key[0] for key in segments} == {"region", "channel"}, "a column of the labeled data, not a feature"
    report = Path(entry.report_uri.removeprefix("file://")).read_text()
    assert "<h2>Segments</h2>" in report and "region = south" in report


def test_a_segment_with_too_few_rows_is_skipped_and_says_so(world: Path) -> None:
    config = adopted(
        world, config_file(world, promotion='segments = ["region"]\nmax_segment_drop = 0.05\nmin_segment_rows = 1000')
    )
    entry = run_cycle(config, Run("few", "2025-02", force=True, dry_run=True))
    south = next(s for s in entry.metrics.segments if s.value == "south")
    assert south.status == "skipped" and south.note == f"{south.rows} rows, fewer than promotion.min_segment_rows=1000"
    assert entry.decision == Outcome.PROMOTED, "a skipped segment blocks nothing, and is listed as skipped"


@pytest.mark.parametrize(
    ("promotion", "message"),
    [
        ('segments = ["region"]', "promotion.segments needs promotion.max_segment_drop"),
        (
            'segments = ["usage"]\nmax_segment_drop = 0.1',
            "promotion.segments names 'usage', the model's numeric feature",
        ),
        ('segments = ["churned"]\nmax_segment_drop = 0.1', "promotion.segments names 'churned', the model's target"),
    ],
)
def test_segments_that_cannot_work_are_config_errors(tmp_path: Path, promotion: str, message: str) -> None:
    from retrain.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        load_config(config_file(tmp_path, promotion=promotion))


def test_a_segment_column_missing_from_the_labeled_data_is_one_clear_error(world: Path) -> None:
    from retrain.errors import DataError

    adopted(world, config_file(world))
    config = load_config(config_file(world, promotion='segments = ["segment_x"]\nmax_segment_drop = 0.05'))
    with pytest.raises(
        DataError, match=r"^month 2025-02 \(.*/labeled/month=2025-02/part-0.parquet\): missing column segment_x$"
    ):
        run_cycle(config, Run("missing", "2025-02", force=True))
    assert [r.kind for r in Registry.for_config(config).ledger()] == ["adopt"], "nothing written"


APPROVAL = '[approval]\nrequired = true\napprovers = ["dana"]\n'


def test_from_the_command_line_nothing_is_promoted_until_a_reviewer_approves(world: Path, capsys) -> None:
    config_path = config_file(world, extra=APPROVAL)
    config = adopted(world, config_path)
    registry = Registry.for_config(config)
    waiting = run_cycle(config, Run("first-try", "2025-02", force=True))
    assert waiting.outcome == Outcome.AWAITING_APPROVAL and waiting.decision == Outcome.PROMOTED
    assert "awaiting approval: retrain registry approve" in waiting.reason and "--run-id first-try" in waiting.reason
    assert registry.champion().version == 1 and registry.versions() == [1]
    assert [r.kind for r in registry.ledger()] == ["adopt"], "the ledger hears of it when the reviewer answers"
    assert run_cycle(config, Run("first-try", "2025-02", force=True)).outcome == Outcome.AWAITING_APPROVAL

    command = ["registry", "reject", "--config", str(config_path), "--month", "2025-02", "--run-id", "first-try"]
    assert main([*command, "--by", "dana", "--comment", "south needs a look"]) == 0
    assert "REJECTED_BY_REVIEWER" in capsys.readouterr().out
    rejected = registry.ledger_record("2025-02", Run("first-try", "2025-02").key)
    assert rejected.outcome == Outcome.REJECTED_BY_REVIEWER and rejected.approval.by == "dana"
    assert rejected.approval.comment == "south needs a look" and "rejected by dana" in rejected.reason
    assert registry.champion().version == 1 and registry.versions() == [1]
    assert main([*command, "--by", "dana"]) == 0, "answering again returns the record that stands"
    assert capsys.readouterr().out.count("REJECTED_BY_REVIEWER") == 1

    assert run_cycle(config, Run("second-try", "2025-02", force=True)).outcome == Outcome.AWAITING_APPROVAL
    approve = ["registry", "approve", "--config", str(config_path), "--month", "2025-02", "--run-id", "second-try"]
    assert main([*approve, "--by", "dana", "--comment", "checked the south", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["outcome"] == "PROMOTED" and document["approval"]["by"] == "dana"
    assert registry.champion().version == 2
    metadata = registry.metadata(2)
    assert (metadata.approval.decision, metadata.approval.by, metadata.approval.comment) == (
        "approved",
        "dana",
        "checked the south",
    )
    assert metadata.approval.requested_at <= metadata.approval.at

    with pytest.raises(RegistryError, match="no promotion of run 'nobody' for 2025-02 awaits approval"):
        from retrain.cycle.approval import answer

        answer(config, "2025-02", "nobody", by="dana", comment=None, approve=True)


def test_an_older_month_approved_after_a_newer_promotion_is_superseded(world: Path) -> None:
    from retrain.cycle.approval import answer

    config = adopted(world, config_file(world, extra=APPROVAL))
    registry = Registry.for_config(config)
    assert run_cycle(config, Run("older", "2025-02", force=True)).outcome == Outcome.AWAITING_APPROVAL
    assert run_cycle(config, Run("newer", "2025-03", force=True)).outcome == Outcome.AWAITING_APPROVAL
    newer = answer(config, "2025-03", "newer", by="dana", comment=None, approve=True)
    assert newer.outcome == Outcome.PROMOTED and registry.champion().data_month == "2025-03"
    older = answer(config, "2025-02", "older", by="dana", comment=None, approve=True)
    assert older.outcome == Outcome.SUPERSEDED and older.approval.by == "dana"
    assert registry.champion().version == newer.champion_version, "the champion never moves backwards"


def test_a_first_model_needs_approval_only_when_bootstrapped_is_listed(tmp_path: Path) -> None:
    write_world(tmp_path)
    plain = load_config(config_file(tmp_path, extra=APPROVAL))
    assert run_cycle(plain, Run("boot", "2025-01")).outcome == Outcome.BOOTSTRAPPED
    other = tmp_path / "other"
    write_world(other)
    listed = load_config(config_file(other, extra=APPROVAL + 'outcomes = ["PROMOTED", "BOOTSTRAPPED"]\n'))
    assert run_cycle(listed, Run("boot", "2025-01")).outcome == Outcome.AWAITING_APPROVAL
    assert Registry.for_config(listed).champion() is None

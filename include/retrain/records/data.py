"""What a run reads and compares: validated snapshots, the drift reference, and the champion as read."""

from __future__ import annotations

from dataclasses import dataclass, field

from retrain.serial import project


@dataclass(frozen=True)
class Snapshot:
    """What validation established about a snapshot: enough lineage to find, count and verify it again."""

    uri: str
    month: str | None
    files: tuple[str, ...] = ()
    rows: int = 0
    fingerprint: str | None = None
    null_rates: dict[str, float] = field(default_factory=dict)
    # A categorical column's value kind (text, integer, ...): must agree across the snapshots a run uses.
    kinds: dict[str, str] = field(default_factory=dict)
    classes: dict[str, int] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"month {self.month} ({self.uri})" if self.month else self.uri

    def summary(self) -> SnapshotSummary:
        return project(self, SnapshotSummary)


@dataclass(frozen=True)
class SnapshotSummary:
    uri: str
    rows: int
    fingerprint: str | None


@dataclass(frozen=True)
class HeldOut(Snapshot):
    """The labeled snapshot a holdout was taken from, and the share of it held out."""

    share: float | None = None


@dataclass(frozen=True)
class Reference:
    """What drift was tested against: the `drift.reference` mode in force and where it came from, in words."""

    mode: str
    source: str
    months: tuple[str, ...]
    snapshots: tuple[Snapshot, ...]


@dataclass(frozen=True)
class ChampionPointer:
    """`champion.json`, the registry's one mutable object.

    `validated_month` is the latest month whose labeled holdout showed this version holding up (the month
    it was promoted on, moved forward each time a cycle evaluated and kept it); `validated_auc` its AUC there.
    """

    version: int
    data_month: str
    model: str | None = None
    validated_month: str | None = None
    validated_auc: float | None = None
    validated_run_id: str | None = None
    # The store key of the calibration the validating run wrote (see retrain.estimation).
    validation_profile: str | None = None
    model_sha256: str | None = None
    previous_version: int | None = None
    run_id: str | None = None
    reason: str | None = None
    updated_at: str | None = None


@dataclass(frozen=True)
class Champion(ChampionPointer):
    """The champion pointer as read, with the ETag a compare-and-swap must present."""

    etag: str = ""

    def pointer(self) -> ChampionPointer:
        return project(self, ChampionPointer)

"""How a run (or an operator's action) ends: the one list of outcomes."""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    """How a run (or an operator's action) ended. Each outcome carries its tone, which reports and charts
    colour it by."""

    tone: str

    def __new__(cls, value: str, tone: str) -> Outcome:
        member = str.__new__(cls, value)
        member._value_ = value
        member.tone = tone
        return member

    NO_DRIFT = "NO_DRIFT", "quiet"
    BOOTSTRAPPED = "BOOTSTRAPPED", "promoted"
    PROMOTED = "PROMOTED", "promoted"
    KEPT_CHAMPION = "KEPT_CHAMPION", "kept"
    REJECTED = "REJECTED", "rejected"
    # Decided by the registry's state, not by the evidence: the champion holds newer data than the run
    # (a backfill over history), or another run moved it while this one evaluated.
    SUPERSEDED = "SUPERSEDED", "superseded"
    CONFLICT = "CONFLICT", "conflict"
    # Decided by a reviewer ([approval] required): the promotion was turned down, or nobody answered in time.
    REJECTED_BY_REVIEWER = "REJECTED_BY_REVIEWER", "rejected"
    APPROVAL_EXPIRED = "APPROVAL_EXPIRED", "kept"
    # A promotion the command line evaluated and left for `retrain registry approve` (never in the ledger).
    AWAITING_APPROVAL = "AWAITING_APPROVAL", "pending"
    # An operator's action, never a cycle's.
    ROLLED_BACK = "ROLLED_BACK", "operator"
    ADOPTED = "ADOPTED", "operator"

    @property
    def promotes(self) -> bool:
        return self in (Outcome.BOOTSTRAPPED, Outcome.PROMOTED)

    @classmethod
    def of_cycles(cls) -> tuple[Outcome, ...]:
        """The outcomes a cycle's ledger record can have (AWAITING_APPROVAL is a command line's pause, never
        recorded)."""
        return tuple(outcome for outcome in cls if outcome.tone not in ("operator", "pending"))

"""Auto-rollback (policy ``autoRollback``): what a failed rollout in an environment leads to.

When the release that runs in the environment now fails to roll out there, the
answer is a rollback, in git, to the last release that rolled out successfully
there (:class:`RollBack`). When the failed release is itself an auto-rollback,
nothing more is rolled back: the environment is halted (:class:`HaltEnvironment`).
With no earlier successful release there is nothing to go back to
(:class:`NoRollback`, said in the failed release's timeline). Plain rules, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ferry_events import Actor, Intent
from ferry_promotion.domain.decision import HistoryEntry

#: Who asks for an auto-rollback (and for the halt after a failed one).
AUTO_ROLLBACK_ACTOR: Final = Actor(subject="ferry-auto-rollback")


def is_auto_rollback(intent: str, actor_subject: str) -> bool:
    """Whether a request (or a release commit's trailers) is an auto-rollback."""
    return intent == Intent.ROLLBACK.value and actor_subject == AUTO_ROLLBACK_ACTOR.subject


@dataclass(frozen=True, slots=True)
class Failure:
    """A failed rollout of the release that runs in ``environment`` now."""

    service: str
    environment: str
    artifact_id: str
    #: what the cluster said (``CrashLoopBackOff: back-off restarting ...``)
    reason: str
    #: the failed release's id, when promotion knows it
    release_id: str = ""
    #: whether the failed release is itself an auto-rollback
    was_auto_rollback: bool = False

    def describe(self) -> str:
        release = f" (release {self.release_id})" if self.release_id else ""
        why = f": {self.reason}" if self.reason else ""
        return f"{self.artifact_id}{release} failed to roll out in {self.environment}{why}"


@dataclass(frozen=True, slots=True)
class RollBack:
    """Ask for a rollback to ``target`` (the last release that rolled out successfully)."""

    target: HistoryEntry
    reason: str


@dataclass(frozen=True, slots=True)
class HaltEnvironment:
    """The auto-rollback failed as well: halt the environment with ``reason``."""

    reason: str


@dataclass(frozen=True, slots=True)
class NoRollback:
    """Nothing to go back to; ``reason`` says why."""

    reason: str


Plan = RollBack | HaltEnvironment | NoRollback


def candidates(history: list[HistoryEntry], failed_artifact: str) -> list[HistoryEntry]:
    """The releases a rollback may go back to, newest first: one entry per artifact, never
    the failed one. ``history`` is the environment's release commits, newest first."""
    seen: set[str] = {failed_artifact}
    found: list[HistoryEntry] = []
    for entry in history:
        if entry.artifact_id not in seen:
            seen.add(entry.artifact_id)
            found.append(entry)
    return found


def plan(failure: Failure, last_good: HistoryEntry | None) -> Plan:
    """What the failure leads to; ``last_good`` is the newest of :func:`candidates` that
    rolled out successfully in the environment (``None`` when none did)."""
    if failure.was_auto_rollback:
        return HaltEnvironment(
            f"the auto-rollback of {failure.service} failed too: {failure.describe()}; "
            "nothing more is rolled back (policy autoRollback). Fix it, then resume "
            f"(ferry resume {failure.environment})"
        )
    if last_good is None:
        return NoRollback(
            f"no auto-rollback: no earlier release of {failure.service} rolled out "
            f"successfully in {failure.environment}"
        )
    return RollBack(
        last_good,
        f"auto-rollback: {failure.describe()}; back to {last_good.artifact_id}, the last "
        f"release that rolled out successfully in {failure.environment} (policy autoRollback)",
    )

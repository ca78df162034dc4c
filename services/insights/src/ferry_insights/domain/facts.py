"""What each event tells insights, as plain data: no database, no broker.

:func:`facts_of` turns one event into the rows its projections keep:

- an :class:`EventRecord` of every event (the inbox row: its id is the primary key);
- a :class:`Change` from ``artifact.accepted`` / ``artifact.stored`` (who changed what, when);
- a :class:`RolloutResult` from ``rollout.succeeded`` / ``rollout.failed``, at its ``observedAt``;
- a :class:`RollbackRequest` from a ``release.requested`` whose intent is ``rollback``, at the
  event's CloudEvents ``time``.

Times always come from the event (``time``, ``observedAt``, ``committedAt``, ``ci.start``),
never from when insights received it, so a late or repeated delivery changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from ferry_events import (
    ArtifactAccepted,
    ArtifactSpec,
    ArtifactStored,
    CloudEvent,
    EventData,
    Intent,
    ReleaseRequested,
    RolloutFact,
    RolloutFailed,
    RolloutSucceeded,
)


class Unprojectable(ValueError):
    """An event whose values no projection can hold (it would fail the same way every time)."""


#: The longest value of each kind the projections keep (service and environment names are
#: DNS labels; ids are at most 128 characters, as the envelope's ``id``).
LIMITS = {"service": 63, "environment": 63, "release_id": 128, "artifact_id": 128}


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class EventRecord:
    """What insights keeps of every event it consumed (the inbox row)."""

    event_id: str
    event_type: str
    time: datetime
    service: str
    environment: str
    release_id: str
    artifact_id: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Change:
    """An artifact and the source change it was built from."""

    service: str
    artifact_id: str
    squad: str = ""
    branch: str = ""
    sha: str = ""
    author_name: str = ""
    author_email: str = ""
    message: str = ""
    committed_at: datetime | None = None
    ci_start: datetime | None = None
    ci_job_url: str = ""

    @property
    def changed_at(self) -> datetime | None:
        """The change's time: ``application.committedAt`` when CI sent it, else ``ci.start``."""
        return self.committed_at or self.ci_start


@dataclass(frozen=True, slots=True)
class RolloutResult:
    """A rollout reached a result in an environment, as the cluster-watcher observed it."""

    event_id: str
    environment: str
    service: str
    artifact_id: str
    outcome: Outcome
    observed_at: datetime
    release_id: str = ""


@dataclass(frozen=True, slots=True)
class RollbackRequest:
    """Someone asked to roll a service back in an environment."""

    event_id: str
    environment: str
    service: str
    release_id: str
    requested_at: datetime


@dataclass(frozen=True, slots=True)
class Deployment:
    """The first rollout result of an artifact in an environment (a DORA deployment).

    ``succeeded_at`` is the earliest ``rollout.succeeded`` of that artifact there, when any.
    """

    environment: str
    service: str
    artifact_id: str
    at: datetime
    failed_rollout: bool
    event_id: str
    succeeded_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Facts:
    """Everything one event adds to the projections."""

    record: EventRecord
    change: Change | None = None
    rollout: RolloutResult | None = None
    rollback: RollbackRequest | None = None


def change_of(spec: ArtifactSpec) -> Change:
    app = spec.application
    return Change(
        service=spec.service,
        artifact_id=spec.id,
        squad=spec.squad,
        branch=app.branch,
        sha=app.sha,
        author_name=app.author_name,
        author_email=app.author_email,
        message=app.message[:2000],
        committed_at=app.committed_at,
        ci_start=spec.ci.start,
        ci_job_url=spec.ci.job_url,
    )


def _text(data: EventData, name: str) -> str:
    value = getattr(data, name, None)
    return value if isinstance(value, str) else ""


def facts_of(event: CloudEvent, data: EventData) -> Facts:
    """The rows one event adds (pure: the same event always gives the same facts)."""
    change: Change | None = None
    if isinstance(data, ArtifactAccepted | ArtifactStored):
        change = change_of(data.artifact)
    record = EventRecord(
        event_id=event.id,
        event_type=event.type,
        time=event.time,
        service=change.service if change else (data.subject() or ""),
        environment=_text(data, "environment"),
        release_id=_text(data, "release_id"),
        artifact_id=change.artifact_id if change else _text(data, "artifact_id"),
        data=_summary(data),
    )
    for name, limit in LIMITS.items():
        value = getattr(record, name)
        if len(value) > limit:
            raise Unprojectable(f"{name} is {len(value)} characters long; at most {limit} fit")
    if change is not None and len(change.squad) > 128:
        raise Unprojectable(f"squad is {len(change.squad)} characters long; at most 128 fit")
    facts = Facts(record=record, change=change)
    if isinstance(data, RolloutSucceeded | RolloutFailed):
        outcome = Outcome.SUCCEEDED if isinstance(data, RolloutSucceeded) else Outcome.FAILED
        facts = replace(facts, rollout=_result(event, data, outcome))
    if isinstance(data, ReleaseRequested) and data.intent is Intent.ROLLBACK:
        rollback = RollbackRequest(
            event_id=event.id,
            environment=data.environment,
            service=data.service,
            release_id=data.release_id,
            requested_at=event.time,
        )
        facts = replace(facts, rollback=rollback)
    return facts


def _result(event: CloudEvent, data: RolloutFact, outcome: Outcome) -> RolloutResult:
    return RolloutResult(
        event_id=event.id,
        environment=data.environment,
        service=data.service,
        artifact_id=data.artifact_id,
        outcome=outcome,
        observed_at=data.observed_at,
        release_id=data.release_id,
    )


def _summary(data: EventData) -> dict[str, Any]:
    """The event's data as kept for the timeline: manifests and logs are left out (large)."""
    wire = data.to_wire()
    wire.pop("manifests", None)
    wire.pop("logs", None)
    return wire


def first_result(current: Deployment | None, result: RolloutResult) -> Deployment:
    """The deployment after ``result``: the earliest result counts, whatever the arrival order.

    On a tie of ``observedAt`` the failure counts (and then the lower event id), so that every
    replica, in every arrival order, keeps the same row.
    """
    succeeded_at = current.succeeded_at if current else None
    if result.outcome is Outcome.SUCCEEDED and (
        succeeded_at is None or result.observed_at < succeeded_at
    ):
        succeeded_at = result.observed_at
    candidate = Deployment(
        environment=result.environment,
        service=result.service,
        artifact_id=result.artifact_id,
        at=result.observed_at,
        failed_rollout=result.outcome is Outcome.FAILED,
        event_id=result.event_id,
        succeeded_at=succeeded_at,
    )
    if current is None:
        return candidate
    if _rank(candidate) < _rank(current):
        return candidate
    return replace(current, succeeded_at=succeeded_at)


def _rank(deployment: Deployment) -> tuple[datetime, int, str]:
    return (deployment.at, 0 if deployment.failed_rollout else 1, deployment.event_id)

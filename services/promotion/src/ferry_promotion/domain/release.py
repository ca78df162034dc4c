"""A release request as a typed record, and the rules of its status.

The record mirrors what promotion keeps of one request; the adapters build it
from their storage, the service layer reads it. The rules say which status may
follow which (a later result never loses to an earlier one arriving late) and
which releases are still open (not yet decided).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ferry_events import Actor, CloudEvent, ReleaseRequested
from ferry_promotion.domain.decision import Person, Status

#: A later status is never overwritten by an earlier one arriving late.
RANK: dict[str, int] = {
    Status.SCHEDULED.value: -1,
    Status.REQUESTED.value: 0,
    Status.AWAITING_APPROVAL.value: 1,
    Status.APPROVED.value: 2,
    Status.REJECTED.value: 3,
    Status.CANCELLED.value: 3,
    Status.COMMITTED.value: 3,
    Status.FAILED.value: 4,
    Status.ROLLED_OUT.value: 4,
}

#: A release in one of these statuses has not been decided yet (a scheduled one is not open:
#: nothing decides it, and no newer commit supersedes it, before its time).
OPEN_STATUSES = frozenset({Status.REQUESTED.value, Status.AWAITING_APPROVAL.value})


def may_follow(new: str, current: str) -> bool:
    """Whether status ``new`` may replace ``current`` (never a step back)."""
    return RANK.get(new, 0) >= RANK.get(current, 0)


def is_open(status: str) -> bool:
    """Whether a release in ``status`` is still to be decided."""
    return status in OPEN_STATUSES


@dataclass(frozen=True, slots=True)
class Release:
    """One release request and what was decided about it."""

    release_id: str
    service: str
    environment: str
    intent: str
    status: str
    actor_subject: str
    requested_at: datetime
    updated_at: datetime
    correlation_id: str
    artifact_id: str | None = None
    branch: str | None = None
    from_environment: str | None = None
    actor_email: str = ""
    actor_name: str = ""
    reason: str = ""
    override_freeze: bool = False
    commit_sha: str | None = None
    namespace: str | None = None
    promoted_from: str | None = None
    author_email: str = ""
    author_name: str = ""
    artifact_branch: str = ""
    violations: list[dict[str, Any]] = field(default_factory=list)
    approvals_required: int = 0
    exclude_author: bool = False
    expires_at: datetime | None = None
    waiting_since: datetime | None = None
    #: When a waiting request is decided again on a clock (the end of a soak); a replica's
    #: timer claims it by moving it a lease ahead (``Releases.claim_due``).
    due_at: datetime | None = None
    request_event_id: str | None = None
    superseded_by: str | None = None
    #: The config repo commit (or a newer one) the API had when it accepted the request.
    config_commit: str | None = None
    #: Its number among the requests for its service and environment (given when recorded).
    sequence: int | None = None
    #: When a scheduled release falls due (it is ``scheduled`` until then; numbered then).
    scheduled_at: datetime | None = None

    @classmethod
    def requested(
        cls, event: CloudEvent, data: ReleaseRequested, *, updated_at: datetime
    ) -> Release:
        """The record of the request ``event`` carries, before anything is decided."""
        return cls(
            release_id=data.release_id,
            service=data.service,
            environment=data.environment,
            intent=data.intent.value,
            status=Status.REQUESTED.value,
            actor_subject=data.actor.subject,
            actor_email=data.actor.email,
            actor_name=data.actor.name,
            requested_at=data.requested_at,
            updated_at=updated_at,
            correlation_id=event.correlationid,
            request_event_id=event.id,
            artifact_id=data.artifact_id,
            branch=data.branch,
            from_environment=data.from_environment,
            reason=data.reason,
            override_freeze=data.override_freeze,
            config_commit=data.config_commit,
        )

    @property
    def open(self) -> bool:
        return is_open(self.status)

    @property
    def actor(self) -> Actor:
        """Who asked for the release."""
        return Actor(subject=self.actor_subject, email=self.actor_email, name=self.actor_name)

    @property
    def requester(self) -> Person:
        return Person(self.actor_subject, self.actor_email)

    def why_not_awaiting_approval(self) -> str:
        """Why a vote on this release is refused (it is not awaiting approval)."""
        if self.status == Status.REJECTED and any(
            v.get("policy") == "approvals" and "expired" in v.get("message", "")
            for v in self.violations
        ):
            why = "its approval expired"
        elif self.status == Status.REQUESTED:
            why = "it has not been decided yet (no approval was asked for)"
        else:
            why = f"it is {self.status}"
        return f"release {self.release_id} is not awaiting approval: {why}"

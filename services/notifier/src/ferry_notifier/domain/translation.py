"""Each event type's :class:`~ferry_notifier.domain.notice.Notice`: what it means to people,
read from its typed data (:func:`notice_for`)."""

from __future__ import annotations

from functools import partial
from typing import TypedDict

from ferry_events import (
    Actor,
    ApprovalDenied,
    ApprovalGranted,
    ApprovalRequested,
    ArtifactRejected,
    CloudEvent,
    EventData,
    HaltChanged,
    PolicyChanged,
    ReleaseApproved,
    ReleaseCommitted,
    ReleaseFailed,
    ReleaseRejected,
    RolloutFact,
    RolloutFailed,
    RolloutStarted,
    RolloutSucceeded,
    WorkloadDegraded,
)
from ferry_notifier.domain.notice import (
    Notice,
    Outcome,
    short_type,
)


class _Release(TypedDict):
    service: str
    environment: str
    artifact_id: str
    release_id: str


class _People(TypedDict):
    author: str
    releaser: str
    actor: str


#: The events that name one release of a service to an environment.
_OfRelease = (
    ReleaseApproved
    | ReleaseRejected
    | ReleaseCommitted
    | ReleaseFailed
    | ApprovalRequested
    | ApprovalGranted
    | ApprovalDenied
    | RolloutFact
)


def _release(data: _OfRelease) -> _Release:
    """Where and which release: the fields every event of a release carries."""
    return {
        "service": data.service,
        "environment": data.environment,
        "artifact_id": data.artifact_id or "",
        "release_id": data.release_id,
    }


def _released_by(releaser: Actor, author: str = "") -> _People:
    """The people of an event that someone released (or asked to release)."""
    return {"author": author, "releaser": releaser.email, "actor": releaser.display()}


def notice_for(event: CloudEvent, data: EventData) -> Notice:  # noqa: PLR0911 - one branch per type
    """The notice for one of :data:`NOTIFIED_TYPES`."""
    make = partial(Notice, event.id, event.type, short_type(event.type))
    if isinstance(data, ArtifactRejected):
        return make(
            outcome=Outcome.FAILURE,
            service=data.service or "",
            squad=data.squad or "",
            artifact_id=data.artifact_id or "",
            author=data.author_email or "",
            reason="; ".join(r.message for r in data.reasons),
            details=tuple(
                f"{r.field}: {r.message}" if r.field else r.message for r in data.reasons
            ),
            extra={"branch": data.branch or ""},
        )
    if isinstance(data, ReleaseApproved):
        return make(
            outcome=Outcome.SUCCESS,
            **_release(data),
            **_released_by(data.actor, data.author_email),
            reason=data.reason,
            extra={"intent": str(data.intent), "promoted_from": data.promoted_from or ""},
        )
    if isinstance(data, ReleaseRejected):
        return make(
            outcome=Outcome.FAILURE,
            **_release(data),
            **_released_by(data.actor, data.author_email),
            reason="; ".join(v.message for v in data.violations),
            details=tuple(f"{v.policy}: {v.message}" for v in data.violations),
            extra={"intent": str(data.intent)},
        )
    if isinstance(data, ReleaseCommitted):
        return make(
            outcome=Outcome.SUCCESS,
            **_release(data),
            **_released_by(data.actor, data.author_email),
            commit_sha=data.commit_sha,
            extra={
                "intent": str(data.intent),
                "promoted_from": data.promoted_from or "",
                "no_change": data.no_change,
            },
        )
    if isinstance(data, ReleaseFailed):
        return make(
            outcome=Outcome.FAILURE,
            **_release(data),
            **_released_by(data.actor, data.author_email),
            reason=data.message or data.reason,
            extra={"intent": str(data.intent), "code": data.reason},
        )
    if isinstance(data, ApprovalRequested):
        return make(
            outcome=Outcome.PENDING,
            **_release(data),
            **_released_by(data.requester, data.author_email),
            reason=data.reason,
            extra={
                "required": data.required,
                "expires_at": data.expires_at.isoformat(timespec="minutes"),
                "exclude_author": data.exclude_author,
            },
        )
    if isinstance(data, ApprovalGranted):
        return make(
            outcome=Outcome.SUCCESS if data.remaining == 0 else Outcome.PENDING,
            **_release(data),
            actor=data.approver.display(),
            extra={"approvals": data.approvals, "remaining": data.remaining},
        )
    if isinstance(data, ApprovalDenied):
        return make(
            outcome=Outcome.FAILURE,
            **_release(data),
            actor=data.by.display() if data.by else "",
            reason=data.reason,
            extra={"expired": data.expired},
        )
    if isinstance(data, RolloutFailed | RolloutSucceeded | RolloutStarted | WorkloadDegraded):
        # a degraded workload is an incident of a release that had rolled out: bad news for
        # its people, in its thread, as a failed rollout is
        failed = isinstance(data, RolloutFailed | WorkloadDegraded)
        outcome = (
            Outcome.FAILURE
            if failed
            else Outcome.SUCCESS
            if isinstance(data, RolloutSucceeded)
            else Outcome.PENDING
        )
        extra: dict[str, object] = {
            "cluster": data.cluster,
            "namespace": data.namespace,
            "workload": f"{data.workload.kind}/{data.workload.name}",
        }
        reason = ""
        logs: tuple[str, ...] = ()
        details: tuple[str, ...] = ()
        if isinstance(data, RolloutFailed | WorkloadDegraded):
            reason = data.reason
            logs = tuple(data.logs[-20:])
            details = (data.message,) if data.message else ()
            extra |= {"message": data.message, "container": data.container}
            extra["restarts"] = data.restarts
        return make(
            outcome=outcome,
            **_release(data),
            author=data.author,
            reason=reason,
            details=details,
            log_lines=logs,
            extra=extra,
        )
    if isinstance(data, PolicyChanged):
        return make(
            outcome=Outcome.INFO,
            service=data.service,
            **_released_by(data.actor),
            commit_sha=data.commit_sha,
            extra={"deleted": data.deleted, "policy": data.policy or {}},
        )
    if isinstance(data, HaltChanged):
        # a halt stops releases: bad news, heard where failures are (routing.py);
        # its resume is heard in the same places
        return make(
            outcome=Outcome.FAILURE if data.halted else Outcome.INFO,
            environment=data.environment,
            **_released_by(data.actor),
            reason=data.reason,
            commit_sha=data.commit_sha,
            extra={"halted": data.halted, "no_change": data.no_change},
        )
    raise ValueError(f"the notifier does not notify about {event.type}")

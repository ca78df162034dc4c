"""A verdict turned into effects: what changes on the release, what its timeline says, and
the event that tells the others. Plain functions over plain data.

The service layer writes :class:`Effects` in one unit of work (and publishes the
event through the outbox); nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ferry_events import (
    ApprovalRequested,
    ArtifactSpec,
    EventData,
    Intent,
    PolicyViolation,
    ReleaseApproved,
    ReleaseRejected,
)
from ferry_promotion.domain.decision import Outcome, Status, Verdict
from ferry_promotion.domain.release import Release


@dataclass(frozen=True, slots=True)
class Decided:
    """What a decision did, for its log line."""

    status: str
    artifact_id: str | None
    violations: tuple[PolicyViolation, ...] = ()
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Line:
    """A line to add to the release's timeline."""

    status: str
    event_type: str = ""
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Effects:
    """What a decision changes (nothing at all when every part is empty)."""

    values: dict[str, Any] = field(default_factory=dict)
    notes: tuple[Line, ...] = ()
    event: EventData | None = None
    decided: Decided | None = None

    def after(self, notes: tuple[Line, ...]) -> Effects:
        """These effects, with ``notes`` written first."""
        return Effects(self.values, notes + self.notes, self.event, self.decided)


def rejection(
    release: Release,
    violations: list[PolicyViolation],
    *,
    artifact: ArtifactSpec | None = None,
    **values: Any,
) -> Effects:
    """Reject ``release`` for ``violations`` (``values``: what else was learnt about it)."""
    event = ReleaseRejected(
        release_id=release.release_id,
        service=release.service,
        environment=release.environment,
        intent=Intent(release.intent),
        artifact_id=artifact.id if artifact else release.artifact_id,
        actor=release.actor,
        violations=violations,
        author_email=artifact.application.author_email if artifact else release.author_email,
    )
    return Effects(
        values={
            "status": Status.REJECTED.value,
            "violations": [v.to_wire() for v in violations],
            "waiting_since": None,
            "due_at": None,
            **values,
        },
        notes=(
            Line(
                Status.REJECTED,
                ReleaseRejected.event_type,
                "; ".join(f"{v.policy}: {v.message}" for v in violations),
            ),
        ),
        event=event,
        decided=Decided(Status.REJECTED.value, event.artifact_id, tuple(violations)),
    )


def effects_of(
    release: Release,
    verdict: Verdict,
    *,
    artifact: ArtifactSpec,
    promoted_from: str | None,
    namespace: str,
    now: datetime,
) -> Effects:
    """What ``verdict`` on ``release`` (resolved to ``artifact``) changes."""
    common: dict[str, Any] = {
        "artifact_id": artifact.id,
        "author_email": artifact.application.author_email,
        "author_name": artifact.application.author_name,
        "artifact_branch": artifact.application.branch,
        "promoted_from": promoted_from,
    }
    if promoted_from:
        # a promote without fromEnvironment shows where it was resolved to come from
        common["from_environment"] = promoted_from
    first = tuple(Line(release.status, "", note) for note in verdict.notes)
    assert verdict.outcome is not Outcome.MEASURE, "measure first, then decide again"
    if verdict.outcome is Outcome.REJECT:
        found = rejection(release, list(verdict.violations), artifact=artifact, **common)
        return found.after(first)
    if verdict.outcome is Outcome.WAIT_FOR_ROLLOUT:
        if release.waiting_since is not None:
            if release.due_at == verdict.due_at:
                return Effects(notes=first)
            # from waiting for a rollout result to soaking (or the soak moved): a new due time
            return Effects(
                values={"due_at": verdict.due_at},
                notes=(*first, Line(Status.REQUESTED, "", verdict.detail)),
                decided=Decided(Status.REQUESTED.value, artifact.id, detail=verdict.detail),
            )
        return Effects(
            values={"waiting_since": now, "due_at": verdict.due_at, **common},
            notes=(*first, Line(Status.REQUESTED, "", verdict.detail)),
            decided=Decided(Status.REQUESTED.value, artifact.id, detail=verdict.detail),
        )
    if verdict.outcome is Outcome.AWAIT_APPROVAL:
        return _awaiting_approval(release, verdict, artifact, namespace, now, common).after(first)
    detail = f"{artifact.id} to {release.environment}/{namespace}"
    if promoted_from:
        detail += f", promoted from {promoted_from}"
    approved = ReleaseApproved(
        release_id=release.release_id,
        service=release.service,
        environment=release.environment,
        namespace=namespace,
        artifact_id=artifact.id,
        intent=Intent(release.intent),
        actor=release.actor,
        reason=release.reason,
        promoted_from=promoted_from,
        author_email=artifact.application.author_email,
        author_name=artifact.application.author_name,
        branch=artifact.application.branch,
        sequence=release.sequence,
    )
    return Effects(
        values={
            "status": Status.APPROVED.value,
            "namespace": namespace,
            "waiting_since": None,
            "due_at": None,
            **common,
        },
        notes=(*first, Line(Status.APPROVED, ReleaseApproved.event_type, detail)),
        event=approved,
        decided=Decided(Status.APPROVED.value, artifact.id, detail=detail),
    )


def _awaiting_approval(  # noqa: PLR0917 - the decision's whole context
    release: Release,
    verdict: Verdict,
    artifact: ArtifactSpec,
    namespace: str,
    now: datetime,
    common: dict[str, Any],
) -> Effects:
    rule = verdict.approval_rule
    assert rule is not None
    if release.status == Status.AWAITING_APPROVAL:
        # asked again (an approval came in, not yet enough): keep the rule current
        return Effects(
            values={"approvals_required": rule.required, "exclude_author": rule.exclude_author}
        )
    expires_at = now + rule.expires_after
    return Effects(
        values={
            "status": Status.AWAITING_APPROVAL.value,
            "approvals_required": rule.required,
            "exclude_author": rule.exclude_author,
            "expires_at": expires_at,
            "waiting_since": None,
            "due_at": None,
            "namespace": namespace,
            **common,
        },
        notes=(
            Line(
                Status.AWAITING_APPROVAL,
                ApprovalRequested.event_type,
                verdict.detail + f"; expires at {expires_at:%Y-%m-%d %H:%M} UTC",
            ),
        ),
        event=ApprovalRequested(
            release_id=release.release_id,
            service=release.service,
            environment=release.environment,
            artifact_id=artifact.id,
            requester=release.actor,
            required=rule.required,
            exclude_author=rule.exclude_author,
            author_email=artifact.application.author_email,
            expires_at=expires_at,
            reason=release.reason,
        ),
        decided=Decided(Status.AWAITING_APPROVAL.value, artifact.id, detail=verdict.detail),
    )

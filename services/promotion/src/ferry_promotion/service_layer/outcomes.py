"""What the deciding use cases share: the source promotion publishes as, the decision log
line, and rejecting a release."""

from __future__ import annotations

from dataclasses import dataclass

from ferry_events import Actor, ArtifactSpec, CloudEvent, Intent, PolicyViolation, ReleaseRejected
from ferry_promotion.domain.decision import Status
from ferry_promotion.domain.release import Release
from ferry_promotion.service_layer.unit_of_work import UnitOfWork
from ferry_runtime.logging import get_logger

log = get_logger(__name__)

SOURCE = "ferry/promotion"
AUTO_RELEASE_ACTOR = Actor(subject="ferry-auto-release", name="auto-release policy")


@dataclass(frozen=True, slots=True)
class Decided:
    """What a decision did, for its log line (written after its transaction commits)."""

    status: str
    artifact_id: str | None
    violations: tuple[PolicyViolation, ...] = ()
    detail: str = ""


def log_decision(release: Release, decided: Decided) -> None:
    """One structured line per decision about a release (``subject`` is the service released)."""
    fields: dict[str, object] = {
        "release_id": release.release_id,
        "subject": release.service,
        "environment": release.environment,
        "artifact_id": decided.artifact_id,
        "intent": release.intent,
        "status": decided.status,
    }
    if decided.violations:
        fields["violations"] = [f"{v.policy}: {v.message}" for v in decided.violations]
    if decided.detail:
        fields["detail"] = decided.detail
    log.info("release decision", **fields)


async def reject(
    uow: UnitOfWork,
    release: Release,
    cause: CloudEvent | None,
    violations: list[PolicyViolation],
    *,
    artifact: ArtifactSpec | None,
    event_id: str | None = None,
    **values: object,
) -> None:
    """Reject ``release`` for ``violations``: its status, timeline and ``release.rejected``."""
    release_id = release.release_id
    await uow.releases.update(
        release_id,
        status=Status.REJECTED.value,
        violations=[v.to_wire() for v in violations],
        waiting_since=None,
        **values,
    )
    await uow.releases.note(
        release_id,
        Status.REJECTED,
        ReleaseRejected.event_type,
        "; ".join(f"{v.policy}: {v.message}" for v in violations),
    )
    await uow.outbox.put(
        CloudEvent.new(
            ReleaseRejected(
                release_id=release_id,
                service=release.service,
                environment=release.environment,
                intent=Intent(release.intent),
                artifact_id=artifact.id if artifact else release.artifact_id,
                actor=release.actor,
                violations=violations,
                author_email=artifact.application.author_email
                if artifact
                else release.author_email,
            ),
            source=SOURCE,
            cause=cause,
            correlation_id=release.correlation_id,
            event_id=event_id,
        )
    )

"""What the deciding use cases share: the source promotion publishes as, the decision log
line, and writing a decision's effects."""

from __future__ import annotations

from ferry_events import Actor, CloudEvent
from ferry_promotion.domain.effects import Decided, Effects
from ferry_promotion.domain.release import Release
from ferry_promotion.service_layer.unit_of_work import UnitOfWork
from ferry_runtime.logging import get_logger

log = get_logger(__name__)

SOURCE = "ferry/promotion"
AUTO_RELEASE_ACTOR = Actor(subject="ferry-auto-release", name="auto-release policy")


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


async def write(
    uow: UnitOfWork,
    release: Release,
    effects: Effects,
    cause: CloudEvent | None,
    *,
    event_id: str | None = None,
) -> None:
    """Write what a decision about ``release`` changes; its event goes to the outbox."""
    if effects.values:
        await uow.releases.update(release.release_id, **effects.values)
    for line in effects.notes:
        await uow.releases.note(release.release_id, line.status, line.event_type, line.detail)
    if effects.event is not None:
        await uow.outbox.put(
            CloudEvent.new(
                effects.event,
                source=SOURCE,
                cause=cause,
                correlation_id=release.correlation_id,
                event_id=event_id,
            )
        )


__all__ = ["AUTO_RELEASE_ACTOR", "SOURCE", "Decided", "log_decision", "write"]

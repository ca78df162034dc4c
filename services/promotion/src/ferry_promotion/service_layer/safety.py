"""Stopping the line and keeping bad builds out: halts and marks, asked of git-writer.

An admin halts an environment (or every one, ``*``) and resumes it; a developer
or above marks an artifact bad and lifts the mark. Each use case checks the
request and puts the change request in the outbox; git-writer commits it to
``halts.yaml`` or ``rejected/<service>.yaml`` and answers with the ``...changed``
event, after which decisions see it (``domain/safety.py`` says what they refuse).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from ferry_events import (
    ALL_ENVIRONMENTS,
    Actor,
    ArtifactMarkChanged,
    ArtifactMarkChangeRequested,
    CloudEvent,
    EventData,
    HaltChanged,
    HaltChangeRequested,
    is_safe_segment,
)
from ferry_promotion.domain.access import Identity, require_admin, require_developer, require_read
from ferry_promotion.domain.safety import Halt
from ferry_promotion.errors import Invalid, NotFound
from ferry_promotion.service_layer.lookups import (
    check_service,
    environment_named,
    snapshot_for_people,
)
from ferry_promotion.service_layer.outcomes import SOURCE
from ferry_promotion.service_layer.ports import Clock, ConfigReader, usable_snapshot
from ferry_promotion.service_layer.unit_of_work import UnitOfWorkFactory
from ferry_runtime.logging import get_logger

log = get_logger(__name__)

MAX_REASON = 2000


def _reason(reason: str, what: str) -> str:
    text = reason.strip()
    if not text:
        raise Invalid.field("reason", f"{what} needs a reason people can read (who, why)")
    if len(text) > MAX_REASON:
        raise Invalid.field("reason", f"at most {MAX_REASON} characters")
    return text


def halt_request(
    request_id: str,
    environment: str,
    reason: str,
    actor: Actor,
    requested_at: datetime,
    *,
    event_id: str | None = None,
    correlation_id: str | None = None,
) -> CloudEvent:
    """The request that git-writer halt ``environment``: what ``POST /v1/halts`` asks, and
    what a failed auto-rollback asks (``service_layer/results.py``)."""
    data = HaltChangeRequested(
        request_id=request_id,
        environment=environment,
        halted=True,
        reason=reason[:MAX_REASON],
        actor=actor,
        requested_at=requested_at,
    )
    return CloudEvent.new(
        data, source=SOURCE, event_id=event_id, correlation_id=correlation_id or request_id
    )


class Safety:
    def __init__(self, uow: UnitOfWorkFactory, config: ConfigReader, *, clock: Clock) -> None:
        self.uow = uow
        self.config = config
        self.clock = clock

    # ------------------------------------------------------------------ halts

    async def halts(self, actor: Identity) -> list[Halt]:
        """The halts in the config repo, ``*`` first."""
        require_read(actor)
        snapshot = await snapshot_for_people(self.config, fresh=True, latest=True)
        return sorted(
            snapshot.halts.values(),
            key=lambda h: (h.environment != ALL_ENVIRONMENTS, h.environment),
        )

    async def _environment(self, environment: str) -> str:
        if environment != ALL_ENVIRONMENTS:
            await environment_named(self.config, environment)
        return environment

    async def halt(self, actor: Identity, environment: str, reason: str) -> str:
        """Ask git-writer to halt ``environment`` (``*``: all); the change request's id."""
        require_admin(actor, "halting an environment")
        await self._environment(environment)
        text = _reason(reason, "a halt")
        request_id = str(uuid.uuid4())
        async with self.uow() as uow:
            await uow.outbox.put(
                halt_request(request_id, environment, text, actor.actor, self.clock())
            )
            await uow.commit()
        log.info(
            "change requested", event_type=HaltChangeRequested.event_type, request_id=request_id
        )
        return request_id

    async def resume(self, actor: Identity, environment: str) -> str:
        """Ask git-writer to lift the halt of ``environment`` (no commit when there is none)."""
        require_admin(actor, "resuming an environment")
        await self._environment(environment)
        return await self._put(
            HaltChangeRequested,
            environment=environment,
            halted=False,
            actor=actor.actor,
            requested_at=self.clock(),
        )

    # ------------------------------------------------------------------ marks

    async def _stored(self, service: str, artifact_id: str) -> None:
        check_service(service)
        if not is_safe_segment(artifact_id):
            raise Invalid.field("artifactId", f"{artifact_id[:80]!r} is not an artifact id")
        await snapshot_for_people(self.config, fresh=True)
        if await self.config.artifact(service, artifact_id) is None:
            raise NotFound(
                f"no artifact {artifact_id} of {service} in the config repo "
                f"(see `ferry artifacts {service}`)"
            )

    async def reject(self, actor: Identity, service: str, artifact_id: str, reason: str) -> str:
        """Ask git-writer to mark the artifact bad; the change request's id."""
        require_developer(actor, "marking an artifact bad")
        text = _reason(reason, "a mark on a bad artifact")
        await self._stored(service, artifact_id)
        return await self._put(
            ArtifactMarkChangeRequested,
            service=service,
            artifact_id=artifact_id,
            rejected=True,
            reason=text,
            actor=actor.actor,
            requested_at=self.clock(),
        )

    async def unreject(self, actor: Identity, service: str, artifact_id: str) -> str:
        """Ask git-writer to lift the artifact's mark (no commit when it has none)."""
        require_developer(actor, "lifting the mark on an artifact")
        check_service(service)
        if not is_safe_segment(artifact_id):
            raise Invalid.field("artifactId", f"{artifact_id[:80]!r} is not an artifact id")
        return await self._put(
            ArtifactMarkChangeRequested,
            service=service,
            artifact_id=artifact_id,
            rejected=False,
            actor=actor.actor,
            requested_at=self.clock(),
        )

    async def _put(self, kind: type[EventData], **fields: object) -> str:
        request_id = str(uuid.uuid4())
        data = kind.model_validate({"request_id": request_id, **fields})
        async with self.uow() as uow:
            await uow.outbox.put(CloudEvent.new(data, source=SOURCE, correlation_id=request_id))
            await uow.commit()
        log.info("change requested", event_type=kind.event_type, request_id=request_id)
        return request_id

    # ------------------------------------------------------------------ events

    async def changed(self, event: CloudEvent, data: HaltChanged | ArtifactMarkChanged) -> None:
        """git-writer committed a halt or a mark: decisions made after this see it."""
        self.config.mark_stale(data.service if isinstance(data, ArtifactMarkChanged) else None)
        await usable_snapshot(self.config, fresh=True)
        async with self.uow() as uow:
            if not await uow.inbox.seen(event.id):
                await uow.inbox.mark(event)
                await uow.commit()
        log.info("halt or mark changed", event_type=event.type, commit=data.commit_sha)

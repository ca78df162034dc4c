"""Policies: reading and changing them (git-writer commits the change), taking in a change,
and what a stored artifact's policy asks for (auto-release requests)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from ferry_events import (
    ArtifactStored,
    CloudEvent,
    Intent,
    PolicyChanged,
    PolicyChangeRequested,
    ReleaseRequested,
    derived_id,
)
from ferry_promotion.domain.access import Identity, require_admin, require_read
from ferry_promotion.domain.policies import policy_from_data
from ferry_promotion.domain.records import StoredArtifact
from ferry_promotion.domain.yamldoc import DocumentError
from ferry_promotion.errors import Conflict, FieldError, Invalid, NotFound
from ferry_promotion.service_layer.lookups import check_service, snapshot_for_people
from ferry_promotion.service_layer.outcomes import AUTO_RELEASE_ACTOR, SOURCE
from ferry_promotion.service_layer.ports import ConfigReader, usable_snapshot
from ferry_promotion.service_layer.unit_of_work import UnitOfWorkFactory
from ferry_runtime.logging import get_logger

log = get_logger(__name__)


class Policies:
    def __init__(self, uow: UnitOfWorkFactory, config: ConfigReader) -> None:
        self.uow = uow
        self.config = config

    async def get_policy(self, actor: Identity, service: str) -> dict[str, Any]:
        require_read(actor)
        check_service(service)
        snapshot = await snapshot_for_people(self.config, fresh=True, latest=True)
        found = snapshot.policies.get(service)
        if found is None:
            raise NotFound(f"{service} has no policy (policies/{service}.yaml does not exist)")
        if found.policy is None:
            raise Conflict(
                f"policies/{service}.yaml in the config repo is invalid, so releases of {service} "
                f"are refused until it is fixed: {found.error}"
            )
        return found.policy.to_document()

    async def put_policy(self, actor: Identity, service: str, document: Any) -> str:
        """Validate a policy and ask git-writer to commit it; the id of the change request."""
        check_service(service)
        require_admin(actor, "changing a policy")
        snapshot = await snapshot_for_people(self.config)
        try:
            policy = policy_from_data(document, service, snapshot.environments)
        except DocumentError as exc:
            raise Invalid(
                str(exc), [FieldError(p.field or "(body)", p.message) for p in exc.problems]
            ) from exc
        return await self._change(actor, service, policy.to_document())

    async def delete_policy(self, actor: Identity, service: str) -> str:
        check_service(service)
        require_admin(actor, "deleting a policy")
        snapshot = await snapshot_for_people(self.config, fresh=True, latest=True)
        if service not in snapshot.policies:
            raise NotFound(f"{service} has no policy to delete")
        return await self._change(actor, service, None)

    async def _change(self, actor: Identity, service: str, policy: dict[str, Any] | None) -> str:
        request_id = str(uuid.uuid4())
        async with self.uow() as uow:
            await uow.outbox.put(
                CloudEvent.new(
                    PolicyChangeRequested(
                        request_id=request_id, service=service, policy=policy, actor=actor.actor
                    ),
                    source=SOURCE,
                    correlation_id=request_id,
                )
            )
            await uow.commit()
        return request_id

    # ------------------------------------------------------------------ events

    async def changed(self, event: CloudEvent, data: PolicyChanged) -> None:
        """git-writer committed a policy: requests decided after this see it."""
        self.config.mark_stale(data.service)
        # fetch now: requests decided after this event must see the new policy
        await usable_snapshot(self.config, fresh=True)
        async with self.uow() as uow:
            if not await uow.inbox.seen(event.id):
                await uow.inbox.mark(event)
                await uow.commit()
        log.info(
            "policy changed", service=data.service, commit=data.commit_sha, deleted=data.deleted
        )

    async def artifact_stored(self, event: CloudEvent, data: ArtifactStored) -> None:
        """Catalog the artifact and request the auto-releases its service's policy asks for."""
        spec = data.artifact
        self.config.mark_stale(spec.service)
        snapshot = await usable_snapshot(self.config)
        policy, error = snapshot.policy_for(spec.service)
        if error:
            log.warning(
                "no auto-release: the policy file is invalid", service=spec.service, error=error
            )
        targets = [
            env
            for env in policy.auto_release_targets(spec.application.branch)
            if not data.environments or env in data.environments
        ]
        async with self.uow() as uow:
            if await uow.inbox.seen(event.id):
                return
            await uow.artifacts.add(
                StoredArtifact(
                    service=spec.service,
                    artifact_id=spec.id,
                    branch=spec.application.branch,
                    sha=spec.application.sha,
                    author_name=spec.application.author_name,
                    author_email=spec.application.author_email,
                    message=spec.application.message,
                    namespace=spec.namespace,
                    environments=list(data.environments),
                    commit_sha=data.commit_sha,
                    stored_at=event.time,
                )
            )
            for environment in targets:
                release_id = derived_id(event.id, "auto-release", environment)
                request = ReleaseRequested(
                    release_id=release_id,
                    service=spec.service,
                    environment=environment,
                    intent=Intent.AUTO_RELEASE,
                    artifact_id=spec.id,
                    reason=f"auto-release of branch {spec.application.branch} to {environment}",
                    actor=AUTO_RELEASE_ACTOR,
                    requested_at=datetime.now(UTC),
                )
                await uow.outbox.put(
                    CloudEvent.new(
                        request,
                        source=SOURCE,
                        cause=event,
                        event_id=derived_id(event.id, ReleaseRequested.event_type, environment),
                        correlation_id=release_id,
                    )
                )
            await uow.inbox.mark(event)
            await uow.commit()
        if targets:
            log.info("auto-release requested", artifact_id=spec.id, environments=targets)

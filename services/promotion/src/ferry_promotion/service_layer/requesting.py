"""Requesting and voting: the use cases people call (through the API or Slack) and the intake
of requests from the queue.

Every people-facing call takes the acting :class:`~ferry_promotion.domain.access.Identity`
first (from a bearer token or a Slack user id, never from a body), checks what
it may do, and returns a domain record or raises an
:class:`~ferry_promotion.errors.ApplicationError` with a detail for people. A
release request is recorded and published as ``ferry.release.requested.v1``
through the outbox; the consumer decides it (:meth:`Requests.take`), exactly as
it decides requests from any other producer.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime

from ferry_events import (
    ApprovalDenied,
    ApprovalGranted,
    CloudEvent,
    Intent,
    PolicyViolation,
    ReleaseRejected,
    ReleaseRequested,
    is_safe_segment,
)
from ferry_promotion.domain.access import Identity, require_admin, require_release
from ferry_promotion.domain.decision import Person, Status, approval_refusal, count_approvals
from ferry_promotion.domain.environments import Environment
from ferry_promotion.domain.policies import ApprovalRule
from ferry_promotion.domain.records import ReleaseDetail
from ferry_promotion.domain.release import Release
from ferry_promotion.domain.schedule import check_at
from ferry_promotion.errors import Conflict, FieldError, Forbidden, Invalid
from ferry_promotion.service_layer.deciding import Decider
from ferry_promotion.service_layer.lookups import check_service, environment_named, no_release
from ferry_promotion.service_layer.outcomes import SOURCE
from ferry_promotion.service_layer.ports import Clock, ConfigReader, ReadModel
from ferry_promotion.service_layer.unit_of_work import UnitOfWork, UnitOfWorkFactory
from ferry_runtime.errors import TemporaryError
from ferry_runtime.logging import get_logger

log = get_logger(__name__)

USER_INTENTS = (Intent.RELEASE, Intent.PROMOTE, Intent.ROLLBACK)
_VERBS = {"release": "releasing", "promote": "promoting", "rollback": "rolling back"}


class Requests:
    """Release requests and the votes on them."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        config: ConfigReader,
        read: ReadModel,
        decider: Decider,
        *,
        clock: Clock,
    ) -> None:
        self.uow = uow
        self.config = config
        self.read = read
        self.decider = decider
        self.clock = clock

    async def request_release(
        self,
        actor: Identity,
        *,
        service: str,
        environment: str,
        intent: Intent,
        artifact_id: str | None = None,
        branch: str | None = None,
        from_environment: str | None = None,
        reason: str = "",
        override_freeze: bool = False,
        at: datetime | None = None,
    ) -> Release:
        """Record a release/promote/rollback request and publish it for the decision; with
        ``at``, record it ``scheduled`` (:mod:`~ferry_promotion.service_layer.scheduling`
        publishes it when it falls due, and it is decided then)."""
        check_service(service)
        if intent not in USER_INTENTS:
            raise Invalid.field(
                "intent", "must be release, promote or rollback (auto-release is a policy's)"
            )
        env = await environment_named(self.config, environment)
        if artifact_id is not None and not is_safe_segment(artifact_id):
            raise Invalid.field("artifactId", "is not an artifact id (letters, digits, . - _)")
        await self._check_intent_fields(intent, env, artifact_id, branch, from_environment)
        require_release(actor, env, _VERBS[intent.value])
        if override_freeze:
            require_admin(actor, "overriding a freeze window")
            if not reason.strip():
                raise Invalid.field("reason", "overriding a freeze window needs a reason")
        release_id = str(uuid.uuid4())
        requested_at = self.clock()
        if at is not None:
            at = check_at(at, requested_at)
        # a scheduled request takes the config commit (and its number) when it falls due
        config_commit = await accepted_at(self.config) if at is None else None
        request = ReleaseRequested(
            release_id=release_id,
            service=service,
            environment=env.name,
            intent=intent,
            artifact_id=artifact_id or None,
            branch=branch or None,
            from_environment=from_environment or None,
            reason=reason,
            actor=actor.actor,
            override_freeze=override_freeze,
            requested_at=requested_at,
            config_commit=config_commit,
        )
        event = CloudEvent.new(request, source=SOURCE, correlation_id=release_id)
        release = Release.requested(event, request, updated_at=requested_at)
        async with self.uow() as uow:
            if at is None:
                release = await _record(uow, event, release)
                await uow.outbox.put(event)
            else:
                release = await _schedule(uow, release, at)
            await uow.commit()
        return release

    async def _check_intent_fields(
        self,
        intent: Intent,
        env: Environment,
        artifact_id: str | None,
        branch: str | None,
        from_environment: str | None,
    ) -> None:
        errors: list[FieldError] = []
        if intent is Intent.RELEASE:
            if bool(artifact_id) == bool(branch):
                errors.append(
                    FieldError("artifactId", "a release names exactly one of artifactId or branch")
                )
            if from_environment:
                errors.append(FieldError("fromEnvironment", "only a promote takes fromEnvironment"))
        elif intent is Intent.PROMOTE:
            if branch:
                errors.append(
                    FieldError(
                        "branch", "a promote takes what runs in fromEnvironment, not a branch"
                    )
                )
            if from_environment:
                source = await environment_named(self.config, from_environment, "fromEnvironment")
                if source.name == env.name:
                    errors.append(FieldError("fromEnvironment", "must differ from environment"))
        elif branch or from_environment:
            errors.append(
                FieldError(
                    "branch" if branch else "fromEnvironment",
                    "a rollback takes an artifactId (a named earlier release) or nothing",
                )
            )
        if errors:
            raise Invalid("; ".join(f"{e.field}: {e.message}" for e in errors), errors)

    # ------------------------------------------------------------------ intake

    async def take(self, event: CloudEvent, data: ReleaseRequested) -> None:
        """A request from the queue: record it (when another producer than our API sent it),
        then decide it, reading its row once on the way."""
        release = Release.requested(event, data, updated_at=datetime.now(UTC))
        async with self.uow() as uow:
            if await uow.inbox.seen(event.id):
                return
            stored = await uow.releases.get(data.release_id)
            if stored is None:
                # a request from another producer than our API: record it first
                stored = await _record(uow, event, release)
                await uow.commit()
        log.info(
            "release decision",
            release_id=data.release_id,
            subject=data.service,
            environment=data.environment,
            artifact_id=data.artifact_id,
            intent=data.intent.value,
            status="requested",
            actor=data.actor.display(),
        )
        await self.decider.decide(stored, event)

    # ------------------------------------------------------------------ votes

    async def _awaiting(self, release_id: str) -> tuple[Release, Environment]:
        """The release and its environment; 404, 422 or 409 unless it awaits approval."""
        if len(release_id) > 128:
            raise no_release(release_id)
        release = await self.read.get(release_id)
        if release is None:
            raise no_release(release_id)
        env = await environment_named(self.config, release.environment)
        if release.status != Status.AWAITING_APPROVAL:
            raise Conflict(release.why_not_awaiting_approval())
        return release, env

    async def _vote(
        self, uow: UnitOfWork, actor: Identity, release_id: str, decision: str, comment: str
    ) -> Release:
        """Record ``actor``'s vote on a release still awaiting approval (read under lock)."""
        current = await uow.releases.get(release_id, lock=True)
        assert current is not None
        if current.status != Status.AWAITING_APPROVAL:
            raise Conflict(current.why_not_awaiting_approval())
        who = {"subject": actor.subject, "email": actor.email, "name": actor.name}
        if not await uow.approvals.add(release_id, decision=decision, comment=comment, **who):
            raise Conflict(f"{actor.subject} already voted on release {release_id}")
        return current

    async def _shown(self, release_id: str) -> ReleaseDetail:
        detail = await self.read.release(release_id)
        if detail is None:
            raise no_release(release_id)
        return detail

    async def approve(self, actor: Identity, release_id: str, comment: str = "") -> ReleaseDetail:
        """One approval by ``actor``; the last one needed lets the decision go on."""
        release, env = await self._awaiting(release_id)
        require_release(actor, env, "approving a release")
        rule = ApprovalRule(
            environment=env.name,
            required=max(1, release.approvals_required or 1),
            exclude_author=release.exclude_author,
        )
        refusal = approval_refusal(rule, release.requester, release.author_email, actor.person)
        if refusal is not None:
            raise Forbidden(refusal)
        expires_at = release.expires_at
        if expires_at is not None and expires_at <= self.clock():
            raise Conflict(
                f"release {release_id} is not awaiting approval: its approval expired at "
                f"{expires_at:%Y-%m-%d %H:%M} UTC"
            )
        async with self.uow() as uow:
            current = await self._vote(uow, actor, release_id, "granted", comment)
            people = tuple(
                Person(v.subject, v.email)
                for v in await uow.approvals.of(release_id)
                if v.decision == "granted"
            )
            count = count_approvals(rule, current.requester, current.author_email, people)
            await uow.releases.note(
                release_id,
                Status.AWAITING_APPROVAL,
                ApprovalGranted.event_type,
                f"approved by {actor.actor.display()} ({count}/{rule.required})"
                + (f": {comment}" if comment else ""),
            )
            await uow.outbox.put(
                CloudEvent.new(
                    ApprovalGranted(
                        release_id=release_id,
                        service=current.service,
                        environment=current.environment,
                        artifact_id=current.artifact_id or "",
                        approver=actor.actor,
                        approvals=count,
                        remaining=max(rule.required - count, 0),
                    ),
                    source=SOURCE,
                    correlation_id=current.correlation_id,
                )
            )
            await uow.commit()
        return await self._shown(release_id)

    async def reject(self, actor: Identity, release_id: str, reason: str = "") -> ReleaseDetail:
        """Refuse a release awaiting approval (the requester may withdraw their own)."""
        release, env = await self._awaiting(release_id)
        if not release.requester.same_as(actor.person):
            require_release(actor, env, "rejecting a release")
        message = f"rejected by {actor.actor.display()}" + (f": {reason}" if reason else "")
        async with self.uow() as uow:
            current = await self._vote(uow, actor, release_id, "rejected", reason)
            violation = PolicyViolation(policy="approvals", message=message)
            await uow.releases.update(
                release_id, status=Status.REJECTED.value, violations=[violation.to_wire()]
            )
            await uow.releases.note(release_id, Status.REJECTED, ApprovalDenied.event_type, message)
            denied = ApprovalDenied(
                release_id=release_id,
                service=current.service,
                environment=current.environment,
                artifact_id=current.artifact_id or "",
                by=actor.actor,
                reason=reason or "rejected",
            )
            rejected = ReleaseRejected(
                release_id=release_id,
                service=current.service,
                environment=current.environment,
                intent=Intent(current.intent),
                artifact_id=current.artifact_id,
                actor=current.actor,
                violations=[violation],
                author_email=current.author_email,
            )
            for data in (denied, rejected):
                await uow.outbox.put(
                    CloudEvent.new(data, source=SOURCE, correlation_id=current.correlation_id)
                )
            await uow.commit()
        return await self._shown(release_id)


async def accepted_at(config: ConfigReader) -> str | None:
    """The config commit a request is accepted at: the remote's head now, which is at or after
    every commit any replica has shown (a shown policy was pushed before it was shown), else,
    with the remote unreachable, the commit this replica has."""
    try:
        return await config.remote_head()
    except TemporaryError as exc:
        log.warning("config repo unreachable; the request keeps this replica's commit",
                    error=str(exc))  # fmt: skip
        return config.snapshot.commit


async def _schedule(uow: UnitOfWork, release: Release, at: datetime) -> Release:
    """Add the release, scheduled for ``at``: not numbered and not published until then."""
    release = dataclasses.replace(
        release, status=Status.SCHEDULED.value, scheduled_at=at, request_event_id=None
    )
    await uow.releases.add(release)
    await uow.releases.note(
        release.release_id,
        Status.SCHEDULED,
        "",
        f"{release.intent} scheduled for {at:%Y-%m-%d %H:%M:%S} UTC by {release.actor.display()}",
    )
    return release


async def _record(uow: UnitOfWork, event: CloudEvent, release: Release) -> Release:
    """Add the requested release, numbered, with the first line of its timeline."""
    sequence = await uow.releases.next_sequence(release.service, release.environment)
    release = dataclasses.replace(release, sequence=sequence)
    await uow.releases.add(release)
    await uow.releases.note(
        release.release_id,
        Status.REQUESTED,
        event.type,
        f"{release.intent} requested by {release.actor.display()} (#{sequence})",
    )
    return release

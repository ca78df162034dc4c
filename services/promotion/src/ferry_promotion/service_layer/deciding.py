"""Deciding release requests: gather the facts, ask the domain, write the outcome.

Every request, whoever produced it (the API, Slack, a policy, another
service), is decided here, in arrival order per service and environment (the
consumer's per-key lock), against a config repo no older than a few seconds
that has every commit about the service promotion has heard of. The outcome
(status, timeline, the event to publish and the inbox row of the cause) is
written in one unit of work.
"""

from __future__ import annotations

from typing import Any

from ferry_events import (
    ApprovalRequested,
    ArtifactSpec,
    CloudEvent,
    Intent,
    PolicyViolation,
    ReleaseApproved,
)
from ferry_promotion.domain.decision import (
    Candidate,
    Facts,
    Outcome,
    Person,
    ResolutionError,
    RolloutState,
    Status,
    Verdict,
    evaluate,
)
from ferry_promotion.domain.release import Release
from ferry_promotion.domain.snapshot import Snapshot
from ferry_promotion.service_layer.outcomes import SOURCE, Decided, log_decision, reject
from ferry_promotion.service_layer.ports import Clock, Identities, ReadModel, usable_snapshot
from ferry_promotion.service_layer.resolving import Resolver, Target
from ferry_promotion.service_layer.unit_of_work import UnitOfWork, UnitOfWorkFactory

#: Releases in these statuses in the environment before are on their way to a rollout result.
_ON_THEIR_WAY = frozenset({Status.APPROVED.value, Status.COMMITTED.value})


class Decider:
    """Decides requests and re-decides them when approvals complete or rollouts report."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        resolver: Resolver,
        read: ReadModel,
        identities: Identities,
        *,
        clock: Clock,
    ) -> None:
        self.uow = uow
        self.resolver = resolver
        self.config = resolver.config
        self.read = read
        self.identities = identities
        self.clock = clock

    async def decide(self, release: Release | str, cause: CloudEvent) -> None:
        """Decide an open release (requested or awaiting approval); record ``cause`` as handled.

        ``release`` is the record the caller holds (so it is not read again before the
        decision's own locked read), or its id.
        """
        known = await self.read.get(release) if isinstance(release, str) else release
        if known is None or not known.open:
            async with self.uow() as uow:
                if not await uow.inbox.seen(cause.id):
                    await uow.inbox.mark(cause)
                    await uow.commit()
            return
        snapshot = await usable_snapshot(self.config, service=known.service)
        target: Target | None = None
        resolution: PolicyViolation | None = None
        try:
            target = await self.resolver.resolve(known, snapshot)
        except ResolutionError as exc:
            resolution = exc.violation
        async with self.uow() as uow:
            if await uow.inbox.seen(cause.id):
                return
            current = await uow.releases.get(known.release_id, lock=True)
            decided: Decided | None = None
            if current is not None and current.open:
                if target is None:
                    assert resolution is not None
                    await reject(uow, current, cause, [resolution], artifact=None)
                    decided = Decided(Status.REJECTED.value, current.artifact_id, (resolution,))
                else:
                    verdict = await self._verdict(uow, current, snapshot, target)
                    decided = await self._apply(
                        uow, current, cause, snapshot=snapshot, target=target, verdict=verdict
                    )
            await uow.inbox.mark(cause)
            await uow.commit()
        if current is not None and decided is not None:
            log_decision(current, decided)

    async def _previous_rollout(
        self, uow: UnitOfWork, snapshot: Snapshot, release: Release, artifact_id: str
    ) -> tuple[RolloutState, str]:
        """How ``artifact_id`` fared in the environment before the release's."""
        previous = snapshot.environments.previous(release.environment)
        if previous is None:
            return RolloutState.NONE, ""
        fact = await uow.rollouts.get(previous.name, release.service, artifact_id)
        if fact is not None:
            if fact.succeeded_at is not None:
                return RolloutState.SUCCEEDED, ""
            if fact.status == "failed":
                return RolloutState.FAILED, fact.reason
            return RolloutState.IN_PROGRESS, ""
        running = snapshot.running(previous.name, release.service)
        in_git = running is not None and running.artifact.id == artifact_id
        if in_git or (
            await uow.releases.newest(release.service, previous.name, artifact_id, _ON_THEIR_WAY)
            is not None
        ):
            # released there, no result yet: wait for the cluster-watcher's report
            return RolloutState.IN_PROGRESS, ""
        return RolloutState.NONE, ""

    async def _verdict(
        self, uow: UnitOfWork, release: Release, snapshot: Snapshot, target: Target
    ) -> Verdict:
        service, environment = release.service, release.environment
        intent = Intent(release.intent)
        spec = target.artifact
        policy, policy_error = snapshot.policy_for(service)
        env = snapshot.environments.get(environment)
        identity = self.identities.known(release.actor_subject)
        if intent is Intent.AUTO_RELEASE:
            authorized = True
        elif env is None:
            authorized = True  # the unknown environment is its own violation
        else:
            authorized = identity is not None and identity.can_release_to(env)
        state, state_reason = RolloutState.NONE, ""
        if policy.chained(environment):
            state, state_reason = await self._previous_rollout(uow, snapshot, release, spec.id)
        running = snapshot.running(environment, service)
        approvers: tuple[Person, ...] = ()
        if policy.approval_rule(environment) is not None:
            approvers = tuple(
                Person(v.subject, v.email)
                for v in await uow.approvals.of(release.release_id)
                if v.decision == "granted"
            )
        candidate = Candidate(
            service=service,
            environment=environment,
            intent=intent,
            artifact_id=spec.id,
            branch=spec.application.branch,
            author_email=spec.application.author_email,
            requester=release.requester,
            requester_authorized=authorized,
            requester_is_admin=identity is not None and identity.is_admin,
            override_freeze=release.override_freeze,
            reason=release.reason,
        )
        facts = Facts(
            now=self.clock(),
            environments=snapshot.environments,
            running_artifact=running.artifact.id if running else None,
            previous_rollout=state,
            previous_rollout_reason=state_reason,
            approvers=approvers,
            policy_error=policy_error,
            halt=snapshot.halt_of(environment),
            mark=snapshot.mark_of(service, spec.id),
        )
        return evaluate(candidate, policy, facts)

    async def _apply(
        self,
        uow: UnitOfWork,
        release: Release,
        cause: CloudEvent,
        *,
        snapshot: Snapshot,
        target: Target,
        verdict: Verdict,
    ) -> Decided | None:
        """Write the verdict; what it did (``None`` when nothing changed)."""
        release_id = release.release_id
        spec = target.artifact
        namespace = snapshot.environments.namespace_for(
            release.environment, spec.namespace, spec.service
        )
        common: dict[str, Any] = {
            "artifact_id": spec.id,
            "author_email": spec.application.author_email,
            "author_name": spec.application.author_name,
            "artifact_branch": spec.application.branch,
            "promoted_from": target.promoted_from,
        }
        if target.promoted_from:
            # a promote without fromEnvironment shows where it was resolved to come from
            common["from_environment"] = target.promoted_from
        for note in verdict.notes:
            await uow.releases.note(release_id, release.status, "", note)
        if verdict.outcome is Outcome.REJECT:
            await reject(uow, release, cause, list(verdict.violations), artifact=spec, **common)
            return Decided(Status.REJECTED.value, spec.id, tuple(verdict.violations))
        if verdict.outcome is Outcome.WAIT_FOR_ROLLOUT:
            if release.waiting_since is None:
                await uow.releases.update(release_id, waiting_since=self.clock(), **common)
                await uow.releases.note(release_id, Status.REQUESTED, "", verdict.detail)
                return Decided(Status.REQUESTED.value, spec.id, detail=verdict.detail)
            return None
        if verdict.outcome is Outcome.AWAIT_APPROVAL:
            return await self._await_approval(
                uow, release, cause, spec=spec, namespace=namespace, verdict=verdict, common=common
            )
        await uow.releases.update(
            release_id,
            status=Status.APPROVED.value,
            namespace=namespace,
            waiting_since=None,
            **common,
        )
        detail = f"{spec.id} to {release.environment}/{namespace}"
        if target.promoted_from:
            detail += f", promoted from {target.promoted_from}"
        await uow.releases.note(release_id, Status.APPROVED, ReleaseApproved.event_type, detail)
        await uow.outbox.put(
            CloudEvent.new(
                ReleaseApproved(
                    release_id=release_id,
                    service=release.service,
                    environment=release.environment,
                    namespace=namespace,
                    artifact_id=spec.id,
                    intent=Intent(release.intent),
                    actor=release.actor,
                    reason=release.reason,
                    promoted_from=target.promoted_from,
                    author_email=spec.application.author_email,
                    author_name=spec.application.author_name,
                    branch=spec.application.branch,
                ),
                source=SOURCE,
                cause=cause,
                correlation_id=release.correlation_id,
            )
        )
        return Decided(Status.APPROVED.value, spec.id, detail=detail)

    async def _await_approval(
        self,
        uow: UnitOfWork,
        release: Release,
        cause: CloudEvent,
        *,
        spec: ArtifactSpec,
        namespace: str,
        verdict: Verdict,
        common: dict[str, Any],
    ) -> Decided | None:
        rule = verdict.approval_rule
        assert rule is not None
        release_id = release.release_id
        if release.status == Status.AWAITING_APPROVAL:
            await uow.releases.update(
                release_id, approvals_required=rule.required, exclude_author=rule.exclude_author
            )
            return None
        expires_at = self.clock() + rule.expires_after
        await uow.releases.update(
            release_id,
            status=Status.AWAITING_APPROVAL.value,
            approvals_required=rule.required,
            exclude_author=rule.exclude_author,
            expires_at=expires_at,
            waiting_since=None,
            namespace=namespace,
            **common,
        )
        await uow.releases.note(
            release_id,
            Status.AWAITING_APPROVAL,
            ApprovalRequested.event_type,
            verdict.detail + f"; expires at {expires_at:%Y-%m-%d %H:%M} UTC",
        )
        await uow.outbox.put(
            CloudEvent.new(
                ApprovalRequested(
                    release_id=release_id,
                    service=release.service,
                    environment=release.environment,
                    artifact_id=spec.id,
                    requester=release.actor,
                    required=rule.required,
                    exclude_author=rule.exclude_author,
                    author_email=spec.application.author_email,
                    expires_at=expires_at,
                    reason=release.reason,
                ),
                source=SOURCE,
                cause=cause,
                correlation_id=release.correlation_id,
            )
        )
        return Decided(Status.AWAITING_APPROVAL.value, spec.id, detail=verdict.detail)

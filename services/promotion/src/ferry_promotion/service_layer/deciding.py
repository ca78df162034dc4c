"""Deciding release requests: gather the facts, ask the domain, write the outcome.

Every request, whoever produced it (the API, Slack, a policy, another
service), is decided here, in arrival order per service and environment (the
consumer's per-key lock), against a config repo no older than a few seconds
that has every commit about the service promotion has heard of. The outcome
(status, timeline, the event to publish and the inbox row of the cause) is
written in one unit of work.

A ``verification`` check is measured only when everything else would let the request
through, and outside any transaction: the verdict asks for it (``MEASURE``), the unit of
work is left without a change, Prometheus is asked, and the request is decided again with
the measurement.
"""

from __future__ import annotations

from dataclasses import dataclass

from ferry_events import (
    CloudEvent,
    Intent,
    PolicyViolation,
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
from ferry_promotion.domain.effects import Decided, effects_of, rejection
from ferry_promotion.domain.policies import Policy, Verification
from ferry_promotion.domain.records import Rollout
from ferry_promotion.domain.release import Release
from ferry_promotion.domain.rollback import is_auto_rollback
from ferry_promotion.domain.snapshot import Snapshot
from ferry_promotion.domain.verification import Measurement, Samples, judge
from ferry_promotion.service_layer.outcomes import log_decision, write
from ferry_promotion.service_layer.ports import (
    Clock,
    Identities,
    Metrics,
    ReadModel,
    usable_snapshot,
)
from ferry_promotion.service_layer.resolving import Resolver, Target
from ferry_promotion.service_layer.unit_of_work import UnitOfWork, UnitOfWorkFactory
from ferry_runtime.logging import get_logger

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class DryRun:
    """What :meth:`Decider.dry_run` found: the target, what it was judged on, and the verdict."""

    target: Target
    candidate: Candidate
    policy: Policy
    facts: Facts
    verdict: Verdict


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
        metrics: Metrics | None = None,
    ) -> None:
        self.uow = uow
        self.resolver = resolver
        self.config = resolver.config
        self.read = read
        self.identities = identities
        self.clock = clock
        self.metrics = metrics

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
        snapshot = await usable_snapshot(
            self.config, service=known.service, holding=known.config_commit
        )
        target: Target | PolicyViolation
        try:
            target = await self.resolver.resolve(known, snapshot)
        except ResolutionError as exc:
            target = exc.violation
        measured: Measurement | None = None
        while True:
            async with self.uow() as uow:
                if await uow.inbox.seen(cause.id):
                    return
                current, decided, check = await self._once(
                    uow, known.release_id, cause, snapshot, target, measured
                )
                if check is None:
                    await uow.inbox.mark(cause)
                    await uow.commit()
            if check is None:
                break
            # left without a commit: nothing is held while Prometheus answers
            assert measured is None, "measured once per decision"
            measured = await self._measure(check)
        if current is not None and decided is not None:
            log_decision(current, decided)

    async def _once(  # noqa: PLR0917 - one decision's whole context
        self,
        uow: UnitOfWork,
        release_id: str,
        cause: CloudEvent,
        snapshot: Snapshot,
        target: Target | PolicyViolation,
        measured: Measurement | None,
    ) -> tuple[Release | None, Decided | None, Verification | None]:
        """Decide the locked release in ``uow``: the release, what was decided, and the check
        to measure first (then nothing is written)."""
        current = await uow.releases.get(release_id, lock=True)
        if current is None or not current.open:
            return current, None, None
        if isinstance(target, PolicyViolation):
            rejected = rejection(current, [target])
            await write(uow, current, rejected, cause)
            return current, rejected.decided, None
        verdict = await self._verdict(uow, current, snapshot, target, measured)
        if verdict.outcome is Outcome.MEASURE:
            return current, None, verdict.verification
        decided = await self._apply(
            uow, current, cause, snapshot=snapshot, target=target, verdict=verdict
        )
        return current, decided, None

    async def _measure(self, check: Verification) -> Measurement:
        """What Prometheus says about ``check`` now (a clear failure when it cannot say)."""
        if self.metrics is None:
            samples = Samples(error="no Prometheus is configured (FERRY_PROMETHEUS_URL)")
        else:
            samples = await self.metrics.samples(check.prometheus, self.clock())
        measured = judge(check, samples)
        log.info(
            "verification measured",
            environment=check.environment,
            passed=measured.passed,
            value=measured.value,
        )
        return measured

    async def _previous_rollout(
        self, uow: UnitOfWork, snapshot: Snapshot, release: Release, artifact_id: str
    ) -> tuple[RolloutState, str, Rollout | None]:
        """How ``artifact_id`` fared in the environment before the release's (and the fact)."""
        previous = snapshot.environments.previous(release.environment)
        if previous is None:
            return RolloutState.NONE, "", None
        fact = await uow.rollouts.get(previous.name, release.service, artifact_id)
        if fact is not None:
            if fact.succeeded_at is not None:
                reason = fact.reason if fact.status == "failed" else ""
                return RolloutState.SUCCEEDED, reason, fact
            if fact.status == "failed":
                return RolloutState.FAILED, fact.reason, fact
            return RolloutState.IN_PROGRESS, "", fact
        running = snapshot.running(previous.name, release.service)
        in_git = running is not None and running.artifact.id == artifact_id
        if in_git or (
            await uow.releases.newest(release.service, previous.name, artifact_id, _ON_THEIR_WAY)
            is not None
        ):
            # released there, no result yet: wait for the cluster-watcher's report
            return RolloutState.IN_PROGRESS, "", None
        return RolloutState.NONE, "", None

    async def dry_run(self, release: Release, snapshot: Snapshot) -> DryRun | PolicyViolation:
        """The decision ``release`` would get now against ``snapshot``, by the same code as
        :meth:`decide`, without writing anything: no status, no event, no inbox row (its units
        of work only read and are never committed). A verification is measured as the decision
        would measure it. A request that resolves to nothing gives the violation it would be
        rejected with."""
        try:
            target = await self.resolver.resolve(release, snapshot)
        except ResolutionError as exc:
            return exc.violation
        measured: Measurement | None = None
        while True:
            async with self.uow() as uow:
                candidate, policy, facts = await self._situation(
                    uow, release, snapshot, target, measured
                )
            verdict = evaluate(candidate, policy, facts)
            if verdict.outcome is Outcome.MEASURE and verdict.verification and measured is None:
                measured = await self._measure(verdict.verification)
                continue
            return DryRun(target, candidate, policy, facts, verdict)

    async def _verdict(
        self,
        uow: UnitOfWork,
        release: Release,
        snapshot: Snapshot,
        target: Target,
        measured: Measurement | None = None,
    ) -> Verdict:
        return evaluate(*await self._situation(uow, release, snapshot, target, measured))

    async def _situation(
        self,
        uow: UnitOfWork,
        release: Release,
        snapshot: Snapshot,
        target: Target,
        measured: Measurement | None = None,
    ) -> tuple[Candidate, Policy, Facts]:
        """What the decision of ``release`` is made from: the request, the policy, the facts."""
        service, environment = release.service, release.environment
        intent = Intent(release.intent)
        spec = target.artifact
        policy, policy_error = snapshot.policy_for(service)
        env = snapshot.environments.get(environment)
        identity = self.identities.known(release.actor_subject)
        automatic = is_auto_rollback(release.intent, release.actor_subject)
        if intent is Intent.AUTO_RELEASE or automatic:
            authorized = True  # the policy's own request: its rule is checked instead
        elif env is None:
            authorized = True  # the unknown environment is its own violation
        else:
            authorized = identity is not None and identity.can_release_to(env)
        state, state_reason, fact = RolloutState.NONE, "", None
        if policy.chained(environment):
            state, state_reason, fact = await self._previous_rollout(
                uow, snapshot, release, spec.id
            )
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
            auto_rollback=automatic,
            promoted_from=target.promoted_from,
        )
        facts = Facts(
            now=self.clock(),
            environments=snapshot.environments,
            running_artifact=running.artifact.id if running else None,
            previous_rollout=state,
            previous_rollout_reason=state_reason,
            previous_succeeded_at=fact.succeeded_at if fact else None,
            previous_failed_at=fact.failed_at if fact else None,
            approvers=approvers,
            policy_error=policy_error,
            halt=snapshot.halt_of(environment),
            mark=snapshot.mark_of(service, spec.id),
            measured=measured,
        )
        return candidate, policy, facts

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
        spec = target.artifact
        effects = effects_of(
            release,
            verdict,
            artifact=spec,
            promoted_from=target.promoted_from,
            namespace=snapshot.environments.namespace_for(
                release.environment, spec.namespace, spec.service
            ),
            now=self.clock(),
        )
        await write(uow, release, effects, cause)
        return effects.decided

"""Deciding release requests: gather the facts, ask the domain, write the outcome.

Every request, whoever produced it (the API, Slack, a policy, another
service), is decided here, in arrival order per service and environment (see
``Handlers._ordered``), against a config repo no older than a few seconds that
has every commit about the service promotion has heard of. The outcome (status,
timeline, the event to publish and the inbox row of the cause) is written in
one transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping

from ferry_events import (
    Actor,
    ApprovalDenied,
    ApprovalRequested,
    ArtifactSpec,
    CloudEvent,
    Intent,
    PolicyViolation,
    ReleaseApproved,
    ReleaseRejected,
    derived_id,
)
from ferry_promotion.adapters.configrepo import ConfigRepo, GitError, Snapshot
from ferry_promotion.adapters.db import Store, Tx, artifacts, releases, utc
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
    rollback_target,
)
from ferry_promotion.domain.release import is_open
from ferry_promotion.identity import TokenStore
from ferry_runtime import get_logger

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


def log_decision(row: RowMapping, decided: Decided) -> None:
    """One structured line per decision about a release (``subject`` is the service released)."""
    fields: dict[str, object] = {
        "release_id": row["release_id"],
        "subject": row["service"],
        "environment": row["environment"],
        "artifact_id": decided.artifact_id,
        "intent": row["intent"],
        "status": decided.status,
    }
    if decided.violations:
        fields["violations"] = [f"{v.policy}: {v.message}" for v in decided.violations]
    if decided.detail:
        fields["detail"] = decided.detail
    log.info("release decision", **fields)


@dataclass(frozen=True, slots=True)
class Target:
    """What a request resolved to."""

    artifact: ArtifactSpec
    promoted_from: str | None


class Decider:
    """Decides requests and re-decides them when approvals complete or rollouts report."""

    def __init__(
        self,
        store: Store,
        repo: ConfigRepo,
        tokens: TokenStore,
        *,
        clock: Callable[[], datetime],
        chain_wait: timedelta = timedelta(minutes=30),
    ) -> None:
        self.store = store
        self.repo = repo
        self.tokens = tokens
        self.clock = clock
        self.chain_wait = chain_wait

    # ------------------------------------------------------------------ facts

    async def snapshot(self, *, fresh: bool = False, service: str | None = None) -> Snapshot:
        """The config repo (the last copy when a fetch fails and there is one)."""
        try:
            return await self.repo.current(fresh=fresh, service=service)
        except GitError as exc:
            if self.repo.snapshot.commit is None:
                raise
            log.warning("config repo fetch failed; deciding on the last copy", error=str(exc))
            return self.repo.snapshot

    async def find_artifact(self, service: str, artifact_id: str) -> ArtifactSpec | None:
        """The artifact under ``builds/``; on a miss, fetch once (it may have just been stored)."""
        found = await self.repo.artifact(service, artifact_id)
        if found is None:
            try:
                await self.repo.refresh()
            except GitError as exc:
                log.warning("config repo fetch failed", error=str(exc))
                return None
            found = await self.repo.artifact(service, artifact_id)
        return found

    async def latest_of_branch(self, service: str, branch: str) -> ArtifactSpec | None:
        async with self.store.read() as conn:
            row = (
                await conn.execute(
                    sa.select(artifacts.c.artifact_id)
                    .where(artifacts.c.service == service, artifacts.c.branch == branch)
                    .order_by(artifacts.c.stored_at.desc())
                    .limit(1)
                )
            ).first()
        if row is not None:
            found = await self.repo.artifact(service, row[0])
            if found is not None:
                return found
        # the catalog may have missed events: fall back to builds/ in git
        builds = [a for a in await self.repo.list_builds(service) if a.application.branch == branch]
        if not builds:
            return None
        return max(builds, key=_built_at)

    async def resolve(self, row: RowMapping, snapshot: Snapshot) -> Target:
        """The artifact a request means. Raises :class:`ResolutionError` when there is none."""
        intent = Intent(row["intent"])
        if intent in (Intent.RELEASE, Intent.AUTO_RELEASE):
            return await self._resolve_release(row)
        if intent is Intent.PROMOTE:
            return await self._resolve_promote(row, snapshot)
        return await self._resolve_rollback(row, snapshot)

    async def _resolve_release(self, row: RowMapping) -> Target:
        service, named, branch = row["service"], row["artifact_id"], row["branch"]
        if named:
            spec = await self.find_artifact(service, named)
            if spec is None:
                raise ResolutionError(
                    "artifact",
                    f"no artifact {named} of {service} in the config repo "
                    "(see `ferry artifacts` for the stored ones)",
                )
        elif branch:
            spec = await self.latest_of_branch(service, branch)
            if spec is None:
                raise ResolutionError(
                    "artifact", f"no artifact of {service} was built from branch {branch!r}"
                )
        else:
            raise ResolutionError("artifact", "a release names an artifactId or a branch")
        await self._has_manifests(spec, row["environment"])
        return Target(spec, None)

    async def _resolve_promote(self, row: RowMapping, snapshot: Snapshot) -> Target:
        service, environment, named = row["service"], row["environment"], row["artifact_id"]
        source_name = row["from_environment"]
        if not source_name:
            previous = snapshot.environments.previous(environment)
            if previous is None:
                raise ResolutionError(
                    "promote",
                    f"{environment} is the first environment; there is nothing to promote "
                    "from (use release)",
                )
            source_name = previous.name
        running = snapshot.running(source_name, service)
        artifact_id = named or (running.artifact.id if running else None)
        if artifact_id is None:
            raise ResolutionError(
                "promote", f"nothing of {service} runs in {source_name}; nothing to promote"
            )
        if named and (running is None or running.artifact.id != named):
            ever = [e.artifact_id for e in await self.repo.history(service, source_name)]
            if named not in ever:
                raise ResolutionError(
                    "promote",
                    f"{named} was never released to {source_name}; promote what ran there",
                )
        spec = await self.find_artifact(service, artifact_id)
        if spec is None:
            raise ResolutionError(
                "artifact", f"no artifact {artifact_id} of {service} under builds/ in git"
            )
        await self._has_manifests(spec, environment)
        return Target(spec, source_name)

    async def _resolve_rollback(self, row: RowMapping, snapshot: Snapshot) -> Target:
        service, environment = row["service"], row["environment"]
        running = snapshot.running(environment, service)
        history = await self.repo.history(service, environment)
        entry = rollback_target(
            history, running.artifact.id if running else None, row["artifact_id"], environment
        )
        spec = await self.find_artifact(service, entry.artifact_id)
        if spec is None:
            raise ResolutionError(
                "artifact", f"artifact {entry.artifact_id} is no longer under builds/ in git"
            )
        return Target(spec, None)

    async def _has_manifests(self, spec: ArtifactSpec, environment: str) -> None:
        environments = await self.repo.build_environments(spec.service, spec.id)
        if environments and environment not in environments:
            raise ResolutionError(
                "artifact",
                f"{spec.id} has no manifests for {environment} (it has {', '.join(environments)})",
            )

    async def _previous_rollout(
        self, tx: Tx, snapshot: Snapshot, service: str, environment: str, artifact_id: str
    ) -> tuple[RolloutState, str]:
        """How ``artifact_id`` fared in the environment before ``environment``."""
        previous = snapshot.environments.previous(environment)
        if previous is None:
            return RolloutState.NONE, ""
        fact = await tx.rollout(previous.name, service, artifact_id)
        if fact is not None:
            if fact["succeeded_at"] is not None:
                return RolloutState.SUCCEEDED, ""
            if fact["status"] == "failed":
                return RolloutState.FAILED, str(fact["reason"])
            return RolloutState.IN_PROGRESS, ""
        running = snapshot.running(previous.name, service)
        in_git = running is not None and running.artifact.id == artifact_id
        pending = await tx.conn.execute(
            sa.select(releases.c.release_id).where(
                releases.c.service == service,
                releases.c.environment == previous.name,
                releases.c.artifact_id == artifact_id,
                releases.c.status.in_([Status.APPROVED.value, Status.COMMITTED.value]),
            )
        )
        if in_git or pending.first() is not None:
            # released there, no result yet: wait for the cluster-watcher's report
            return RolloutState.IN_PROGRESS, ""
        return RolloutState.NONE, ""

    # ------------------------------------------------------------------ deciding

    async def decide(self, release_id: str, cause: CloudEvent) -> None:
        """Decide an open release (requested or awaiting approval); record ``cause`` as handled."""
        async with self.store.read() as conn:
            row = (
                (await conn.execute(sa.select(releases).where(releases.c.release_id == release_id)))
                .mappings()
                .first()
            )
        if row is None or not is_open(row["status"]):
            async with self.store.transaction() as tx:
                if not await tx.processed(cause.id):
                    await tx.mark_processed(cause)
            return
        snapshot = await self.snapshot(service=row["service"])
        target: Target | None = None
        resolution: PolicyViolation | None = None
        try:
            target = await self.resolve(row, snapshot)
        except ResolutionError as exc:
            resolution = exc.violation
        decided: Decided | None = None
        async with self.store.transaction() as tx:
            if await tx.processed(cause.id):
                return
            current = await tx.release(release_id, lock=True)
            if current is None or not is_open(current["status"]):
                await tx.mark_processed(cause)
                return
            if target is None:
                assert resolution is not None
                await self._reject(tx, current, cause, [resolution], artifact=None)
                decided = Decided(Status.REJECTED.value, current["artifact_id"], (resolution,))
            else:
                verdict = await self._verdict(tx, current, snapshot, target)
                decided = await self._apply(
                    tx, current, cause, snapshot=snapshot, target=target, verdict=verdict
                )
            await tx.mark_processed(cause)
        if decided is not None:
            log_decision(current, decided)

    async def _verdict(
        self, tx: Tx, row: RowMapping, snapshot: Snapshot, target: Target
    ) -> Verdict:
        service, environment = row["service"], row["environment"]
        intent = Intent(row["intent"])
        spec = target.artifact
        policy, policy_error = snapshot.policy_for(service)
        env = snapshot.environments.get(environment)
        identity = self.tokens.by_subject(row["actor_subject"])
        if intent is Intent.AUTO_RELEASE:
            authorized = True
        elif env is None:
            authorized = True  # the unknown environment is its own violation
        else:
            authorized = identity is not None and identity.can_release_to(env)
        state, state_reason = RolloutState.NONE, ""
        if policy.chained(environment):
            state, state_reason = await self._previous_rollout(
                tx, snapshot, service, environment, spec.id
            )
        running = snapshot.running(environment, service)
        approvers: tuple[Person, ...] = ()
        if policy.approval_rule(environment) is not None:
            approvers = tuple(
                Person(a["subject"], a["email"])
                for a in await tx.approvals_of(row["release_id"])
                if a["decision"] == "granted"
            )
        candidate = Candidate(
            service=service,
            environment=environment,
            intent=intent,
            artifact_id=spec.id,
            branch=spec.application.branch,
            author_email=spec.application.author_email,
            requester=Person(row["actor_subject"], row["actor_email"]),
            requester_authorized=authorized,
            requester_is_admin=identity is not None and identity.is_admin,
            override_freeze=bool(row["override_freeze"]),
            reason=row["reason"] or "",
        )
        facts = Facts(
            now=self.clock(),
            environments=snapshot.environments,
            running_artifact=running.artifact.id if running else None,
            previous_rollout=state,
            previous_rollout_reason=state_reason,
            approvers=approvers,
            policy_error=policy_error,
        )
        return evaluate(candidate, policy, facts)

    async def _apply(
        self,
        tx: Tx,
        row: RowMapping,
        cause: CloudEvent,
        *,
        snapshot: Snapshot,
        target: Target,
        verdict: Verdict,
    ) -> Decided | None:
        """Write the verdict; what it did (``None`` when nothing changed)."""
        release_id = row["release_id"]
        spec = target.artifact
        namespace = snapshot.environments.namespace_for(
            row["environment"], spec.namespace, spec.service
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
            await tx.note(release_id, row["status"], "", note)
        if verdict.outcome is Outcome.REJECT:
            await self._reject(tx, row, cause, list(verdict.violations), artifact=spec, **common)
            return Decided(Status.REJECTED.value, spec.id, tuple(verdict.violations))
        if verdict.outcome is Outcome.WAIT_FOR_ROLLOUT:
            if row["waiting_since"] is None:
                await tx.update_release(release_id, waiting_since=self.clock(), **common)
                await tx.note(release_id, Status.REQUESTED, "", verdict.detail)
                return Decided(Status.REQUESTED.value, spec.id, detail=verdict.detail)
            return None
        if verdict.outcome is Outcome.AWAIT_APPROVAL:
            rule = verdict.approval_rule
            assert rule is not None
            if row["status"] == Status.AWAITING_APPROVAL:
                await tx.update_release(
                    release_id, approvals_required=rule.required, exclude_author=rule.exclude_author
                )
                return None
            expires_at = self.clock() + rule.expires_after
            await tx.update_release(
                release_id,
                status=Status.AWAITING_APPROVAL.value,
                approvals_required=rule.required,
                exclude_author=rule.exclude_author,
                expires_at=expires_at,
                waiting_since=None,
                namespace=namespace,
                **common,
            )
            await tx.note(
                release_id,
                Status.AWAITING_APPROVAL,
                ApprovalRequested.event_type,
                verdict.detail + f"; expires at {expires_at:%Y-%m-%d %H:%M} UTC",
            )
            await tx.publish(
                CloudEvent.new(
                    ApprovalRequested(
                        release_id=release_id,
                        service=row["service"],
                        environment=row["environment"],
                        artifact_id=spec.id,
                        requester=actor_of(row),
                        required=rule.required,
                        exclude_author=rule.exclude_author,
                        author_email=spec.application.author_email,
                        expires_at=expires_at,
                        reason=row["reason"] or "",
                    ),
                    source=SOURCE,
                    cause=cause,
                    correlation_id=row["correlation_id"],
                )
            )
            return Decided(Status.AWAITING_APPROVAL.value, spec.id, detail=verdict.detail)
        await tx.update_release(
            release_id,
            status=Status.APPROVED.value,
            namespace=namespace,
            waiting_since=None,
            **common,
        )
        detail = f"{spec.id} to {row['environment']}/{namespace}"
        if target.promoted_from:
            detail += f", promoted from {target.promoted_from}"
        await tx.note(release_id, Status.APPROVED, ReleaseApproved.event_type, detail)
        await tx.publish(
            CloudEvent.new(
                ReleaseApproved(
                    release_id=release_id,
                    service=row["service"],
                    environment=row["environment"],
                    namespace=namespace,
                    artifact_id=spec.id,
                    intent=Intent(row["intent"]),
                    actor=actor_of(row),
                    reason=row["reason"] or "",
                    promoted_from=target.promoted_from,
                    author_email=spec.application.author_email,
                    author_name=spec.application.author_name,
                    branch=spec.application.branch,
                ),
                source=SOURCE,
                cause=cause,
                correlation_id=row["correlation_id"],
            )
        )
        return Decided(Status.APPROVED.value, spec.id, detail=detail)

    async def _reject(
        self,
        tx: Tx,
        row: RowMapping,
        cause: CloudEvent | None,
        violations: list[PolicyViolation],
        *,
        artifact: ArtifactSpec | None,
        event_id: str | None = None,
        **values: object,
    ) -> None:
        release_id = row["release_id"]
        await tx.update_release(
            release_id,
            status=Status.REJECTED.value,
            violations=[v.to_wire() for v in violations],
            waiting_since=None,
            **values,
        )
        await tx.note(
            release_id,
            Status.REJECTED,
            ReleaseRejected.event_type,
            "; ".join(f"{v.policy}: {v.message}" for v in violations),
        )
        await tx.publish(
            CloudEvent.new(
                ReleaseRejected(
                    release_id=release_id,
                    service=row["service"],
                    environment=row["environment"],
                    intent=Intent(row["intent"]),
                    artifact_id=artifact.id if artifact else row["artifact_id"],
                    actor=actor_of(row),
                    violations=violations,
                    author_email=artifact.application.author_email
                    if artifact
                    else row["author_email"] or "",
                ),
                source=SOURCE,
                cause=cause,
                correlation_id=row["correlation_id"],
                event_id=event_id,
            )
        )

    # ------------------------------------------------------------------ timeouts

    async def expire(self) -> int:
        """Reject approvals past their expiry and promotion-chain waits past ``chain_wait``."""
        now = self.clock()
        async with self.store.read() as conn:
            overdue = list(
                (
                    await conn.execute(
                        sa.select(releases).where(
                            sa.or_(
                                sa.and_(
                                    releases.c.status == Status.AWAITING_APPROVAL.value,
                                    releases.c.expires_at <= now,
                                ),
                                sa.and_(
                                    releases.c.status == Status.REQUESTED.value,
                                    releases.c.waiting_since <= now - self.chain_wait,
                                ),
                            )
                        )
                    )
                ).mappings()
            )
        for row in overdue:
            async with self.store.transaction() as tx:
                current = await tx.release(row["release_id"], lock=True)
                if current is None or current["status"] != row["status"]:
                    continue
                if current["status"] == Status.AWAITING_APPROVAL:
                    expires_at = utc(current["expires_at"])
                    message = (
                        "no decision before the approval expired at "
                        f"{expires_at:%Y-%m-%d %H:%M} UTC"
                    )
                    await tx.publish(
                        CloudEvent.new(
                            ApprovalDenied(
                                release_id=current["release_id"],
                                service=current["service"],
                                environment=current["environment"],
                                artifact_id=current["artifact_id"] or "",
                                reason=message,
                                expired=True,
                            ),
                            source=SOURCE,
                            correlation_id=current["correlation_id"],
                            event_id=derived_id(current["release_id"], "approval-expired"),
                        )
                    )
                    violation = PolicyViolation(policy="approvals", message=message)
                else:
                    violation = PolicyViolation(
                        policy="promotion-chain",
                        message=(
                            f"gave up waiting for {current['artifact_id']} to roll out in the "
                            f"environment before {current['environment']} after {self.chain_wait}"
                        ),
                    )
                await self._reject(
                    tx,
                    current,
                    None,
                    [violation],
                    artifact=None,
                    event_id=derived_id(
                        current["release_id"], "expired", ReleaseRejected.event_type
                    ),
                )
            log_decision(
                current, Decided(Status.REJECTED.value, current["artifact_id"], (violation,))
            )
        return len(overdue)


def _built_at(spec: ArtifactSpec) -> tuple[float, str]:
    moment = spec.ci.end or spec.ci.start
    return (moment.timestamp() if moment else 0.0, spec.id)


def actor_of(row: RowMapping) -> Actor:
    """Who asked for the release in ``row``."""
    return Actor(subject=row["actor_subject"], email=row["actor_email"], name=row["actor_name"])

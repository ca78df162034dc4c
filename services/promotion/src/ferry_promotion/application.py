"""Promotion's use cases, called by the HTTP routes and the Slack routes alike.

Every function takes the acting :class:`~ferry_promotion.identity.Identity`
first (from a bearer token or a Slack user id, never from a body), checks
what it may do, and returns a view model or raises an
:class:`~ferry_promotion.errors.ApplicationError` with a detail for people.
A release request is recorded and published as ``ferry.release.requested.v1``
through the outbox; the consumer decides it, exactly as it decides requests
from any other producer.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping

from ferry_events import (
    DNS_LABEL,
    ApprovalDenied,
    ApprovalGranted,
    ArtifactSpec,
    CloudEvent,
    Intent,
    PolicyChangeRequested,
    PolicyViolation,
    ReleaseRejected,
    ReleaseRequested,
    is_safe_segment,
)
from ferry_promotion.adapters.configrepo import ConfigRepo, GitError, Snapshot
from ferry_promotion.adapters.db import (
    Store,
    Tx,
    approvals,
    artifacts,
    at,
    releases,
    rollouts,
    timeline,
    utc,
)
from ferry_promotion.adapters.records import release_of
from ferry_promotion.decisions import SOURCE, actor_of
from ferry_promotion.domain.decision import Person, Status, approval_refusal, count_approvals
from ferry_promotion.domain.environments import Environment
from ferry_promotion.domain.policies import ApprovalRule, policy_from_data
from ferry_promotion.domain.yamldoc import DocumentError
from ferry_promotion.errors import Conflict, FieldError, Forbidden, Invalid, NotFound, Unavailable
from ferry_promotion.identity import Identity, require_admin, require_read, require_release
from ferry_promotion.views import (
    Accepted,
    ActorView,
    ApprovalsView,
    ApproverView,
    ArtifactItem,
    ArtifactsView,
    EnvironmentState,
    HistoryItem,
    HistoryView,
    PolicyAccepted,
    ReleaseView,
    ServicesView,
    ServiceView,
    TimelineEntry,
    ViolationView,
)

USER_INTENTS = (Intent.RELEASE, Intent.PROMOTE, Intent.ROLLBACK)


def _who(actor: Identity) -> dict[str, str]:
    return {"subject": actor.subject, "email": actor.email, "name": actor.name}


def _built_at(spec: ArtifactSpec) -> float:
    moment = spec.ci.end or spec.ci.start
    return moment.timestamp() if moment else 0.0


def _check_service(service: str, field: str = "service") -> None:
    if not DNS_LABEL.fullmatch(service):
        raise Invalid.field(
            field, f"{service[:80]!r} is not a service name (a lowercase DNS label: a-z, 0-9, '-')"
        )


class Promotion:
    """The use cases."""

    def __init__(self, store: Store, repo: ConfigRepo, *, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.repo = repo
        self.clock = clock

    async def _snapshot(self, *, fresh: bool = False) -> Snapshot:
        try:
            return await self.repo.current(fresh=fresh)
        except GitError as exc:
            if self.repo.snapshot.commit is None and self.repo.snapshot.fetched_at == 0:
                raise Unavailable(f"the config repo cannot be read: {exc}") from exc
            return self.repo.snapshot

    async def _environment(self, name: str, field: str = "environment") -> Environment:
        snapshot = await self._snapshot()
        env = snapshot.environments.get(name)
        if env is None:
            raise Invalid.field(
                field,
                f"unknown environment {name[:80]!r}; the environments are "
                f"{', '.join(snapshot.environments.names())}",
            )
        return env

    # ------------------------------------------------------------------ releases

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
    ) -> Accepted:
        """Record a release/promote/rollback request and publish it for the decision."""
        _check_service(service)
        if intent not in USER_INTENTS:
            raise Invalid.field(
                "intent", "must be release, promote or rollback (auto-release is a policy's)"
            )
        env = await self._environment(environment)
        if artifact_id is not None and not is_safe_segment(artifact_id):
            raise Invalid.field("artifactId", "is not an artifact id (letters, digits, . - _)")
        await self._check_intent_fields(intent, env, artifact_id, branch, from_environment)
        verb = {"release": "releasing", "promote": "promoting", "rollback": "rolling back"}
        require_release(actor, env, verb[intent.value])
        if override_freeze:
            require_admin(actor, "overriding a freeze window")
            if not reason.strip():
                raise Invalid.field("reason", "overriding a freeze window needs a reason")
        release_id = str(uuid.uuid4())
        requested_at = self.clock()
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
        )
        event = CloudEvent.new(request, source=SOURCE, correlation_id=release_id)
        async with self.store.transaction() as tx:
            await tx.insert_request(event, request, updated_at=requested_at)
            await tx.publish(event)
        return Accepted(release_id=release_id, status=Status.REQUESTED.value)

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
                source = await self._environment(from_environment, "fromEnvironment")
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

    async def _row(self, release_id: str) -> RowMapping:
        if len(release_id) > 128:
            raise _no_release(release_id)
        async with self.store.read() as conn:
            row = (
                (await conn.execute(sa.select(releases).where(releases.c.release_id == release_id)))
                .mappings()
                .first()
            )
        if row is None:
            raise _no_release(release_id)
        return row

    async def status(self, actor: Identity, release_id: str) -> ReleaseView:
        """A release with its timeline and approvals."""
        require_read(actor)
        return await self._view(release_id)

    async def _view(self, release_id: str) -> ReleaseView:
        if len(release_id) > 128:
            raise _no_release(release_id)
        # The release row and its timeline in ONE statement: a statement sees one
        # snapshot (SQLite and PostgreSQL alike), so the status shown is always the
        # last entry of the timeline shown, even while a decision is being committed.
        entry = (
            timeline.c.at.label("timeline_at"),
            timeline.c.status.label("timeline_status"),
            timeline.c.event_type.label("timeline_event_type"),
            timeline.c.detail.label("timeline_detail"),
        )
        async with self.store.read() as conn:
            joined = list(
                (
                    await conn.execute(
                        sa.select(releases, *entry)
                        .select_from(
                            releases.outerjoin(
                                timeline, timeline.c.release_id == releases.c.release_id
                            )
                        )
                        .where(releases.c.release_id == release_id)
                        .order_by(timeline.c.id)
                    )
                ).mappings()
            )
            votes = list(
                (
                    await conn.execute(
                        sa.select(approvals)
                        .where(approvals.c.release_id == release_id)
                        .order_by(approvals.c.at)
                    )
                ).mappings()
            )
        if not joined:
            raise _no_release(release_id)
        row = joined[0]
        events = [
            {
                "at": r["timeline_at"],
                "status": r["timeline_status"],
                "event_type": r["timeline_event_type"],
                "detail": r["timeline_detail"],
            }
            for r in joined
            if r["timeline_status"] is not None
        ]
        voters = {
            v["decision"]: ApproverView(
                subject=v["subject"], email=v["email"], at=at(v["at"]), comment=v["comment"]
            )
            for v in votes
            if v["decision"] == "rejected"
        }
        granted = [
            ApproverView(
                subject=v["subject"], email=v["email"], at=at(v["at"]), comment=v["comment"]
            )
            for v in votes
            if v["decision"] == "granted"
        ]
        violations = row["violations"] or []
        return ReleaseView(
            release_id=row["release_id"],
            service=row["service"],
            environment=row["environment"],
            intent=row["intent"],
            artifact_id=row["artifact_id"],
            branch=row["branch"],
            from_environment=row["from_environment"],
            status=row["status"],
            actor=ActorView(
                subject=row["actor_subject"], email=row["actor_email"], name=row["actor_name"]
            ),
            reason=row["reason"] or "",
            override_freeze=bool(row["override_freeze"]),
            requested_at=at(row["requested_at"]),
            updated_at=at(row["updated_at"]),
            commit_sha=row["commit_sha"],
            namespace=row["namespace"],
            promoted_from=row["promoted_from"],
            superseded_by=row["superseded_by"],
            author_email=row["author_email"] or "",
            violations=[
                ViolationView(policy=v["policy"], message=v["message"]) for v in violations
            ],
            approvals=ApprovalsView(
                required=row["approvals_required"] or 0,
                granted=granted,
                rejected_by=voters.get("rejected"),
                expires_at=utc(row["expires_at"]),
            ),
            timeline=[
                TimelineEntry(
                    at=at(e["at"]),
                    status=e["status"],
                    event_type=e["event_type"],
                    detail=e["detail"],
                )
                for e in events
            ],
        )

    def _not_open(self, row: RowMapping) -> Conflict:
        return Conflict(release_of(row).why_not_awaiting_approval())

    async def _vote(
        self, tx: Tx, actor: Identity, release_id: str, decision: str, comment: str
    ) -> RowMapping:
        """Record ``actor``'s vote on a release still awaiting approval (its row, locked)."""
        current = await tx.release(release_id, lock=True)
        assert current is not None
        if current["status"] != Status.AWAITING_APPROVAL:
            raise self._not_open(current)
        if not await tx.add_approval(release_id, decision=decision, comment=comment, **_who(actor)):
            raise Conflict(f"{actor.subject} already voted on release {release_id}")
        return current

    async def approve(self, actor: Identity, release_id: str, comment: str = "") -> ReleaseView:
        """One approval by ``actor``; the last one needed lets the decision go on."""
        row = await self._row(release_id)
        env = await self._environment(row["environment"])
        if row["status"] != Status.AWAITING_APPROVAL:
            raise self._not_open(row)
        require_release(actor, env, "approving a release")
        rule = ApprovalRule(
            environment=env.name,
            required=max(1, row["approvals_required"] or 1),
            exclude_author=bool(row["exclude_author"]),
        )
        requester = Person(row["actor_subject"], row["actor_email"])
        refusal = approval_refusal(rule, requester, row["author_email"] or "", actor.person)
        if refusal is not None:
            raise Forbidden(refusal)
        expires_at = utc(row["expires_at"])
        if expires_at is not None and expires_at <= self.clock():
            raise Conflict(
                f"release {release_id} is not awaiting approval: its approval expired at "
                f"{expires_at:%Y-%m-%d %H:%M} UTC"
            )
        async with self.store.transaction() as tx:
            current = await self._vote(tx, actor, release_id, "granted", comment)
            people = tuple(
                Person(a["subject"], a["email"])
                for a in await tx.approvals_of(release_id)
                if a["decision"] == "granted"
            )
            count = count_approvals(rule, requester, current["author_email"] or "", people)
            remaining = max(rule.required - count, 0)
            await tx.note(
                release_id,
                Status.AWAITING_APPROVAL,
                ApprovalGranted.event_type,
                f"approved by {actor.actor.display()} ({count}/{rule.required})"
                + (f": {comment}" if comment else ""),
            )
            await tx.publish(
                CloudEvent.new(
                    ApprovalGranted(
                        release_id=release_id,
                        service=current["service"],
                        environment=current["environment"],
                        artifact_id=current["artifact_id"] or "",
                        approver=actor.actor,
                        approvals=count,
                        remaining=remaining,
                    ),
                    source=SOURCE,
                    correlation_id=current["correlation_id"],
                )
            )
        return await self._view(release_id)

    async def reject(self, actor: Identity, release_id: str, reason: str = "") -> ReleaseView:
        """Refuse a release awaiting approval (the requester may withdraw their own)."""
        row = await self._row(release_id)
        env = await self._environment(row["environment"])
        if row["status"] != Status.AWAITING_APPROVAL:
            raise self._not_open(row)
        if not Person(row["actor_subject"], row["actor_email"]).same_as(actor.person):
            require_release(actor, env, "rejecting a release")
        message = f"rejected by {actor.actor.display()}" + (f": {reason}" if reason else "")
        async with self.store.transaction() as tx:
            current = await self._vote(tx, actor, release_id, "rejected", reason)
            violation = PolicyViolation(policy="approvals", message=message)
            await tx.update_release(
                release_id, status=Status.REJECTED.value, violations=[violation.to_wire()]
            )
            await tx.note(release_id, Status.REJECTED, ApprovalDenied.event_type, message)
            base = {
                "release_id": release_id,
                "service": current["service"],
                "environment": current["environment"],
            }
            await tx.publish(
                CloudEvent.new(
                    ApprovalDenied(
                        **base,
                        artifact_id=current["artifact_id"] or "",
                        by=actor.actor,
                        reason=reason or "rejected",
                    ),
                    source=SOURCE,
                    correlation_id=current["correlation_id"],
                )
            )
            await tx.publish(
                CloudEvent.new(
                    ReleaseRejected(
                        **base,
                        intent=Intent(current["intent"]),
                        artifact_id=current["artifact_id"],
                        actor=actor_of(current),
                        violations=[violation],
                        author_email=current["author_email"] or "",
                    ),
                    source=SOURCE,
                    correlation_id=current["correlation_id"],
                )
            )
        return await self._view(release_id)

    # ------------------------------------------------------------------ services

    async def _rollout_states(self) -> dict[tuple[str, str, str], tuple[str, str]]:
        async with self.store.read() as conn:
            rows = await conn.execute(
                sa.select(
                    rollouts.c.environment,
                    rollouts.c.service,
                    rollouts.c.artifact_id,
                    rollouts.c.status,
                    rollouts.c.reason,
                )
            )
            return {(r[0], r[1], r[2]): (r[3], r[4]) for r in rows}

    async def _service_view(
        self,
        snapshot: Snapshot,
        service: str,
        states: dict[tuple[str, str, str], tuple[str, str]],
    ) -> ServiceView:
        history = await self.repo.history(service)
        environments: dict[str, EnvironmentState] = {}
        for env in snapshot.environments.names():
            deployment = snapshot.running(env, service)
            if deployment is None:
                continue
            newest = next(
                (
                    h
                    for h in history
                    if h.environment == env and h.artifact_id == deployment.artifact.id
                ),
                None,
            )
            state, reason = states.get((env, service, deployment.artifact.id), ("unknown", ""))
            environments[env] = EnvironmentState(
                artifact_id=deployment.artifact.id,
                namespace=deployment.namespace,
                commit_sha=newest.commit_sha if newest else None,
                released_at=newest.at if newest else None,
                released_by=newest.actor if newest else None,
                rollout=state,
                rollout_reason=reason or None,
            )
        return ServiceView(service=service, environments=environments)

    async def services(self, actor: Identity) -> ServicesView:
        """Every service and what runs where."""
        require_read(actor)
        snapshot = await self._snapshot(fresh=True)
        states = await self._rollout_states()
        async with self.store.read() as conn:
            catalog = {r[0] for r in await conn.execute(sa.select(artifacts.c.service).distinct())}
        names = sorted(set(snapshot.services()) | catalog)
        return ServicesView(
            environments=snapshot.environments.names(),
            services=[await self._service_view(snapshot, name, states) for name in names],
        )

    async def service(self, actor: Identity, service: str) -> ServiceView:
        require_read(actor)
        _check_service(service)
        snapshot = await self._snapshot(fresh=True)
        view = await self._service_view(snapshot, service, await self._rollout_states())
        if not view.environments:
            await self._require_known(snapshot, service)
        return view

    async def _require_known(self, snapshot: Snapshot, service: str) -> None:
        """404 for a service Ferry has never seen (not released, stored or given a policy)."""
        if service in snapshot.services():
            return
        async with self.store.read() as conn:
            known = await conn.scalar(
                sa.select(sa.func.count())
                .select_from(artifacts)
                .where(artifacts.c.service == service)
            )
        if not known and not await self.repo.list_builds(service):
            raise NotFound(f"no service {service}: nothing of it is stored or released")

    async def history(
        self, actor: Identity, service: str, environment: str | None = None, limit: int = 50
    ) -> HistoryView:
        """Release commits of the service, newest first, from the git trailers."""
        require_read(actor)
        _check_service(service)
        if environment is not None:
            await self._environment(environment)
        snapshot = await self._snapshot(fresh=True)
        entries = await self.repo.history(service, environment)
        if not entries:
            await self._require_known(snapshot, service)
        return HistoryView(
            service=service,
            history=[
                HistoryItem(
                    environment=e.environment,
                    artifact_id=e.artifact_id,
                    intent=e.intent,
                    actor=e.actor,
                    commit_sha=e.commit_sha,
                    release_id=e.release_id,
                    at=e.at,
                    promoted_from=e.promoted_from or None,
                )
                for e in entries[: max(1, min(limit, 1000))]
            ],
        )

    async def artifacts(
        self, actor: Identity, service: str, branch: str | None = None, limit: int = 50
    ) -> ArtifactsView:
        """Stored artifacts of the service, newest first."""
        require_read(actor)
        _check_service(service)
        limit = max(1, min(limit, 1000))
        query = sa.select(artifacts).where(artifacts.c.service == service)
        if branch:
            query = query.where(artifacts.c.branch == branch)
        async with self.store.read() as conn:
            rows = list(
                (
                    await conn.execute(query.order_by(artifacts.c.stored_at.desc()).limit(limit))
                ).mappings()
            )
        items = [
            ArtifactItem(
                artifact_id=r["artifact_id"],
                branch=r["branch"],
                sha=r["sha"],
                author=r["author_email"] or r["author_name"],
                message=r["message"],
                stored_at=utc(r["stored_at"]),
                environments=list(r["environments"] or []),
            )
            for r in rows
        ]
        if not items:
            snapshot = await self._snapshot(fresh=True)
            await self._require_known(snapshot, service)
            builds = [
                b
                for b in await self.repo.list_builds(service)
                if not branch or b.application.branch == branch
            ]
            builds.sort(key=_built_at, reverse=True)
            items = [
                ArtifactItem(
                    artifact_id=b.id,
                    branch=b.application.branch,
                    sha=b.application.sha,
                    author=b.application.author_email or b.application.author_name,
                    message=b.application.message,
                    stored_at=b.ci.end,
                    environments=await self.repo.build_environments(service, b.id),
                )
                for b in builds[:limit]
            ]
        return ArtifactsView(service=service, artifacts=items)

    # ------------------------------------------------------------------ policies

    async def get_policy(self, actor: Identity, service: str) -> dict[str, Any]:
        require_read(actor)
        _check_service(service)
        snapshot = await self._snapshot(fresh=True)
        found = snapshot.policies.get(service)
        if found is None:
            raise NotFound(f"{service} has no policy (policies/{service}.yaml does not exist)")
        if found.policy is None:
            raise Conflict(
                f"policies/{service}.yaml in the config repo is invalid, so releases of {service} "
                f"are refused until it is fixed: {found.error}"
            )
        return found.policy.to_document()

    async def put_policy(self, actor: Identity, service: str, document: Any) -> PolicyAccepted:
        """Validate a policy and ask git-writer to commit it."""
        _check_service(service)
        require_admin(actor, "changing a policy")
        snapshot = await self._snapshot()
        try:
            policy = policy_from_data(document, service, snapshot.environments)
        except DocumentError as exc:
            raise Invalid(
                str(exc), [FieldError(p.field or "(body)", p.message) for p in exc.problems]
            ) from exc
        return await self._policy_change(actor, service, policy.to_document())

    async def delete_policy(self, actor: Identity, service: str) -> PolicyAccepted:
        _check_service(service)
        require_admin(actor, "deleting a policy")
        snapshot = await self._snapshot(fresh=True)
        if service not in snapshot.policies:
            raise NotFound(f"{service} has no policy to delete")
        return await self._policy_change(actor, service, None)

    async def _policy_change(
        self, actor: Identity, service: str, policy: dict[str, Any] | None
    ) -> PolicyAccepted:
        request_id = str(uuid.uuid4())
        async with self.store.transaction() as tx:
            await tx.publish(
                CloudEvent.new(
                    PolicyChangeRequested(
                        request_id=request_id, service=service, policy=policy, actor=actor.actor
                    ),
                    source=SOURCE,
                    correlation_id=request_id,
                )
            )
        return PolicyAccepted(request_id=request_id)


def _no_release(release_id: str) -> NotFound:
    """404 for a release id nobody handed out (a long one is shown cut)."""
    shown = release_id if len(release_id) <= 128 else f"{release_id[:40]}…"
    return NotFound(f"no release {shown}; release ids come from POST /v1/releases")

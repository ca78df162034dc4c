"""Promotion's event handlers: one per event type it consumes.

Each is idempotent: the inbox row of the event is written in the transaction
of its effect, and events it publishes get ids derived from their cause.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from ferry_events import (
    ApprovalGranted,
    ArtifactStored,
    CloudEvent,
    EventData,
    Intent,
    PolicyChanged,
    ReleaseCommitted,
    ReleaseFailed,
    ReleaseRequested,
    RolloutFact,
    RolloutFailed,
    RolloutStarted,
    RolloutSucceeded,
    derived_id,
)
from ferry_promotion.adapters.configrepo import ConfigRepo
from ferry_promotion.adapters.db import Store, Tx, now, releases
from ferry_promotion.decisions import (
    AUTO_RELEASE_ACTOR,
    SOURCE,
    Decided,
    Decider,
    log_decision,
)
from ferry_promotion.domain.decision import Status
from ferry_promotion.domain.release import may_follow
from ferry_runtime import Delivery, Handler, PermanentError, get_logger

log = get_logger(__name__)


class Handlers:
    """The consumer side of promotion."""

    def __init__(self, store: Store, repo: ConfigRepo, decider: Decider) -> None:
        self.store = store
        self.repo = repo
        self.decider = decider
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    def _ordered(self, service: str, environment: str) -> asyncio.Lock:
        """The lock that keeps decisions about one service and environment in arrival order.

        The consumer may run several workers; each takes the next message and runs its
        handler up to the first ``await`` before the next worker runs, and handlers take
        this lock before any ``await``, so asyncio's first-in-first-out lock hands it to
        requests in the order they arrived (as one worker would).
        """
        return self._locks.setdefault((service, environment), asyncio.Lock())

    def routes(self) -> Mapping[type[EventData], Handler]:
        return {
            ReleaseRequested: self.on_requested,
            ApprovalGranted: self.on_approval_granted,
            ArtifactStored: self.on_artifact_stored,
            ReleaseCommitted: self.on_committed,
            ReleaseFailed: self.on_failed,
            RolloutStarted: self.on_rollout,
            RolloutSucceeded: self.on_rollout,
            RolloutFailed: self.on_rollout,
            PolicyChanged: self.on_policy_changed,
        }

    # ------------------------------------------------------------------ requests

    async def on_requested(self, delivery: Delivery) -> None:
        data = delivery.data
        assert isinstance(data, ReleaseRequested)
        event = delivery.event
        if data.intent is Intent.AUTO_RELEASE and not data.artifact_id:
            raise PermanentError("an auto-release request must name its artifactId", code="invalid")
        async with self._ordered(data.service, data.environment):
            await self._record_and_decide(event, data)

    async def _record_and_decide(self, event: CloudEvent, data: ReleaseRequested) -> None:
        async with self.store.transaction() as tx:
            if await tx.processed(event.id):
                return
            if await tx.release(data.release_id) is None:
                # a request from another producer than our API: record it first
                await tx.insert_request(event, data, updated_at=now())
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
        await self.decider.decide(data.release_id, event)

    async def on_approval_granted(self, delivery: Delivery) -> None:
        data = delivery.data
        assert isinstance(data, ApprovalGranted)
        async with self._ordered(data.service, data.environment):
            await self.decider.decide(data.release_id, delivery.event)

    # ------------------------------------------------------------------ artifacts

    async def on_artifact_stored(self, delivery: Delivery) -> None:
        data = delivery.data
        assert isinstance(data, ArtifactStored)
        event = delivery.event
        spec = data.artifact
        self.repo.mark_stale(spec.service)
        snapshot = await self.decider.snapshot()
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
        requests: list[str] = []
        async with self.store.transaction() as tx:
            if await tx.processed(event.id):
                return
            await tx.upsert_artifact(
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
                    requested_at=now(),
                )
                await tx.publish(
                    CloudEvent.new(
                        request,
                        source=SOURCE,
                        cause=event,
                        event_id=derived_id(event.id, ReleaseRequested.event_type, environment),
                        correlation_id=release_id,
                    )
                )
                requests.append(environment)
            await tx.mark_processed(event)
        if requests:
            log.info("auto-release requested", artifact_id=spec.id, environments=requests)

    # ------------------------------------------------------------------ results

    async def _advance(
        self,
        event: CloudEvent,
        release_id: str,
        status: str,
        detail: str,
        **values: object,
    ) -> RowMapping | None:
        """Record a result of ``release_id``; its row (``None`` when unknown or seen before)."""
        async with self.store.transaction() as tx:
            if await tx.processed(event.id):
                return None
            row = await tx.release(release_id, lock=True)
            if row is not None:
                if may_follow(status, row["status"]):
                    await tx.update_release(release_id, status=status, **values)
                elif values:
                    await tx.update_release(release_id, **values)
                await tx.note(release_id, status, event.type, detail)
                if status == Status.COMMITTED.value:
                    await self._supersede(tx, event, row)
            await tx.mark_processed(event)
        return row

    async def _supersede(self, tx: Tx, event: CloudEvent, row: RowMapping) -> None:
        """Mark the releases of the same service and environment that were committed but had
        not rolled out as superseded by ``row`` (git now holds the newer one)."""
        found = await tx.conn.execute(
            sa.select(releases.c.release_id).where(
                releases.c.service == row["service"],
                releases.c.environment == row["environment"],
                releases.c.status == Status.COMMITTED.value,
                releases.c.release_id != row["release_id"],
                releases.c.superseded_by.is_(None),
            )
        )
        for (older,) in found.all():
            await tx.update_release(older, superseded_by=row["release_id"])
            await tx.note(
                older,
                Status.COMMITTED,
                event.type,
                f"superseded by {row['release_id']}: {row['artifact_id']} was committed to "
                f"{row['environment']} before this release rolled out",
            )
            log.info(
                "release superseded",
                release_id=older,
                subject=row["service"],
                environment=row["environment"],
                superseded_by=row["release_id"],
            )

    async def on_committed(self, delivery: Delivery) -> None:
        data = delivery.data
        assert isinstance(data, ReleaseCommitted)
        self.repo.mark_stale(data.service)
        detail = f"commit {data.commit_sha[:12]} in {data.environment}/{data.namespace}"
        if data.no_change:
            detail += " (no change: it was already there)"
        row = await self._advance(
            delivery.event,
            data.release_id,
            Status.COMMITTED.value,
            detail,
            commit_sha=data.commit_sha,
            namespace=data.namespace,
        )
        if row is not None:
            log_decision(row, Decided(Status.COMMITTED.value, data.artifact_id, detail=detail))

    async def on_failed(self, delivery: Delivery) -> None:
        data = delivery.data
        assert isinstance(data, ReleaseFailed)
        detail = f"{data.reason}: {data.message}"
        row = await self._advance(delivery.event, data.release_id, Status.FAILED.value, detail)
        if row is not None:
            log_decision(row, Decided(Status.FAILED.value, row["artifact_id"], detail=detail))

    async def on_rollout(self, delivery: Delivery) -> None:
        data = delivery.data
        assert isinstance(data, RolloutFact)
        event = delivery.event
        status = {
            RolloutStarted.event_type: "started",
            RolloutSucceeded.event_type: "succeeded",
            RolloutFailed.event_type: "failed",
        }[event.type]
        reason = ""
        if isinstance(data, RolloutFailed):
            reason = f"{data.reason}: {data.message}" if data.message else data.reason
        waiting: list[tuple[str, str]] = []
        changed: tuple[RowMapping, str, str] | None = None
        async with self.store.transaction() as tx:
            if await tx.processed(event.id):
                return
            await tx.record_rollout(
                environment=data.environment,
                service=data.service,
                artifact_id=data.artifact_id,
                status=status,
                reason=reason,
                release_id=data.release_id,
                observed_at=data.observed_at,
            )
            release_id = data.release_id or await self._release_of(tx.conn, data)
            if release_id:
                row = await tx.release(release_id, lock=True)
                if row is not None:
                    new_status = {
                        "succeeded": Status.ROLLED_OUT.value,
                        "failed": Status.FAILED.value,
                    }.get(status)
                    detail = f"{data.workload.kind}/{data.workload.name} in {data.cluster}"
                    if reason:
                        detail += f": {reason}"
                    if (
                        new_status is not None
                        and row["status"] in (Status.APPROVED.value, Status.COMMITTED.value)
                    ) or (
                        new_status is not None
                        and row["status"] == Status.ROLLED_OUT.value
                        and new_status == Status.FAILED.value
                    ):
                        await tx.update_release(release_id, status=new_status)
                        changed = (row, new_status, detail)
                    await tx.note(release_id, new_status or row["status"], event.type, detail)
            if status != "started":
                found = await tx.conn.execute(
                    sa.select(releases.c.release_id, releases.c.environment).where(
                        releases.c.service == data.service,
                        releases.c.status == Status.REQUESTED.value,
                        releases.c.waiting_since.is_not(None),
                        releases.c.artifact_id == data.artifact_id,
                    )
                )
                waiting = [(r[0], r[1]) for r in found]
            await tx.mark_processed(event)
        if changed is not None:
            row, new_status, detail = changed
            log_decision(row, Decided(new_status, data.artifact_id, detail=detail))
        for waiting_id, environment in waiting:
            # decide again now that the environment before has a result
            cause = CloudEvent.new(
                data,
                source=SOURCE,
                event_id=derived_id(event.id, "redecide", waiting_id),
                correlation_id=event.correlationid,
            )
            async with self._ordered(data.service, environment):
                await self.decider.decide(waiting_id, cause)

    async def _release_of(self, conn: AsyncConnection, data: RolloutFact) -> str:
        """The newest release of this artifact to this environment (facts without a release id)."""
        row = (
            await conn.execute(
                sa.select(releases.c.release_id)
                .where(
                    releases.c.service == data.service,
                    releases.c.environment == data.environment,
                    releases.c.artifact_id == data.artifact_id,
                    releases.c.status.in_(
                        [Status.APPROVED.value, Status.COMMITTED.value, Status.ROLLED_OUT.value]
                    ),
                )
                .order_by(releases.c.requested_at.desc())
                .limit(1)
            )
        ).first()
        return str(row[0]) if row is not None else ""

    async def on_policy_changed(self, delivery: Delivery) -> None:
        data = delivery.data
        assert isinstance(data, PolicyChanged)
        self.repo.mark_stale(data.service)
        # fetch now: requests decided after this event must see the new policy
        await self.decider.snapshot(fresh=True)
        async with self.store.transaction() as tx:
            if not await tx.processed(delivery.event.id):
                await tx.mark_processed(delivery.event)
        log.info(
            "policy changed", service=data.service, commit=data.commit_sha, deleted=data.deleted
        )


def new_id() -> str:
    return str(uuid.uuid4())

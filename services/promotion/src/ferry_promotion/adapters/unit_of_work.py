"""The unit of work over SQLAlchemy: one transaction, repositories that return domain records.

Implements :class:`ferry_promotion.service_layer.unit_of_work.UnitOfWork`. On
SQLite, which has one writer, a unit of work holds the store's in-process write
lock from start to end; on PostgreSQL ``get(..., lock=True)`` is
``SELECT ... FOR UPDATE``. After a commit that queued events the outbox relay
is woken.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from datetime import datetime
from types import TracebackType
from typing import Any, Self

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncTransaction

from ferry_events import CloudEvent, encode
from ferry_promotion.adapters.db import (
    Store,
    approvals,
    artifacts,
    inbox,
    now,
    outbox,
    release_sequences,
    releases,
    rollouts,
    timeline,
)
from ferry_promotion.adapters.records import release_of, rollout_of, vote_of
from ferry_promotion.domain.decision import Status
from ferry_promotion.domain.records import Rollout, StoredArtifact, Vote
from ferry_promotion.domain.release import Release


class SqlReleases:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def get(self, release_id: str, *, lock: bool = False) -> Release | None:
        query = sa.select(releases).where(releases.c.release_id == release_id)
        if lock and self.conn.dialect.name == "postgresql":
            query = query.with_for_update()
        row = (await self.conn.execute(query)).mappings().first()
        return release_of(row) if row is not None else None

    async def add(self, release: Release) -> None:
        values = {f: getattr(release, f) for f in Release.__dataclass_fields__}
        await self.conn.execute(releases.insert().values(**values))

    async def update(self, release_id: str, **values: Any) -> None:
        await self.conn.execute(
            releases.update()
            .where(releases.c.release_id == release_id)
            .values(updated_at=now(), **values)
        )

    async def note(
        self, release_id: str, status: str, event_type: str = "", detail: str = ""
    ) -> None:
        await self.conn.execute(
            timeline.insert().values(
                release_id=release_id, at=now(), status=status, event_type=event_type, detail=detail
            )
        )

    async def _where(self, *conditions: sa.ColumnElement[bool]) -> list[Release]:
        rows = await self.conn.execute(sa.select(releases).where(*conditions))
        return [release_of(r) for r in rows.mappings()]

    async def overdue(self, now: datetime, chain_wait_started_before: datetime) -> list[Release]:
        return await self._where(
            sa.or_(
                sa.and_(
                    releases.c.status == Status.AWAITING_APPROVAL.value,
                    releases.c.expires_at <= now,
                ),
                sa.and_(
                    releases.c.status == Status.REQUESTED.value,
                    releases.c.waiting_since <= chain_wait_started_before,
                    releases.c.due_at.is_(None),  # a soak ends on its own clock
                ),
            )
        )

    async def claim_due(self, now: datetime, lease_until: datetime, limit: int) -> list[Release]:
        """Waiting requests due by ``now``, each moved to ``lease_until`` so that no other
        replica takes it meanwhile (rows another replica holds are skipped on PostgreSQL)."""
        query = (
            sa.select(releases)
            .where(releases.c.status == Status.REQUESTED.value, releases.c.due_at <= now)
            .order_by(releases.c.due_at)
            .limit(limit)
        )
        if self.conn.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        found = [release_of(r) for r in (await self.conn.execute(query)).mappings()]
        if found:
            await self.conn.execute(
                releases.update()
                .where(releases.c.release_id.in_([r.release_id for r in found]))
                .values(due_at=lease_until)
            )
        return found

    async def waiting_for(self, service: str, artifact_id: str) -> list[Release]:
        return await self._where(
            releases.c.service == service,
            releases.c.status == Status.REQUESTED.value,
            releases.c.waiting_since.is_not(None),
            releases.c.artifact_id == artifact_id,
        )

    async def committed_unrolled(self, service: str, environment: str) -> list[Release]:
        return await self._where(
            releases.c.service == service,
            releases.c.environment == environment,
            releases.c.status == Status.COMMITTED.value,
            releases.c.superseded_by.is_(None),
        )

    async def next_sequence(self, service: str, environment: str) -> int:
        """One more than the last number given here; the row stays locked until commit, so the
        numbers of one service and environment are in the order their requests commit."""
        insert = pg_insert if self.conn.dialect.name == "postgresql" else sqlite_insert
        statement = (
            insert(release_sequences)
            .values(service=service, environment=environment, last=1)
            .on_conflict_do_update(
                index_elements=["service", "environment"],
                set_={"last": release_sequences.c.last + 1},
            )
            .returning(release_sequences.c.last)
        )
        return int((await self.conn.execute(statement)).scalar_one())

    async def open_before(self, service: str, environment: str, sequence: int) -> list[Release]:
        return await self._where(
            releases.c.service == service,
            releases.c.environment == environment,
            releases.c.status.in_([Status.REQUESTED.value, Status.AWAITING_APPROVAL.value]),
            releases.c.sequence < sequence,
        )

    async def newest(
        self, service: str, environment: str, artifact_id: str, statuses: frozenset[str]
    ) -> str | None:
        row = (
            await self.conn.execute(
                sa.select(releases.c.release_id)
                .where(
                    releases.c.service == service,
                    releases.c.environment == environment,
                    releases.c.artifact_id == artifact_id,
                    releases.c.status.in_(sorted(statuses)),
                )
                .order_by(releases.c.requested_at.desc())
                .limit(1)
            )
        ).first()
        return str(row[0]) if row is not None else None

    async def claim_scheduled(self, now: datetime) -> Release | None:
        """On PostgreSQL ``FOR UPDATE SKIP LOCKED``: replicas claiming together each take a
        different release, and a release one of them took is not due to the others once it
        commits (its status is no longer scheduled). SQLite has one writer: the unit of work
        holds it."""
        query = (
            sa.select(releases)
            .where(
                releases.c.status == Status.SCHEDULED.value,
                releases.c.scheduled_at <= now,
            )
            .order_by(releases.c.scheduled_at, releases.c.release_id)
            .limit(1)
        )
        if self.conn.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        row = (await self.conn.execute(query)).mappings().first()
        return release_of(row) if row is not None else None


class SqlApprovals:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def add(
        self, release_id: str, *, subject: str, email: str, name: str, decision: str, comment: str
    ) -> bool:
        existing = await self.conn.execute(
            sa.select(approvals.c.subject).where(
                approvals.c.release_id == release_id, approvals.c.subject == subject
            )
        )
        if existing.first() is not None:
            return False
        await self.conn.execute(
            approvals.insert().values(
                release_id=release_id,
                subject=subject,
                email=email,
                name=name,
                decision=decision,
                comment=comment,
                at=now(),
            )
        )
        return True

    async def of(self, release_id: str) -> list[Vote]:
        rows = await self.conn.execute(
            sa.select(approvals)
            .where(approvals.c.release_id == release_id)
            .order_by(approvals.c.at)
        )
        return [vote_of(r) for r in rows.mappings()]


class SqlRollouts:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    def _key(self, environment: str, service: str, artifact_id: str) -> sa.ColumnElement[bool]:
        return sa.and_(
            rollouts.c.environment == environment,
            rollouts.c.service == service,
            rollouts.c.artifact_id == artifact_id,
        )

    async def get(self, environment: str, service: str, artifact_id: str) -> Rollout | None:
        query = sa.select(rollouts).where(self._key(environment, service, artifact_id))
        row = (await self.conn.execute(query)).mappings().first()
        return rollout_of(row) if row is not None else None

    async def record(self, fact: Rollout) -> bool:
        """Keep the newest fact (by observation time); a success is remembered for good.

        Returns False when the fact is older than what is known (out of order).
        """
        existing = await self.get(fact.environment, fact.service, fact.artifact_id)
        succeeded_at = fact.observed_at if fact.status == "succeeded" else None
        failed_at = fact.observed_at if fact.status == "failed" else None
        if existing is None:
            await self.conn.execute(
                rollouts.insert().values(
                    environment=fact.environment,
                    service=fact.service,
                    artifact_id=fact.artifact_id,
                    status=fact.status,
                    reason=fact.reason,
                    release_id=fact.release_id,
                    observed_at=fact.observed_at,
                    succeeded_at=succeeded_at,
                    failed_at=failed_at,
                )
            )
            return True
        values: dict[str, Any] = {}
        if existing.succeeded_at is None and succeeded_at is not None:
            values["succeeded_at"] = succeeded_at
        if failed_at is not None and (existing.failed_at is None or failed_at > existing.failed_at):
            values["failed_at"] = failed_at
        newer = fact.observed_at > existing.observed_at or (
            fact.observed_at == existing.observed_at
            and fact.status != "started"
            and existing.status == "started"
        )
        if newer:
            values.update(
                status=fact.status,
                reason=fact.reason,
                release_id=fact.release_id or existing.release_id,
                observed_at=fact.observed_at,
            )
        if values:
            await self.conn.execute(
                rollouts.update()
                .where(self._key(fact.environment, fact.service, fact.artifact_id))
                .values(**values)
            )
        return newer


class SqlArtifacts:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def add(self, artifact: StoredArtifact) -> None:
        existing = await self.conn.execute(
            sa.select(artifacts.c.artifact_id).where(
                artifacts.c.service == artifact.service,
                artifacts.c.artifact_id == artifact.artifact_id,
            )
        )
        if existing.first() is None:
            values = {f: getattr(artifact, f) for f in StoredArtifact.__dataclass_fields__}
            await self.conn.execute(artifacts.insert().values(**values))


class SqlInbox:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def seen(self, event_id: str) -> bool:
        row = await self.conn.execute(
            sa.select(inbox.c.event_id).where(inbox.c.event_id == event_id)
        )
        return row.first() is not None

    async def mark(self, event: CloudEvent) -> None:
        await self.conn.execute(
            inbox.insert().values(event_id=event.id, event_type=event.type, processed_at=now())
        )

    async def forget(self, processed_before: datetime) -> None:
        await self.conn.execute(inbox.delete().where(inbox.c.processed_at < processed_before))


def ordering_key(event: CloudEvent) -> str | None:
    """``service/environment`` of an event about one, else None (no order kept)."""
    service, environment = event.data.get("service"), event.data.get("environment")
    if isinstance(service, str) and isinstance(environment, str) and service and environment:
        return f"{service}/{environment}"[:128]
    return None


class SqlOutbox:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn
        self.queued = 0

    async def put(self, event: CloudEvent) -> None:
        key = ordering_key(event)
        if key is not None and self.conn.dialect.name == "postgresql":
            # Writers of one key take turns until they commit, so that the ids of its rows
            # are in commit order and the relay's id order is the order they were decided in
            # (SQLite has one writer: there it always is).
            await self.conn.execute(
                sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": key}
            )
        values = {
            "event_id": event.id,
            "event_type": event.type,
            "body": encode(event).decode(),
            "created_at": now(),
            "attempts": 0,
            "last_error": "",
            "ordering_key": key,
        }
        insert = pg_insert if self.conn.dialect.name == "postgresql" else sqlite_insert
        result = await self.conn.execute(
            insert(outbox).values(**values).on_conflict_do_nothing(index_elements=["event_id"])
        )
        if result.rowcount:
            self.queued += 1

    async def forget(self, sent_before: datetime) -> None:
        await self.conn.execute(
            outbox.delete().where(outbox.c.sent_at.is_not(None), outbox.c.sent_at < sent_before)
        )


class SqlAlchemyUnitOfWork:
    """One transaction of the store; ``async with`` it, ``commit()`` before leaving."""

    releases: SqlReleases
    approvals: SqlApprovals
    rollouts: SqlRollouts
    artifacts: SqlArtifacts
    inbox: SqlInbox
    outbox: SqlOutbox

    def __init__(self, store: Store) -> None:
        self.store = store
        self._stack = AsyncExitStack()
        self._transaction: AsyncTransaction | None = None

    async def __aenter__(self) -> Self:
        await self._stack.__aenter__()
        try:
            await self._stack.enter_async_context(self.store.writing())
            conn = await self._stack.enter_async_context(self.store.engine.connect())
            self._transaction = await conn.begin()
        except BaseException:
            await self._stack.aclose()
            raise
        self.releases = SqlReleases(conn)
        self.approvals = SqlApprovals(conn)
        self.rollouts = SqlRollouts(conn)
        self.artifacts = SqlArtifacts(conn)
        self.inbox = SqlInbox(conn)
        self.outbox = SqlOutbox(conn)
        return self

    async def commit(self) -> None:
        assert self._transaction is not None, "commit() outside `async with`"
        await self._transaction.commit()
        if self.outbox.queued:
            self.outbox.queued = 0
            self.store.published()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._transaction is not None and self._transaction.is_active:
                await self._transaction.rollback()
        finally:
            self._transaction = None
            await self._stack.aclose()

"""Promotion's own state through SQLAlchemy 2 (async): SQLite by default, PostgreSQL when given.

Tables: ``releases`` (requests and their decisions), ``timeline``,
``approvals``, ``rollouts`` (outcomes per environment, service and
artifact), ``artifacts`` (the catalog, from ``ferry.artifact.stored.v1``),
``inbox`` (ids of processed events) and ``outbox`` (events to publish).
An effect, its inbox row and its outbox rows are written in one transaction.
The schema is created on start with ``metadata.create_all``; a nullable column
added since a database was created is added to it (there are no other migrations yet).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from ferry_events import CloudEvent, ReleaseRequested, encode
from ferry_promotion.domain.decision import Status

metadata = sa.MetaData()
_TS = sa.DateTime(timezone=True)

releases = sa.Table(
    "releases",
    metadata,
    sa.Column("release_id", sa.String(128), primary_key=True),
    sa.Column("service", sa.String(63), nullable=False),
    sa.Column("environment", sa.String(63), nullable=False),
    sa.Column("intent", sa.String(20), nullable=False),
    sa.Column("artifact_id", sa.String(128)),
    sa.Column("branch", sa.String(255)),
    sa.Column("from_environment", sa.String(63)),
    sa.Column("status", sa.String(24), nullable=False),
    sa.Column("actor_subject", sa.String(200), nullable=False),
    sa.Column("actor_email", sa.String(320), nullable=False, default=""),
    sa.Column("actor_name", sa.String(200), nullable=False, default=""),
    sa.Column("reason", sa.Text, nullable=False, default=""),
    sa.Column("override_freeze", sa.Boolean, nullable=False, default=False),
    sa.Column("requested_at", _TS, nullable=False),
    sa.Column("updated_at", _TS, nullable=False),
    sa.Column("commit_sha", sa.String(64)),
    sa.Column("namespace", sa.String(63)),
    sa.Column("promoted_from", sa.String(63)),
    sa.Column("author_email", sa.String(320), nullable=False, default=""),
    sa.Column("author_name", sa.String(200), nullable=False, default=""),
    sa.Column("artifact_branch", sa.String(255), nullable=False, default=""),
    sa.Column("violations", sa.JSON, nullable=False, default=list),
    sa.Column("approvals_required", sa.Integer, nullable=False, default=0),
    sa.Column("exclude_author", sa.Boolean, nullable=False, default=False),
    sa.Column("expires_at", _TS),
    sa.Column("waiting_since", _TS),
    sa.Column("correlation_id", sa.String(128), nullable=False),
    sa.Column("request_event_id", sa.String(128)),
    sa.Column("superseded_by", sa.String(128)),
    sa.Index("ix_releases_service_env", "service", "environment", "status"),
    sa.Index("ix_releases_status", "status"),
)

timeline = sa.Table(
    "timeline",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("release_id", sa.String(128), nullable=False, index=True),
    sa.Column("at", _TS, nullable=False),
    sa.Column("status", sa.String(24), nullable=False),
    sa.Column("event_type", sa.String(128), nullable=False, default=""),
    sa.Column("detail", sa.Text, nullable=False, default=""),
)

approvals = sa.Table(
    "approvals",
    metadata,
    sa.Column("release_id", sa.String(128), primary_key=True),
    sa.Column("subject", sa.String(200), primary_key=True),
    sa.Column("email", sa.String(320), nullable=False, default=""),
    sa.Column("name", sa.String(200), nullable=False, default=""),
    sa.Column("decision", sa.String(10), nullable=False),
    sa.Column("comment", sa.Text, nullable=False, default=""),
    sa.Column("at", _TS, nullable=False),
)

rollouts = sa.Table(
    "rollouts",
    metadata,
    sa.Column("environment", sa.String(63), primary_key=True),
    sa.Column("service", sa.String(63), primary_key=True),
    sa.Column("artifact_id", sa.String(128), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text, nullable=False, default=""),
    sa.Column("release_id", sa.String(128), nullable=False, default=""),
    sa.Column("observed_at", _TS, nullable=False),
    sa.Column("succeeded_at", _TS),
)

artifacts = sa.Table(
    "artifacts",
    metadata,
    sa.Column("service", sa.String(63), primary_key=True),
    sa.Column("artifact_id", sa.String(128), primary_key=True),
    sa.Column("branch", sa.String(255), nullable=False, default=""),
    sa.Column("sha", sa.String(64), nullable=False, default=""),
    sa.Column("author_name", sa.String(200), nullable=False, default=""),
    sa.Column("author_email", sa.String(320), nullable=False, default=""),
    sa.Column("message", sa.Text, nullable=False, default=""),
    sa.Column("namespace", sa.String(63), nullable=False, default=""),
    sa.Column("environments", sa.JSON, nullable=False, default=list),
    sa.Column("commit_sha", sa.String(64), nullable=False, default=""),
    sa.Column("stored_at", _TS, nullable=False),
    sa.Index("ix_artifacts_branch", "service", "branch", "stored_at"),
)

inbox = sa.Table(
    "inbox",
    metadata,
    sa.Column("event_id", sa.String(128), primary_key=True),
    sa.Column("event_type", sa.String(128), nullable=False),
    sa.Column("processed_at", _TS, nullable=False),
)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(128), nullable=False, unique=True),
    sa.Column("event_type", sa.String(128), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("created_at", _TS, nullable=False),
    sa.Column("sent_at", _TS),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", _TS),
    sa.Column("last_error", sa.Text, nullable=False, default=""),
    sa.Index("ix_outbox_unsent", "sent_at", "id"),
)


def utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes: they are UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def at(value: datetime | None) -> datetime:
    """A timestamp column that is never null, in UTC."""
    found = utc(value)
    if found is None:
        raise ValueError("a required timestamp is missing")
    return found


def now() -> datetime:
    return datetime.now(UTC)


class Tx:
    """One transaction: the effect, its inbox row and its outbox rows together."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn
        self.published = 0

    # ------------------------------------------------------------------ inbox / outbox

    async def processed(self, event_id: str) -> bool:
        row = await self.conn.execute(
            sa.select(inbox.c.event_id).where(inbox.c.event_id == event_id)
        )
        return row.first() is not None

    async def mark_processed(self, event: CloudEvent) -> None:
        await self.conn.execute(
            inbox.insert().values(event_id=event.id, event_type=event.type, processed_at=now())
        )

    async def publish(self, event: CloudEvent) -> None:
        """Queue ``event`` for the relay (ignored when the same id is already queued)."""
        values = {
            "event_id": event.id,
            "event_type": event.type,
            "body": encode(event).decode(),
            "created_at": now(),
            "attempts": 0,
            "last_error": "",
        }
        insert = pg_insert if self.conn.dialect.name == "postgresql" else sqlite_insert
        result = await self.conn.execute(
            insert(outbox).values(**values).on_conflict_do_nothing(index_elements=["event_id"])
        )
        if result.rowcount:
            self.published += 1

    # ------------------------------------------------------------------ releases

    async def release(self, release_id: str, *, lock: bool = False) -> RowMapping | None:
        query = sa.select(releases).where(releases.c.release_id == release_id)
        if lock and self.conn.dialect.name == "postgresql":
            query = query.with_for_update()
        row = await self.conn.execute(query)
        return row.mappings().first()

    async def insert_release(self, **values: Any) -> None:
        await self.conn.execute(releases.insert().values(**values))

    async def insert_request(
        self, event: CloudEvent, data: ReleaseRequested, *, updated_at: datetime
    ) -> None:
        """Record the release ``event`` asks for, as requested, with its first timeline entry."""
        await self.insert_release(
            release_id=data.release_id,
            service=data.service,
            environment=data.environment,
            intent=data.intent.value,
            artifact_id=data.artifact_id,
            branch=data.branch,
            from_environment=data.from_environment,
            status=Status.REQUESTED.value,
            actor_subject=data.actor.subject,
            actor_email=data.actor.email,
            actor_name=data.actor.name,
            reason=data.reason,
            override_freeze=data.override_freeze,
            requested_at=data.requested_at,
            updated_at=updated_at,
            correlation_id=event.correlationid,
            request_event_id=event.id,
            violations=[],
            approvals_required=0,
            exclude_author=False,
            author_email="",
            author_name="",
            artifact_branch="",
        )
        await self.note(
            data.release_id,
            Status.REQUESTED,
            event.type,
            f"{data.intent.value} requested by {data.actor.display()}",
        )

    async def update_release(self, release_id: str, **values: Any) -> None:
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
                release_id=release_id,
                at=now(),
                status=status,
                event_type=event_type,
                detail=detail,
            )
        )

    # ------------------------------------------------------------------ approvals

    async def add_approval(
        self, release_id: str, *, subject: str, email: str, name: str, decision: str, comment: str
    ) -> bool:
        """Record a vote; False when this person already voted on this release."""
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

    async def approvals_of(self, release_id: str) -> list[RowMapping]:
        rows = await self.conn.execute(
            sa.select(approvals)
            .where(approvals.c.release_id == release_id)
            .order_by(approvals.c.at)
        )
        return list(rows.mappings())

    # ------------------------------------------------------------------ rollouts

    async def rollout(self, environment: str, service: str, artifact_id: str) -> RowMapping | None:
        row = await self.conn.execute(
            sa.select(rollouts).where(
                rollouts.c.environment == environment,
                rollouts.c.service == service,
                rollouts.c.artifact_id == artifact_id,
            )
        )
        return row.mappings().first()

    async def record_rollout(
        self,
        *,
        environment: str,
        service: str,
        artifact_id: str,
        status: str,
        reason: str,
        release_id: str,
        observed_at: datetime,
    ) -> bool:
        """Keep the newest fact (by observation time); a success is remembered for good.

        Returns False when the fact is older than what is known (out of order).
        """
        existing = await self.rollout(environment, service, artifact_id)
        succeeded_at = observed_at if status == "succeeded" else None
        if existing is None:
            await self.conn.execute(
                rollouts.insert().values(
                    environment=environment,
                    service=service,
                    artifact_id=artifact_id,
                    status=status,
                    reason=reason,
                    release_id=release_id,
                    observed_at=observed_at,
                    succeeded_at=succeeded_at,
                )
            )
            return True
        known_at = utc(existing["observed_at"])
        assert known_at is not None
        values: dict[str, Any] = {}
        if existing["succeeded_at"] is None and succeeded_at is not None:
            values["succeeded_at"] = succeeded_at
        newer = observed_at > known_at or (
            observed_at == known_at and status != "started" and existing["status"] == "started"
        )
        if newer:
            values.update(
                status=status,
                reason=reason,
                release_id=release_id or existing["release_id"],
                observed_at=observed_at,
            )
        if values:
            await self.conn.execute(
                rollouts.update()
                .where(
                    rollouts.c.environment == environment,
                    rollouts.c.service == service,
                    rollouts.c.artifact_id == artifact_id,
                )
                .values(**values)
            )
        return newer

    # ------------------------------------------------------------------ artifacts

    async def upsert_artifact(self, **values: Any) -> None:
        existing = await self.conn.execute(
            sa.select(artifacts.c.artifact_id).where(
                artifacts.c.service == values["service"],
                artifacts.c.artifact_id == values["artifact_id"],
            )
        )
        if existing.first() is None:
            await self.conn.execute(artifacts.insert().values(**values))


class Store:
    """The database: transactions for writers, connections for readers."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            kwargs["connect_args"] = {"timeout": 30}
        else:
            kwargs.update(pool_size=10, max_overflow=10, pool_pre_ping=True)
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        self._write_lock = asyncio.Lock() if self.is_sqlite else None
        self._on_publish: list[Callable[[], None]] = []
        if self.is_sqlite:
            sa.event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)

    def on_publish(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` after a transaction that queued events commits."""
        self._on_publish.append(callback)

    async def purge(self, *, sent_before: datetime, processed_before: datetime) -> None:
        """Forget relayed outbox rows and inbox ids older than the given times."""
        async with self.transaction() as tx:
            await tx.conn.execute(
                outbox.delete().where(outbox.c.sent_at.is_not(None), outbox.c.sent_at < sent_before)
            )
            await tx.conn.execute(inbox.delete().where(inbox.c.processed_at < processed_before))

    async def create_schema(self) -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
            await conn.run_sync(_add_missing_columns)

    async def close(self) -> None:
        await self.engine.dispose()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        """A write transaction (serialized in-process on SQLite, which has one writer)."""
        lock: AbstractAsyncContextManager[Any] = self._write_lock or nullcontext()
        async with lock:
            async with self.engine.begin() as conn:
                tx = Tx(conn)
                yield tx
            if tx.published:
                for callback in self._on_publish:
                    callback()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            yield conn


def _add_missing_columns(conn: sa.Connection) -> None:
    """Add the nullable columns a database created by an older promotion lacks."""
    inspector = sa.inspect(conn)
    for table in metadata.sorted_tables:
        present = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name not in present and column.nullable and column.default is None:
                kind = column.type.compile(dialect=conn.dialect)
                conn.execute(sa.text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}'))


def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def violations_of(row: RowMapping) -> list[dict[str, str]]:
    raw = row["violations"]
    if isinstance(raw, str):
        raw = json.loads(raw)
    return list(raw or [])


__all__ = [
    "IntegrityError",
    "Store",
    "Tx",
    "approvals",
    "artifacts",
    "at",
    "inbox",
    "metadata",
    "now",
    "outbox",
    "releases",
    "rollouts",
    "timeline",
    "utc",
]

"""Promotion's own state through SQLAlchemy 2 (async): SQLite by default, PostgreSQL when given.

Tables: ``releases`` (requests and their decisions), ``timeline``,
``approvals``, ``rollouts`` (outcomes per environment, service and
artifact), ``artifacts`` (the catalog, from ``ferry.artifact.stored.v1``),
``inbox`` (ids of processed events), ``outbox`` (events to publish),
``slack_seen`` (signatures of Slack requests, until they expire: the replay
cache every replica shares) and ``slack_followups`` (the ``response_url`` s a
replica follows a release on, with their posts and the replica's lease).
An effect, its inbox row and its outbox rows are written in one transaction.
The schema is migrated on start with Alembic (``adapters/migrations``, under an advisory
lock on PostgreSQL so that replicas starting together take turns; how migrations are
written: ``ferry_runtime.migrations``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from ferry_runtime.migrations import upgrade

metadata = sa.MetaData()
#: The advisory lock key under which promotion migrates its database ("ferry-prm").
_SCHEMA_LOCK = 0x6665727279_70726D
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
    sa.Column("due_at", _TS),
    sa.Column("correlation_id", sa.String(128), nullable=False),
    sa.Column("request_event_id", sa.String(128)),
    sa.Column("superseded_by", sa.String(128)),
    sa.Column("config_commit", sa.String(64)),
    sa.Column("sequence", sa.Integer),
    sa.Column("scheduled_at", _TS),
    sa.Index("ix_releases_service_env", "service", "environment", "status"),
    sa.Index("ix_releases_status", "status"),
    sa.Index("ix_releases_due", "due_at"),
    sa.Index("ix_releases_scheduled", "status", "scheduled_at"),
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
    sa.Column("failed_at", _TS),
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
    # "service/environment" of the event, when it has both: rows of one key go out in id order
    sa.Column("ordering_key", sa.String(128)),
    # the relay publishing the row, until its lease ends (a relay that dies leaves it to another)
    sa.Column("claimed_by", sa.String(64)),
    sa.Column("claimed_until", _TS),
    sa.Index("ix_outbox_unsent", "sent_at", "id"),
    sa.Index("ix_outbox_key", "ordering_key", "sent_at"),
)

# the last sequence number given to a request per service and environment
release_sequences = sa.Table(
    "release_sequences",
    metadata,
    sa.Column("service", sa.String(63), primary_key=True),
    sa.Column("environment", sa.String(63), primary_key=True),
    sa.Column("last", sa.Integer, nullable=False),
)

slack_seen = sa.Table(
    "slack_seen",
    metadata,
    sa.Column("signature", sa.String(128), primary_key=True),
    sa.Column("expires_at", _TS, nullable=False, index=True),
)

slack_followups = sa.Table(
    "slack_followups",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("response_url", sa.Text, nullable=False),
    sa.Column("release_id", sa.String(128), nullable=False),
    sa.Column("slack_user", sa.String(64), nullable=False, default=""),
    sa.Column("last_status", sa.String(24), nullable=False, default=""),
    sa.Column("posts", sa.Integer, nullable=False, default=0),
    sa.Column("opened_at", _TS, nullable=False),
    sa.Column("owner", sa.String(64), nullable=False, default=""),
    sa.Column("lease_until", _TS, nullable=False),
    sa.Index("ix_slack_followups_lease", "lease_until"),
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

    def published(self) -> None:
        """A transaction that queued events committed: wake the relay."""
        for callback in self._on_publish:
            callback()

    def writing(self) -> AbstractAsyncContextManager[Any]:
        """Held for a write transaction (in-process on SQLite, which has one writer)."""
        return self._write_lock or nullcontext()

    async def create_schema(self) -> list[str]:
        """Migrate the database to the newest revision; the revisions applied."""
        async with self.engine.begin() as conn:
            return await conn.run_sync(
                lambda sync: upgrade(sync, "ferry_promotion.adapters", lock_key=_SCHEMA_LOCK)
            )

    async def ping(self) -> bool:
        """Whether the database answers (for readiness)."""
        async with self.read() as conn:
            await conn.execute(sa.text("SELECT 1"))
        return True

    async def close(self) -> None:
        await self.engine.dispose()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction (serialized in-process on SQLite, which has one writer)."""
        async with self.writing(), self.engine.begin() as conn:
            yield conn

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            yield conn


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
    "approvals",
    "artifacts",
    "at",
    "inbox",
    "metadata",
    "now",
    "outbox",
    "release_sequences",
    "releases",
    "rollouts",
    "slack_followups",
    "slack_seen",
    "timeline",
    "utc",
]

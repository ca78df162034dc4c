"""The notifier's records, in SQLite (default) or PostgreSQL, through SQLAlchemy.

Each operation is one transaction written as a plain function of a SQLAlchemy
``Connection``, run in one step: on PostgreSQL through the asyncpg async engine
(``AsyncConnection.run_sync``), on SQLite on one dedicated thread with the
standard ``sqlite3`` driver. (The aiosqlite driver hands every cursor call to its
thread, about 40 hand-offs per event; this is one per transaction, and SQLite
writes one transaction at a time anyway.)

- ``deliveries``: one row per (event id, destination): ``sent``, ``failed`` (given
  up, dead-lettered), ``skipped`` (nobody to send to) or ``collapsed`` (part of a
  flood). A redelivered event skips every destination that has a row.
- ``threads``: per (thread key, Slack destination) the channel id and ``ts`` of the
  first message of a release, and how far along the release it shows.
- ``releases`` and ``artifacts``: what earlier events said (people, squad, links).
- ``floods`` and ``flood_events``: runs of identical failures.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.sql.expression import Executable

from ferry_notifier.domain.flood import Flood, FloodPosition, next_in_flood
from ferry_notifier.domain.notice import ArtifactContext, ReleaseContext

metadata = MetaData()

deliveries = Table(
    "deliveries",
    metadata,
    Column("event_id", String(128), primary_key=True),
    Column("destination", String(512), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("detail", Text, nullable=False, default=""),
    Column("slack_channel", String(64), nullable=False, default=""),
    Column("slack_ts", String(64), nullable=False, default=""),
    Column("attempts", Integer, nullable=False, default=0),
    Column("at", DateTime(timezone=True), nullable=False),
)

threads = Table(
    "threads",
    metadata,
    Column("thread_key", String(256), primary_key=True),
    Column("destination", String(512), primary_key=True),
    Column("channel", String(64), nullable=False),
    Column("ts", String(64), nullable=False),
    Column("rank", Integer, nullable=False, default=0),
)


def _documents(name: str, key: str) -> Table:
    """A table of JSON documents by id: what earlier events said of something."""
    return Table(
        name,
        metadata,
        Column(key, String(128), primary_key=True),
        Column("data", Text, nullable=False),
    )


releases = _documents("releases", "release_id")
artifacts = _documents("artifacts", "artifact_id")

floods = Table(
    "floods",
    metadata,
    Column("flood_key", String(512), primary_key=True),
    Column("anchor_event_id", String(128), nullable=False),
    Column("count", Integer, nullable=False),
    Column("last_at", DateTime(timezone=True), nullable=False),
)

flood_events = Table(
    "flood_events",
    metadata,
    Column("event_id", String(128), primary_key=True),
    Column("anchor_event_id", String(128), nullable=False),
    Column("number", Integer, nullable=False),
)


#: The columns of a :class:`DeliveryRecord`, in its field order.
_RECORD_COLUMNS = (
    deliveries.c.status,
    deliveries.c.detail,
    deliveries.c.slack_channel,
    deliveries.c.slack_ts,
)


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    status: str
    detail: str = ""
    slack_channel: str = ""
    slack_ts: str = ""


@dataclass(frozen=True, slots=True)
class Remembered:
    """What earlier events said, for one event: its release, its artifact, its deliveries."""

    release: ReleaseContext | None
    artifact: ArtifactContext | None
    deliveries: dict[str, DeliveryRecord]


@dataclass(frozen=True, slots=True)
class Thread:
    channel: str
    ts: str
    rank: int


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
    # WAL: readers never wait for the writer. synchronous=NORMAL: a commit survives a
    # process crash; a power cut may lose the last ones, which can repeat a message,
    # never lose one (the event is acked only after its records are written).
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


T = TypeVar("T")


class Store:
    """Every record the notifier keeps."""

    def __init__(
        self, *, async_engine: AsyncEngine | None = None, sync_engine: Engine | None = None
    ):
        if (async_engine is None) == (sync_engine is None):
            raise ValueError("give exactly one engine")
        self._async = async_engine
        self._sync = sync_engine
        self._thread = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="notifier-sqlite")
            if sync_engine is not None
            else None
        )
        engine = async_engine or sync_engine
        assert engine is not None
        self.dialect: str = engine.dialect.name

    @classmethod
    def from_url(cls, url: str) -> Store:
        """``sqlite+aiosqlite:///path`` (or ``sqlite:///path``) or ``postgresql+asyncpg://...``."""
        parsed = make_url(url)
        if parsed.get_backend_name() != "sqlite":
            return cls(async_engine=create_async_engine(url, pool_recycle=1800))
        path = parsed.database or ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed.set(drivername="sqlite+pysqlite"), pool_size=1)
        event.listen(engine, "connect", _sqlite_pragmas)
        return cls(sync_engine=engine)

    async def _run(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in one transaction, committed when it returns."""
        if self._sync is not None:
            assert self._thread is not None
            sync = self._sync

            def transaction() -> T:
                with sync.begin() as conn:
                    return work(conn)

            return await asyncio.get_running_loop().run_in_executor(self._thread, transaction)
        assert self._async is not None
        async with self._async.begin() as conn:
            return await conn.run_sync(work)

    async def _execute(self, statement: Executable) -> None:
        """One statement, which is its own transaction (on PostgreSQL without BEGIN/COMMIT
        round trips)."""
        if self._async is None:
            await self._run(lambda conn: conn.execute(statement))
            return
        async with self._async.connect() as conn:
            auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await auto.execute(statement)

    async def create(self) -> None:
        await self._run(metadata.create_all)

    async def ping(self) -> bool:
        await self._run(lambda conn: conn.exec_driver_sql("SELECT 1"))
        return True

    async def close(self) -> None:
        if self._async is not None:
            await self._async.dispose()
        if self._sync is not None and self._thread is not None:
            await asyncio.get_running_loop().run_in_executor(self._thread, self._sync.dispose)
            self._thread.shutdown(wait=True)

    def _upsert(self, table: Table, values: dict[str, object], keys: list[str]) -> Executable:
        insert = pg_insert if self.dialect == "postgresql" else sqlite_insert
        stmt = insert(table).values(**values)
        return stmt.on_conflict_do_update(
            index_elements=keys, set_={k: v for k, v in values.items() if k not in keys}
        )

    def _save_document(self, table: Table, key: str, document: dict[str, Any]) -> Executable:
        """Write one document of a :func:`_documents` table, replacing what was there."""
        column = _key(table)
        return self._upsert(table, {column: key, "data": json.dumps(document)}, [column])

    # ------------------------------------------------------------------ deliveries

    async def delivery(self, event_id: str, destination: str) -> DeliveryRecord | None:
        def work(conn: Connection) -> DeliveryRecord | None:
            row = conn.execute(
                select(*_RECORD_COLUMNS).where(
                    deliveries.c.event_id == event_id, deliveries.c.destination == destination
                )
            ).first()
            return DeliveryRecord(*row) if row else None

        return await self._run(work)

    async def record_delivery(
        self,
        event_id: str,
        destination: str,
        status: str,
        *,
        detail: str = "",
        attempts: int = 0,
        slack_channel: str = "",
        slack_ts: str = "",
    ) -> None:
        values: dict[str, object] = {
            "event_id": event_id,
            "destination": destination,
            "status": status,
            "detail": detail[:4000],
            "attempts": attempts,
            "slack_channel": slack_channel,
            "slack_ts": slack_ts,
            "at": _now(),
        }
        statement = self._upsert(deliveries, values, ["event_id", "destination"])
        await self._execute(statement)

    async def deliveries_of(self, event_id: str) -> dict[str, DeliveryRecord]:
        return await self._run(lambda conn: _deliveries_of(conn, event_id))

    # ------------------------------------------------------------------ threads

    async def thread(self, thread_key: str, destination: str) -> Thread | None:
        def work(conn: Connection) -> Thread | None:
            row = conn.execute(
                select(threads.c.channel, threads.c.ts, threads.c.rank).where(
                    threads.c.thread_key == thread_key, threads.c.destination == destination
                )
            ).first()
            return Thread(*row) if row else None

        return await self._run(work)

    async def save_thread(self, thread_key: str, destination: str, thread: Thread) -> None:
        values: dict[str, object] = {
            "thread_key": thread_key,
            "destination": destination,
            "channel": thread.channel,
            "ts": thread.ts,
            "rank": thread.rank,
        }
        statement = self._upsert(threads, values, ["thread_key", "destination"])
        await self._execute(statement)

    async def raise_rank(self, thread_key: str, destination: str, rank: int) -> None:
        statement = (
            update(threads)
            .where(
                threads.c.thread_key == thread_key,
                threads.c.destination == destination,
                threads.c.rank < rank,
            )
            .values(rank=rank)
        )
        await self._execute(statement)

    # ------------------------------------------------------------------ context

    async def remember(
        self, ctx: ReleaseContext | None, artifact_id: str, event_id: str
    ) -> Remembered:
        """In one transaction: merge what this event says of its release with what was known,
        and read the artifact's context and this event's delivery records."""

        def work(conn: Connection) -> Remembered:
            release = self._merge_release(conn, ctx) if ctx is not None else None
            wanted = artifact_id or (release.artifact_id if release else "")
            known = _document(conn, artifacts, wanted) if wanted else None
            artifact = ArtifactContext(**known) if known is not None else None
            return Remembered(release, artifact, _deliveries_of(conn, event_id))

        return await self._run(work)

    async def remember_release(self, ctx: ReleaseContext) -> ReleaseContext:
        """Merge what this event says of a release with what was known; return the merge."""
        return await self._run(lambda conn: self._merge_release(conn, ctx))

    def _merge_release(self, conn: Connection, ctx: ReleaseContext) -> ReleaseContext:
        known = _document(conn, releases, ctx.release_id) or {}
        merged: dict[str, Any] = {
            "service": ctx.service or known.get("service", ""),
            "environment": ctx.environment or known.get("environment", ""),
            "artifact_id": ctx.artifact_id or known.get("artifact_id", ""),
            "releaser": known.get("releaser") or ctx.releaser,
            "author": known.get("author") or ctx.author,
            "approvers": list(ctx.approvers) or known.get("approvers", []),
        }
        if merged != known:  # most events of a release add nothing: no write then
            conn.execute(self._save_document(releases, ctx.release_id, merged))
        return ReleaseContext(
            release_id=ctx.release_id,
            service=str(merged["service"]),
            environment=str(merged["environment"]),
            artifact_id=str(merged["artifact_id"]),
            releaser=str(merged["releaser"] or ""),
            author=str(merged["author"] or ""),
            approvers=tuple(str(a) for a in merged["approvers"]),
        )

    async def remember_artifact(self, ctx: ArtifactContext) -> None:
        await self._execute(self._save_document(artifacts, ctx.artifact_id, asdict(ctx)))

    # ------------------------------------------------------------------ floods

    async def flood_position(
        self, key: str, event_id: str, window: timedelta, *, now: datetime | None = None
    ) -> FloodPosition:
        """This event's place in its flood; the same answer when the event is redelivered."""
        at = now or _now()
        for _ in range(5):
            try:
                return await self._run(
                    lambda conn: self._flood_position(conn, key, event_id, window, at)
                )
            except IntegrityError:  # another replica counted at the same time; look again
                continue
        return FloodPosition(event_id, 1)

    def _flood_position(
        self, conn: Connection, key: str, event_id: str, window: timedelta, now: datetime
    ) -> FloodPosition:
        seen = conn.execute(
            select(flood_events.c.anchor_event_id, flood_events.c.number).where(
                flood_events.c.event_id == event_id
            )
        ).first()
        if seen:
            return FloodPosition(seen[0], seen[1])
        row = conn.execute(
            select(floods.c.anchor_event_id, floods.c.count, floods.c.last_at)
            .where(floods.c.flood_key == key)
            .with_for_update()
        ).first()
        current = Flood(key, row[0], row[1], _aware(row[2])) if row else None
        flood = next_in_flood(current, key, event_id, now, window)
        conn.execute(
            self._upsert(
                floods,
                {
                    "flood_key": key,
                    "anchor_event_id": flood.anchor_event_id,
                    "count": flood.count,
                    "last_at": flood.last_at,
                },
                ["flood_key"],
            )
        )
        conn.execute(
            flood_events.insert().values(
                event_id=event_id, anchor_event_id=flood.anchor_event_id, number=flood.count
            )
        )
        return FloodPosition(flood.anchor_event_id, flood.count)


def _deliveries_of(conn: Connection, event_id: str) -> dict[str, DeliveryRecord]:
    rows = conn.execute(
        select(deliveries.c.destination, *_RECORD_COLUMNS).where(deliveries.c.event_id == event_id)
    )
    return {row[0]: DeliveryRecord(*row[1:]) for row in rows}


def _key(table: Table) -> str:
    """The name of the key column of a :func:`_documents` table."""
    (column,) = table.primary_key.columns
    return str(column.name)


def _document(conn: Connection, table: Table, key: str) -> dict[str, Any] | None:
    """One document of a :func:`_documents` table (None: there is none)."""
    row = conn.execute(select(table.c.data).where(table.c[_key(table)] == key)).first()
    return json.loads(row[0]) if row else None

"""The notifier's records, in SQLite (default) or PostgreSQL, through SQLAlchemy.

Each operation is one transaction, run in one step by
:class:`~ferry_notifier.adapters.database.Database`. The tables are in
:mod:`ferry_notifier.adapters.tables`, the claims in :mod:`ferry_notifier.adapters.claims`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy import Table, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.expression import Executable

from ferry_notifier.adapters import claims
from ferry_notifier.adapters.claims import DELIVERY, THREAD, ClaimKey, Held, Taken
from ferry_notifier.adapters.deployments import DeploymentRecords
from ferry_notifier.adapters.floods import FloodCounter
from ferry_notifier.adapters.tables import (
    artifacts,
    deliveries,
    releases,
    threads,
)
from ferry_notifier.domain.notice import ArtifactContext, ReleaseContext

#: What the store raises when the database is unreachable or locked (a temporary failure).
STORE_UNAVAILABLE: Final = (DBAPIError, OSError)

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


#: A claim of another delivery of this very process is taken over only this many leases
#: after it ran out: its holder is alive (its database calls are slow), or it crashed
#: without letting go, which only a failing database makes happen.
_SIBLING_GRACE = 10


def _now() -> datetime:
    return datetime.now(UTC)


def _later(now: datetime, seconds: float) -> datetime:
    return now + timedelta(seconds=seconds)


class Store(FloodCounter, DeploymentRecords):
    """Every record the notifier keeps."""

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
        owner: str = "",
    ) -> None:
        """Record the outcome; with ``owner``, let go of that replica's claim in the same
        transaction."""
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
        if not owner:
            await self._execute(statement)
            return
        key = ClaimKey(DELIVERY, event_id, destination)

        def work(conn: Connection) -> None:
            conn.execute(statement)
            claims.release(conn, key, owner)

        await self._run(work)

    async def claim_delivery(
        self,
        event_id: str,
        destination: str,
        owner: str,
        lease: float,
        *,
        retry_failed: bool,
        siblings: str = "",
    ) -> DeliveryRecord | Taken | Held:
        """Claim the delivery before sending it. Its record when it is settled already
        (a ``failed`` one counts as not settled with ``retry_failed``), else the claim
        taken, or who holds it."""
        key = ClaimKey(DELIVERY, event_id, destination)

        def work(conn: Connection) -> DeliveryRecord | Taken | Held:
            now = _now()
            claim = claims.take(
                conn,
                self.dialect,
                key,
                owner,
                now=now,
                until=_later(now, lease),
                siblings=siblings,
                sibling_grace=timedelta(seconds=_SIBLING_GRACE * lease),
            )
            # Read after taking: a record committed by the claim's last holder is seen.
            row = conn.execute(
                select(*_RECORD_COLUMNS).where(
                    deliveries.c.event_id == event_id, deliveries.c.destination == destination
                )
            ).first()
            record = DeliveryRecord(*row) if row else None
            if record is None or (record.status == "failed" and retry_failed):
                return claim
            if isinstance(claim, Taken):
                claims.release(conn, key, owner)
            return record

        return await self._run(work)

    async def delivery_or_holder(
        self, event_id: str, destination: str
    ) -> DeliveryRecord | Held | None:
        """The record of a delivery, or who is sending it now; None: neither."""
        key = ClaimKey(DELIVERY, event_id, destination)

        def work(conn: Connection) -> DeliveryRecord | Held | None:
            row = conn.execute(
                select(*_RECORD_COLUMNS).where(
                    deliveries.c.event_id == event_id, deliveries.c.destination == destination
                )
            ).first()
            return DeliveryRecord(*row) if row else claims.holder(conn, key, _now())

        return await self._run(work)

    async def renew_claim(self, key: ClaimKey, owner: str, lease: float) -> bool:
        """Extend ``owner``'s lease by ``lease`` seconds from now; False: it is not ours."""
        return await self._run(lambda conn: claims.renew(conn, key, owner, _later(_now(), lease)))

    async def release_claim(self, key: ClaimKey, owner: str) -> None:
        await self._run(lambda conn: claims.release(conn, key, owner))

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

    async def claim_thread(
        self, thread_key: str, destination: str, owner: str, lease: float, *, siblings: str = ""
    ) -> Thread | Taken | Held:
        """The thread when it exists; else the claim to create it, or who is creating it."""
        key = ClaimKey(THREAD, thread_key, destination)

        def work(conn: Connection) -> Thread | Taken | Held:
            now = _now()
            claim = claims.take(
                conn,
                self.dialect,
                key,
                owner,
                now=now,
                until=_later(now, lease),
                siblings=siblings,
                sibling_grace=timedelta(seconds=_SIBLING_GRACE * lease),
            )
            # Read after taking: a thread saved by the claim's last holder is seen.
            row = conn.execute(
                select(threads.c.channel, threads.c.ts, threads.c.rank).where(
                    threads.c.thread_key == thread_key, threads.c.destination == destination
                )
            ).first()
            if row is None:
                return claim
            if isinstance(claim, Taken):
                claims.release(conn, key, owner)
            return Thread(*row)

        return await self._run(work)

    async def start_thread(
        self, thread_key: str, destination: str, thread: Thread, *, owner: str = ""
    ) -> Thread | None:
        """Save the first message of a release's thread, unless one is saved already (an
        insert that does nothing on conflict with the (thread key, destination) key, so
        that exactly one first message wins). None: ours is the thread; else the thread
        that was there first. With ``owner``, let go of that replica's claim on starting
        it, in the same transaction."""
        insert = pg_insert if self.dialect == "postgresql" else sqlite_insert
        statement = (
            insert(threads)
            .values(
                thread_key=thread_key,
                destination=destination,
                channel=thread.channel,
                ts=thread.ts,
                rank=thread.rank,
            )
            .on_conflict_do_nothing(index_elements=["thread_key", "destination"])
        )
        key = ClaimKey(THREAD, thread_key, destination)

        def work(conn: Connection) -> Thread | None:
            inserted = conn.execute(statement)
            if owner:
                claims.release(conn, key, owner)
            if inserted.rowcount == 1:
                return None
            # Read after the insert: it waited for the other's, so its row is seen.
            row = conn.execute(
                select(threads.c.channel, threads.c.ts, threads.c.rank).where(
                    threads.c.thread_key == thread_key, threads.c.destination == destination
                )
            ).first()
            return Thread(*row) if row else None

        return await self._run(work)

    async def channel_of(self, destination: str) -> str:
        """The Slack channel id an earlier thread of ``destination`` is in ("": none yet)."""

        def work(conn: Connection) -> str:
            row = conn.execute(
                select(threads.c.channel).where(threads.c.destination == destination).limit(1)
            ).first()
            return str(row[0]) if row else ""

        return await self._run(work)

    async def raise_rank(self, thread_key: str, destination: str, rank: int) -> bool:
        """Move the thread to ``rank`` unless it is further along; True: it moved (or was
        there), so the caller's message is the newest to show."""
        statement = (
            update(threads)
            .where(
                threads.c.thread_key == thread_key,
                threads.c.destination == destination,
                threads.c.rank <= rank,
            )
            .values(rank=rank)
        )
        result = await self._run(lambda conn: conn.execute(statement))
        return bool(result.rowcount == 1)

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

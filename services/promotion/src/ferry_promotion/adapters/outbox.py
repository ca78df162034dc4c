"""The outbox relay: claims queued events, publishes them with confirms, marks them sent.

Any number of relays (one per promotion replica) share one outbox:

- **Claimed before published.** A relay takes a batch of due rows in one
  transaction (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so two relays never
  take the same row) and writes its name and a lease on them. SQLite has no
  row locks: there, run one relay per database file (one promotion process).
- **In order per key.** A row with an ``ordering_key`` (``service/environment``)
  is taken only when every earlier unsent row of that key is in the same batch;
  a publish that fails holds back the rows of its key after it (and no other).
  Writers of one key take turns (:class:`~ferry_promotion.adapters.unit_of_work.SqlOutbox`),
  so the id order of a key's rows is the order they were committed in.
- **Nothing stuck.** A relay that dies mid-publish leaves its rows claimed until
  the lease (``lease`` seconds) expires; then any relay takes them. One that
  stops cleanly hands its unsent rows back at once (:meth:`OutboxRelay.stop`).
  A row published by a relay that died before marking it is published again:
  consumers drop a repeated event id.

It wakes when a transaction queues events (``Store.on_publish``) and every
``interval`` seconds regardless, so events left unsent by a crash or a broker
outage are relayed after a restart. A failed publish is retried with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from ferry_events import CloudEvent
from ferry_promotion.adapters.db import Store, now, outbox
from ferry_runtime import PublishFailed, get_logger

log = get_logger(__name__)

Publish = Callable[[CloudEvent], Awaitable[None]]


def _first_of_its_key(row: dict[str, Any], first_elsewhere: dict[str, int]) -> bool:
    key = row["ordering_key"]
    return not key or key not in first_elsewhere or row["id"] < first_elsewhere[key]


class OutboxRelay:
    def __init__(
        self,
        store: Store,
        publish: Publish,
        *,
        interval: float = 1.0,
        batch: int = 200,
        lease: float = 30.0,
        name: str | None = None,
    ) -> None:
        self.store = store
        self.publish = publish
        self.interval = interval
        self.batch = batch
        self.lease = lease
        self.name = name or uuid.uuid4().hex
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        store.on_publish(self._wake.set)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self) -> None:
        """Stop relaying and hand back the rows this relay claimed but did not send."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await self.release()
        except Exception:  # the database is gone: the lease expires instead
            log.warning("outbox claims not handed back; they expire", exc_info=True)

    async def release(self) -> int:
        """Hand back this relay's unsent rows; how many."""
        async with self.store.transaction() as conn:
            result = await conn.execute(
                outbox.update()
                .where(outbox.c.claimed_by == self.name, outbox.c.sent_at.is_(None))
                .values(claimed_by=None, claimed_until=None)
            )
        return int(result.rowcount or 0)

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                sent = await self.relay_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox relay round failed; retrying")
                sent = 0
            if sent >= self.batch:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)

    async def claim(self) -> list[dict[str, Any]]:
        """Take due rows for this relay (each key's earliest first); the rows taken, in id order."""
        moment = now()
        query = (
            sa.select(outbox.c.id, outbox.c.body, outbox.c.attempts, outbox.c.ordering_key)
            .where(
                outbox.c.sent_at.is_(None),
                sa.or_(outbox.c.next_attempt_at.is_(None), outbox.c.next_attempt_at <= moment),
                sa.or_(outbox.c.claimed_until.is_(None), outbox.c.claimed_until < moment),
            )
            .order_by(outbox.c.id)
            .limit(self.batch)
        )
        if not self.store.is_sqlite:
            query = query.with_for_update(skip_locked=True)
        async with self.store.transaction() as conn:
            rows = [dict(r) for r in (await conn.execute(query)).mappings()]
            if not rows:
                return []
            ids = [r["id"] for r in rows]
            keys = {r["ordering_key"] for r in rows if r["ordering_key"]}
            first_elsewhere: dict[str, int] = {}
            if keys:
                # the earliest unsent row of each key that this batch does not hold: claimed
                # by another relay, waiting for a retry or locked by another claim right now
                found = await conn.execute(
                    sa.select(outbox.c.ordering_key, sa.func.min(outbox.c.id))
                    .where(
                        outbox.c.sent_at.is_(None),
                        outbox.c.ordering_key.in_(keys),
                        outbox.c.id.not_in(ids),
                    )
                    .group_by(outbox.c.ordering_key)
                )
                first_elsewhere = {str(k): int(v) for k, v in found.all()}
            taken = [r for r in rows if _first_of_its_key(r, first_elsewhere)]
            if taken:
                await conn.execute(
                    outbox.update()
                    .where(outbox.c.id.in_([r["id"] for r in taken]))
                    .values(
                        claimed_by=self.name,
                        claimed_until=moment + timedelta(seconds=self.lease),
                    )
                )
        return taken

    async def relay_once(self) -> int:
        """Claim and publish what is due; returns how many were sent."""
        rows = await self.claim()
        if not rows:
            return 0
        sent: list[int] = []
        failed: list[tuple[int, int, str]] = []
        held_back: set[str] = set()
        for row in rows:
            key = row["ordering_key"]
            if key and key in held_back:
                continue  # an earlier row of its key failed: it waits for that one
            event = CloudEvent.model_validate_json(row["body"])
            try:
                await self.publish(event)
            except PublishFailed as exc:
                log.warning(
                    "outbox publish failed; will retry",
                    event_id=event.id,
                    event_type=event.type,
                    error=str(exc),
                    attempts=row["attempts"] + 1,
                )
                failed.append((row["id"], row["attempts"] + 1, str(exc)))
                if key:
                    held_back.add(key)
                if exc.code == "connection":
                    break
            else:
                sent.append(row["id"])
        async with self.store.transaction() as conn:
            if sent:
                await conn.execute(
                    outbox.update().where(outbox.c.id.in_(sent)).values(sent_at=now())
                )
            for row_id, attempts, error in failed:
                delay = min(0.5 * 2 ** min(attempts, 10), 60.0)
                await conn.execute(
                    outbox.update()
                    .where(outbox.c.id == row_id)
                    .values(
                        attempts=attempts,
                        last_error=error[:2000],
                        next_attempt_at=now() + timedelta(seconds=delay),
                    )
                )
            # what was claimed and not sent goes back (the failed ones wait for their retry)
            await conn.execute(
                outbox.update()
                .where(outbox.c.claimed_by == self.name, outbox.c.sent_at.is_(None))
                .values(claimed_by=None, claimed_until=None)
            )
        return len(sent)

    async def pending(self) -> int:
        async with self.store.read() as conn:
            count = await conn.scalar(
                sa.select(sa.func.count()).select_from(outbox).where(outbox.c.sent_at.is_(None))
            )
        return int(count or 0)

"""The outbox relay: publishes queued events with confirms, in order, and marks them sent.

It wakes when a transaction queues events (``Store.on_publish``) and every
``interval`` seconds regardless, so events left unsent by a crash or a broker
outage are relayed after a restart. A publish that fails is retried with
backoff without holding back the events queued after it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import timedelta

import sqlalchemy as sa

from ferry_events import CloudEvent
from ferry_promotion.adapters.db import Store, now, outbox
from ferry_runtime import PublishFailed, get_logger

log = get_logger(__name__)

Publish = Callable[[CloudEvent], Awaitable[None]]


class OutboxRelay:
    def __init__(
        self, store: Store, publish: Publish, *, interval: float = 1.0, batch: int = 200
    ) -> None:
        self.store = store
        self.publish = publish
        self.interval = interval
        self.batch = batch
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        store.on_publish(self._wake.set)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

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

    async def relay_once(self) -> int:
        """Publish what is due; returns how many were sent."""
        moment = now()
        async with self.store.read() as conn:
            rows = list(
                (
                    await conn.execute(
                        sa.select(outbox.c.id, outbox.c.body, outbox.c.attempts)
                        .where(
                            outbox.c.sent_at.is_(None),
                            sa.or_(
                                outbox.c.next_attempt_at.is_(None),
                                outbox.c.next_attempt_at <= moment,
                            ),
                        )
                        .order_by(outbox.c.id)
                        .limit(self.batch)
                    )
                ).mappings()
            )
        if not rows:
            return 0
        sent: list[int] = []
        failed: list[tuple[int, int, str]] = []
        for row in rows:
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
        return len(sent)

    async def pending(self) -> int:
        async with self.store.read() as conn:
            count = await conn.scalar(
                sa.select(sa.func.count()).select_from(outbox).where(outbox.c.sent_at.is_(None))
            )
        return int(count or 0)

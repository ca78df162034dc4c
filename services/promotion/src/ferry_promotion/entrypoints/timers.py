"""The timer entrypoint: what promotion does on a clock rather than on a message.

Every ``interval`` seconds it expires overdue approvals and promotion-chain
waits; about once an hour it purges relayed outbox rows and old inbox ids; every
second or so it publishes the scheduled releases that fell due (:func:`every`). A
failed round is logged and the next one runs as planned.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from ferry_runtime import get_logger

log = get_logger(__name__)

#: Seconds between two purges of the outbox and the inbox.
PURGE_EVERY = 3600.0


async def housekeeping(
    interval: float,
    expire: Callable[[], Awaitable[object]],
    purge: Callable[[], Awaitable[None]],
) -> None:
    """Run ``expire`` every ``interval`` seconds and ``purge`` every hour, until cancelled."""
    purged = 0.0
    while True:
        await asyncio.sleep(interval)
        try:
            await expire()
            if asyncio.get_running_loop().time() - purged > PURGE_EVERY:
                await purge()
                purged = asyncio.get_running_loop().time()
        except Exception:
            log.exception("approval expiry check failed; retrying")


async def every(interval: float, job: Callable[[], Awaitable[object]], what: str) -> None:
    """Run ``job`` every ``interval`` seconds until cancelled (a failed round is logged)."""
    while True:
        await asyncio.sleep(interval)
        try:
            await job()
        except Exception:
            log.exception("timer job failed; retrying", job=what)

"""The delivery records, threads and floods, on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ferry_notifier.adapters.store import Store, Thread
from ferry_notifier.domain.notice import ReleaseContext
from ferry_testing.database import postgres_database


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async with contextlib.AsyncExitStack() as stack:
        if request.param == "postgres":
            url = await stack.enter_async_context(postgres_database())
        else:
            url = f"sqlite+aiosqlite:///{tmp_path / 'n.db'}"
        store = Store.from_url(url)
        await store.create()
        await store.create()  # idempotent, as every start does it
        try:
            yield store
        finally:
            await store.close()


async def test_a_delivery_record_is_found_and_overwritten(store: Store) -> None:
    assert await store.delivery("e1", "slack:#x") is None
    await store.record_delivery("e1", "slack:#x", "failed", detail="HTTP 503")
    await store.record_delivery("e1", "slack:#x", "sent", slack_channel="C1", slack_ts="1.2")
    record = await store.delivery("e1", "slack:#x")
    assert record is not None
    assert (record.status, record.slack_channel, record.slack_ts) == ("sent", "C1", "1.2")
    assert set(await store.deliveries_of("e1")) == {"slack:#x"}


async def test_a_thread_only_moves_forward(store: Store) -> None:
    await store.save_thread("release:r", "slack:#x", Thread("C1", "1.1", 3))
    await store.raise_rank("release:r", "slack:#x", 2)
    assert await store.thread("release:r", "slack:#x") == Thread("C1", "1.1", 3)
    await store.raise_rank("release:r", "slack:#x", 9)
    assert await store.thread("release:r", "slack:#x") == Thread("C1", "1.1", 9)


async def test_release_context_keeps_the_first_releaser(store: Store) -> None:
    await store.remember_release(ReleaseContext("r", "svc", "prod", "a1", "rel@x.io", "dev@x.io"))
    merged = await store.remember_release(ReleaseContext("r", environment="prod"))
    assert (merged.releaser, merged.author, merged.artifact_id) == ("rel@x.io", "dev@x.io", "a1")


async def test_flood_positions_count_once_per_event(store: Store) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    window = timedelta(minutes=10)
    first = await store.flood_position("k", "e1", window, now=now)
    second = await store.flood_position("k", "e2", window, now=now + timedelta(minutes=1))
    again = await store.flood_position("k", "e2", window, now=now + timedelta(minutes=2))
    later = await store.flood_position("k", "e3", window, now=now + timedelta(hours=1))
    assert (first.anchor_event_id, first.number) == ("e1", 1)
    assert (second.anchor_event_id, second.number) == ("e1", 2)
    assert again == second
    assert (later.anchor_event_id, later.number) == ("e3", 1)

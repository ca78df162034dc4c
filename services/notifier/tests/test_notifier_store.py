"""The delivery records, threads and floods, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ferry_notifier.adapters.claims import DELIVERY, ClaimKey, Held, Taken
from ferry_notifier.adapters.store import DeliveryRecord, Store, Thread
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
    assert await store.start_thread("release:r", "slack:#x", Thread("C1", "1.1", 3)) is None
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


async def test_a_delivery_claim_is_held_then_taken_over_when_its_lease_runs_out(
    store: Store,
) -> None:
    first = await store.claim_delivery("e1", "slack:#x", "a", 0.3, retry_failed=False)
    assert isinstance(first, Taken)
    assert first.taken_over_from == ""
    held = await store.claim_delivery("e1", "slack:#x", "b", 0.3, retry_failed=False)
    assert isinstance(held, Held)
    assert held.owner == "a"
    # The holder asks again (a redelivery to the same replica): still its own.
    assert isinstance(
        await store.claim_delivery("e1", "slack:#x", "a", 0.3, retry_failed=False), Taken
    )
    await asyncio.sleep(0.35)
    taken = await store.claim_delivery("e1", "slack:#x", "b", 30, retry_failed=False)
    assert isinstance(taken, Taken)
    assert taken.taken_over_from == "a"
    key = ClaimKey(DELIVERY, "e1", "slack:#x")
    assert not await store.renew_claim(key, "a", 30)  # "a" lost it
    assert await store.renew_claim(key, "b", 30)
    await store.record_delivery("e1", "slack:#x", "sent", slack_ts="1.1", owner="b")
    # Recorded and let go of in one step: the next claim finds the record.
    settled = await store.claim_delivery("e1", "slack:#x", "a", 30, retry_failed=False)
    assert settled == DeliveryRecord("sent", slack_ts="1.1")
    assert await store.delivery_or_holder("e1", "slack:#x") == settled


async def test_a_released_claim_is_free_at_once_and_a_failed_one_is_retried_on_replay(
    store: Store,
) -> None:
    key = ClaimKey(DELIVERY, "e2", "webhook:x")
    assert isinstance(
        await store.claim_delivery("e2", "webhook:x", "a", 60, retry_failed=False), Taken
    )
    assert isinstance(await store.delivery_or_holder("e2", "webhook:x"), Held)
    await store.release_claim(key, "b")  # not b's: nothing happens
    assert isinstance(
        await store.claim_delivery("e2", "webhook:x", "b", 60, retry_failed=False), Held
    )
    await store.release_claim(key, "a")
    assert await store.delivery_or_holder("e2", "webhook:x") is None
    assert isinstance(
        await store.claim_delivery("e2", "webhook:x", "b", 60, retry_failed=False), Taken
    )
    await store.record_delivery("e2", "webhook:x", "failed", detail="HTTP 503", owner="b")
    again = await store.claim_delivery("e2", "webhook:x", "a", 60, retry_failed=False)
    assert isinstance(again, DeliveryRecord)
    assert again.status == "failed"
    replay = await store.claim_delivery("e2", "webhook:x", "a", 60, retry_failed=True)
    assert isinstance(replay, Taken)


async def test_one_replica_starts_a_thread_and_the_other_gets_it(store: Store) -> None:
    assert isinstance(await store.claim_thread("release:r", "slack:#x", "a", 60), Taken)
    held = await store.claim_thread("release:r", "slack:#x", "b", 60)
    assert isinstance(held, Held)
    assert held.owner == "a"
    assert (
        await store.start_thread("release:r", "slack:#x", Thread("C1", "1.1", 1), owner="a") is None
    )
    assert await store.claim_thread("release:r", "slack:#x", "b", 60) == Thread("C1", "1.1", 1)
    # The claim went with the save: nothing is left held.
    assert await store.claim_thread("release:r", "slack:#x", "a", 60) == Thread("C1", "1.1", 1)
    assert await store.raise_rank("release:r", "slack:#x", 1)  # the same stage: still newest
    assert not await store.raise_rank("release:r", "slack:#x", 0)


async def test_of_two_first_messages_saved_at_once_exactly_one_is_the_thread(
    store: Store,
) -> None:
    # As when a lease ran out mid-post: both replicas posted, both save at the same moment.
    mine, theirs = Thread("C1", "1.1", 1), Thread("C1", "1.2", 2)
    saved = await asyncio.gather(
        store.start_thread("release:r", "slack:#x", mine),
        store.start_thread("release:r", "slack:#x", theirs),
    )
    winner = await store.thread("release:r", "slack:#x")
    assert winner in (mine, theirs)
    assert sorted(saved, key=lambda t: t is None) == [winner, None]  # the loser is told which
    # Saving again never moves the thread to another message.
    other = Thread("C1", "1.3", 9)
    assert await store.start_thread("release:r", "slack:#x", other, owner="a") == winner
    assert await store.thread("release:r", "slack:#x") == winner
    assert await store.channel_of("slack:#x") == "C1"
    assert await store.channel_of("slack:#y") == ""


async def test_a_live_siblings_claim_is_not_taken_over_when_its_lease_runs_out(
    store: Store,
) -> None:
    # Two deliveries of one process: the holder is alive (its database was slow).
    assert isinstance(
        await store.claim_delivery("e3", "x", "r/p1/a", 0.1, retry_failed=False, siblings="r/p1/"),
        Taken,
    )
    await asyncio.sleep(0.15)
    sibling = await store.claim_delivery(
        "e3", "x", "r/p1/b", 0.1, retry_failed=False, siblings="r/p1/"
    )
    assert isinstance(sibling, Held)
    # Another process takes it over once the lease ran out: the holder's replica died.
    other = await store.claim_delivery(
        "e3", "x", "r/p2/c", 30, retry_failed=False, siblings="r/p2/"
    )
    assert isinstance(other, Taken)
    assert other.taken_over_from == "r/p1/a"

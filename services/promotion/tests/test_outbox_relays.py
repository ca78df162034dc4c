"""Several outbox relays on one outbox (PostgreSQL, the real broker): every row published once, in
order per (service, environment); a relay that dies leaves its rows to another after the lease, and
one that stops cleanly hands them back at once."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import aio_pika
import pytest

from ferry_events import CloudEvent, encode
from ferry_promotion.adapters.db import Store
from ferry_promotion.adapters.outbox import OutboxRelay
from ferry_promotion.adapters.unit_of_work import SqlAlchemyUnitOfWork
from ferry_testing import BrokerNamespace, EventTap

pytestmark = pytest.mark.amqp

KEYS = [("payments", "dev"), ("payments", "prod"), ("ledger", "dev")]


def event(n: int, service: str | None, environment: str | None) -> CloudEvent:
    data = {"n": n}
    if service and environment:
        data |= {"service": service, "environment": environment}
    return CloudEvent.model_validate(
        {
            "id": f"outbox-test-{n}",
            "source": "ferry/test",
            "type": "ferry.test.outbox.v1",
            "time": "2026-01-01T00:00:00Z",
            "correlationid": f"c-{n}",
            "data": data,
        }
    )


async def queue(store: Store, events: list[CloudEvent]) -> None:
    async with SqlAlchemyUnitOfWork(store) as uow:
        for e in events:
            await uow.outbox.put(e)
        await uow.commit()


@contextlib.asynccontextmanager
async def publisher(ns: BrokerNamespace) -> AsyncIterator[Callable[[CloudEvent], Awaitable[None]]]:
    """A relay's publish: persistent, with confirms, on the test's exchange."""
    connection = await aio_pika.connect(ns.amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        exchange = await channel.declare_exchange(
            ns.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )

        async def publish(e: CloudEvent) -> None:
            await exchange.publish(
                aio_pika.Message(encode(e), delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=e.type,
            )

        yield publish


def heard(tap: EventTap) -> list[CloudEvent]:
    return tap.of_type("ferry.test.outbox.v1")


async def wait_heard(tap: EventTap, count: int, timeout: float = 30) -> list[CloudEvent]:
    return await tap.wait_for("ferry.test.outbox.v1", count=count, timeout=timeout)


@pytest.fixture
async def stores(postgres_url: str) -> AsyncIterator[tuple[Store, Store]]:
    """Two promotion replicas' engines on one database."""
    first, second = Store(postgres_url), Store(postgres_url)
    await asyncio.gather(first.create_schema(), second.create_schema())
    yield first, second
    await first.close()
    await second.close()


async def test_two_relays_publish_every_row_once_in_order_per_key(broker_ns, event_tap, stores):
    first, second = stores
    events = [event(n, *KEYS[n % 3]) if n % 7 else event(n, None, None) for n in range(150)]
    async with publisher(broker_ns) as pub_a, publisher(broker_ns) as pub_b:
        by: dict[str, str] = {}

        def recording(name: str, pub: Callable[[CloudEvent], Awaitable[None]]):
            async def publish(e: CloudEvent) -> None:
                by[e.id] = name
                await asyncio.sleep(e.data["n"] * 7 % 5 * 0.004)  # uneven: relays overtake
                await pub(e)

            return publish

        relays = [
            OutboxRelay(first, recording("a", pub_a), interval=0.05, batch=7, name="a"),
            OutboxRelay(second, recording("b", pub_b), interval=0.05, batch=7, name="b"),
        ]
        for relay in relays:
            relay.start()
        try:
            # queued in small transactions while both relays run, half through each replica
            for start in range(0, len(events), 10):
                await queue((first, second)[start // 10 % 2], events[start : start + 10])
            got = await wait_heard(event_tap, len(events))
            await asyncio.sleep(0.5)  # anything published twice would arrive by now
        finally:
            for relay in relays:
                await relay.stop()
    got = heard(event_tap)
    ids = [e.id for e in got]
    assert sorted(ids) == sorted(e.id for e in events)  # each once
    assert len(ids) == len(set(ids))
    for service, environment in KEYS:
        numbers = [
            e.data["n"]
            for e in got
            if (e.data.get("service"), e.data.get("environment")) == (service, environment)
        ]
        assert numbers == sorted(numbers), (service, environment)
    assert set(by.values()) == {"a", "b"}  # both relays did part of the work
    assert await relays[0].pending() == 0


async def test_a_dead_relays_rows_wait_for_its_lease_then_another_relays_them_in_order(
    broker_ns, event_tap, stores
):
    first, second = stores
    events = [event(n, "payments", "dev") for n in range(6)]
    await queue(first, events)
    stuck = asyncio.Event()
    async with publisher(broker_ns) as pub:

        async def dies_mid_publish(e: CloudEvent) -> None:
            if e.data["n"] == 2:
                await stuck.wait()  # the process freezes here, then is killed
            await pub(e)

        dying = OutboxRelay(first, dies_mid_publish, lease=1.5, batch=3, name="dying")
        task = asyncio.create_task(dying.relay_once())
        await wait_heard(event_tap, 2)
        task.cancel()  # killed: nothing marked sent, nothing handed back
        with contextlib.suppress(asyncio.CancelledError):
            await task

        survivor = OutboxRelay(second, pub, lease=1.5, name="survivor")
        # rows 0-2 are the dead relay's until the lease ends, and 3-5 must not overtake them
        assert await survivor.relay_once() == 0
        await asyncio.sleep(1.6)
        assert await survivor.relay_once() == 6
        got = await wait_heard(event_tap, 8)
    numbers = [e.data["n"] for e in got]
    assert numbers == [0, 1, 0, 1, 2, 3, 4, 5]  # the two it published are published again, in order
    assert await survivor.pending() == 0


@pytest.mark.parametrize("database_url", ["postgres", "sqlite"], indirect=True)
async def test_a_relay_that_stops_cleanly_hands_its_claims_back_at_once(
    broker_ns, event_tap, database_url
):
    url = database_url
    store = Store(url)
    await store.create_schema()
    try:
        await queue(store, [event(n, "payments", "dev") for n in range(3)])
        async with publisher(broker_ns) as pub:
            stopping = OutboxRelay(store, pub, lease=600, name="stopping")
            assert len(await stopping.claim()) == 3  # claimed, then asked to stop
            await stopping.stop()
            restarted = OutboxRelay(store, pub, lease=600, name="restarted")
            assert await restarted.relay_once() == 3  # not after ten minutes: now
            got = await wait_heard(event_tap, 3)
        assert [e.data["n"] for e in got] == [0, 1, 2]
    finally:
        await store.close()


async def test_a_failed_publish_holds_back_its_key_only(broker_ns, event_tap, stores):
    from ferry_runtime import PublishFailed

    store, _ = stores
    await queue(
        store,
        [event(0, "payments", "dev"), event(1, "payments", "dev"), event(2, "ledger", "dev")],
    )
    async with publisher(broker_ns) as pub:

        async def first_fails(e: CloudEvent) -> None:
            if e.data["n"] == 0:
                raise PublishFailed("nacked", code="nack")
            await pub(e)

        relay = OutboxRelay(store, first_fails, name="r")
        assert await relay.relay_once() == 1  # ledger's; payments/dev waits for its first row
        got = await wait_heard(event_tap, 1)
        assert [e.data["n"] for e in got] == [2]
        assert await relay.relay_once() == 0  # row 0 backs off, row 1 stays behind it
        assert await relay.pending() == 2

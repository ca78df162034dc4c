"""``ferry dlq list`` and ``ferry dlq replay`` against the real broker and a real consumer."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest

from ferry_events import Actor, Intent, ReleaseRequested
from ferry_runtime import (
    ATTEMPT_HEADER,
    CODE_HEADER,
    REASON_HEADER,
    Delivery,
    PermanentError,
    RuntimeSettings,
    ServiceRuntime,
    TemporaryError,
)
from ferry_testing import BrokerNamespace, running

pytestmark = pytest.mark.amqp


def _request(n: int) -> ReleaseRequested:
    return ReleaseRequested(
        release_id=f"r-{n}",
        service="payments",
        environment="dev",
        intent=Intent.RELEASE,
        artifact_id="master-0017d995e3-67e9d69164",
        actor=Actor(subject="jane"),
        requested_at=datetime.now(UTC),
    )


async def dead_letter_count(ns: BrokerNamespace, service: str) -> int:
    return await ns.dead_letter_count(service)


async def wait_dead_letters(ns: BrokerNamespace, service: str, count: int) -> None:
    await ns.wait_dead_letters(service, count)


async def test_list_shows_why_and_replay_gives_each_a_fresh_start(
    broker_ns: BrokerNamespace, run_ferry
) -> None:
    runtime = ServiceRuntime("promotion", RuntimeSettings(**broker_ns.settings()))
    broken = True
    handled: dict[str, Delivery] = {}
    both_handled = asyncio.Event()

    async def handle(delivery: Delivery) -> None:
        assert isinstance(delivery.data, ReleaseRequested)
        if broken:
            if delivery.data.release_id == "r-1":
                raise PermanentError("artifact x does not exist", code="unknown-artifact")
            raise TemporaryError("config repo remote is down", code="remote-down")
        handled[delivery.data.release_id] = delivery
        if len(handled) == 2:
            both_handled.set()

    runtime.subscribe(ReleaseRequested, handle)
    broker = ["--amqp-url", broker_ns.amqp_url, "--queue-prefix", broker_ns.queue_prefix]
    async with running(runtime):
        permanent = await broker_ns.publish(_request(1))
        exhausted = await broker_ns.publish(_request(2))
        await wait_dead_letters(broker_ns, "promotion", 2)

        code, out, err = await run_ferry("dlq", "list", "promotion", *broker, "-o", "json")
        assert code == 0, err
        listing = json.loads(out)
        assert listing["queue"] == f"{broker_ns.queue_prefix}.promotion.dlq"
        assert listing["total"] == 2
        by_id = {m["eventId"]: m for m in listing["messages"]}
        first, second = by_id[permanent.id], by_id[exhausted.id]
        assert first["code"] == "unknown-artifact"
        assert first["reason"] == "artifact x does not exist"
        assert first["attempts"] == 1
        assert first["routingKey"] == "ferry.release.requested.v1"
        assert second["code"] == "retries-exhausted"
        assert "config repo remote is down" in second["reason"]
        assert second["attempts"] == 4
        # it came back from a delay queue, yet replay still knows its event type
        assert second["routingKey"] == "ferry.release.requested.v1"
        assert second["subject"] == "payments"

        code, table, err = await run_ferry("dlq", "list", "promotion", *broker)
        assert code == 0, err
        assert "unknown-artifact" in table
        assert "artifact x does not exist" in table
        assert "retries-exhausted" in table
        # listing takes nothing away
        assert await dead_letter_count(broker_ns, "promotion") == 2

        broken = False
        code, out, err = await run_ferry(
            "dlq", "replay", "promotion", *broker, "--exchange", broker_ns.exchange, "-o", "json"
        )
        assert code == 0, err
        replay = json.loads(out)
        assert {m["eventId"] for m in replay["replayed"]} == {permanent.id, exhausted.id}
        assert replay["remaining"] == 0
        await asyncio.wait_for(both_handled.wait(), 15)

    for release_id, sent in (("r-1", permanent), ("r-2", exhausted)):
        delivery = handled[release_id]
        headers = delivery.headers
        assert delivery.event.id == sent.id
        assert delivery.attempt == 1
        assert delivery.routing_key == "ferry.release.requested.v1"
        assert REASON_HEADER not in headers
        assert CODE_HEADER not in headers
        assert ATTEMPT_HEADER not in headers
        assert headers["x-ferry-replayed-from"] == f"{broker_ns.queue_prefix}.promotion.dlq"
    assert await dead_letter_count(broker_ns, "promotion") == 0


async def test_unknown_dead_letter_queue_is_named(broker_ns: BrokerNamespace, run_ferry) -> None:
    code, _, err = await run_ferry(
        "dlq",
        "list",
        "no-such-service",
        "--amqp-url",
        broker_ns.amqp_url,
        "--queue-prefix",
        broker_ns.queue_prefix,
    )
    assert code == 1
    assert f"no dead-letter queue '{broker_ns.queue_prefix}.no-such-service.dlq'" in err


async def test_list_names_the_event_type_of_a_body_that_is_not_json(
    broker_ns: BrokerNamespace, run_ferry
) -> None:
    runtime = ServiceRuntime("promotion", RuntimeSettings(**broker_ns.settings()))

    async def handle(delivery: Delivery) -> None:
        raise AssertionError("a body that is not JSON never reaches the handler")

    runtime.subscribe(ReleaseRequested, handle)
    broker = ["--amqp-url", broker_ns.amqp_url, "--queue-prefix", broker_ns.queue_prefix]
    async with running(runtime):
        await broker_ns.publish_raw(b"not json at all", routing_key="ferry.release.requested.v1")
        await wait_dead_letters(broker_ns, "promotion", 1)
        code, out, err = await run_ferry("dlq", "list", "promotion", *broker, "-o", "json")
        assert code == 0, err
        [letter] = json.loads(out)["messages"]
        assert letter["eventType"] == "ferry.release.requested.v1"
        code, table, err = await run_ferry("dlq", "list", "promotion", *broker)
        assert code == 0, err
        assert "ferry.release.requested.v1" in table


async def test_a_replay_that_fails_again_is_replayed_once_and_keeps_its_origin(
    broker_ns: BrokerNamespace, run_ferry
) -> None:
    runtime = ServiceRuntime("promotion", RuntimeSettings(**broker_ns.settings()))
    seen = 0

    async def handle(_: Delivery) -> None:
        nonlocal seen
        seen += 1
        raise PermanentError("still broken", code="still-broken")

    runtime.subscribe(ReleaseRequested, handle)
    broker = ["--amqp-url", broker_ns.amqp_url, "--queue-prefix", broker_ns.queue_prefix]
    async with running(runtime):
        for n in (1, 2):
            await broker_ns.publish(_request(n))
        await wait_dead_letters(broker_ns, "promotion", 2)

        code, out, err = await run_ferry(
            "dlq", "replay", "promotion", *broker, "--direct", "-o", "json"
        )
        assert code == 0, err
        # each message once, although each fails again and returns while the replay runs
        assert len(json.loads(out)["replayed"]) == 2
        await wait_dead_letters(broker_ns, "promotion", 2)

        code, out, err = await run_ferry("dlq", "list", "promotion", *broker, "-o", "json")
        assert code == 0, err
        messages = json.loads(out)["messages"]
    assert seen == 4
    # replayed straight to the service's queue, they still name the event they are
    assert [m["routingKey"] for m in messages] == ["ferry.release.requested.v1"] * 2

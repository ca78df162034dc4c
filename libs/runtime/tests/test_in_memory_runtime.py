"""The in-memory runtime of ferry_testing settles a handler's outcome as the consumer does:
typed deliveries, topic routing, retries with the attempt count, dead letters with reasons.

No broker: each of these runs in milliseconds. ``test_runtime.py`` holds the same rules
against the real broker.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from ferry_events import Actor, CloudEvent, Intent, ReleaseRejected, ReleaseRequested, encode
from ferry_events.deadletter import (
    ATTEMPTS_HEADER,
    CODE_HEADER,
    ORIGINAL_ROUTING_KEY_HEADER,
    REASON_HEADER,
    SERVICE_HEADER,
)
from ferry_runtime import (
    Delivery,
    PermanentError,
    PublishFailed,
    RuntimeSettings,
    ServiceRuntime,
    TemporaryError,
)
from ferry_testing import in_memory
from ferry_testing.inmemory import topic_matches


def _request(n: int = 1) -> ReleaseRequested:
    return ReleaseRequested(
        release_id=f"r-{n}",
        service="payments",
        environment="dev",
        intent=Intent.RELEASE,
        artifact_id="a-1",
        actor=Actor(subject="jane"),
        requested_at=datetime.now(UTC),
    )


def _runtime(service: str = "promotion", **settings: object) -> ServiceRuntime:
    return ServiceRuntime(service, RuntimeSettings(**settings))  # type: ignore[arg-type]


async def test_a_typed_handler_publishes_its_result_to_whoever_is_bound() -> None:
    promotion, insights = _runtime(), _runtime("insights")
    seen: list[str] = []

    async def decide(delivery: Delivery[ReleaseRequested]) -> None:
        data = delivery.data  # a ReleaseRequested: no isinstance needed
        rejected = ReleaseRejected(
            release_id=data.release_id,
            service=data.service,
            environment=data.environment,
            intent=data.intent,
            actor=data.actor,
            violations=[],
        )
        await promotion.publisher.publish(
            CloudEvent.new(rejected, source="ferry/promotion", cause=delivery.event)
        )

    async def project(delivery: Delivery[ReleaseRejected]) -> None:
        seen.append(delivery.data.release_id)

    promotion.subscribe(ReleaseRequested, decide)
    insights.subscribe(ReleaseRejected, project)
    async with in_memory(promotion, insights) as broker:
        sent = CloudEvent.new(_request(), source="test")
        await broker.publish(sent, headers={"x-trace": "abc"}, user_id="ci")
        [result] = broker.events("ferry.release.rejected.v1")
    assert result.causationid == sent.id
    assert result.correlationid == sent.correlationid
    assert seen == ["r-1"]


async def test_headers_are_read_only_and_untrusted_ones_are_dropped_on_arrival() -> None:
    runtime = _runtime()
    got: list[Delivery[ReleaseRequested]] = []

    async def handle(delivery: Delivery[ReleaseRequested]) -> None:
        got.append(delivery)

    runtime.subscribe(ReleaseRequested, handle)
    async with in_memory(runtime) as broker:
        await broker.publish(
            CloudEvent.new(_request(), source="test"),
            headers={"x-trace": "abc", "x-ferry-attempt": 7, REASON_HEADER: "forged"},
            user_id="ci",
        )
    [delivery] = got
    assert delivery.attempt == 1  # a publisher cannot choose its attempt count
    assert delivery.headers["x-trace"] == "abc"
    assert REASON_HEADER not in delivery.headers
    assert delivery.headers[ORIGINAL_ROUTING_KEY_HEADER] == "ferry.release.requested.v1"
    assert delivery.user_id == "ci"
    assert delivery.routing_key == "ferry.release.requested.v1"
    with pytest.raises(TypeError):
        delivery.headers["x-trace"] = "changed"  # type: ignore[index]


async def test_a_temporary_error_is_retried_then_dead_lettered_as_retries_exhausted() -> None:
    runtime = _runtime(max_attempts=3, retry_delays=(1.0, 5.0))
    attempts: list[int] = []

    async def handle(delivery: Delivery[ReleaseRequested]) -> None:
        attempts.append(delivery.attempt)
        raise TemporaryError("the database is down", code="store", retry_after=3)

    runtime.subscribe(ReleaseRequested, handle)
    async with in_memory(runtime) as broker:
        sent = CloudEvent.new(_request(), source="test")
        await broker.publish(sent)
        [dead] = broker.dead_letters("promotion")
    assert attempts == [1, 2, 3]
    # retry_after 3 s: the first delay queue at least that long
    assert [(r.attempt, r.delay) for r in broker.retried] == [(1, 5.0), (2, 5.0)]
    assert dead.code == "retries-exhausted"
    assert "failed 3 times; last error (store): the database is down" in dead.reason
    assert dead.headers[ATTEMPTS_HEADER] == 3
    assert dead.headers[SERVICE_HEADER] == "promotion"
    assert json.loads(dead.body)["id"] == sent.id


async def test_a_permanent_error_is_dead_lettered_at_once_with_its_code() -> None:
    runtime = _runtime()
    calls = 0

    async def handle(_: Delivery[ReleaseRequested]) -> None:
        nonlocal calls
        calls += 1
        raise PermanentError("no such service", code="unknown-service")

    runtime.subscribe(ReleaseRequested, handle)
    async with in_memory(runtime) as broker:
        await broker.publish(CloudEvent.new(_request(), source="test"))
        [dead] = broker.dead_letters("promotion")
    assert calls == 1
    assert not broker.retried
    assert (dead.code, dead.reason) == ("unknown-service", "no such service")
    assert dead.headers[CODE_HEADER] == "unknown-service"


async def test_unreadable_and_mistyped_events_are_dead_lettered_with_their_codes() -> None:
    runtime = _runtime()
    handled: list[str] = []

    async def handle(delivery: Delivery[ReleaseRequested]) -> None:
        handled.append(delivery.event.id)

    runtime.subscribe(ReleaseRequested, handle)
    rejected = CloudEvent.new(
        ReleaseRejected(
            release_id="r-1",
            service="payments",
            environment="dev",
            intent=Intent.RELEASE,
            actor=Actor(subject="jane"),
            violations=[],
        ),
        source="test",
    )
    async with in_memory(runtime) as broker:
        await broker.publish_raw(b"{not json", "ferry.release.requested.v1")
        await broker.publish_raw(encode(rejected), "ferry.release.requested.v1")
        unreadable, mistyped = broker.dead_letters("promotion")
    assert not handled
    assert unreadable.code != ""
    assert mistyped.code == "type-mismatch"
    assert "travels under its own type" in mistyped.reason


async def test_a_publish_nobody_is_bound_to_is_refused() -> None:
    runtime = _runtime()
    async with in_memory(runtime) as broker:
        with pytest.raises(PublishFailed, match="no queue is bound") as refused:
            await broker.publish(CloudEvent.new(_request(), source="test"))
    assert refused.value.code == "unroutable"


async def test_batches_get_whatever_is_waiting_in_order() -> None:
    runtime = _runtime("git-writer")
    sizes: list[int] = []
    seen: list[str] = []

    async def handle(deliveries: object) -> list[BaseException | None]:
        batch = list(deliveries)  # type: ignore[call-overload]
        sizes.append(len(batch))
        seen.extend(d.event.id for d in batch)
        return [None if n % 2 == 0 else PermanentError("odd one out") for n in range(len(batch))]

    runtime.subscribe_batches([ReleaseRequested], handle, max_batch=4)
    async with in_memory(runtime) as broker:
        sent = [CloudEvent.new(_request(n), source="test") for n in range(6)]
        for event in sent:
            broker.route(event)
        await broker.drain()
        dead = broker.dead_letters("git-writer")
    assert sizes == [4, 2]
    assert seen == [e.id for e in sent]
    assert [json.loads(d.body)["id"] for d in dead] == [sent[1].id, sent[3].id, sent[5].id]


def test_topic_bindings_match_as_a_topic_exchange_does() -> None:
    assert topic_matches("ferry.release.requested.v1", "ferry.release.requested.v1")
    assert not topic_matches("ferry.release.requested.v1", "ferry.release.rejected.v1")
    assert topic_matches("ferry.release.*.v1", "ferry.release.rejected.v1")
    assert not topic_matches("ferry.*.v1", "ferry.release.rejected.v1")
    assert topic_matches("ferry.#", "ferry.release.rejected.v1")
    assert topic_matches("#", "anything.at.all")
    assert topic_matches("ferry.#.v1", "ferry.v1")

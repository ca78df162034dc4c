"""Hostile messages through RabbitMQ to every consumer's real queue, then a valid event.

A sample of what the fuzzer generates (``tests/test_consumers_fuzz.py``) is published with
aio-pika as a publisher with broker access could: odd bodies, and headers of every AMQP type,
a long string that is not UTF-8 among them. Each hostile message must reach the service's
dead-letter queue with a code and a reason, and the valid event published after them must be
handled: the queue is not blocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import decimal
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from ferry_events import (
    Actor,
    ArtifactPublished,
    CloudEvent,
    EventData,
    HaltChangeRequested,
    Intent,
    ReleaseRejected,
    ReleaseRequested,
    encode,
)
from ferry_events.contract import ARTIFACT_INGEST, GIT_WRITER, INSIGHTS, NOTIFIER, PROMOTION
from ferry_events.deadletter import CODE_HEADER, REASON_HEADER
from ferry_gitwriter.bootstrap import build as build_git_writer
from ferry_gitwriter.settings import GitWriterSettings
from ferry_ingest.bootstrap import build as build_ingest
from ferry_ingest.settings import IngestSettings
from ferry_insights.bootstrap import build as build_insights
from ferry_insights.settings import InsightsSettings
from ferry_notifier.bootstrap import build as build_notifier
from ferry_notifier.settings import NotifierSettings
from ferry_promotion.bootstrap import build as build_promotion
from ferry_promotion.settings import PromotionSettings
from ferry_runtime import ServiceQueues, ServiceRuntime
from ferry_testing import BrokerNamespace, EventTap, running
from ferry_testing.fuzz import RawLongString, deep_json, raw_long_strings

pytestmark = pytest.mark.amqp

NOW = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
JANE = Actor(subject="jane", email="jane@example.com")

#: Headers of every AMQP field type, a long string that is not UTF-8 among them.
ODD_HEADERS: dict[str, Any] = {
    "x-not-utf8": RawLongString(b"\xff\xfe\xc3("),
    "x-bytes": bytearray(b"\x00\x01\xff"),
    "x-int": -(2**62),
    "x-float": 1e300,
    "x-bool": True,
    "x-decimal": decimal.Decimal("12.345"),
    "x-timestamp": dt.datetime(2026, 1, 1, 12, 0),
    "x-void": None,
    "x-list": [1, "two", RawLongString(b"\xc0"), [None, 2.5]],
    "x-table": {"nested": {"deeper": RawLongString(b"\xed\xa0\x80")}, "n": 1},
    "x-ferry-attempt": "a lot",
    "x-ferry-original-routing-key": "ferry.release.approved.v1",
}


#: A content type (and a message id, below) that go out as bytes that are not UTF-8.
NOT_UTF8_PROPERTY = "content-type-not-utf8"
RAW_PROPERTIES = {NOT_UTF8_PROPERTY: b"text/\xff\xfe", "message-id-not-utf8": b"\xc3(\xff"}


def _envelope(type_name: str, **extra: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": "hostile-1",
        "source": "ferry/fuzz",
        "type": type_name,
        "time": NOW.isoformat(),
        "data": {},
        **extra,
    }


def hostile(key: str) -> list[tuple[bytes, dict[str, Any], str | None, str]]:
    """(body, headers, content type, the dead letter's code) for messages on ``key``."""
    structured = "application/cloudevents+json"
    deep = b'{"specversion": "1.0", "data": ' + deep_json(20_000).encode() + b"}"
    return [
        (b"\xff\xfe not utf-8 \xc3(", ODD_HEADERS, structured, "malformed-event"),
        (deep, ODD_HEADERS, structured, "malformed-event"),
        (json.dumps(_envelope(key, specversion="0.3")).encode(), {}, None, "malformed-event"),
        (
            json.dumps(_envelope(key, correlationid="c" * 300)).encode(),
            ODD_HEADERS,
            structured,
            "malformed-event",
        ),
        (
            json.dumps(_envelope(key, data={"reason": "\ud800"})).encode(),
            {},
            structured,
            "malformed-event",
        ),
        (
            json.dumps(_envelope(key.rsplit(".v", 1)[0] + ".v7")).encode(),
            ODD_HEADERS,
            structured,
            "unknown-event-version",
        ),
        (
            b"{}",
            {
                **ODD_HEADERS,
                "ce-specversion": "1.0",
                "ce-id": bytearray(b"\xff"),
                "ce-type": key,
                "ce-time": 12,
                "ce-source": ["a", "b"],
            },
            "application/json",
            "malformed-event",
        ),
        (b" " * (1024 * 1024 + 1), ODD_HEADERS, structured, "payload-too-large"),
        # properties that are not UTF-8: the client library read them strictly and closed the
        # connection, so the message came back again and again, and nothing behind it moved
        (b"not json", {}, NOT_UTF8_PROPERTY, "malformed-event"),
    ]


def valid(party: str) -> EventData:
    """An event ``party`` consumes and handles (a rejection with reasons counts)."""
    if party == ARTIFACT_INGEST:
        return ArtifactPublished(artifact={"service": "payments"}, manifests={})
    if party == GIT_WRITER:
        return HaltChangeRequested(
            request_id="halt-1", environment="dev", halted=True, actor=JANE, requested_at=NOW
        )
    if party == NOTIFIER:
        return ReleaseRejected(
            release_id="r-1",
            service="payments",
            environment="dev",
            intent=Intent.RELEASE,
            actor=JANE,
            violations=[],
        )
    return ReleaseRequested(
        release_id="r-1",
        service="payments",
        environment="dev",
        intent=Intent.RELEASE,
        artifact_id="a-1",
        actor=JANE,
        requested_at=NOW,
    )


@contextlib.asynccontextmanager
async def started(
    party: str, ns: BrokerNamespace, remote: Path, data: Path
) -> AsyncIterator[ServiceRuntime]:
    base = ns.settings()
    data.mkdir(parents=True)
    if party == ARTIFACT_INGEST:
        runtime = build_ingest(IngestSettings(**base))
    elif party == GIT_WRITER:
        runtime = build_git_writer(
            GitWriterSettings(**base, data_dir=data, config_repo_url=str(remote))
        )
    elif party == PROMOTION:
        tokens = data / "tokens.yaml"
        tokens.write_text("tokens: []\n", encoding="utf-8")
        service = await build_promotion(
            PromotionSettings(
                **base, data_dir=data, config_repo_url=str(remote), api_tokens_file=tokens
            )
        )
        runtime = service.runtime
    elif party == INSIGHTS:
        insights = await build_insights(
            InsightsSettings(**base, data_dir=data, database_url=f"sqlite+aiosqlite:///{data}.db")
        )
        runtime = insights.runtime
    else:
        assert party == NOTIFIER
        runtime = build_notifier(
            NotifierSettings(**base, database_url=f"sqlite+aiosqlite:///{data / 'notifier.db'}")
        )
    async with running(runtime):
        yield runtime


async def _publish(
    ns: BrokerNamespace, messages: list[tuple[bytes, dict[str, Any], str | None]], key: str
) -> None:
    connection = await aio_pika.connect(ns.amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.declare_exchange(
            ns.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        with raw_long_strings(RAW_PROPERTIES):
            for body, headers, content_type in messages:
                await exchange.publish(
                    aio_pika.Message(
                        body,
                        headers=headers,
                        content_type=content_type,
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        message_id="message-id-not-utf8"
                        if content_type == NOT_UTF8_PROPERTY
                        else None,
                    ),
                    routing_key=key,
                )


async def _ready(ns: BrokerNamespace, queue: str) -> int:
    connection = await aio_pika.connect(ns.amqp_url)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return declared.declaration_result.message_count or 0


#: What each service publishes when it has handled the valid event (None: nothing; its
#: effect is in its own database, and the queues are checked empty instead).
EFFECTS = {
    ARTIFACT_INGEST: "ferry.artifact.rejected.v1",
    GIT_WRITER: "ferry.halt.changed.v1",
    PROMOTION: "ferry.release.rejected.v1",
    NOTIFIER: None,
    INSIGHTS: None,
}


@pytest.mark.parametrize("party", list(EFFECTS))
async def test_hostile_messages_are_dead_lettered_with_reasons_and_the_queue_moves_on(
    party: str, broker_ns: BrokerNamespace, event_tap: EventTap, bare_remote: Path, tmp_path: Path
) -> None:
    event = CloudEvent.new(valid(party), source="ferry/test")
    key = event.type
    sample = hostile(key)
    queues = ServiceQueues(party, broker_ns.queue_prefix, (), (0.2, 0.5, 1.0))
    async with started(party, broker_ns, bare_remote, tmp_path / party) as runtime:
        assert key in runtime.queues().routing_keys
        await _publish(broker_ns, [(b, h, c) for b, h, c, _ in sample], key)
        await _publish(broker_ns, [(encode(event), {}, "application/cloudevents+json")], key)
        letters = await broker_ns.dead_letters(party, count=len(sample), timeout=30)
        effect = EFFECTS[party]
        if effect is not None:
            heard = await event_tap.wait_one(effect, lambda e: e.causationid == event.id)
            assert heard.correlationid == event.correlationid
        # longer than every retry delay together: a retried valid event would be back by now
        await asyncio.sleep(2.0)
        more = await broker_ns.dead_letters(party, count=1, timeout=0.2)
    codes = [str((m.headers or {}).get(CODE_HEADER)) for m in letters]
    assert sorted(codes) == sorted(code for *_, code in sample), [
        (m.headers or {}).get(REASON_HEADER) for m in letters
    ]
    assert all((m.headers or {}).get(REASON_HEADER) for m in letters)
    # the valid event was neither dead-lettered nor retried, and nothing is left: it was acked
    assert more == [], [(m.headers or {}).get(REASON_HEADER) for m in more]
    for name in (queues.main, *(queues.retry(n) for n in range(3))):
        assert await _ready(broker_ns, name) == 0, name

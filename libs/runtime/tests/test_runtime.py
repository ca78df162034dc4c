"""The runtime kit against the real broker: acks after the effect, retries, dead letters."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

import httpx
import pytest

from ferry_events import (
    Actor,
    CloudEvent,
    Intent,
    ReleaseRejected,
    ReleaseRequested,
    encode,
)
from ferry_runtime import (
    CODE_HEADER,
    REASON_HEADER,
    Delivery,
    PermanentError,
    PublishFailed,
    RuntimeSettings,
    ServiceRuntime,
    TemporaryError,
    mask_url,
)
from ferry_testing import BrokerNamespace, EventTap, running

pytestmark = pytest.mark.amqp


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


def _runtime(ns: BrokerNamespace, service: str = "promotion") -> ServiceRuntime:
    return ServiceRuntime(service, RuntimeSettings(**ns.settings()))


async def test_handled_message_is_acked_and_its_result_published(
    broker_ns: BrokerNamespace, event_tap: EventTap
) -> None:
    runtime = _runtime(broker_ns)

    async def handle(delivery: Delivery) -> None:
        assert isinstance(delivery.data, ReleaseRequested)
        rejected = ReleaseRejected(
            release_id=delivery.data.release_id,
            service="payments",
            environment="dev",
            intent=Intent.RELEASE,
            actor=delivery.data.actor,
            violations=[],
        )
        await runtime.publisher.publish(
            CloudEvent.new(rejected, source="ferry/promotion", cause=delivery.event)
        )

    runtime.subscribe(ReleaseRequested, handle)
    async with running(runtime):
        sent = await broker_ns.publish(_request())
        result = await event_tap.wait_one("ferry.release.rejected.v1")
    assert result.causationid == sent.id
    assert result.correlationid == sent.correlationid


async def test_temporary_error_is_retried_with_attempt_count(broker_ns: BrokerNamespace) -> None:
    runtime = _runtime(broker_ns)
    attempts: list[int] = []
    done = asyncio.Event()

    async def handle(delivery: Delivery) -> None:
        attempts.append(delivery.attempt)
        if delivery.attempt < 3:
            raise TemporaryError("remote down", code="remote-down")
        done.set()

    runtime.subscribe(ReleaseRequested, handle)
    async with running(runtime):
        await broker_ns.publish(_request())
        await asyncio.wait_for(done.wait(), 15)
    assert attempts == [1, 2, 3]
    assert await broker_ns.dead_letters("promotion", timeout=0.5) == []


async def test_permanent_error_is_dead_lettered_with_its_reason(broker_ns: BrokerNamespace) -> None:
    runtime = _runtime(broker_ns)
    calls = 0

    async def handle(_: Delivery) -> None:
        nonlocal calls
        calls += 1
        raise PermanentError("artifact x does not exist", code="unknown-artifact")

    runtime.subscribe(ReleaseRequested, handle)
    async with running(runtime):
        sent = await broker_ns.publish(_request())
        [dead] = await broker_ns.dead_letters("promotion")
    assert calls == 1
    headers = dead.headers or {}
    assert headers[CODE_HEADER] == "unknown-artifact"
    assert headers[REASON_HEADER] == "artifact x does not exist"
    assert headers["x-ferry-service"] == "promotion"
    assert json.loads(dead.body)["id"] == sent.id


async def test_exhausted_retries_are_dead_lettered(broker_ns: BrokerNamespace) -> None:
    runtime = _runtime(broker_ns)

    async def handle(_: Delivery) -> None:
        raise RuntimeError("bug")

    runtime.subscribe(ReleaseRequested, handle)
    async with running(runtime):
        await broker_ns.publish(_request())
        [dead] = await broker_ns.dead_letters("promotion", timeout=20)
    headers = dead.headers or {}
    assert headers[CODE_HEADER] == "retries-exhausted"
    assert "failed 4 times" in str(headers[REASON_HEADER])
    assert headers["x-ferry-attempts"] == 4
    # after three trips through the delay queues it still names where it was first published
    assert headers["x-ferry-original-exchange"] == broker_ns.exchange
    assert headers["x-ferry-original-routing-key"] == "ferry.release.requested.v1"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{oops", "malformed-event"),
        (b"x" * (2 * 1024 * 1024), "payload-too-large"),
    ],
)
async def test_unreadable_messages_are_dead_lettered_and_service_keeps_running(
    broker_ns: BrokerNamespace, body: bytes, code: str
) -> None:
    runtime = _runtime(broker_ns)
    handled = asyncio.Event()

    async def handle(_: Delivery) -> None:
        handled.set()

    runtime.subscribe(ReleaseRequested, handle)
    async with running(runtime):
        await broker_ns.publish_raw(body, routing_key="ferry.release.requested.v1")
        [dead] = await broker_ns.dead_letters("promotion")
        await broker_ns.publish(_request())
        await asyncio.wait_for(handled.wait(), 10)
    assert (dead.headers or {})[CODE_HEADER] == code


async def test_unknown_event_type_is_dead_lettered(broker_ns: BrokerNamespace) -> None:
    runtime = _runtime(broker_ns)

    async def handle(_: Delivery) -> None:
        return None

    runtime.subscribe(ReleaseRequested, handle)
    event = CloudEvent.new(_request(), source="t").model_copy(update={"type": "ferry.mystery.v1"})
    async with running(runtime):
        await broker_ns.publish_raw(encode(event), routing_key="ferry.release.requested.v1")
        [dead] = await broker_ns.dead_letters("promotion")
    assert (dead.headers or {})[CODE_HEADER] == "unknown-event-type"


async def test_an_event_under_another_types_key_is_dead_lettered_as_type_mismatch(
    broker_ns: BrokerNamespace,
) -> None:
    runtime = _runtime(broker_ns)
    handled: list[str] = []

    async def handle(delivery: Delivery) -> None:
        handled.append(delivery.event.type)

    runtime.subscribe(ReleaseRequested, handle)
    runtime.subscribe(ReleaseRejected, handle)
    rejected = ReleaseRejected(
        release_id="r-1",
        service="payments",
        environment="dev",
        intent=Intent.RELEASE,
        actor=Actor(subject="jane"),
        violations=[],
    )
    event = CloudEvent.new(rejected, source="t")
    async with running(runtime):
        await broker_ns.publish_raw(encode(event), routing_key="ferry.release.requested.v1")
        [dead] = await broker_ns.dead_letters("promotion")
    headers = dead.headers or {}
    assert headers[CODE_HEADER] == "type-mismatch"
    assert "ferry.release.rejected.v1" in str(headers[REASON_HEADER])
    assert "ferry.release.requested.v1" in str(headers[REASON_HEADER])
    assert handled == []


async def test_origin_attempt_and_failure_headers_from_a_publisher_are_not_trusted(
    broker_ns: BrokerNamespace,
) -> None:
    runtime = _runtime(broker_ns)
    attempts: list[int] = []

    async def handle(delivery: Delivery) -> None:
        attempts.append(delivery.attempt)
        raise PermanentError("no such artifact", code="unknown-artifact")

    runtime.subscribe(ReleaseRequested, handle)
    event = CloudEvent.new(_request(), source="t")
    forged = {
        "x-ferry-attempt": 7,
        "x-ferry-original-exchange": "elsewhere",
        "x-ferry-original-routing-key": "ferry.release.approved.v1",
        "x-ferry-last-error": "forged",
        "x-death": [{"queue": "elsewhere", "reason": "expired", "count": 1}],
        "x-trace": "kept",
    }
    async with running(runtime):
        await broker_ns.publish_raw(
            encode(event), routing_key="ferry.release.requested.v1", headers=forged
        )
        [dead] = await broker_ns.dead_letters("promotion")
    headers = dead.headers or {}
    assert attempts == [1]
    assert headers["x-ferry-attempts"] == 1
    assert headers["x-ferry-original-exchange"] == broker_ns.exchange
    assert headers["x-ferry-original-routing-key"] == "ferry.release.requested.v1"
    assert "x-ferry-last-error" not in headers
    assert "x-death" not in headers
    assert headers["x-trace"] == "kept"


async def test_batches_take_whatever_is_waiting(broker_ns: BrokerNamespace) -> None:
    runtime = _runtime(broker_ns, "git-writer")
    sizes: list[int] = []
    seen: list[str] = []

    async def handle(deliveries: Sequence[Delivery]) -> list[BaseException | None]:
        sizes.append(len(deliveries))
        seen.extend(d.event.id for d in deliveries)
        await asyncio.sleep(0.2)  # a slow push: the rest of the burst queues up meanwhile
        return [None] * len(deliveries)

    runtime.subscribe_batches([ReleaseRequested], handle, max_batch=50, single_active_consumer=True)
    async with running(runtime):
        sent = [await broker_ns.publish(_request(i)) for i in range(20)]
        for _ in range(100):
            if len(seen) == 20:
                break
            await asyncio.sleep(0.1)
    assert seen == [e.id for e in sent]  # order kept
    assert len(sizes) < 20  # batched, not one cycle each


async def test_unroutable_publish_raises(broker_ns: BrokerNamespace) -> None:
    runtime = _runtime(broker_ns)
    async with running(runtime):
        with pytest.raises(PublishFailed, match="no queue is bound"):
            await runtime.publisher.publish(CloudEvent.new(_request(), source="t"))


async def test_health_ready_and_metrics_endpoints(broker_ns: BrokerNamespace) -> None:
    runtime = _runtime(broker_ns)

    async def handle(_: Delivery) -> None:
        return None

    runtime.subscribe(ReleaseRequested, handle)
    async with running(runtime), httpx.AsyncClient() as client:
        base = f"http://127.0.0.1:{runtime.http_port}"
        assert (await client.get(f"{base}/healthz")).json()["status"] == "ok"
        ready = await client.get(f"{base}/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"] == {"broker": True}
        metrics = (await client.get(f"{base}/metrics")).text
        assert "ferry_broker_connected" in metrics


async def test_stop_lets_in_flight_work_finish_and_ack(broker_ns: BrokerNamespace) -> None:
    runtime = _runtime(broker_ns)
    finished = asyncio.Event()
    started = asyncio.Event()

    async def handle(_: Delivery) -> None:
        started.set()
        await asyncio.sleep(0.5)
        finished.set()

    runtime.subscribe(ReleaseRequested, handle)
    async with running(runtime):
        await broker_ns.publish(_request())
        await asyncio.wait_for(started.wait(), 10)
    assert finished.is_set()
    # nothing left to redeliver: a second runtime on the same queue gets no message
    again = _runtime(broker_ns)
    redelivered = asyncio.Event()

    async def second(_: Delivery) -> None:
        redelivered.set()

    again.subscribe(ReleaseRequested, second)
    async with running(again):
        await asyncio.sleep(0.5)
    assert not redelivered.is_set()


def test_settings_mask_secrets() -> None:
    settings = RuntimeSettings(amqp_url="amqp://ferry:hunter2@broker:5672/")
    effective = settings.effective()
    assert effective["amqp_url"] == "amqp://ferry:***@broker:5672/"
    assert "hunter2" not in json.dumps(effective)
    assert mask_url("amqp://host/") == "amqp://host/"


def test_settings_mask_a_token_in_the_user_part() -> None:
    settings = RuntimeSettings(amqp_url="amqps://tok3n-value@broker:5671/")
    assert settings.effective()["amqp_url"] == "amqps://***@broker:5671/"


@pytest.fixture
def own_logging() -> Iterator[None]:
    """configure_logging points the root logger at this test's captured stderr: undo it."""
    import logging

    import structlog

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


@pytest.mark.usefixtures("own_logging")
def test_log_lines_mask_urls_in_every_value_and_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from ferry_runtime import configure_logging, get_logger

    configure_logging("git-writer", fmt="json")
    log = get_logger("t")
    log.warning("fetch failed", error="remote: denied for https://tok3n-value@git.example/x")
    try:
        raise RuntimeError("cannot push to https://ci:pa55word@git.example/x")
    except RuntimeError:
        log.exception("crashed", where={"url": "http://xoxb-1-2@slack.example/api/"})
    lines = capsys.readouterr().err.strip().splitlines()[-2:]
    text = "\n".join(lines)
    assert "tok3n-value" not in text
    assert "pa55word" not in text
    assert "xoxb-1-2" not in text
    first, second = (json.loads(line) for line in lines)
    assert first["error"] == "remote: denied for https://***@git.example/x"
    assert "https://ci:***@git.example/x" in second["exception"]
    assert second["where"] == {"url": "http://***@slack.example/api/"}


async def test_broker_unreachable_is_reported_clearly() -> None:
    from ferry_runtime import BrokerUnavailable, connect_broker

    with pytest.raises(BrokerUnavailable, match="RabbitMQ is not reachable at amqp://u:\\*\\*\\*@"):
        await connect_broker("amqp://u:p@127.0.0.1:1/", attempts=1)


@pytest.mark.usefixtures("own_logging")
def test_log_lines_keep_the_process_service_name(capsys: pytest.CaptureFixture[str]) -> None:
    from ferry_runtime import configure_logging, get_logger

    configure_logging("notifier", fmt="json")
    get_logger("t").info("notification sent", service="payments")
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["service"] == "notifier"
    assert line["subject"] == "payments"


async def test_a_dropped_connection_is_reported_restored_and_consuming_resumes(
    broker_ns: BrokerNamespace,
) -> None:
    import os
    import shutil
    import subprocess

    from ferry_runtime.metrics import BROKER_CONNECTED

    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl is needed to close a connection from the broker's side")
    runtime = _runtime(broker_ns)
    handled = asyncio.Event()

    async def handle(_: Delivery) -> None:
        handled.set()

    runtime.subscribe(ReleaseRequested, handle)
    name = f"ferry promotion [{broker_ns.queue_prefix}] pid {os.getpid()}"
    connected = BROKER_CONNECTED.labels("promotion")
    async with running(runtime):
        listing = await asyncio.to_thread(
            subprocess.run,
            ["rabbitmqctl", "list_connections", "pid", "client_properties", "-q",
             "--no-table-headers"],
            capture_output=True, text=True, check=True, timeout=30,
        )  # fmt: skip
        pids = [line.split()[0] for line in listing.stdout.splitlines() if name in line]
        assert len(pids) == 1, listing.stdout
        await asyncio.to_thread(
            subprocess.run,
            ["rabbitmqctl", "close_connection", pids[0], "test: broker-side close"],
            capture_output=True, check=True, timeout=30,
        )  # fmt: skip
        async with asyncio.timeout(10):
            while connected._value.get() != 0:
                await asyncio.sleep(0.02)
        async with asyncio.timeout(30):
            while connected._value.get() != 1:
                await asyncio.sleep(0.1)
        await broker_ns.publish(_request())
        await asyncio.wait_for(handled.wait(), 15)

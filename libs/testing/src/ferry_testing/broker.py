"""A real RabbitMQ for tests, namespaced per test so runs never collide."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from ferry_events import CloudEvent, EventData, decode, encode
from ferry_runtime import ServiceQueues, broker_answers

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
KNOWN_SERVICES = (
    "artifact-ingest",
    "git-writer",
    "promotion",
    "cluster-watcher",
    "notifier",
    "insights",
)


def resolve_amqp_url() -> tuple[str, Callable[[], None]]:
    """FERRY_AMQP_URL or the local broker when it answers; else a testcontainers RabbitMQ."""
    url = os.environ.get("FERRY_AMQP_URL", DEFAULT_AMQP_URL)
    if broker_answers(url):
        return url, lambda: None
    if shutil.which("docker"):
        try:
            from testcontainers.rabbitmq import RabbitMqContainer

            container = RabbitMqContainer("rabbitmq:3.13-management")
            container.start()
            host = container.get_container_host_ip()
            port = container.get_exposed_port(5672)
            return f"amqp://guest:guest@{host}:{port}/", container.stop
        except Exception as exc:
            reason = f" (testcontainers failed: {exc!r})"
    else:
        reason = ""
    raise RuntimeError(
        f"No RabbitMQ answers at {url} and none could be started{reason}. Start one "
        "('rabbitmq-server -detached') or set FERRY_AMQP_URL."
    )


@dataclass
class BrokerNamespace:
    """An exchange and queue prefix of one's own on the shared broker."""

    amqp_url: str
    token: str = field(default_factory=lambda: uuid.uuid4().hex[:10])

    @property
    def exchange(self) -> str:
        return f"ferry.test.{self.token}"

    @property
    def queue_prefix(self) -> str:
        return f"test.{self.token}"

    def env(self, **extra: str) -> dict[str, str]:
        """Environment variables that point a service at this namespace."""
        return {
            "FERRY_AMQP_URL": self.amqp_url,
            "FERRY_EXCHANGE": self.exchange,
            "FERRY_QUEUE_PREFIX": self.queue_prefix,
            **extra,
        }

    def settings(self) -> dict[str, Any]:
        """Keyword arguments for a RuntimeSettings subclass."""
        return {
            "amqp_url": self.amqp_url,
            "exchange": self.exchange,
            "queue_prefix": self.queue_prefix,
            "http_port": 0,
            "retry_delays": (0.2, 0.5, 1.0),
            "max_attempts": 4,
            "log_format": "json",
        }

    def queue_names(self, services: Iterable[str] = KNOWN_SERVICES) -> list[str]:
        names: list[str] = []
        for service in services:
            queues = ServiceQueues(service, self.queue_prefix, (), (0, 0, 0, 0, 0, 0))
            names += [queues.main, queues.dead_letter]
            names += [queues.retry(i) for i in range(6)]
        return names

    async def cleanup(self, services: Iterable[str] = KNOWN_SERVICES) -> None:
        connection = await aio_pika.connect(self.amqp_url)
        async with connection:
            for name in self.queue_names(services):
                channel = await connection.channel()
                with contextlib.suppress(aio_pika.exceptions.AMQPError):
                    await channel.queue_delete(name)
                with contextlib.suppress(aio_pika.exceptions.AMQPError):
                    await channel.close()
            for service in services:
                channel = await connection.channel()
                with contextlib.suppress(aio_pika.exceptions.AMQPError):
                    await channel.exchange_delete(
                        ServiceQueues(service, self.queue_prefix, (), ()).redelivery_exchange
                    )
            channel = await connection.channel()
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                await channel.exchange_delete(self.exchange)

    async def publish(
        self, event: CloudEvent | EventData, *, source: str = "ferry/test"
    ) -> CloudEvent:
        """Publish one event (wrapping bare data in an envelope) with confirms."""
        if isinstance(event, EventData):
            event = CloudEvent.new(event, source=source)
        await self.publish_raw(encode(event), routing_key=event.type)
        return event

    async def publish_raw(
        self,
        body: bytes,
        *,
        routing_key: str,
        headers: dict[str, Any] | None = None,
        content_type: str = "application/cloudevents+json",
    ) -> None:
        """Publish arbitrary bytes (malformed on purpose, binary mode, ...)."""
        connection = await aio_pika.connect(self.amqp_url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            exchange = await channel.declare_exchange(
                self.exchange, aio_pika.ExchangeType.TOPIC, durable=True
            )
            await exchange.publish(
                aio_pika.Message(
                    body,
                    headers=headers or {},
                    content_type=content_type,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=routing_key,
            )

    async def dead_letter_count(self, service: str) -> int:
        """How many messages wait in ``service``'s dead-letter queue (it must exist)."""
        connection = await aio_pika.connect(self.amqp_url)
        async with connection:
            channel = await connection.channel()
            name = ServiceQueues(service, self.queue_prefix, (), ()).dead_letter
            queue = await channel.declare_queue(name, passive=True)
            return queue.declaration_result.message_count or 0

    async def wait_dead_letters(self, service: str, count: int, *, timeout: float = 20) -> None:
        """Wait until ``service``'s dead-letter queue holds ``count`` messages (left there)."""
        async with asyncio.timeout(timeout):
            while await self.dead_letter_count(service) < count:  # noqa: ASYNC110 - a queue count has no event to await
                await asyncio.sleep(0.1)

    async def dead_letters(
        self, service: str, *, timeout: float = 10.0, count: int = 1
    ) -> list[AbstractIncomingMessage]:
        """Wait for ``count`` messages on ``service``'s dead-letter queue and take them."""
        queues = ServiceQueues(service, self.queue_prefix, (), ())
        found: list[AbstractIncomingMessage] = []
        connection = await aio_pika.connect(self.amqp_url)
        async with connection:
            channel = await connection.channel()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while len(found) < count and loop.time() < deadline:
                try:
                    queue = await channel.get_queue(queues.dead_letter, ensure=True)
                    message = await queue.get(no_ack=True, fail=False)
                except aio_pika.exceptions.AMQPError:
                    channel = await connection.channel()
                    message = None
                if message is None:
                    await asyncio.sleep(0.1)
                else:
                    found.append(message)
        return found


class EventTap:
    """Hears every event on a namespace's exchange, for a test to wait on."""

    def __init__(self, ns: BrokerNamespace, routing_key: str = "#") -> None:
        self._ns = ns
        self._routing_key = routing_key
        self.events: list[CloudEvent] = []
        self._changed = asyncio.Event()
        self._connection: aio_pika.abc.AbstractConnection | None = None

    async def __aenter__(self) -> EventTap:
        self._connection = await aio_pika.connect(self._ns.amqp_url)
        channel = await self._connection.channel()
        exchange = await channel.declare_exchange(
            self._ns.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(exchange, self._routing_key)
        await queue.consume(self._on_message, no_ack=True)
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._connection is not None:
            await self._connection.close()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        self.events.append(
            decode(message.body, headers=message.headers or {}, content_type=message.content_type)
        )
        self._changed.set()

    def of_type(self, type_name: str) -> list[CloudEvent]:
        return [e for e in self.events if e.type == type_name]

    async def wait_for(
        self,
        type_name: str,
        where: Callable[[CloudEvent], bool] = lambda _: True,
        *,
        timeout: float = 15.0,
        count: int = 1,
    ) -> list[CloudEvent]:
        """Wait until ``count`` events of this type matching ``where`` have been heard."""
        async with asyncio.timeout(timeout):
            while True:
                matching = [e for e in self.of_type(type_name) if where(e)]
                if len(matching) >= count:
                    return matching
                self._changed.clear()
                await self._changed.wait()

    async def wait_one(
        self,
        type_name: str,
        where: Callable[[CloudEvent], bool] = lambda _: True,
        *,
        timeout: float = 15.0,
    ) -> CloudEvent:
        return (await self.wait_for(type_name, where, timeout=timeout))[0]


@contextlib.asynccontextmanager
async def tap(ns: BrokerNamespace, routing_key: str = "#") -> AsyncIterator[EventTap]:
    async with EventTap(ns, routing_key) as t:
        yield t

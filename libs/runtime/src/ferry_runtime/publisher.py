"""Publishing with publisher confirms, persistent messages and mandatory routing.

A publish returns only once the broker has confirmed the message (written to
disk, or to a majority of a quorum queue's replicas). Unroutable messages and
nacks raise :class:`PublishFailed`: nothing is dropped silently.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable, Mapping
from typing import Any, Final

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractMessage
from aio_pika.exceptions import AMQPError, ChannelInvalidStateError, DeliveryError, PublishError

from ferry_events import STRUCTURED_CONTENT_TYPE, CloudEvent, encode
from ferry_runtime.amqp import wire_text
from ferry_runtime.errors import PublishFailed
from ferry_runtime.logging import get_logger
from ferry_runtime.metrics import PUBLISH_FAILURES, PUBLISHED

log = get_logger(__name__)


def build_message(
    event: CloudEvent,
    headers: Mapping[str, Any] | None = None,
    *,
    user_id: str | None = None,
) -> aio_pika.Message:
    """A persistent structured-mode AMQP message for ``event``.

    ``user_id``, when given, must be the broker user of the publishing connection (RabbitMQ
    refuses any other): it is how a consumer knows who published (artifact-ingest's CI
    identities).
    """
    return aio_pika.Message(
        user_id=user_id,
        body=encode(event),
        content_type=STRUCTURED_CONTENT_TYPE,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=event.id,
        correlation_id=event.correlationid,
        type=event.type,
        timestamp=event.time,
        headers=dict(headers or {}),
    )


_FLOAT32_MAX: Final = 3.4028234663852886e38


def wire_headers(headers: Mapping[str, Any]) -> dict[str, Any]:
    """``headers`` as the client library can write them back.

    A long string that was not UTF-8 on arrival is read as ``bytes``, which the library cannot
    encode (nor a ``str`` with a lone surrogate): both go out as byte arrays, in tables and
    arrays too; a double beyond a single's range (the library writes floats as singles) goes
    as text. So a retry or dead-letter copy of any message can be published.
    """
    return {key: _wire_value(value) for key, value in headers.items()}


def _wire_value(value: Any) -> Any:
    if isinstance(value, Mapping):
        return wire_headers(value)
    if isinstance(value, list | tuple):
        return [_wire_value(item) for item in value]
    if isinstance(value, str) and not _utf8(value):
        return bytearray(value.encode("utf-8", "surrogatepass"))
    if isinstance(value, bytes):
        return bytearray(value)
    if isinstance(value, float) and math.isfinite(value) and abs(value) > _FLOAT32_MAX:
        return repr(value)
    return value


def _utf8(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def copy_message(message: AbstractMessage, headers: Mapping[str, Any]) -> aio_pika.Message:
    """``message`` again, persistent, with ``headers`` instead of its own: the one way a
    message is copied to a retry or dead-letter queue (the consumer, the notifier) or replayed
    from one (``ferry dlq replay``). The body and the properties a reader relies on (content
    type and encoding, message and correlation ids, type, timestamp) are kept as they were;
    the headers and those properties are written as the library can write them
    (:func:`wire_headers`, :func:`~ferry_runtime.amqp.wire_text`), whatever they were on
    arrival.
    """
    return aio_pika.Message(
        body=message.body,
        headers=wire_headers(headers),
        content_type=wire_text(message.content_type),
        content_encoding=wire_text(message.content_encoding),
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=wire_text(message.message_id),
        correlation_id=wire_text(message.correlation_id),
        type=wire_text(message.type),
        timestamp=message.timestamp,
    )


class Publisher:
    """Publishes events to the Ferry exchange and waits for each confirm."""

    def __init__(
        self, channel: AbstractChannel, exchange: AbstractExchange, *, service: str
    ) -> None:
        self._channel = channel
        self._exchange = exchange
        self._service = service
        #: The service's retry/dead-letter exchange, set once its queues are declared.
        self.redelivery_exchange: AbstractExchange | None = None

    async def publish(self, event: CloudEvent, *, timeout: float = 30.0) -> None:
        """Publish one event, routed by its type. Raises :class:`PublishFailed` if not confirmed."""
        await self.publish_message(build_message(event), event.type, event.type, timeout=timeout)

    async def publish_many(self, events: Iterable[CloudEvent], *, timeout: float = 30.0) -> None:
        """Publish several events with their confirms in flight together."""
        await asyncio.gather(*(self.publish(e, timeout=timeout) for e in events))

    async def publish_message(
        self,
        message: aio_pika.Message,
        routing_key: str,
        event_type: str,
        *,
        exchange: AbstractExchange | None = None,
        timeout: float = 30.0,
    ) -> None:
        target = exchange or self._exchange
        try:
            await target.publish(message, routing_key=routing_key, mandatory=True, timeout=timeout)
        except PublishError as exc:
            PUBLISH_FAILURES.labels(self._service, "unroutable").inc()
            raise PublishFailed(
                f"the broker could not route {event_type} with key {routing_key!r} on "
                f"exchange {target.name!r}: no queue is bound for it",
                code="unroutable",
            ) from exc
        except DeliveryError as exc:
            PUBLISH_FAILURES.labels(self._service, "nack").inc()
            raise PublishFailed(
                f"the broker refused {event_type} (nack): {exc}", code="nack"
            ) from exc
        except (AMQPError, ChannelInvalidStateError, ConnectionError, TimeoutError) as exc:
            PUBLISH_FAILURES.labels(self._service, "connection").inc()
            raise PublishFailed(
                f"publishing {event_type} was not confirmed: {exc!r}", code="connection"
            ) from exc
        PUBLISHED.labels(self._service, event_type).inc()

    async def send_to_queue(
        self, queue: str, message: aio_pika.Message, event_type: str, *, timeout: float = 30.0
    ) -> None:
        """Publish to one of the service's own queues (a retry or its dead-letter queue)
        through its redelivery exchange (the default exchange before that is declared)."""
        await self.publish_message(
            message,
            queue,
            event_type,
            exchange=self.redelivery_exchange or self._channel.default_exchange,
            timeout=timeout,
        )

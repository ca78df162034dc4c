"""Consuming with manual acks after the effect, retries with backoff, and dead letters.

For every message: decode the CloudEvent (structured or binary mode), upcast
and validate its data, call the handler, and only then ack. A
:class:`PermanentError` (or an unreadable event) sends the message to the
service's dead-letter queue with the reason in its headers; any other failure
sends a copy to the next delay queue with ``x-ferry-attempt`` incremented,
until ``max_attempts``, then to the dead-letter queue as ``retries-exhausted``.
The copy is confirmed by the broker before the original is acked, so a crash
in between yields a duplicate, never a loss: handlers must be idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue
from aio_pika.exceptions import AMQPError, ChannelInvalidStateError

from ferry_events import (
    CloudEvent,
    EventData,
    EventError,
    EventRegistry,
    TypeMismatch,
    decode,
    utcnow,
)
from ferry_events.deadletter import (
    ATTEMPT_HEADER,
    ATTEMPTS_HEADER,
    CODE_HEADER,
    FAILED_AT_HEADER,
    LAST_ERROR_CODE_HEADER,
    LAST_ERROR_HEADER,
    ORIGINAL_EXCHANGE_HEADER,
    ORIGINAL_ROUTING_KEY_HEADER,
    REASON_HEADER,
    SERVICE_HEADER,
    header_text,
    without_untrusted,
)
from ferry_runtime.errors import PermanentError, TemporaryError
from ferry_runtime.logging import bound_contextvars, get_logger
from ferry_runtime.metrics import HANDLER_SECONDS, IN_FLIGHT, MESSAGES
from ferry_runtime.publisher import Publisher
from ferry_runtime.topology import ServiceQueues

log = get_logger(__name__)


@dataclass(slots=True)
class Delivery:
    """One message, decoded: the envelope, its typed data and the attempt number (1-based)."""

    event: CloudEvent
    data: EventData
    message: AbstractIncomingMessage
    attempt: int = 1


Handler = Callable[[Delivery], Awaitable[None]]
#: Handles several deliveries at once; returns, for each, None (done) or the exception it hit.
BatchHandler = Callable[[Sequence[Delivery]], Awaitable[Sequence[BaseException | None]]]


@dataclass(slots=True)
class ConsumerOptions:
    """How a service consumes its queue."""

    concurrency: int = 1
    max_batch: int = 1
    max_attempts: int = 8
    max_event_bytes: int = 1024 * 1024
    extra: dict[str, Any] = field(default_factory=dict)


def is_ferry_hop(message: AbstractIncomingMessage, queues: ServiceQueues) -> bool:
    """Whether ``message`` came through the service's own retry or replay path.

    A retry comes back from a delay queue through the service's redelivery exchange (which
    only the service may write to); ``ferry dlq replay --direct`` sends a dead letter to the
    service queue through the default exchange (which only the operator may write to).
    Anything else is a first arrival from a publisher, whose headers are input, not
    provenance.
    """
    exchange = message.exchange or ""
    if exchange == queues.redelivery_exchange:
        return True
    return exchange == "" and message.routing_key == queues.main


def attempt_of(message: AbstractIncomingMessage, queues: ServiceQueues) -> int:
    """The delivery attempt (1 for the first): counted only along Ferry's own hops."""
    if not is_ferry_hop(message, queues):
        return 1
    raw = (message.headers or {}).get(ATTEMPT_HEADER, 1)
    try:
        return max(1, int(str(raw)))
    except (TypeError, ValueError):
        return 1


def origin_headers(message: AbstractIncomingMessage, queues: ServiceQueues) -> dict[str, str]:
    """Where the message was first published (exchange, routing key).

    Written from the delivery itself on a message's first arrival, whatever headers it came
    with, and carried through every later retry and replay, so that a dead letter names the
    event's own exchange and key, not the delay queue's, and a replay routes it as it was
    first routed. Both empty when a Ferry hop arrives without them (its origin is unknown).
    """
    if not is_ferry_hop(message, queues):
        return {
            ORIGINAL_EXCHANGE_HEADER: message.exchange or "",
            ORIGINAL_ROUTING_KEY_HEADER: message.routing_key or "",
        }
    headers = message.headers or {}
    exchange, key = headers.get(ORIGINAL_EXCHANGE_HEADER), headers.get(ORIGINAL_ROUTING_KEY_HEADER)
    if exchange is None or not key:
        # recorded as unknown, so that no reader falls back to what the body claims
        return {ORIGINAL_EXCHANGE_HEADER: "", ORIGINAL_ROUTING_KEY_HEADER: ""}
    return {ORIGINAL_EXCHANGE_HEADER: str(exchange), ORIGINAL_ROUTING_KEY_HEADER: str(key)}


def carried_headers(message: AbstractIncomingMessage, queues: ServiceQueues) -> dict[str, Any]:
    """The headers a retry or dead-letter copy of ``message`` starts from: all of them after a
    Ferry hop; on a first arrival, none of those Ferry writes itself (a publisher may not
    choose its attempt count, failure record or origin), and the origin as it was routed."""
    headers = dict(message.headers or {})
    if not is_ferry_hop(message, queues):
        headers = without_untrusted(headers)
    return {**headers, **origin_headers(message, queues)}


class Consumer:
    """Consumes one service queue, dispatching by event type."""

    def __init__(
        self,
        *,
        service: str,
        queue: AbstractQueue,
        queues: ServiceQueues,
        publisher: Publisher,
        registry: EventRegistry,
        handlers: Mapping[str, Handler] | None = None,
        batch_handler: BatchHandler | None = None,
        options: ConsumerOptions | None = None,
    ) -> None:
        if (handlers is None) == (batch_handler is None):
            raise ValueError("give exactly one of handlers or batch_handler")
        self._service = service
        self._queue = queue
        self._queues = queues
        self._publisher = publisher
        self._registry = registry
        self._handlers = dict(handlers or {})
        self._batch_handler = batch_handler
        self._options = options or ConsumerOptions()
        self._inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self._workers: list[asyncio.Task[None]] = []
        self._tag: str | None = None
        self._stopping = False
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def busy(self) -> int:
        """Messages being handled right now."""
        return self._busy

    async def start(self) -> None:
        count = 1 if self._batch_handler else self._options.concurrency
        self._workers = [
            asyncio.create_task(self._work(), name=f"{self._service}-consumer-{i}")
            for i in range(count)
        ]
        self._tag = await self._queue.consume(self._receive, no_ack=False)
        log.info("consuming", queue=self._queue.name, workers=count)

    async def stop(self, timeout: float = 30.0) -> None:
        """Stop taking messages, finish what is in hand, give the rest back to the broker."""
        self._stopping = True
        if self._tag is not None:
            with contextlib.suppress(AMQPError, ChannelInvalidStateError, RuntimeError):
                await self._queue.cancel(self._tag)
            self._tag = None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        returned = 0
        while not self._inbox.empty():
            message = self._inbox.get_nowait()
            with contextlib.suppress(AMQPError, ChannelInvalidStateError, RuntimeError):
                await message.nack(requeue=True)
                returned += 1
        log.info("stopped consuming", queue=self._queue.name, returned_to_broker=returned)

    async def _receive(self, message: AbstractIncomingMessage) -> None:
        if self._stopping:
            with contextlib.suppress(AMQPError, ChannelInvalidStateError, RuntimeError):
                await message.nack(requeue=True)
            return
        IN_FLIGHT.labels(self._service).inc()
        await self._inbox.put(message)

    async def _work(self) -> None:
        while True:
            first = await self._inbox.get()
            batch = [first]
            while len(batch) < self._options.max_batch and not self._inbox.empty():
                batch.append(self._inbox.get_nowait())
            self._busy += len(batch)
            self._idle.clear()
            try:
                if self._batch_handler is not None:
                    await self._handle_batch(batch)
                else:
                    await self._handle_one(first)
            except Exception:
                log.exception("consumer worker failed; messages will be redelivered")
            finally:
                self._busy -= len(batch)
                if not self._busy:
                    self._idle.set()
                IN_FLIGHT.labels(self._service).dec(len(batch))

    # ------------------------------------------------------------------ decoding

    def _decode(self, message: AbstractIncomingMessage) -> Delivery:
        received = decode(
            message.body,
            headers=message.headers or {},
            content_type=message.content_type,
            max_bytes=self._options.max_event_bytes,
        )
        event, data = self._registry.parse(received)
        routed_as = origin_headers(message, self._queues).get(ORIGINAL_ROUTING_KEY_HEADER)
        if routed_as and received.type != routed_as:
            raise TypeMismatch(
                f"the event says it is {received.type} but was published with routing key "
                f"{routed_as}; an event travels under its own type"
            )
        return Delivery(
            event=event, data=data, message=message, attempt=attempt_of(message, self._queues)
        )

    # ------------------------------------------------------------------ single

    async def _handle_one(self, message: AbstractIncomingMessage) -> None:
        started = time.perf_counter()
        try:
            delivery = self._decode(message)
        except EventError as exc:
            with bound_contextvars(message_id=message.message_id):
                await self._dead_letter(message, exc.code, str(exc), event_type="unreadable")
            return
        event = delivery.event
        with bound_contextvars(
            correlationid=event.correlationid, event_id=event.id, event_type=event.type
        ):
            handler = self._handlers.get(event.type)
            if handler is None:
                await self._dead_letter(
                    message,
                    "unhandled-event-type",
                    f"{self._service} has no handler for {event.type}; "
                    "its queue should not be bound to it",
                    event_type=event.type,
                )
                return
            try:
                await handler(delivery)
            except Exception as exc:  # noqa: BLE001 - classified below, never dropped
                await self._settle_failure(delivery, exc)
            else:
                await self._ack(message, event.type)
            finally:
                HANDLER_SECONDS.labels(self._service, event.type).observe(
                    time.perf_counter() - started
                )

    # ------------------------------------------------------------------ batch

    async def _handle_batch(self, messages: list[AbstractIncomingMessage]) -> None:
        started = time.perf_counter()
        deliveries: list[Delivery] = []
        for message in messages:
            try:
                deliveries.append(self._decode(message))
            except EventError as exc:
                await self._dead_letter(message, exc.code, str(exc), event_type="unreadable")
        if not deliveries:
            return
        assert self._batch_handler is not None
        try:
            outcomes = list(await self._batch_handler(deliveries))
        except Exception as exc:  # noqa: BLE001 - the whole batch failed; each is retried
            outcomes = [exc] * len(deliveries)
        if len(outcomes) != len(deliveries):
            outcomes = [RuntimeError("batch handler returned the wrong number of outcomes")] * len(
                deliveries
            )
        for delivery, outcome in zip(deliveries, outcomes, strict=True):
            event = delivery.event
            with bound_contextvars(
                correlationid=event.correlationid, event_id=event.id, event_type=event.type
            ):
                if outcome is None:
                    await self._ack(delivery.message, event.type)
                else:
                    await self._settle_failure(delivery, outcome)
        HANDLER_SECONDS.labels(self._service, "batch").observe(time.perf_counter() - started)

    # ------------------------------------------------------------------ settling

    async def _ack(self, message: AbstractIncomingMessage, event_type: str) -> None:
        try:
            await message.ack()
        except (ChannelInvalidStateError, AMQPError, RuntimeError) as exc:
            # The channel this delivery came on is gone (reconnect): the broker has
            # requeued it and will deliver it again; the handler is idempotent.
            log.warning("ack failed; the broker will redeliver", error=repr(exc))
            return
        MESSAGES.labels(self._service, event_type, "acked").inc()

    async def _settle_failure(self, delivery: Delivery, exc: BaseException) -> None:
        event_type = delivery.event.type
        if isinstance(exc, PermanentError | EventError):
            code = getattr(exc, "code", "permanent")
            log.warning("permanent failure; dead-lettering", code=code, reason=str(exc))
            await self._dead_letter(delivery.message, code, str(exc), event_type=event_type)
            return
        code = exc.code if isinstance(exc, TemporaryError) else type(exc).__name__
        reason = str(exc) or repr(exc)
        if delivery.attempt >= self._options.max_attempts:
            log.error(
                "retries exhausted; dead-lettering",
                attempts=delivery.attempt,
                code=code,
                reason=reason,
            )
            await self._dead_letter(
                delivery.message,
                "retries-exhausted",
                f"failed {delivery.attempt} times; last error ({code}): {reason}",
                event_type=event_type,
            )
            return
        level = self._retry_level(delivery.attempt, exc)
        delay = self._queues.retry_delays[level]
        log_method = log.warning if isinstance(exc, TemporaryError) else log.error
        log_method(
            "temporary failure; will retry",
            attempt=delivery.attempt,
            retry_in_seconds=delay,
            code=code,
            reason=reason,
            exc_info=not isinstance(exc, TemporaryError),
        )
        headers = {
            **carried_headers(delivery.message, self._queues),
            ATTEMPT_HEADER: delivery.attempt + 1,
            LAST_ERROR_HEADER: header_text(reason),
            LAST_ERROR_CODE_HEADER: code,
        }
        await self._forward(
            delivery.message,
            self._queues.retry(level),
            headers,
            event_type,
            outcome="retried",
        )

    def _retry_level(self, attempt: int, exc: BaseException) -> int:
        delays = self._queues.retry_delays
        level = min(attempt - 1, len(delays) - 1)
        wanted = exc.retry_after if isinstance(exc, TemporaryError) else None
        if wanted:
            for candidate in range(level, len(delays)):
                if delays[candidate] >= wanted:
                    return candidate
            return len(delays) - 1
        return level

    async def _dead_letter(
        self, message: AbstractIncomingMessage, code: str, reason: str, *, event_type: str
    ) -> None:
        headers = {
            **carried_headers(message, self._queues),
            REASON_HEADER: header_text(reason),
            CODE_HEADER: code,
            ATTEMPTS_HEADER: attempt_of(message, self._queues),
            FAILED_AT_HEADER: utcnow().isoformat(),
            SERVICE_HEADER: self._service,
        }
        log.warning("dead-lettered", code=code, reason=reason, queue=self._queues.dead_letter)
        await self._forward(
            message, self._queues.dead_letter, headers, event_type, outcome="dead_lettered"
        )

    async def _forward(
        self,
        message: AbstractIncomingMessage,
        queue: str,
        headers: dict[str, Any],
        event_type: str,
        *,
        outcome: str,
    ) -> None:
        copy = aio_pika.Message(
            body=message.body,
            headers=headers,
            content_type=message.content_type,
            content_encoding=message.content_encoding,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            type=message.type,
            timestamp=message.timestamp,
        )
        try:
            await self._publisher.send_to_queue(queue, copy, event_type)
        except TemporaryError as exc:
            log.error(  # noqa: TRY400 - the cause is in the message; no traceback wanted
                "could not forward message; returning it to the broker", error=str(exc)
            )
            with contextlib.suppress(AMQPError, ChannelInvalidStateError, RuntimeError):
                await message.nack(requeue=True)
            return
        try:
            await message.ack()
        except (ChannelInvalidStateError, AMQPError, RuntimeError) as exc:
            log.warning("ack after forward failed; expect a duplicate", error=repr(exc))
        MESSAGES.labels(self._service, event_type, outcome).inc()

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
from types import MappingProxyType
from typing import Any, Generic, TypeAlias, TypeVar

from aio_pika.abc import AbstractIncomingMessage, AbstractQueue
from aio_pika.exceptions import AMQPError, ChannelInvalidStateError

from ferry_events import (
    CloudEvent,
    EventData,
    EventError,
    EventRegistry,
    TypeMismatch,
    decode,
)
from ferry_events.deadletter import (
    ATTEMPT_HEADER,
    ORIGINAL_EXCHANGE_HEADER,
    ORIGINAL_ROUTING_KEY_HEADER,
    dead_letter_headers,
    retry_headers,
    without_untrusted,
)
from ferry_runtime.errors import PermanentError, TemporaryError
from ferry_runtime.logging import bound_contextvars, get_logger
from ferry_runtime.metrics import HANDLER_SECONDS, IN_FLIGHT, MESSAGES
from ferry_runtime.publisher import Publisher, copy_message
from ferry_runtime.topology import ServiceQueues

log = get_logger(__name__)


T_co = TypeVar("T_co", bound=EventData, covariant=True)


@dataclass(frozen=True, slots=True)
class Delivery(Generic[T_co]):
    """One message, decoded: the envelope, its data typed by the event model the handler
    subscribed to, its headers (read-only), the attempt number (1-based) and the broker user
    that published it.

    A handler never sees the transport's message: what it may read is here, and what it may
    do with the message (ack, retry, dead-letter) the runtime does from its outcome.
    """

    event: CloudEvent
    data: T_co
    headers: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    attempt: int = 1
    #: The publishing connection's user, as the broker checked it (AMQP ``user_id``); None
    #: when the publisher did not say.
    user_id: str | None = None
    #: The routing key it arrived with (its event type; a service queue's name on a replay
    #: straight to that queue).
    routing_key: str = ""


#: Handles one delivery of the event type it subscribed to.
Handler: TypeAlias = Callable[[Delivery[T_co]], Awaitable[None]]
#: Handles several deliveries at once; returns, for each, None (done) or the exception it hit.
BatchHandler: TypeAlias = Callable[
    [Sequence[Delivery[EventData]]], Awaitable[Sequence[BaseException | None]]
]


@dataclass(frozen=True, slots=True)
class Subscription:
    """One event type a service consumes and the handler its deliveries go to."""

    model: type[EventData]
    handler: Handler[Any]

    @property
    def event_type(self) -> str:
        return self.model.event_type


def decode_delivery(
    body: bytes,
    *,
    headers: Mapping[str, Any],
    content_type: str | None,
    registry: EventRegistry,
    max_bytes: int,
    routed_as: str | None = None,
    attempt: int = 1,
    user_id: str | None = None,
    routing_key: str = "",
) -> Delivery[EventData]:
    """Decode a message into a delivery: the CloudEvent (structured or binary mode), its data
    upcast and validated, and its routing key checked against its type.

    Raises :class:`EventError` (a dead letter with its code) for anything unreadable.
    """
    received = decode(body, headers=headers, content_type=content_type, max_bytes=max_bytes)
    event, data = registry.parse(received)
    if routed_as and received.type != routed_as:
        raise TypeMismatch(
            f"the event says it is {received.type} but was published with routing key "
            f"{routed_as}; an event travels under its own type"
        )
    return Delivery(
        event=event,
        data=data,
        headers=MappingProxyType(dict(headers)),
        attempt=attempt,
        user_id=user_id,
        routing_key=routing_key,
    )


@dataclass(frozen=True, slots=True)
class Retry:
    """Settle a failed delivery by retrying it after ``delay`` seconds (delay queue ``level``)."""

    level: int
    delay: float
    code: str
    reason: str


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Settle a delivery by dead-lettering it, with its code and reason (and, when a handler
    dead-letters a copy itself, the attempts to record and headers besides the contract's)."""

    code: str
    reason: str
    attempts: int | None = None
    headers: Mapping[str, Any] = field(default_factory=dict)


def settlement(
    exc: BaseException, *, attempt: int, max_attempts: int, retry_delays: Sequence[float]
) -> Retry | DeadLetter:
    """What a handler's failure comes to: a :class:`PermanentError` (or an unreadable event) is
    dead-lettered at once; any other failure is retried, after the delay of its attempt (or the
    first delay at least as long as a :class:`TemporaryError`'s ``retry_after``), until
    ``max_attempts``, then dead-lettered as ``retries-exhausted``.
    """
    if isinstance(exc, PermanentError | EventError):
        return DeadLetter(getattr(exc, "code", "permanent"), str(exc))
    code = exc.code if isinstance(exc, TemporaryError) else type(exc).__name__
    reason = str(exc) or repr(exc)
    if attempt >= max_attempts:
        return DeadLetter(
            "retries-exhausted", f"failed {attempt} times; last error ({code}): {reason}"
        )
    level = min(attempt - 1, len(retry_delays) - 1)
    wanted = exc.retry_after if isinstance(exc, TemporaryError) else None
    if wanted:
        level = next(
            (n for n in range(level, len(retry_delays)) if retry_delays[n] >= wanted),
            len(retry_delays) - 1,
        )
    return Retry(level, retry_delays[level], code, reason)


def unhandled(service: str, event_type: str) -> DeadLetter:
    """The dead letter of an event type a service's queue receives but no handler takes."""
    return DeadLetter(
        "unhandled-event-type",
        f"{service} has no handler for {event_type}; its queue should not be bound to it",
    )


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
        subscriptions: Sequence[Subscription] = (),
        batch_handler: BatchHandler | None = None,
        options: ConsumerOptions | None = None,
    ) -> None:
        if bool(subscriptions) == (batch_handler is not None):
            raise ValueError("give exactly one of subscriptions or batch_handler")
        self._service = service
        self._queue = queue
        self._queues = queues
        self._publisher = publisher
        self._registry = registry
        self._subscriptions = {s.event_type: s for s in subscriptions}
        self._batch_handler = batch_handler
        self._options = options or ConsumerOptions()
        self._inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self._workers: list[asyncio.Task[None]] = []
        self._tag: str | None = None
        self._stopping = False
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()
        #: The message behind each delivery in hand, by the delivery's id().
        self._in_hand: dict[int, AbstractIncomingMessage] = {}

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
                await self.handle(batch)
            finally:
                self._busy -= len(batch)
                if not self._busy:
                    self._idle.set()
                IN_FLIGHT.labels(self._service).dec(len(batch))

    async def handle(self, messages: Sequence[AbstractIncomingMessage]) -> None:
        """Handle messages taken from the queue (together, when the service takes batches).

        Every message ends settled: acked after its effect, sent to a retry queue or to the
        dead-letter queue, or, should something unforeseen escape all of that, rejected,
        which the broker dead-letters, so that no message holds a prefetch slot for good.
        """
        try:
            if self._batch_handler is not None:
                await self._handle_batch(list(messages))
            else:
                for message in messages:
                    await self._handle_one(message)
        except Exception as exc:
            log.exception("consumer failed on a message; dead-lettering what it left unsettled")
            for message in messages:
                if not message.processed:
                    await self._last_resort(message, exc)

    async def _last_resort(self, message: AbstractIncomingMessage, exc: Exception) -> None:
        try:
            await self._dead_letter(
                message,
                "consumer-error",
                f"the consumer failed on this message: {type(exc).__name__}: {exc}",
                event_type="unreadable",
            )
        except Exception:
            log.exception("dead-lettering failed; rejecting (the broker dead-letters it)")
        if not message.processed:
            with contextlib.suppress(AMQPError, ChannelInvalidStateError, RuntimeError):
                await message.reject(requeue=False)

    # ------------------------------------------------------------------ decoding

    def _decode(self, message: AbstractIncomingMessage) -> Delivery[EventData]:
        delivery = decode_delivery(
            message.body,
            headers=message.headers or {},
            content_type=message.content_type,
            registry=self._registry,
            max_bytes=self._options.max_event_bytes,
            routed_as=origin_headers(message, self._queues).get(ORIGINAL_ROUTING_KEY_HEADER),
            attempt=attempt_of(message, self._queues),
            user_id=message.user_id or None,
            routing_key=message.routing_key or "",
        )
        self._in_hand[id(delivery)] = message
        return delivery

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
        try:
            with bound_contextvars(
                correlationid=event.correlationid, event_id=event.id, event_type=event.type
            ):
                subscription = self._subscriptions.get(event.type)
                if subscription is None or not isinstance(delivery.data, subscription.model):
                    dead = unhandled(self._service, event.type)
                    await self._dead_letter(message, dead.code, dead.reason, event_type=event.type)
                    return
                try:
                    await subscription.handler(delivery)
                except Exception as exc:  # noqa: BLE001 - classified below, never dropped
                    await self._settle_failure(delivery, message, exc)
                else:
                    await self._ack(message, event.type)
                finally:
                    HANDLER_SECONDS.labels(self._service, event.type).observe(
                        time.perf_counter() - started
                    )
        finally:
            self._in_hand.pop(id(delivery), None)

    # ------------------------------------------------------------------ batch

    async def _handle_batch(self, messages: list[AbstractIncomingMessage]) -> None:
        started = time.perf_counter()
        received: list[tuple[Delivery[EventData], AbstractIncomingMessage]] = []
        for message in messages:
            try:
                received.append((self._decode(message), message))
            except EventError as exc:
                await self._dead_letter(message, exc.code, str(exc), event_type="unreadable")
        if not received:
            return
        assert self._batch_handler is not None
        deliveries = [delivery for delivery, _ in received]
        try:
            try:
                outcomes = list(await self._batch_handler(deliveries))
            except Exception as exc:  # noqa: BLE001 - the whole batch failed; each is retried
                outcomes = [exc] * len(deliveries)
            if len(outcomes) != len(deliveries):
                wrong = RuntimeError("batch handler returned the wrong number of outcomes")
                outcomes = [wrong] * len(deliveries)
            for (delivery, message), outcome in zip(received, outcomes, strict=True):
                event = delivery.event
                with bound_contextvars(
                    correlationid=event.correlationid, event_id=event.id, event_type=event.type
                ):
                    if outcome is None:
                        await self._ack(message, event.type)
                    else:
                        await self._settle_failure(delivery, message, outcome)
        finally:
            for delivery in deliveries:
                self._in_hand.pop(id(delivery), None)
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

    async def _settle_failure(
        self, delivery: Delivery[EventData], message: AbstractIncomingMessage, exc: BaseException
    ) -> None:
        event_type = delivery.event.type
        verdict = settlement(
            exc,
            attempt=delivery.attempt,
            max_attempts=self._options.max_attempts,
            retry_delays=self._queues.retry_delays,
        )
        if isinstance(verdict, DeadLetter):
            if verdict.code == "retries-exhausted":
                log.error(
                    "retries exhausted; dead-lettering",
                    attempts=delivery.attempt,
                    reason=verdict.reason,
                )
            else:
                log.warning(
                    "permanent failure; dead-lettering", code=verdict.code, reason=verdict.reason
                )
            await self._dead_letter(message, verdict.code, verdict.reason, event_type=event_type)
            return
        log_method = log.warning if isinstance(exc, TemporaryError) else log.error
        log_method(
            "temporary failure; will retry",
            attempt=delivery.attempt,
            retry_in_seconds=verdict.delay,
            code=verdict.code,
            reason=verdict.reason,
            exc_info=not isinstance(exc, TemporaryError),
        )
        headers = retry_headers(
            carried_headers(message, self._queues),
            attempt=delivery.attempt + 1,
            code=verdict.code,
            reason=verdict.reason,
        )
        await self._forward(
            message, self._queues.retry(verdict.level), headers, event_type, outcome="retried"
        )

    async def dead_letter(self, delivery: Delivery[EventData], letter: DeadLetter) -> None:
        """Copy a delivery in hand to the dead-letter queue now, with the letter's code and
        reason (and headers besides), confirmed before this returns; the delivery itself is
        settled by its handler's outcome as usual. (The notifier dead-letters one destination
        of an event this way.)"""
        message = self._in_hand.get(id(delivery))
        if message is None:
            raise RuntimeError("that delivery is not in hand: dead-letter it from its handler")
        copy = copy_message(
            message,
            {
                **dead_letter_headers(
                    carried_headers(message, self._queues),
                    code=letter.code,
                    reason=letter.reason,
                    attempts=letter.attempts if letter.attempts is not None else delivery.attempt,
                    service=self._service,
                ),
                **letter.headers,
            },
        )
        await self._publisher.send_to_queue(self._queues.dead_letter, copy, delivery.event.type)
        log.warning(
            "dead-lettered", code=letter.code, reason=letter.reason, queue=self._queues.dead_letter
        )

    async def _dead_letter(
        self, message: AbstractIncomingMessage, code: str, reason: str, *, event_type: str
    ) -> None:
        headers = dead_letter_headers(
            carried_headers(message, self._queues),
            code=code,
            reason=reason,
            attempts=attempt_of(message, self._queues),
            service=self._service,
        )
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
        try:
            await self._publisher.send_to_queue(queue, copy_message(message, headers), event_type)
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

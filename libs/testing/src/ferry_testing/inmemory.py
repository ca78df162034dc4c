"""Ferry's runtime without a broker, for handler tests that run in milliseconds.

In the role of FastStream's ``TestRabbitBroker``: :class:`InMemoryBroker` takes the
:class:`~ferry_runtime.ServiceRuntime` a service's composition root built, runs its start
hooks, and delivers to its subscribed handlers what is published, as the broker and the
runtime kit's consumer would:

- routing: a topic exchange; a service's queue is bound to the event types it subscribed to;
  a publish nobody is bound to raises :class:`~ferry_runtime.PublishFailed` (``unroutable``),
  as a mandatory publish does;
- each event is encoded and decoded again (:func:`~ferry_runtime.decode_delivery`), so an
  unreadable event, an unknown type or an event whose type is not its routing key is
  dead-lettered with the same code;
- a failure is settled by :func:`~ferry_runtime.settlement`, as the consumer settles it:
  retried (at once: the delay is recorded, not waited) until ``max_attempts``, then
  dead-lettered as ``retries-exhausted``; a :class:`~ferry_runtime.PermanentError` at once;
- dead letters carry the dead-letter contract's headers (:mod:`ferry_events.deadletter`).

It is not a broker: there are no replicas, no acks to lose, no concurrency (one handler runs
at a time, in publish order). The real-broker tests cover those; these cover what a handler
does with what it is given.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ferry_events import STRUCTURED_CONTENT_TYPE, CloudEvent, EventData, EventError, encode
from ferry_events.deadletter import (
    ATTEMPT_HEADER,
    CODE_HEADER,
    ORIGINAL_EXCHANGE_HEADER,
    ORIGINAL_ROUTING_KEY_HEADER,
    REASON_HEADER,
    dead_letter_headers,
    retry_headers,
    without_untrusted,
)
from ferry_runtime import (
    DeadLetter,
    Delivery,
    PublishFailed,
    ServiceRuntime,
    Subscriptions,
    decode_delivery,
    settlement,
    unhandled,
)

__all__ = ["DeadLettered", "InMemoryBroker", "Retried", "in_memory", "topic_matches"]


def topic_matches(binding: str, routing_key: str) -> bool:
    """Whether a topic exchange routes ``routing_key`` to a queue bound with ``binding``
    (``*`` is one dot-separated word, ``#`` zero or more)."""

    def match(pattern: list[str], words: list[str]) -> bool:
        if not pattern:
            return not words
        head, rest = pattern[0], pattern[1:]
        if head == "#":
            return any(match(rest, words[n:]) for n in range(len(words) + 1))
        if not words:
            return False
        return (head in {"*", words[0]}) and match(rest, words[1:])

    return match(binding.split("."), routing_key.split("."))


@dataclass(slots=True)
class _Message:
    body: bytes
    headers: dict[str, Any]
    routing_key: str
    user_id: str | None = None
    content_type: str = STRUCTURED_CONTENT_TYPE


@dataclass(frozen=True, slots=True)
class DeadLettered:
    """A message in a service's dead-letter queue: its body and the contract's headers."""

    service: str
    body: bytes
    headers: Mapping[str, Any]
    routing_key: str

    @property
    def code(self) -> str:
        return str(self.headers.get(CODE_HEADER, ""))

    @property
    def reason(self) -> str:
        return str(self.headers.get(REASON_HEADER, ""))


@dataclass(frozen=True, slots=True)
class Retried:
    """A retry the consumer would have sent through delay queue ``level`` after ``delay`` s."""

    service: str
    event_id: str
    attempt: int
    level: int
    delay: float
    code: str


@dataclass(slots=True)
class _Service:
    runtime: ServiceRuntime
    subscriptions: Subscriptions
    queue: deque[_Message] = field(default_factory=deque)
    dead: list[DeadLettered] = field(default_factory=list)
    in_hand: dict[int, _Message] = field(default_factory=dict)


class _Publisher:
    """What a service's handlers publish through: the broker's exchange."""

    def __init__(self, broker: InMemoryBroker) -> None:
        self._broker = broker

    async def publish(self, event: CloudEvent, *, timeout: float = 30.0) -> None:
        self._broker.route(event)

    async def publish_many(self, events: Iterable[CloudEvent], *, timeout: float = 30.0) -> None:
        for event in events:
            self._broker.route(event)


class _DeadLetters:
    """What a service's handlers dead-letter a delivery in hand through."""

    def __init__(self, broker: InMemoryBroker, service: str) -> None:
        self._broker = broker
        self._service = service

    async def dead_letter(self, delivery: Delivery[EventData], letter: DeadLetter) -> None:
        service = self._broker.service(self._service)
        message = service.in_hand.get(id(delivery))
        if message is None:
            raise RuntimeError("that delivery is not in hand: dead-letter it from its handler")
        self._broker.dead_letter(
            service,
            message,
            code=letter.code,
            reason=letter.reason,
            attempts=letter.attempts if letter.attempts is not None else delivery.attempt,
            extra=letter.headers,
        )


class InMemoryBroker:
    """Runs services' subscribed handlers for published events, in memory (see the module)."""

    def __init__(self, *, max_steps: int = 10_000) -> None:
        self._services: dict[str, _Service] = {}
        self._max_steps = max_steps
        #: Every event published, by a test or by a service, in order.
        self.published: list[CloudEvent] = []
        #: Every retry, in order.
        self.retried: list[Retried] = []
        self._draining = False
        self._taps: list[str] = []
        self._stopped: set[str] = set()

    def tap(self, *bindings: str) -> None:
        """Bind a listening queue (as ``ferry_testing.tap`` does on the broker): events that
        match are routable and recorded in :attr:`published`, though no service takes them."""
        self._taps.extend(bindings or ("#",))

    # ------------------------------------------------------------------ services

    async def start(self, runtime: ServiceRuntime) -> ServiceRuntime:
        """Attach ``runtime`` (its publisher and dead letters are this broker's now), bind its
        queue, and run its start hooks."""
        if runtime.service in self._services:
            raise ValueError(f"{runtime.service} is already started")
        runtime.attach(_Publisher(self), _DeadLetters(self, runtime.service))
        self._services[runtime.service] = _Service(runtime, runtime.subscriptions())
        for hook in runtime.start_hooks:
            await hook()
        runtime.started.set()
        return runtime

    async def stop(self) -> None:
        """Run the stop hooks of every service not yet stopped, last started first. What was
        published and dead-lettered can still be read."""
        for name, service in reversed(self._services.items()):
            if name in self._stopped:
                continue
            self._stopped.add(name)
            for hook in service.runtime.stop_hooks:
                await hook()

    def service(self, name: str) -> _Service:
        try:
            return self._services[name]
        except KeyError:
            raise KeyError(f"{name} is not started on this broker") from None

    # ------------------------------------------------------------------ publishing

    def route(self, event: CloudEvent, *, headers: Mapping[str, Any] | None = None) -> None:
        """Put ``event`` in the queue of every service bound to its type; nothing is handled
        until :meth:`drain`. Raises :class:`PublishFailed` when no queue is bound."""
        self._route(
            _Message(body=encode(event), headers=dict(headers or {}), routing_key=event.type),
            event,
        )

    def _route(self, message: _Message, event: CloudEvent | None = None) -> None:
        bound = [
            service
            for service in self._services.values()
            if any(
                topic_matches(key, message.routing_key) for key in service.subscriptions.event_types
            )
        ]
        tapped = any(topic_matches(key, message.routing_key) for key in self._taps)
        if not bound and not tapped:
            raise PublishFailed(
                f"the broker could not route {message.routing_key} with key "
                f"{message.routing_key!r}: no queue is bound for it",
                code="unroutable",
            )
        if event is not None:
            self.published.append(event)
        for service in bound:
            # a first arrival: what a publisher may not decide is not carried, and where it
            # was published is recorded, as the consumer does
            origin = {
                ORIGINAL_EXCHANGE_HEADER: service.runtime.settings.exchange,
                ORIGINAL_ROUTING_KEY_HEADER: message.routing_key,
            }
            service.queue.append(
                _Message(
                    message.body,
                    {**without_untrusted(message.headers), **origin},
                    message.routing_key,
                    message.user_id,
                    message.content_type,
                )
            )

    async def publish(
        self,
        event: CloudEvent,
        *,
        headers: Mapping[str, Any] | None = None,
        user_id: str | None = None,
    ) -> None:
        """Publish as a client would (``user_id`` as the broker checked it), then handle
        everything that follows from it, until no queue has a message waiting."""
        self._route(
            _Message(
                body=encode(event),
                headers=dict(headers or {}),
                routing_key=event.type,
                user_id=user_id,
            ),
            event,
        )
        await self.drain()

    async def publish_raw(
        self,
        body: bytes,
        routing_key: str,
        *,
        headers: Mapping[str, Any] | None = None,
        content_type: str = STRUCTURED_CONTENT_TYPE,
    ) -> None:
        """Publish bytes that may not be an event at all (hostile input), then drain."""
        self._route(_Message(body, dict(headers or {}), routing_key, None, content_type))
        await self.drain()

    # ------------------------------------------------------------------ handling

    async def drain(self) -> None:
        """Handle what is waiting, and what that publishes, until every queue is empty."""
        if self._draining:
            return
        self._draining = True
        try:
            steps = 0
            while any(service.queue for service in self._services.values()):
                for service in list(self._services.values()):
                    if service.queue:
                        steps += 1
                        if steps > self._max_steps:
                            raise RuntimeError(
                                f"still handling after {self._max_steps} steps: do the "
                                "services publish to each other in a loop?"
                            )
                        await self._handle(service)
                await asyncio.sleep(0)
        finally:
            self._draining = False

    async def wait_for(
        self, event_type: str, *, count: int = 1, timeout: float = 5.0
    ) -> list[CloudEvent]:
        """The first ``count`` published events of ``event_type``, waiting (and draining) for
        what a service publishes from a background task (an outbox relay)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            await self.drain()
            found = [e for e in self.published if e.type == event_type]
            if len(found) >= count:
                return found[:count]
            if loop.time() > deadline:
                raise TimeoutError(
                    f"{len(found)} of {count} {event_type} published within {timeout:g} s; "
                    f"published: {[e.type for e in self.published]}"
                )
            await asyncio.sleep(0.005)

    def dead_letters(self, service: str) -> list[DeadLettered]:
        return list(self.service(service).dead)

    def events(self, event_type: str) -> list[CloudEvent]:
        return [event for event in self.published if event.type == event_type]

    async def _handle(self, service: _Service) -> None:
        subs = service.subscriptions
        if subs.batch_handler is not None:
            batch = [
                service.queue.popleft() for _ in range(min(subs.max_batch, len(service.queue)))
            ]
        else:
            batch = [service.queue.popleft()]
        received: list[tuple[Delivery[EventData], _Message]] = []
        for message in batch:
            try:
                delivery = decode_delivery(
                    message.body,
                    headers=message.headers,
                    content_type=message.content_type,
                    registry=subs.registry,
                    max_bytes=subs.max_event_bytes,
                    routed_as=message.routing_key,
                    attempt=_attempt(message),
                    user_id=message.user_id,
                    routing_key=message.routing_key,
                )
            except EventError as exc:
                self.dead_letter(service, message, code=exc.code, reason=str(exc))
                continue
            service.in_hand[id(delivery)] = message
            received.append((delivery, message))
        try:
            outcomes = await self._outcomes(service, [d for d, _ in received])
            for (delivery, message), outcome in zip(received, outcomes, strict=True):
                if outcome is not None:
                    self._settle(service, delivery, message, outcome)
        finally:
            for delivery, _ in received:
                service.in_hand.pop(id(delivery), None)

    async def _outcomes(
        self, service: _Service, deliveries: list[Delivery[EventData]]
    ) -> list[BaseException | DeadLetter | None]:
        subs = service.subscriptions
        if not deliveries:
            return []
        if subs.batch_handler is not None:
            try:
                outcomes: list[BaseException | DeadLetter | None] = list(
                    await subs.batch_handler(deliveries)
                )
            except Exception as exc:
                return [exc] * len(deliveries)
            if len(outcomes) != len(deliveries):
                wrong = RuntimeError("batch handler returned the wrong number of outcomes")
                return [wrong] * len(deliveries)
            return outcomes
        [delivery] = deliveries
        handlers = {s.event_type: s for s in subs.handlers}
        subscription = handlers.get(delivery.event.type)
        if subscription is None or not isinstance(delivery.data, subscription.model):
            return [unhandled(subs.service, delivery.event.type)]
        try:
            await subscription.handler(delivery)
        except Exception as exc:
            return [exc]
        return [None]

    def _settle(
        self,
        service: _Service,
        delivery: Delivery[EventData],
        message: _Message,
        outcome: BaseException | DeadLetter,
    ) -> None:
        subs = service.subscriptions
        verdict = (
            outcome
            if isinstance(outcome, DeadLetter)
            else settlement(
                outcome,
                attempt=delivery.attempt,
                max_attempts=subs.max_attempts,
                retry_delays=subs.retry_delays,
            )
        )
        if isinstance(verdict, DeadLetter):
            self.dead_letter(service, message, code=verdict.code, reason=verdict.reason)
            return
        self.retried.append(
            Retried(
                subs.service,
                delivery.event.id,
                delivery.attempt,
                verdict.level,
                verdict.delay,
                verdict.code,
            )
        )
        headers = retry_headers(
            message.headers, attempt=delivery.attempt + 1, code=verdict.code, reason=verdict.reason
        )
        service.queue.append(
            _Message(
                message.body, headers, message.routing_key, message.user_id, message.content_type
            )
        )

    def dead_letter(
        self,
        service: _Service,
        message: _Message,
        *,
        code: str,
        reason: str,
        attempts: int | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        headers = dead_letter_headers(
            message.headers,
            code=code,
            reason=reason,
            attempts=attempts if attempts is not None else _attempt(message),
            service=service.subscriptions.service,
        )
        service.dead.append(
            DeadLettered(
                service.subscriptions.service,
                message.body,
                {**headers, **(extra or {})},
                message.routing_key,
            )
        )


def _attempt(message: _Message) -> int:
    try:
        return max(1, int(str(message.headers.get(ATTEMPT_HEADER, 1))))
    except ValueError:
        return 1


@contextlib.asynccontextmanager
async def in_memory(*runtimes: ServiceRuntime) -> AsyncIterator[InMemoryBroker]:
    """An :class:`InMemoryBroker` with these services started; stopped on the way out."""
    broker = InMemoryBroker()
    try:
        for runtime in runtimes:
            await broker.start(runtime)
        yield broker
    finally:
        await broker.stop()

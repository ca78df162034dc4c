"""The CLI's RabbitMQ side: publishing an artifact with confirms, waiting for its outcome,
and reading or replaying a service's dead-letter queue.

Imported only by ``ferry artifact`` and ``ferry dlq`` (aio-pika and the event
library are not loaded for API commands). Every broker problem becomes a
:class:`CliError`: unreachable → UNREACHABLE, login refused → AUTH, a missing
exchange or queue, an unroutable publish or a nack → REFUSED.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final
from urllib.parse import unquote, urlsplit

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
)
from aio_pika.exceptions import (
    AMQPConnectionError,
    AMQPError,
    ChannelNotFoundEntity,
    InvalidFrameError,
    ProbableAuthenticationError,
)
from aiormq.exceptions import ConnectionNotAllowed

from ferry_cli.errors import CliError, ExitCode
from ferry_events import CloudEvent, EventError, decode, mask_secrets, mask_url
from ferry_events.contract import PARTIES, consumed_by
from ferry_events.deadletter import (
    ATTEMPTS_HEADER,
    CODE_HEADER,
    FAILED_AT_HEADER,
    ORIGINAL_EXCHANGE_HEADER,
    ORIGINAL_ROUTING_KEY_HEADER,
    REASON_HEADER,
    SERVICE_HEADER,
    dead_letter_queue,
    replay_headers,
    service_queue,
)
from ferry_runtime.errors import PublishFailed
from ferry_runtime.publisher import Publisher, build_message, copy_message

STORED: Final = "ferry.artifact.stored.v1"
REJECTED: Final = "ferry.artifact.rejected.v1"
ACCEPTED: Final = "ferry.artifact.accepted.v1"

_BROKER_HINT: Final = (
    "start RabbitMQ ('rabbitmq-server -detached', or 'docker compose -f "
    "deploy/docker-compose.yml up rabbitmq'), or point --amqp-url / FERRY_AMQP_URL at it"
)


@dataclass(frozen=True, slots=True)
class BrokerTarget:
    amqp_url: str
    exchange: str
    queue_prefix: str = "ferry"
    timeout: float = 10.0

    def dead_letter_queue(self, service: str) -> str:
        return dead_letter_queue(self.queue_prefix, service)

    def service_queue(self, service: str) -> str:
        return service_queue(self.queue_prefix, service)


@contextlib.asynccontextmanager
async def connected(target: BrokerTarget) -> AsyncIterator[AbstractConnection]:
    """A plain (not self-reconnecting) connection: a CLI reports and exits, it does not wait."""
    where = mask_url(target.amqp_url)
    try:
        connection = await aio_pika.connect(
            target.amqp_url,
            timeout=target.timeout,
            client_properties={"connection_name": "ferry-cli"},
        )
    except (ProbableAuthenticationError, ConnectionNotAllowed) as exc:
        raise CliError(
            f"RabbitMQ at {where} refused the login: {mask_secrets(str(exc))}",
            ExitCode.AUTH,
            hint="check the user, password and virtual host in --amqp-url / FERRY_AMQP_URL",
        ) from exc
    except (AMQPConnectionError, InvalidFrameError) as exc:
        if "Connection.Close" not in str(exc):
            raise _unreachable(where, exc) from exc
        # the broker answered, then closed the connection while it was being opened
        # (aiormq reports it as an unexpected frame)
        raise CliError(
            f"RabbitMQ at {where} closed the connection while opening it: the virtual host "
            "does not exist, or this user may not use it",
            ExitCode.AUTH,
            hint="check the virtual host (the URL's path) in --amqp-url / FERRY_AMQP_URL",
        ) from exc
    except (AMQPError, OSError, TimeoutError) as exc:
        raise _unreachable(where, exc) from exc
    except ValueError as exc:
        raise CliError(
            f"--amqp-url {where} is not a valid AMQP URL: {mask_secrets(str(exc))}",
            ExitCode.USAGE,
        ) from exc
    try:
        yield connection
    finally:
        with contextlib.suppress(AMQPError, OSError, RuntimeError):
            await connection.close()


def _unreachable(where: str, exc: BaseException) -> CliError:
    reason = mask_secrets(str(exc)) or type(exc).__name__
    return CliError(
        f"could not reach RabbitMQ at {where}: {reason}", ExitCode.UNREACHABLE, hint=_BROKER_HINT
    )


async def _exchange(channel: AbstractChannel, target: BrokerTarget) -> AbstractExchange:
    try:
        return await channel.get_exchange(target.exchange, ensure=True)
    except ChannelNotFoundEntity as exc:
        raise CliError(
            f"the exchange {target.exchange!r} does not exist on the broker: no Ferry service "
            "has started against it yet",
            hint="start the services (make run), or check --exchange / FERRY_EXCHANGE",
        ) from exc


def _unroutable(routing_key: str, target: BrokerTarget, consumer: str) -> CliError:
    return CliError(
        f"nothing is bound to {routing_key} on exchange {target.exchange!r}: the message was "
        "returned, not stored",
        hint=f"start {consumer} (make run starts every service) so its queue is declared, "
        "then run this again",
    )


async def _publish(
    channel: AbstractChannel,
    exchange: AbstractExchange,
    message: aio_pika.Message,
    routing_key: str,
    *,
    target: BrokerTarget,
    consumer: str,
) -> None:
    """Publish mandatory and wait for the broker's confirm (the runtime kit's publisher), each
    way it can fail told as what to do about it."""
    publisher = Publisher(channel, exchange, service="ferry-cli")
    try:
        await publisher.publish_message(
            message, routing_key, message.type or routing_key, timeout=target.timeout
        )
    except PublishFailed as exc:
        cause = exc.__cause__
        if exc.code == "unroutable":
            raise _unroutable(routing_key, target, consumer) from cause
        if exc.code == "nack":
            raise CliError(
                f"RabbitMQ refused the message (nack): {cause}",
                hint="a queue may be full (x-overflow reject-publish) or the broker low on "
                "disk; see the RabbitMQ logs, then try again",
            ) from cause
        raise CliError(
            f"RabbitMQ did not confirm the message ({cause!r}); it may or may not be stored",
            ExitCode.UNREACHABLE,
            hint="publishing again is safe: consumers drop duplicates by event id",
        ) from cause


def broker_user(amqp_url: str) -> str:
    """The user an AMQP URL logs in as (``guest`` when it names none, as aio-pika does)."""
    try:
        user = urlsplit(amqp_url).username
    except ValueError:
        user = None
    return unquote(user) if user else "guest"


# --------------------------------------------------------------------------- artifact push


async def publish_event(
    target: BrokerTarget,
    event: CloudEvent,
    *,
    wait: float | None = None,
    on_published: Callable[[], None] | None = None,
    on_progress: Callable[[CloudEvent], None] | None = None,
) -> CloudEvent | None:
    """Publish ``event`` with confirms; with ``wait``, return the stored or rejected event
    that carries its correlation id (``None`` when ``wait`` is not given)."""
    async with connected(target) as connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        exchange = await _exchange(channel, target)
        outcome: asyncio.Future[CloudEvent] = asyncio.get_running_loop().create_future()
        if wait is not None:
            listen = await connection.channel()
            queue = await listen.declare_queue(exclusive=True, auto_delete=True)
            for key in (ACCEPTED, STORED, REJECTED):
                await queue.bind(target.exchange, routing_key=key)

            async def on_message(message: AbstractIncomingMessage) -> None:
                try:
                    heard = decode(
                        message.body,
                        headers=message.headers or {},
                        content_type=message.content_type,
                    )
                except EventError:
                    return
                if heard.correlationid != event.correlationid or outcome.done():
                    return
                if heard.type == ACCEPTED:
                    if on_progress is not None:
                        on_progress(heard)
                    return
                outcome.set_result(heard)

            await queue.consume(on_message, no_ack=True)
        # user_id: the broker checks it is the connection's user, and artifact-ingest knows by
        # it which CI identity published the build
        message = build_message(event, user_id=broker_user(target.amqp_url))
        await _publish(
            channel, exchange, message, event.type, target=target, consumer="artifact-ingest"
        )
        if on_published is not None:
            on_published()
        if wait is None:
            return None
        try:
            return await asyncio.wait_for(outcome, wait)
        except TimeoutError:
            raise CliError(
                f"the artifact was published (event {event.id}) but neither "
                f"{STORED} nor {REJECTED} arrived within {wait:g} s",
                hint="are artifact-ingest and git-writer running? a dead-lettered event shows "
                "in 'ferry dlq list artifact-ingest' or 'ferry dlq list git-writer'",
            ) from None


# --------------------------------------------------------------------------- dead letters


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _plain(value: object) -> object:
    """A header value as JSON can hold it."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _envelope(message: AbstractIncomingMessage) -> dict[str, Any]:
    """What the body says about itself (structured mode), best effort."""
    try:
        body = json.loads(message.body)
    except (ValueError, UnicodeDecodeError):
        return {}
    return body if isinstance(body, dict) else {}


def original_routing_key(message: AbstractIncomingMessage) -> str | None:
    """The key the message was first published with: the event type, for people to read.

    ``x-ferry-original-routing-key`` as the service's consumer recorded it; for a message
    without it (the broker dead-lettered it, or an older version wrote it after a retry),
    the message's ``type`` property, its ``ce-type`` header or its body. What a replay may
    use is decided by :func:`replay_route`, which trusts less.
    """
    headers = message.headers or {}
    if _text(headers.get(ORIGINAL_EXCHANGE_HEADER)) and headers.get(ORIGINAL_ROUTING_KEY_HEADER):
        return _text(headers[ORIGINAL_ROUTING_KEY_HEADER])
    return _routed_type(message)


def _routed_type(message: AbstractIncomingMessage) -> str | None:
    """The event type a message names itself: its ``type`` property, header or body."""
    headers = message.headers or {}
    if message.type:
        return message.type
    for key in ("ce-type", "ce_type", "cloudEvents:type", "cloudEvents_type"):
        if headers.get(key):
            return _text(headers[key])
    found = _envelope(message).get("type")
    return found if isinstance(found, str) and found else None


@dataclass(slots=True)
class DeadLetter:
    """One dead-lettered message, as ``ferry dlq list`` shows it."""

    position: int
    event_id: str
    event_type: str
    routing_key: str | None
    code: str
    reason: str
    attempts: int | None
    failed_at: str
    service: str
    correlation_id: str
    subject: str
    size: int
    headers: dict[str, object] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {
            "position": self.position,
            "eventId": self.event_id,
            "eventType": self.event_type,
            "routingKey": self.routing_key,
            "code": self.code,
            "reason": self.reason,
            "attempts": self.attempts,
            "failedAt": self.failed_at,
            "service": self.service,
            "correlationId": self.correlation_id,
            "subject": self.subject,
            "size": self.size,
            "headers": self.headers,
        }


def describe(position: int, message: AbstractIncomingMessage) -> DeadLetter:
    headers = message.headers or {}
    envelope = _envelope(message)
    attempts_raw = headers.get(ATTEMPTS_HEADER)
    try:
        attempts = int(_text(attempts_raw)) if attempts_raw is not None else None
    except ValueError:
        attempts = None
    return DeadLetter(
        position=position,
        # the envelope's own id first: AMQP message ids may be set by the client library
        event_id=_text(envelope.get("id") or headers.get("ce-id") or message.message_id),
        # a body that is not a CloudEvent still has the type it was routed with
        event_type=_text(
            envelope.get("type") or headers.get("ce-type") or original_routing_key(message)
        ),
        routing_key=original_routing_key(message),
        code=_text(headers.get(CODE_HEADER)),
        reason=_text(headers.get(REASON_HEADER)),
        attempts=attempts,
        failed_at=_text(headers.get(FAILED_AT_HEADER)),
        service=_text(headers.get(SERVICE_HEADER)),
        correlation_id=_text(message.correlation_id or envelope.get("correlationid")),
        subject=_text(envelope.get("subject")),
        size=len(message.body),
        headers={str(k): _plain(v) for k, v in headers.items()},
    )


async def _dead_letter_queue(
    connection: AbstractConnection, target: BrokerTarget, service: str
) -> tuple[AbstractChannel, AbstractQueue]:
    channel = await connection.channel()
    name = target.dead_letter_queue(service)
    try:
        queue = await channel.declare_queue(name, passive=True)
    except ChannelNotFoundEntity as exc:
        raise CliError(
            f"there is no dead-letter queue {name!r} on the broker",
            hint="check the service name (artifact-ingest, git-writer, promotion or notifier; "
            "the cluster-watcher consumes nothing) and --queue-prefix / FERRY_QUEUE_PREFIX",
        ) from exc
    return channel, queue


@dataclass(slots=True)
class Listing:
    queue: str
    total: int
    messages: list[DeadLetter]


async def list_dead_letters(target: BrokerTarget, service: str, limit: int) -> Listing:
    """Read up to ``limit`` dead letters without removing them.

    Each is fetched unacknowledged and all go back to the queue when the channel
    closes, so the queue is unchanged afterwards.
    """
    async with connected(target) as connection:
        channel, queue = await _dead_letter_queue(connection, target, service)
        total = queue.declaration_result.message_count or 0
        found: list[DeadLetter] = []
        for position in range(1, min(limit, total) + 1):
            message = await queue.get(no_ack=False, fail=False, timeout=target.timeout)
            if message is None:
                break
            found.append(describe(position, message))
        await channel.close()
        return Listing(queue=queue.name, total=total, messages=found)


@dataclass(slots=True)
class ReplayResult:
    queue: str
    replayed: list[DeadLetter]
    skipped: list[tuple[DeadLetter, str]]
    remaining: int


def broker_dead_lettered(message: AbstractIncomingMessage, service_queue: str) -> bool:
    """Whether the broker, not Ferry's consumer, moved this message from the service queue
    to its dead-letter queue (its delivery limit was reached).

    The broker records that in ``x-death``, which Ferry's consumer never carries into a copy
    of a message it received from a publisher. Such a message still has the headers its
    publisher gave it, so none of its ``x-ferry-*`` headers can be trusted.
    """
    deaths = (message.headers or {}).get("x-death")
    if not isinstance(deaths, list | tuple):
        return False
    return any(
        isinstance(death, dict) and _text(death.get("queue")) == service_queue for death in deaths
    )


def replay_route(
    message: AbstractIncomingMessage, target: BrokerTarget, service: str
) -> tuple[str | None, str]:
    """The routing key to republish a dead letter to the exchange with, or None and why not.

    Only a key that Ferry's consumer recorded (``x-ferry-original-routing-key``), that the
    service's queue consumes, and that the event's own type agrees with: a dead letter is
    never a way to publish an event type its service does not take.
    """
    headers = message.headers or {}
    if broker_dead_lettered(message, target.service_queue(service)):
        return None, (
            "the broker dead-lettered it (delivery limit), so its headers are its publisher's, "
            "not Ferry's, and where it was first published cannot be trusted; "
            "replay it to the service's own queue with --direct"
        )
    exchange = _text(headers.get(ORIGINAL_EXCHANGE_HEADER))
    if ORIGINAL_EXCHANGE_HEADER in headers and not exchange:
        # the consumer recorded that it could not tell (a --direct replay without an origin)
        return None, "where it was first published is not known; replay it with --direct"
    key: str | None = _text(headers.get(ORIGINAL_ROUTING_KEY_HEADER))
    if not exchange or exchange.endswith(".dlx") or not key:
        # written without an origin (by hand, or by an older version after a retry): the
        # event type it was routed with, checked below like a recorded one
        key = _routed_type(message)
    if not key:
        return None, "its event type cannot be told from the message"
    why = _unfit_key(message, service, key)
    return (None, why) if why else (key, "")


def _unfit_key(message: AbstractIncomingMessage, service: str, key: str) -> str:
    """Why ``key`` may not be used to replay ``message`` from ``service``'s queue ("": it may)."""
    if service not in PARTIES:
        return (
            f"{service} is not a Ferry service, so which event types it consumes is not known; "
            "replay it with --direct"
        )
    if key not in consumed_by(service):
        return (
            f"it was recorded as published with routing key {key}, which {service}'s queue "
            "does not consume; a replay republishes only what the service consumes"
        )
    claimed = _envelope(message).get("type")
    if not isinstance(claimed, str):
        claimed = _text((message.headers or {}).get("ce-type"))
    if claimed and claimed != key:
        return (
            f"the event says it is {claimed} but was published with routing key {key} "
            "(type-mismatch); replaying it would fail the same way"
        )
    return ""


def replay_message(
    message: AbstractIncomingMessage, source_queue: str, *, keep_origin: bool = True
) -> aio_pika.Message:
    """The message as first published, failure headers stripped, attempt count reset.

    ``keep_origin`` False also drops where it was first published (headers Ferry did not
    write, which the consumer would otherwise trust on a --direct replay).
    """
    headers = replay_headers(
        message.headers or {}, source_queue=source_queue, keep_origin=keep_origin
    )
    return copy_message(message, headers)


async def replay_dead_letters(
    target: BrokerTarget,
    service: str,
    limit: int,
    *,
    direct: bool = False,
    on_replayed: Callable[[DeadLetter], None] | None = None,
) -> ReplayResult:
    """Republish up to ``limit`` dead letters, each confirmed by the broker before it is acked.

    To the exchange with the event's original routing key (every consumer of that
    type sees it again; they drop duplicates by event id), or with ``direct`` to
    the service's own queue only. A message whose event type cannot be told is
    left in the dead-letter queue.
    """
    async with connected(target) as connection:
        channel, queue = await _dead_letter_queue(connection, target, service)
        publish_channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        exchange = (
            publish_channel.default_exchange if direct else await _exchange(publish_channel, target)
        )
        replayed: list[DeadLetter] = []
        skipped: list[tuple[DeadLetter, str]] = []
        # Only what was there when the replay started: a replayed message that fails
        # again comes back to the tail of this queue and must not be replayed again.
        waiting = queue.declaration_result.message_count or 0
        for position in range(1, min(limit, waiting) + 1):
            message = await queue.get(no_ack=False, fail=False, timeout=target.timeout)
            if message is None:
                break
            letter = describe(position, message)
            if direct:
                key: str | None = target.service_queue(service)
                why = ""
            else:
                key, why = replay_route(message, target, service)
            if key is None:
                # held unacked until the channel closes, so the next get moves on
                skipped.append((letter, why))
                continue
            trusted = not broker_dead_lettered(message, target.service_queue(service))
            copy = replay_message(message, queue.name, keep_origin=trusted)
            try:
                await _publish(
                    publish_channel, exchange, copy, key, target=target, consumer=service
                )
            except CliError as error:
                error.details.append(
                    f"{len(replayed)} message(s) were replayed before this one; "
                    f"it and the rest stay in {queue.name}"
                )
                raise
            await message.ack()
            replayed.append(letter)
            if on_replayed is not None:
                on_replayed(letter)
        await channel.close()
        check = await connection.channel()
        # the skipped ones go back to the queue as the channel closes; a quorum queue may
        # count them a moment later
        for _ in range(20):
            remaining = (
                await check.declare_queue(target.dead_letter_queue(service), passive=True)
            ).declaration_result.message_count or 0
            if remaining >= len(skipped):
                break
            await asyncio.sleep(0.05)
        return ReplayResult(
            queue=queue.name, replayed=replayed, skipped=skipped, remaining=remaining
        )

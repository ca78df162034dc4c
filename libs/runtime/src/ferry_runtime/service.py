"""The life of a service process: connect, declare, consume, serve, and stop cleanly.

A service's composition root builds its adapters and handlers, then::

    runtime = ServiceRuntime("artifact-ingest", settings)
    runtime.subscribe(ArtifactPublished, handler.on_published)  # takes Delivery[ArtifactPublished]
    runtime.set_concurrency(4)
    await runtime.run()

``run`` returns after SIGTERM or SIGINT (or ``stop()``): it stops consuming,
lets in-flight messages finish and ack, returns buffered ones to the broker,
stops the HTTP server and closes the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import threading
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractQueue,
    AbstractRobustConnection,
)
from starlette.routing import BaseRoute

from ferry_events import CloudEvent, EventData, EventRegistry, default_registry
from ferry_runtime.consumer import (
    BatchHandler,
    Consumer,
    ConsumerOptions,
    DeadLetter,
    Delivery,
    Handler,
    Subscription,
)
from ferry_runtime.http import HttpServer, Readiness, health_routes, operational_app
from ferry_runtime.logging import get_logger
from ferry_runtime.metrics import BROKER_CONNECTED
from ferry_runtime.publisher import Publisher
from ferry_runtime.settings import RuntimeSettings, mask_url
from ferry_runtime.topology import (
    ServiceQueues,
    declare_exchange,
    declare_redelivery_exchange,
    declare_service_queues,
)

log = get_logger(__name__)

Hook = Callable[[], Awaitable[None]]
E = TypeVar("E", bound=EventData)


class EventPublisher(Protocol):
    """What a service publishes through: the broker's :class:`Publisher`, or an in-memory one."""

    async def publish(self, event: CloudEvent, *, timeout: float = 30.0) -> None: ...

    async def publish_many(
        self, events: Iterable[CloudEvent], *, timeout: float = 30.0
    ) -> None: ...


class DeadLetters(Protocol):
    """What dead-letters a delivery in hand: the consumer, or an in-memory broker."""

    async def dead_letter(self, delivery: Delivery[EventData], letter: DeadLetter) -> None: ...


@dataclass(frozen=True, slots=True)
class Subscriptions:
    """What a service consumes and how: for the consumer, and for ``ferry_testing``'s
    in-memory runtime, which runs the same handlers without a broker."""

    service: str
    handlers: tuple[Subscription, ...]
    batch_handler: BatchHandler | None
    batch_types: tuple[type[EventData], ...]
    max_batch: int
    max_attempts: int
    retry_delays: tuple[float, ...]
    max_event_bytes: int
    registry: EventRegistry

    @property
    def event_types(self) -> tuple[str, ...]:
        """The routing keys the service's queue is bound to."""
        if self.batch_handler is not None:
            return tuple(sorted(model.event_type for model in self.batch_types))
        return tuple(sorted(s.event_type for s in self.handlers))


class BrokerUnavailable(RuntimeError):
    """The broker did not answer at start-up."""


def broker_answers(url: str, *, timeout: float = 2.0) -> bool:
    """Whether anything accepts a TCP connection at the AMQP URL's host and port (a quick
    probe before starting things that need the broker; it does not log in)."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5672), timeout):
            return True
    except (OSError, ValueError):
        return False


async def connect_broker(
    url: str, *, attempts: int = 0, service: str = "ferry"
) -> AbstractRobustConnection:
    """Connect with backoff. ``attempts`` = 0 tries until cancelled."""
    delay = 0.5
    tried = 0
    while True:
        tried += 1
        try:
            return await aio_pika.connect_robust(
                url, client_properties={"connection_name": service}
            )
        except (OSError, aio_pika.exceptions.AMQPError, ConnectionError) as exc:
            if attempts and tried >= attempts:
                raise BrokerUnavailable(
                    f"RabbitMQ is not reachable at {mask_url(url)} ({exc!r}). "
                    "Start one (for example "
                    "'rabbitmq-server -detached', or 'docker compose -f deploy/docker-compose.yml "
                    "up rabbitmq') or set FERRY_AMQP_URL."
                ) from exc
            log.warning(
                "broker not reachable; retrying",
                url=mask_url(url),
                error=repr(exc),
                retry_in_seconds=delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 15.0)


class ServiceRuntime:
    """Broker, consumer, HTTP and signals for one service process."""

    def __init__(
        self,
        service: str,
        settings: RuntimeSettings,
        *,
        registry: EventRegistry = default_registry,
    ) -> None:
        self.service = service
        self.settings = settings
        self.registry = registry
        self.readiness = Readiness()
        self.connection: AbstractRobustConnection | None = None
        self.channel: AbstractChannel | None = None
        self.exchange: AbstractExchange | None = None
        self._publisher: EventPublisher | None = None
        self._dead_letters: DeadLetters | None = None
        self._subscriptions: dict[str, Subscription] = {}
        self._batch_handler: BatchHandler | None = None
        self._batch_types: tuple[type[EventData], ...] = ()
        self._options = ConsumerOptions(
            max_attempts=settings.max_attempts, max_event_bytes=settings.max_event_bytes
        )
        self._prefetch = settings.prefetch
        self._single_active = False
        self._consumer: Consumer | None = None
        self._broker_publisher: Publisher | None = None
        self._http: HttpServer | None = None
        self._app: Any = None
        self._stop = asyncio.Event()
        self._started = asyncio.Event()
        self._on_start: list[Hook] = []
        self._on_stop: list[Hook] = []
        self.readiness.add("broker", self._broker_ready)

    # ------------------------------------------------------------------ configuration

    def subscribe(self, model: type[E], handler: Handler[E]) -> None:
        """Handle ``model``'s event type: each delivery goes to ``handler`` as a
        ``Delivery[model]``, its data already an instance of ``model``."""
        if self._batch_handler is not None:
            raise RuntimeError("this service handles batches; subscribe one way only")
        if model.event_type in self._subscriptions:
            raise ValueError(f"{model.event_type} already has a handler")
        self._subscriptions[model.event_type] = Subscription(model, handler)

    def set_concurrency(self, concurrency: int, *, prefetch: int | None = None) -> None:
        """Run ``concurrency`` workers, each handling one message at a time."""
        self._options.concurrency = concurrency
        self._prefetch = prefetch or max(self.settings.prefetch, concurrency)

    def subscribe_batches(
        self,
        models: Sequence[type[EventData]],
        handler: BatchHandler,
        *,
        max_batch: int = 100,
        prefetch: int | None = None,
        single_active_consumer: bool = False,
    ) -> None:
        """Handle these event types in batches of whatever is waiting (up to ``max_batch``)."""
        if self._subscriptions:
            raise RuntimeError("this service subscribes one handler per event; not batches too")
        self._batch_handler = handler
        self._batch_types = tuple(models)
        self._options.max_batch = max_batch
        self._prefetch = prefetch or max(self.settings.prefetch, max_batch)
        self._single_active = single_active_consumer

    def subscriptions(self) -> Subscriptions:
        return Subscriptions(
            service=self.service,
            handlers=tuple(self._subscriptions.values()),
            batch_handler=self._batch_handler,
            batch_types=self._batch_types,
            max_batch=self._options.max_batch,
            max_attempts=self._options.max_attempts,
            retry_delays=self.settings.retry_delays,
            max_event_bytes=self._options.max_event_bytes,
            registry=self.registry,
        )

    def serve(self, app: Any) -> None:
        """Serve this ASGI app (FastAPI or Starlette) instead of the operational-only one.

        The app should include :func:`health_routes`.
        """
        self._app = app

    def routes(self) -> list[BaseRoute]:
        """The operational routes, to mount into a service's own app."""
        return health_routes(self.readiness, self.service)

    def on_start(self, hook: Hook) -> None:
        """Run ``hook`` once the broker is connected, before consuming starts."""
        self._on_start.append(hook)

    def on_stop(self, hook: Hook) -> None:
        """Run ``hook`` after consuming stopped, before the connection closes."""
        self._on_stop.append(hook)

    # ------------------------------------------------------------------ state

    @property
    def publisher(self) -> EventPublisher:
        if self._publisher is None:
            raise RuntimeError("the broker is not connected yet")
        return self._publisher

    @property
    def dead_letters(self) -> DeadLetters:
        """What copies a delivery in hand to the service's dead-letter queue now, with the
        dead-letter contract's headers; its handler's outcome settles it as usual."""
        if self._dead_letters is None:
            raise RuntimeError("this service is not consuming")
        return self._dead_letters

    def attach(self, publisher: EventPublisher, dead_letters: DeadLetters) -> None:
        """Publish and dead-letter through these instead of the broker (an in-memory runtime
        does this; ``run`` does not then connect)."""
        self._publisher = publisher
        self._dead_letters = dead_letters

    @property
    def start_hooks(self) -> tuple[Hook, ...]:
        return tuple(self._on_start)

    @property
    def stop_hooks(self) -> tuple[Hook, ...]:
        return tuple(self._on_stop)

    @property
    def http_port(self) -> int:
        return self._http.port if self._http else 0

    @property
    def started(self) -> asyncio.Event:
        return self._started

    def queues(self) -> ServiceQueues:
        return ServiceQueues(
            service=self.service,
            prefix=self.settings.queue_prefix,
            routing_keys=self.subscriptions().event_types,
            retry_delays=self.settings.retry_delays,
            delivery_limit=self.settings.delivery_limit,
            single_active_consumer=self._single_active,
        )

    async def _broker_ready(self) -> bool:
        ready = (
            self.connection is not None
            and not self.connection.is_closed
            and self.channel is not None
            and not self.channel.is_closed
        )
        BROKER_CONNECTED.labels(self.service).set(1 if ready else 0)
        # ready means consuming: a replica whose queues are not yet bound must not take traffic
        return ready and self._started.is_set()

    def _on_connection_lost(self, _: object, error: BaseException | None = None) -> None:
        if self._stop.is_set():
            return
        BROKER_CONNECTED.labels(self.service).set(0)
        log.warning(
            "broker connection lost; reconnecting (messages in flight will be redelivered)",
            error=repr(error) if error else None,
        )

    def _on_reconnected(self, _: object) -> None:
        BROKER_CONNECTED.labels(self.service).set(1)
        log.info("broker connection restored; consuming again")

    def stop(self) -> None:
        """Ask ``run`` to shut down (what SIGTERM does)."""
        self._stop.set()

    # ------------------------------------------------------------------ running

    async def connect(self, *, attempts: int = 0) -> None:
        """Connect, open a confirming channel, declare the exchange and this service's queues."""
        # the name operators see in the management UI and rabbitmqctl: which service,
        # which queues, which process
        name = f"ferry {self.service} [{self.settings.queue_prefix}] pid {os.getpid()}"
        self.connection = await connect_broker(
            self.settings.amqp_url, attempts=attempts, service=name
        )
        self.connection.close_callbacks.add(self._on_connection_lost)
        self.connection.reconnect_callbacks.add(self._on_reconnected)
        self.channel = await self.connection.channel(publisher_confirms=True, on_return_raises=True)
        await self.channel.set_qos(prefetch_count=self._prefetch)
        self.exchange = await declare_exchange(self.channel, self.settings.exchange)
        self._broker_publisher = Publisher(self.channel, self.exchange, service=self.service)
        self._publisher = self._broker_publisher
        BROKER_CONNECTED.labels(self.service).set(1)
        log.info("broker connected", url=mask_url(self.settings.amqp_url))

    async def _start_consuming(self) -> None:
        queues = self.queues()
        if not queues.routing_keys:
            return
        assert self.channel is not None
        assert self.exchange is not None
        assert self._broker_publisher is not None
        redelivery = await declare_redelivery_exchange(self.channel, queues)
        queue = await declare_service_queues(self.channel, self.exchange, queues, redelivery)
        self._broker_publisher.redelivery_exchange = redelivery
        self._consumer = self.consumer_over(queue, self._broker_publisher)
        await self._consumer.start()

    def consumer_over(self, queue: AbstractQueue, publisher: Publisher) -> Consumer:
        """This service's consumer over ``queue``: it publishes, and forwards retries and dead
        letters, with ``publisher``, which becomes the runtime's publisher, and it is the
        runtime's dead letters.

        What ``run`` builds once its queues are declared; a test drives the same consumer
        in-process (``ferry_testing.fuzz``) with a publisher of its own and no broker.
        """
        consumer = Consumer(
            service=self.service,
            queue=queue,
            queues=self.queues(),
            publisher=publisher,
            registry=self.registry,
            subscriptions=tuple(self._subscriptions.values()),
            batch_handler=self._batch_handler,
            options=self._options,
        )
        self._publisher = publisher
        self._dead_letters = consumer
        return consumer

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: int) -> None:
        log.info("shutting down", signal=signal.Signals(sig).name)
        self._stop.set()

    async def run(self, *, install_signals: bool = True) -> None:
        """Run until stopped. Logs the effective settings (secrets masked) first."""
        log.info("starting", settings=self.settings.effective())
        if install_signals:
            self._install_signals()
        app = self._app or operational_app(self.readiness, self.service)
        self._http = HttpServer(app, self.settings.http_host, self.settings.http_port)
        await self._http.start()
        log.info("http listening", host=self.settings.http_host, port=self._http.port)
        connect = asyncio.create_task(self.connect())
        stop_wait = asyncio.create_task(self._stop.wait())
        await asyncio.wait({connect, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        try:
            if connect.done():
                connect.result()
                for hook in self._on_start:
                    await hook()
                await self._start_consuming()
                self._started.set()
                log.info("ready")
                await stop_wait
        finally:
            connect.cancel()
            stop_wait.cancel()
            await self._shutdown()

    async def _shutdown(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop(self.settings.shutdown_timeout)
        for hook in self._on_stop:
            try:
                await hook()
            except Exception:
                log.exception("stop hook failed")
        if self._http is not None:
            await self._http.stop()
        if self.connection is not None:
            await self.connection.close()
        BROKER_CONNECTED.labels(self.service).set(0)
        log.info("stopped")

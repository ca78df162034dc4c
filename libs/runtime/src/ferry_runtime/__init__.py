"""Ferry's runtime kit: what every service uses so that none re-writes it."""

from ferry_events.deadletter import ATTEMPT_HEADER, CODE_HEADER, REASON_HEADER
from ferry_runtime import amqp  # noqa: F401 - installs the reader of short strings that are not UTF-8
from ferry_runtime.consumer import (
    BatchHandler,
    Consumer,
    ConsumerOptions,
    DeadLetter,
    Delivery,
    Handler,
    Retry,
    Subscription,
    carried_headers,
    decode_delivery,
    origin_headers,
    settlement,
    unhandled,
)
from ferry_runtime.errors import HandlerError, PermanentError, PublishFailed, TemporaryError
from ferry_runtime.http import HttpServer, Readiness, health_routes, operational_app
from ferry_runtime.logging import bind_contextvars, bound_contextvars, configure_logging, get_logger
from ferry_runtime.publisher import Publisher, build_message, copy_message
from ferry_runtime.service import (
    BrokerUnavailable,
    DeadLetters,
    EventPublisher,
    ServiceRuntime,
    Subscriptions,
    broker_answers,
    connect_broker,
)
from ferry_runtime.settings import RuntimeSettings, mask_secrets, mask_url
from ferry_runtime.topology import ServiceQueues, declare_exchange, declare_service_queues

__all__ = [
    "ATTEMPT_HEADER",
    "CODE_HEADER",
    "REASON_HEADER",
    "BatchHandler",
    "BrokerUnavailable",
    "Consumer",
    "ConsumerOptions",
    "DeadLetter",
    "DeadLetters",
    "Delivery",
    "EventPublisher",
    "Handler",
    "HandlerError",
    "HttpServer",
    "PermanentError",
    "PublishFailed",
    "Publisher",
    "Readiness",
    "Retry",
    "RuntimeSettings",
    "ServiceQueues",
    "ServiceRuntime",
    "Subscription",
    "Subscriptions",
    "TemporaryError",
    "bind_contextvars",
    "bound_contextvars",
    "broker_answers",
    "build_message",
    "carried_headers",
    "configure_logging",
    "connect_broker",
    "copy_message",
    "declare_exchange",
    "declare_service_queues",
    "decode_delivery",
    "get_logger",
    "health_routes",
    "mask_secrets",
    "mask_url",
    "operational_app",
    "origin_headers",
    "settlement",
    "unhandled",
]

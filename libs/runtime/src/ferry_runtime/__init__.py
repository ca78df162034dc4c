"""Ferry's runtime kit: what every service uses so that none re-writes it.

The names below are imported from their modules when first used (PEP 562), so a process that
needs only a part (the CLI publishes; it runs no consumer, HTTP server or settings) does not
pay for importing the rest at every start.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ferry_runtime import amqp  # noqa: F401 - installs the reader of short strings that are not UTF-8

if TYPE_CHECKING:
    from ferry_events.deadletter import ATTEMPT_HEADER, CODE_HEADER, REASON_HEADER
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
    from ferry_runtime.logging import (
        bind_contextvars,
        bound_contextvars,
        configure_logging,
        get_logger,
    )
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

#: Each public name and the module it lives in.
_WHERE: dict[str, str] = {
    "ATTEMPT_HEADER": "ferry_events.deadletter",
    "CODE_HEADER": "ferry_events.deadletter",
    "REASON_HEADER": "ferry_events.deadletter",
    "BatchHandler": "ferry_runtime.consumer",
    "Consumer": "ferry_runtime.consumer",
    "ConsumerOptions": "ferry_runtime.consumer",
    "DeadLetter": "ferry_runtime.consumer",
    "Delivery": "ferry_runtime.consumer",
    "Handler": "ferry_runtime.consumer",
    "Retry": "ferry_runtime.consumer",
    "Subscription": "ferry_runtime.consumer",
    "carried_headers": "ferry_runtime.consumer",
    "decode_delivery": "ferry_runtime.consumer",
    "origin_headers": "ferry_runtime.consumer",
    "settlement": "ferry_runtime.consumer",
    "unhandled": "ferry_runtime.consumer",
    "HandlerError": "ferry_runtime.errors",
    "PermanentError": "ferry_runtime.errors",
    "PublishFailed": "ferry_runtime.errors",
    "TemporaryError": "ferry_runtime.errors",
    "HttpServer": "ferry_runtime.http",
    "Readiness": "ferry_runtime.http",
    "health_routes": "ferry_runtime.http",
    "operational_app": "ferry_runtime.http",
    "bind_contextvars": "ferry_runtime.logging",
    "bound_contextvars": "ferry_runtime.logging",
    "configure_logging": "ferry_runtime.logging",
    "get_logger": "ferry_runtime.logging",
    "Publisher": "ferry_runtime.publisher",
    "build_message": "ferry_runtime.publisher",
    "copy_message": "ferry_runtime.publisher",
    "BrokerUnavailable": "ferry_runtime.service",
    "DeadLetters": "ferry_runtime.service",
    "EventPublisher": "ferry_runtime.service",
    "ServiceRuntime": "ferry_runtime.service",
    "Subscriptions": "ferry_runtime.service",
    "broker_answers": "ferry_runtime.service",
    "connect_broker": "ferry_runtime.service",
    "RuntimeSettings": "ferry_runtime.settings",
    "mask_secrets": "ferry_runtime.settings",
    "mask_url": "ferry_runtime.settings",
    "ServiceQueues": "ferry_runtime.topology",
    "declare_exchange": "ferry_runtime.topology",
    "declare_service_queues": "ferry_runtime.topology",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'ferry_runtime' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])


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

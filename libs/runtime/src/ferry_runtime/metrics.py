"""Prometheus metrics every service exports on ``/metrics``."""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge, Histogram

MESSAGES: Final = Counter(
    "ferry_messages_total",
    "Messages handled, by service, event type and outcome (acked, retried, dead_lettered).",
    ["service", "event_type", "outcome"],
)
HANDLER_SECONDS: Final = Histogram(
    "ferry_handler_seconds",
    "Time spent handling one message (or one batch), by service and event type.",
    ["service", "event_type"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
PUBLISHED: Final = Counter(
    "ferry_published_total",
    "Events published and confirmed by the broker, by service and event type.",
    ["service", "event_type"],
)
PUBLISH_FAILURES: Final = Counter(
    "ferry_publish_failures_total",
    "Publishes the broker did not confirm, by service and reason.",
    ["service", "reason"],
)
IN_FLIGHT: Final = Gauge(
    "ferry_messages_in_flight", "Messages received and not yet settled, by service.", ["service"]
)
BROKER_CONNECTED: Final = Gauge(
    "ferry_broker_connected", "1 when the service's broker connection is open.", ["service"]
)

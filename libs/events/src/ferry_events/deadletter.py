"""The dead-letter contract: the queues a service's failed messages go to, the headers Ferry
writes when it retries, dead-letters or replays a message, and which of them a reader may trust.

The runtime kit's consumer writes them (through :func:`retry_headers` and
:func:`dead_letter_headers`), the notifier writes them for one destination, and ``ferry dlq``
reads them and strips them (:func:`replay_headers`). Headers that a publisher can set are input,
not provenance: a consumer writes the origin, attempt and failure headers itself on a message's
first arrival, and carries them on only through Ferry's own retry and dead-letter hops.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from ferry_events.envelope import utcnow
from ferry_events.redact import mask_secrets

ATTEMPT_HEADER: Final = "x-ferry-attempt"
"""On a retry copy: the attempt it will be (2 for the first retry)."""
ATTEMPTS_HEADER: Final = "x-ferry-attempts"
"""On a dead letter: how many times it was tried."""
REASON_HEADER: Final = "x-ferry-reason"
CODE_HEADER: Final = "x-ferry-error-code"
FAILED_AT_HEADER: Final = "x-ferry-failed-at"
SERVICE_HEADER: Final = "x-ferry-service"
LAST_ERROR_HEADER: Final = "x-ferry-last-error"
LAST_ERROR_CODE_HEADER: Final = "x-ferry-last-error-code"
ORIGINAL_EXCHANGE_HEADER: Final = "x-ferry-original-exchange"
"""Where the message was first published: written by the consumer on its first arrival."""
ORIGINAL_ROUTING_KEY_HEADER: Final = "x-ferry-original-routing-key"
DESTINATION_HEADER: Final = "x-ferry-destination"
"""On a notifier's dead letter: the one destination it failed for (a replay goes only there)."""
REPLAYED_FROM_HEADER: Final = "x-ferry-replayed-from"
REPLAYED_AT_HEADER: Final = "x-ferry-replayed-at"

#: What Ferry writes when it retries or dead-letters a message.
FERRY_FAILURE_HEADERS: Final = frozenset(
    {
        ATTEMPT_HEADER,
        ATTEMPTS_HEADER,
        REASON_HEADER,
        CODE_HEADER,
        FAILED_AT_HEADER,
        SERVICE_HEADER,
        LAST_ERROR_HEADER,
        LAST_ERROR_CODE_HEADER,
    }
)
#: What the broker writes when it dead-letters a message (a delay queue's TTL, the delivery limit).
BROKER_DEATH_HEADERS: Final = frozenset(
    {
        "x-death",
        "x-first-death-exchange",
        "x-first-death-queue",
        "x-first-death-reason",
        "x-last-death-exchange",
        "x-last-death-queue",
        "x-last-death-reason",
        "x-delivery-count",
    }
)
#: A replayed message starts its life again without these.
FAILURE_HEADERS: Final = FERRY_FAILURE_HEADERS | BROKER_DEATH_HEADERS
ORIGIN_HEADERS: Final = frozenset({ORIGINAL_EXCHANGE_HEADER, ORIGINAL_ROUTING_KEY_HEADER})
#: Never trusted on a message's first arrival: a publisher could have set any of them.
UNTRUSTED_ON_ARRIVAL: Final = FAILURE_HEADERS | ORIGIN_HEADERS

MAX_HEADER_TEXT: Final = 4000


def header_text(value: str) -> str:
    """``value`` with credentials in URLs masked, cut to what a header carries comfortably
    (reasons can be long, and a dead letter is read by people)."""
    value = mask_secrets(value)
    return value if len(value) <= MAX_HEADER_TEXT else value[: MAX_HEADER_TEXT - 1] + "…"


def without_untrusted(headers: Mapping[str, Any]) -> dict[str, Any]:
    """``headers`` less everything a publisher may not decide (see :data:`UNTRUSTED_ON_ARRIVAL`)."""
    return {k: v for k, v in headers.items() if k not in UNTRUSTED_ON_ARRIVAL}


# --------------------------------------------------------------------------- queue names


def service_queue(prefix: str, service: str) -> str:
    """The quorum queue a service consumes: ``<prefix>.<service>``."""
    return f"{prefix}.{service}"


def dead_letter_queue(prefix: str, service: str) -> str:
    """Where a service's permanent failures and exhausted retries go."""
    return f"{service_queue(prefix, service)}.dlq"


def retry_queue(prefix: str, service: str, level: int) -> str:
    """The delay queue of retry ``level`` (0 for the first delay)."""
    return f"{service_queue(prefix, service)}.retry.{level}"


def redelivery_exchange(prefix: str, service: str) -> str:
    """The service's own direct exchange that retries and dead letters travel through."""
    return f"{service_queue(prefix, service)}.dlx"


# --------------------------------------------------------------------------- headers


def retry_headers(
    carried: Mapping[str, Any], *, attempt: int, code: str, reason: str
) -> dict[str, Any]:
    """The headers of a retry copy: what it carries, the attempt it will be, the last error."""
    return {
        **carried,
        ATTEMPT_HEADER: attempt,
        LAST_ERROR_HEADER: header_text(reason),
        LAST_ERROR_CODE_HEADER: code,
    }


def dead_letter_headers(
    carried: Mapping[str, Any],
    *,
    code: str,
    reason: str,
    attempts: int,
    service: str,
    failed_at: datetime | None = None,
) -> dict[str, Any]:
    """The headers of a dead letter: what it carries, and why, when, where and after how many
    attempts it failed. ``reason`` is masked and cut (:func:`header_text`)."""
    return {
        **carried,
        REASON_HEADER: header_text(reason),
        CODE_HEADER: code,
        ATTEMPTS_HEADER: attempts,
        FAILED_AT_HEADER: (failed_at or utcnow()).isoformat(),
        SERVICE_HEADER: service,
    }


def replay_headers(
    headers: Mapping[str, Any],
    *,
    source_queue: str,
    replayed_at: datetime | None = None,
    keep_origin: bool = True,
) -> dict[str, Any]:
    """The headers of a replayed dead letter: failure headers stripped (its attempt count
    starts again), and where and when it was replayed from.

    The origin (exchange, routing key) stays only with ``keep_origin`` and when it names the
    event's own exchange (not a retry's hop, as older versions recorded it): a consumer trusts
    it on a ``--direct`` replay.
    """
    out = {k: v for k, v in headers.items() if k not in FAILURE_HEADERS}
    origin = out.get(ORIGINAL_EXCHANGE_HEADER)
    origin_text = (
        origin.decode("utf-8", "replace") if isinstance(origin, bytes) else str(origin or "")
    )
    if not keep_origin or not origin_text or origin_text.endswith(".dlx"):
        for name in ORIGIN_HEADERS:
            out.pop(name, None)
    out[REPLAYED_FROM_HEADER] = source_queue
    out[REPLAYED_AT_HEADER] = (replayed_at or utcnow()).isoformat()
    return out

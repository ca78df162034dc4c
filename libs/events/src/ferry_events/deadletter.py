"""The dead-letter contract: the headers Ferry writes when it retries or dead-letters a
message, and which of them a reader may trust.

The runtime kit's consumer writes them, the notifier writes them for one destination, and
``ferry dlq`` reads and strips them. Headers that a publisher can set are input, not
provenance: a consumer writes the origin, attempt and failure headers itself on a message's
first arrival, and carries them on only through Ferry's own retry and dead-letter hops.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

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

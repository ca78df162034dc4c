"""How sending to one destination can fail.

Exception tree::

    SendError
    ├── Retryable       a 5xx, a timeout, a refused connection, a rate limit (``retry_after``
    │                   seconds when the remote said so): this destination is tried again
    │                   with backoff; after the last attempt it is dead-lettered.
    │                   ``maybe_sent``: no answer came (a timeout, a dropped connection,
    │                   a 5xx), so the remote may have taken it: look before sending again
    ├── Undeliverable   the remote refused for good (a 4xx, an unknown channel, a refused
    │                   recipient): dead-lettered at once with the reason
    └── NoRecipient     nobody to send to (no Slack user for that email, and no mapping):
                        recorded as skipped and logged; nothing to retry
"""

from __future__ import annotations


class SendError(Exception):
    """Sending to one destination failed."""


class Retryable(SendError):
    def __init__(
        self, message: str, *, retry_after: float | None = None, maybe_sent: bool = False
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.maybe_sent = maybe_sent


class Undeliverable(SendError):
    pass


class NoRecipient(SendError):
    pass

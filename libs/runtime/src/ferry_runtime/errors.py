"""The two error families every Ferry handler raises.

Exception tree::

    HandlerError
    ├── PermanentError      bad input, a policy denial, anything that fails the same way again:
    │                       the message goes to the service's dead-letter queue at once,
    │                       with ``code`` and the message in its headers
    └── TemporaryError      a remote down, a rate limit, a lock held elsewhere: the message
                            is retried with backoff through the delay queues, then
                            dead-lettered as ``retries-exhausted`` after the last attempt

Any other exception escaping a handler is treated as temporary (it may be a
bug that a deploy fixes), so nothing is lost; ferry_events' ``EventError`` is
treated as permanent.
"""

from __future__ import annotations


class HandlerError(Exception):
    """Base of the errors a handler raises on purpose."""

    def __init__(self, message: str, *, code: str = "error") -> None:
        super().__init__(message)
        self.code = code


class PermanentError(HandlerError):
    """Redelivering this message would fail the same way: dead-letter it now."""


class TemporaryError(HandlerError):
    """This may work later: retry with backoff.

    ``retry_after`` (seconds), when set, asks for at least that delay.
    """

    def __init__(self, message: str, *, code: str = "temporary", retry_after: float | None = None):
        super().__init__(message, code=code)
        self.retry_after = retry_after


class PublishFailed(TemporaryError):
    """The broker did not confirm a publish (nack, unroutable, or connection lost)."""

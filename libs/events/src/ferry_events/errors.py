"""Errors raised while reading events.

Exception tree::

    EventError                      anything wrong with an event as received (permanent)
    ├── PayloadTooLarge             the body is over the configured limit
    ├── MalformedEvent              not JSON, not a CloudEvent, or data that fails its schema
    ├── UnknownEventType            a type Ferry does not know
    │   └── UnknownEventVersion     a known event at a version this reader cannot read
    └── TypeMismatch                the CloudEvent ``type`` is not the key it was routed with

Every one of them is permanent: redelivering the same bytes fails the same way,
so a consumer dead-letters the message with ``code`` and ``str(error)`` as the
reason instead of retrying it.
"""

from __future__ import annotations


class EventError(Exception):
    """An event that cannot be read. ``code`` is a stable, machine-readable reason."""

    code = "event-error"


class PayloadTooLarge(EventError):
    """The message body is larger than the limit (1 MiB by default)."""

    code = "payload-too-large"


class MalformedEvent(EventError):
    """Not valid JSON, not a CloudEvents 1.0 envelope, or ``data`` fails the type's schema."""

    code = "malformed-event"


class UnknownEventType(EventError):
    """The ``type`` attribute names no event Ferry knows."""

    code = "unknown-event-type"


class UnknownEventVersion(UnknownEventType):
    """The event is known but not at this version, and no upcaster reaches a known one."""

    code = "unknown-event-version"


class TypeMismatch(EventError):
    """The event's ``type`` differs from the routing key it was published with.

    A consumer is bound to routing keys, and each key is an event type; a body that claims
    another type than its key is either a bug or an attempt to smuggle an event past the
    broker's permissions, which check the key.
    """

    code = "type-mismatch"

"""The CloudEvents 1.0 envelope, with Ferry's ``correlationid`` and ``causationid`` extensions."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ferry_events.types import EventData

STRUCTURED_CONTENT_TYPE: Final = "application/cloudevents+json"
DATA_CONTENT_TYPE: Final = "application/json"
#: The longest id (event, correlation, causation): an AMQP short string.
MAX_ID_BYTES: Final = 255

#: Namespace for ids derived from what an event reports, so duplicates share an id.
_FERRY_NAMESPACE: Final = uuid.UUID("6f0c8f5e-3c1a-4b8e-9d1e-5f2f8a7c9b10")


def derived_id(*parts: object) -> str:
    """A UUID that depends only on ``parts``.

    Producers use it for events that are consequences of other events (the
    same input produces the same output id), so a redelivered input yields a
    duplicate that consumers recognise and drop.
    """
    return str(uuid.uuid5(_FERRY_NAMESPACE, "\x1f".join(str(p) for p in parts)))


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


class CloudEvent(BaseModel):
    """A CloudEvents 1.0 envelope as Ferry writes and reads it."""

    model_config = ConfigDict(extra="allow", frozen=True)

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(min_length=1, max_length=128)
    source: str = Field(min_length=1)
    type: str = Field(min_length=1)
    time: datetime
    subject: str | None = None
    datacontenttype: str = DATA_CONTENT_TYPE
    correlationid: str = Field(min_length=1)
    causationid: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)

    @field_validator("id", "correlationid", "causationid")
    @classmethod
    def _short_string(cls, value: str | None) -> str | None:
        # each travels as an AMQP message property (message-id, correlation-id), a short
        # string of at most 255 bytes: a longer one could never be published again
        if value is not None and len(value.encode("utf-8", "surrogatepass")) > MAX_ID_BYTES:
            raise ValueError(f"must be at most {MAX_ID_BYTES} bytes in UTF-8")
        return value

    @field_validator("time")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    @classmethod
    def new(
        cls,
        data: EventData,
        *,
        source: str,
        cause: CloudEvent | None = None,
        correlation_id: str | None = None,
        event_id: str | None = None,
        time: datetime | None = None,
    ) -> CloudEvent:
        """Wrap ``data`` in an envelope.

        With ``cause``, the new event inherits its correlation id and names it
        as its causation; ``event_id`` defaults to one derived from the cause and
        the new type, so that handling the same cause twice yields the same id.
        """
        if event_id is None:
            event_id = (
                derived_id(cause.id, data.event_type) if cause is not None else str(uuid.uuid4())
            )
        if correlation_id is None:
            correlation_id = cause.correlationid if cause is not None else event_id
        return cls(
            id=event_id,
            source=source,
            type=data.event_type,
            time=time or utcnow(),
            subject=data.subject(),
            correlationid=correlation_id,
            causationid=cause.id if cause is not None else None,
            data=data.to_wire(),
        )

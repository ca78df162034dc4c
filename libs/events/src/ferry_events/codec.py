"""Bytes on the wire to :class:`CloudEvent` and back.

Ferry publishes structured mode (the whole envelope as JSON, content type
``application/cloudevents+json``). It reads structured mode and binary mode,
where the attributes travel as message headers (``ce-type``, ``ce_type``,
``cloudEvents:type`` or ``cloudEvents_type``, as CloudEvents SDKs write them)
and the body is the ``data``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final

from pydantic import ValidationError

from ferry_events.envelope import STRUCTURED_CONTENT_TYPE, CloudEvent
from ferry_events.errors import MalformedEvent, PayloadTooLarge
from ferry_events.registry import describe_errors

DEFAULT_MAX_BYTES: Final = 1024 * 1024
#: Deeper JSON is refused: no Ferry event nests near it, and recursive readers give out.
MAX_JSON_DEPTH: Final = 64
_SURROGATE: Final = re.compile("[\ud800-\udfff]")
_BINARY_PREFIXES: Final = ("ce-", "ce_", "cloudEvents:", "cloudEvents_", "cloudevents:")


def _check_shape(payload: Any, where: str) -> None:
    """Refuse JSON nested deeper than :data:`MAX_JSON_DEPTH` and text no UTF-8 can carry.

    Iterative, so that the check itself cannot run out of stack. A lone surrogate comes from
    a ``\\ud800`` escape: valid JSON, but every later encode (a log line, an event derived
    from this one, a dead letter's headers) would fail on it.
    """
    stack: list[tuple[Any, int]] = [(payload, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            if not value.isascii() and _SURROGATE.search(value):
                raise MalformedEvent(
                    f"{where} holds text that is not valid Unicode (a lone surrogate such as "
                    "\\ud800); send UTF-8 text"
                )
            continue
        if not isinstance(value, dict | list):
            continue
        if depth > MAX_JSON_DEPTH:
            raise MalformedEvent(f"{where} is JSON nested deeper than {MAX_JSON_DEPTH} levels")
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if isinstance(key, str):
                stack.append((key, depth))
            stack.append((item, depth + 1))


def encode(event: CloudEvent) -> bytes:
    """The structured-mode body of ``event``."""
    return event.model_dump_json(exclude_none=True).encode()


def _header_text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def binary_attributes(headers: Mapping[str, object]) -> dict[str, str]:
    """CloudEvents attributes found in binary-mode headers, by attribute name."""
    found: dict[str, str] = {}
    for key, value in headers.items():
        for prefix in _BINARY_PREFIXES:
            if key.startswith(prefix) and len(key) > len(prefix):
                found[key[len(prefix) :].lower()] = _header_text(value)
                break
    return found


def decode(
    body: bytes,
    *,
    headers: Mapping[str, object] | None = None,
    content_type: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> CloudEvent:
    """Read one event from a message body and its headers.

    Raises :class:`PayloadTooLarge` or :class:`MalformedEvent`, each with a
    message that says what was wrong.
    """
    if len(body) > max_bytes:
        raise PayloadTooLarge(
            f"message body is {len(body)} bytes, over the limit of {max_bytes} bytes "
            "(FERRY_MAX_EVENT_BYTES)"
        )
    attributes = binary_attributes(headers or {})
    structured = (content_type or "").startswith(
        STRUCTURED_CONTENT_TYPE
    ) or "type" not in attributes
    try:
        payload: Any = json.loads(body) if body else None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedEvent(f"message body is not valid JSON: {exc}") from exc
    except RecursionError:
        raise MalformedEvent(
            f"message body is JSON nested deeper than {MAX_JSON_DEPTH} levels"
        ) from None
    _check_shape(payload, "message body")
    _check_shape(attributes, "a binary-mode header")
    _check_shape(content_type, "the content type")
    if structured:
        if not isinstance(payload, dict):
            raise MalformedEvent(
                f"a structured-mode CloudEvent must be a JSON object, got {type(payload).__name__}"
            )
        envelope: dict[str, Any] = payload
    else:
        if payload is not None and not isinstance(payload, dict):
            raise MalformedEvent(f"event data must be a JSON object, got {type(payload).__name__}")
        envelope = {**attributes, "data": payload or {}}
        if content_type:
            envelope.setdefault("datacontenttype", content_type)
    if envelope.get("specversion") != "1.0":
        raise MalformedEvent(
            f"specversion must be '1.0', got {envelope.get('specversion')!r}; "
            "is this a CloudEvents 1.0 message?"
        )
    if "correlationid" not in envelope and isinstance(envelope.get("id"), str):
        envelope["correlationid"] = envelope["id"]
    try:
        return CloudEvent.model_validate(envelope)
    except ValidationError as exc:
        raise MalformedEvent(f"not a valid CloudEvent: {describe_errors(exc)}") from exc

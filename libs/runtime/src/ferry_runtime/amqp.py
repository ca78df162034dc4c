"""Reading AMQP frames whose short strings are not UTF-8.

RabbitMQ does not check that a message's short-string properties (``message_id``,
``correlation_id``, ``content_type``, ``type``, ``app_id``, ...) are UTF-8, and pamqp decodes
them strictly: a frame holding one fails to decode and aiormq closes the whole connection.
The broker then delivers the same message again, to the same end, so one message published
by anyone with write access to an exchange would stop a consumer for good.

Importing the runtime kit makes pamqp read a short string that is not UTF-8 with surrogate
escapes (the bytes are kept), so the message reaches the consumer, which dead-letters it with
a reason; :func:`wire_text` turns such a value back into text the library can write.
"""

from __future__ import annotations

import struct
from typing import Final

from pamqp import decode

_UTF8: Final = "utf-8"


def _short_str(value: bytes) -> tuple[int, str]:
    try:
        length = struct.unpack(">B", value[0:1])[0]
    except struct.error as err:
        raise ValueError("Could not unpack short string value") from err
    return length + 1, value[1 : length + 1].decode(_UTF8, "surrogateescape")


def install() -> None:
    """Make pamqp read short strings that are not UTF-8 (idempotent)."""
    decode.METHODS["shortstr"] = _short_str


def wire_text(value: str | None) -> str | None:
    """``value`` as text the library can write: bytes that were not UTF-8 become U+FFFD."""
    if value is None:
        return None
    try:
        value.encode(_UTF8)
    except UnicodeEncodeError:
        try:
            return value.encode(_UTF8, "surrogateescape").decode(_UTF8, "replace")
        except UnicodeEncodeError:
            return value.encode(_UTF8, "replace").decode(_UTF8)
    return value


install()

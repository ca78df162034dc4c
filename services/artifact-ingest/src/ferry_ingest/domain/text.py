"""Text from CI made safe to echo in a rejection: printable, valid UTF-8, not too long."""

from __future__ import annotations

from typing import Any


def shown(value: str, length: int = 80) -> str:
    """``value`` safe to put in an event: printable, valid UTF-8 and not too long."""
    if not value.isprintable():
        value = value.encode("ascii", errors="backslashreplace").decode("ascii")
    return cut(value, length)


def cut(value: str, length: int) -> str:
    """``value``, cut to ``length`` characters with an ellipsis."""
    return value if len(value) <= length else value[: length - 1] + "…"


def has_text(value: Any) -> bool:
    """A string with something other than whitespace."""
    return isinstance(value, str) and bool(value.strip())

"""Scheduled releases: the time a person gives, the limits on it, and "the next 02:00".

Plain functions over plain data. A release asked for ``at`` a time is ``scheduled`` until
then; the API takes the time as RFC 3339 with an offset (:func:`parse_at`), Slack as a
wall-clock ``HH:MM`` in the requester's time zone (:func:`next_wall_clock`). Either way the
time is checked against the clock (:func:`check_at`): a time a little in the past (clocks
differ) is due at once, one further back or too far ahead is refused.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ferry_promotion.errors import Invalid

#: A time this little in the past is taken as "now" (the requester's clock runs behind).
GRACE: Final = timedelta(minutes=2)
#: How far ahead a release may be scheduled.
HORIZON: Final = timedelta(days=90)

_RFC3339: Final = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,6})?([Zz]|[+-]\d{2}:\d{2})$"
)
_WALL_CLOCK: Final = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def parse_at(text: str, field: str = "at") -> datetime:
    """``text`` as a UTC time; :class:`Invalid` unless it is RFC 3339 with an offset."""
    value = text.strip()
    if not _RFC3339.fullmatch(value):
        hint = " (it has no offset: add Z or +01:00)" if _naive(value) else ""
        raise Invalid.field(
            field,
            f"{text[:64]!r} is not an RFC 3339 time with an offset{hint}, such as "
            "2026-12-24T02:00:00Z or 2026-12-24T03:00:00+01:00",
        )
    try:
        parsed = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise Invalid.field(field, f"{text[:64]!r} is not a date and time that exists") from None
    return parsed.astimezone(UTC)


def _naive(value: str) -> bool:
    return re.fullmatch(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?", value) is not None


def check_at(at: datetime, now: datetime, field: str = "at") -> datetime:
    """``at`` in UTC when a release may be scheduled then; :class:`Invalid` otherwise."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise Invalid.field(field, "needs an offset (Z or +01:00): a time without one is ambiguous")
    at = at.astimezone(UTC)
    if at < now - GRACE:
        raise Invalid.field(
            field,
            f"{at:%Y-%m-%d %H:%M:%S} UTC is in the past (it is now {now:%Y-%m-%d %H:%M:%S} UTC); "
            "leave the time out to release now",
        )
    if at > now + HORIZON:
        raise Invalid.field(
            field,
            f"{at:%Y-%m-%d %H:%M} UTC is more than {HORIZON.days} days ahead; "
            "schedule it nearer the time",
        )
    return at


def wall_clock(text: str) -> tuple[int, int] | None:
    """``(hour, minute)`` of a 24-hour ``HH:MM`` (``02:00``, ``2:00``), else None."""
    found = _WALL_CLOCK.fullmatch(text.strip())
    return (int(found.group(1)), int(found.group(2))) if found else None


def next_wall_clock(hour: int, minute: int, zone: tzinfo, now: datetime) -> datetime:
    """The first moment after ``now`` that the clocks of ``zone`` show ``hour:minute``, in UTC.

    A wall-clock time that a daylight-saving jump skips on that day is taken as the moment
    the clocks jump (as the zone's rules map it); one that occurs twice, as the first.
    """
    local = now.astimezone(zone)
    for days in range(3):
        day = local.date() + timedelta(days=days)
        candidate = datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)
        moment = candidate.astimezone(UTC)
        if moment > now:
            return moment
    raise AssertionError("a wall-clock time occurs within three days")  # pragma: no cover


def zone_named(name: str | None) -> tuple[tzinfo, str]:
    """The time zone of an IANA name (``Europe/Copenhagen``) and its name; UTC when the name
    is missing or unknown here."""
    if name:
        try:
            return ZoneInfo(name), name
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return UTC, "UTC"


__all__ = [
    "GRACE",
    "HORIZON",
    "check_at",
    "next_wall_clock",
    "parse_at",
    "wall_clock",
    "zone_named",
]

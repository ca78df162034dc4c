"""Collapsing a flood of identical failures (a crash loop) into one message with a count."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class Flood:
    """A run of identical failures: the first event's id and how many so far."""

    key: str
    anchor_event_id: str
    count: int
    last_at: datetime


@dataclass(frozen=True, slots=True)
class FloodPosition:
    """Where one event stands in its flood: ``number`` 1 is the one that gets a message."""

    anchor_event_id: str
    number: int

    @property
    def is_repeat(self) -> bool:
        return self.number > 1


def next_in_flood(
    current: Flood | None, key: str, event_id: str, now: datetime, window: timedelta
) -> Flood:
    """The flood after this event: the same one counted up, or a new one after a quiet window."""
    if current is not None and now - current.last_at <= window:
        return Flood(key, current.anchor_event_id, current.count + 1, now)
    return Flood(key, event_id, 1, now)

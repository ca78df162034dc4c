"""Counting floods: many events of one kind in a short window become one thread of messages
("3rd failure in 10 minutes"), each event with its place in it, the same on a redelivery."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from ferry_notifier.adapters.database import Database
from ferry_notifier.adapters.tables import flood_events, floods
from ferry_notifier.domain.flood import Flood, FloodPosition, next_in_flood


def aware(value: datetime) -> datetime:
    """``value`` in UTC when the database gave it back without a zone (SQLite does)."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class FloodCounter(Database):
    """Each event's place in its flood, counted in the database (every replica counts alike)."""

    async def flood_position(
        self, key: str, event_id: str, window: timedelta, *, now: datetime | None = None
    ) -> FloodPosition:
        """This event's place in its flood; the same answer when the event is redelivered."""
        at = now or datetime.now(UTC)
        for _ in range(5):
            try:
                return await self._run(
                    lambda conn: self._flood_position(conn, key, event_id, window, at)
                )
            except IntegrityError:  # another replica counted at the same time; look again
                continue
        return FloodPosition(event_id, 1)

    def _flood_position(
        self, conn: Connection, key: str, event_id: str, window: timedelta, now: datetime
    ) -> FloodPosition:
        seen = conn.execute(
            select(flood_events.c.anchor_event_id, flood_events.c.number).where(
                flood_events.c.event_id == event_id
            )
        ).first()
        if seen:
            return FloodPosition(seen[0], seen[1])
        row = conn.execute(
            select(floods.c.anchor_event_id, floods.c.count, floods.c.last_at)
            .where(floods.c.flood_key == key)
            .with_for_update()
        ).first()
        current = Flood(key, row[0], row[1], aware(row[2])) if row else None
        flood = next_in_flood(current, key, event_id, now, window)
        conn.execute(
            self._upsert(
                floods,
                {
                    "flood_key": key,
                    "anchor_event_id": flood.anchor_event_id,
                    "count": flood.count,
                    "last_at": flood.last_at,
                },
                ["flood_key"],
            )
        )
        conn.execute(
            flood_events.insert().values(
                event_id=event_id, anchor_event_id=flood.anchor_event_id, number=flood.count
            )
        )
        return FloodPosition(flood.anchor_event_id, flood.count)

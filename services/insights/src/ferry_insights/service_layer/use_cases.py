"""Insights' use cases, against Protocols (no SQLAlchemy, no broker here)."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from ferry_events import CloudEvent, EventData
from ferry_insights.domain.dora import Report, Window
from ferry_insights.domain.facts import Facts, facts_of


class Projections(Protocol):
    """Where facts are kept: one event, one transaction, dropped when its id is known.

    The DORA report is the one :func:`ferry_insights.domain.dora.report` gives for the
    environment's facts (the projection keeps what it needs as facts arrive, so that a read
    aggregates a window, not the whole history)."""

    async def record(self, facts: Facts, *, received_at: datetime) -> bool: ...

    async def dora_report(
        self, environment: str, window: Window, *, service: str | None, squad: str | None
    ) -> Report: ...

    async def environments(self) -> list[str]: ...


async def project(
    store: Projections, event: CloudEvent, data: EventData, received_at: datetime
) -> bool:
    """Record what one event says; False when it was recorded before (a duplicate)."""
    return await store.record(facts_of(event, data), received_at=received_at)


async def dora(
    store: Projections,
    environment: str,
    window: Window,
    *,
    service: str | None = None,
    squad: str | None = None,
) -> Report:
    """The DORA keys of one environment over one window, optionally for a service or squad."""
    return await store.dora_report(environment, window, service=service, squad=squad)

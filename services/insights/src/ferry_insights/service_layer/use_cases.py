"""Insights' use cases, against Protocols (no SQLAlchemy, no broker here)."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from ferry_events import CloudEvent, EventData
from ferry_insights.domain.dora import Report, Window, report
from ferry_insights.domain.facts import (
    Change,
    Deployment,
    Facts,
    RollbackRequest,
    RolloutResult,
    facts_of,
)


class Inputs(Protocol):
    @property
    def deployments(self) -> list[Deployment]: ...
    @property
    def changes(self) -> dict[tuple[str, str], Change]: ...
    @property
    def rollbacks(self) -> list[RollbackRequest]: ...
    @property
    def successes(self) -> list[RolloutResult]: ...


class Projections(Protocol):
    """Where facts are kept: one event, one transaction, dropped when its id is known."""

    async def record(self, facts: Facts, *, received_at: datetime) -> bool: ...

    async def dora_inputs(
        self, environment: str, window: Window, *, service: str | None, squad: str | None
    ) -> Inputs: ...

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
    found = await store.dora_inputs(environment, window, service=service, squad=squad)
    return report(found.deployments, found.changes, found.rollbacks, found.successes, window)

"""What a use case needs from storage: one unit of work with its repositories.

The SQLAlchemy adapter implements it for the service; the service layer's
tests use an in-memory one. Every repository returns domain records, never
rows. An effect, its inbox mark and its outbox events commit together or not
at all.
"""

from __future__ import annotations

from datetime import datetime
from types import TracebackType
from typing import Any, Protocol, Self

from ferry_events import CloudEvent
from ferry_promotion.domain.release import Release


class Releases(Protocol):
    async def get(self, release_id: str, *, lock: bool = False) -> Release | None: ...

    async def add(self, release: Release) -> None: ...

    async def update(self, release_id: str, **values: Any) -> None: ...

    async def note(
        self, release_id: str, status: str, event_type: str = "", detail: str = ""
    ) -> None: ...


class Approvals(Protocol):
    async def add(
        self, release_id: str, *, subject: str, email: str, name: str, decision: str, comment: str
    ) -> bool:
        """Record a vote; False when this person already voted on this release."""
        ...


class Rollouts(Protocol):
    async def record(
        self,
        *,
        environment: str,
        service: str,
        artifact_id: str,
        status: str,
        reason: str,
        release_id: str,
        observed_at: datetime,
    ) -> bool:
        """Keep the newest fact; False when ``observed_at`` is older than what is known."""
        ...


class Inbox(Protocol):
    async def seen(self, event_id: str) -> bool: ...

    async def mark(self, event: CloudEvent) -> None: ...


class Outbox(Protocol):
    async def put(self, event: CloudEvent) -> None:
        """Queue ``event`` for the relay (ignored when the same id is already queued)."""
        ...


class UnitOfWork(Protocol):
    """One transaction over promotion's state; leaving it without ``commit`` rolls back."""

    releases: Releases
    approvals: Approvals
    rollouts: Rollouts
    inbox: Inbox
    outbox: Outbox

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def commit(self) -> None: ...

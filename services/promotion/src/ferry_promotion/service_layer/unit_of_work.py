"""What a use case needs from storage: one unit of work with its repositories.

The SQLAlchemy adapter implements it for the service
(``adapters/unit_of_work.py``); the service layer's tests use an in-memory one.
Every repository returns domain records, never rows. An effect, its inbox mark
and its outbox events commit together or not at all: leaving the unit of work
without :meth:`UnitOfWork.commit` rolls everything back.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol, Self

from ferry_events import CloudEvent
from ferry_promotion.domain.records import Rollout, StoredArtifact, Vote
from ferry_promotion.domain.release import Release


class Releases(Protocol):
    async def get(self, release_id: str, *, lock: bool = False) -> Release | None:
        """The release (``lock``: held until the unit of work ends, where the engine can)."""
        ...

    async def add(self, release: Release) -> None: ...

    async def update(self, release_id: str, **values: Any) -> None:
        """Set fields of the release (named as :class:`Release` names them) and ``updated_at``."""
        ...

    async def note(
        self, release_id: str, status: str, event_type: str = "", detail: str = ""
    ) -> None:
        """Add a line to the release's timeline."""
        ...

    async def overdue(self, now: datetime, chain_wait_started_before: datetime) -> list[Release]:
        """Awaiting approval past ``expires_at``, or waiting for a chain since before the time
        (not a soak: it has its own due time)."""
        ...

    async def claim_due(self, now: datetime, lease_until: datetime, limit: int) -> list[Release]:
        """Up to ``limit`` waiting requests whose ``due_at`` is past, each claimed by moving
        its ``due_at`` to ``lease_until`` (skipping rows another transaction holds)."""
        ...

    async def waiting_for(self, service: str, artifact_id: str) -> list[Release]:
        """Requests of ``service`` waiting for a rollout result of ``artifact_id``."""
        ...

    async def committed_unrolled(self, service: str, environment: str) -> list[Release]:
        """Committed releases not rolled out and not yet superseded."""
        ...

    async def next_sequence(self, service: str, environment: str) -> int:
        """The next request number for this service and environment (held until commit)."""
        ...

    async def open_before(self, service: str, environment: str, sequence: int) -> list[Release]:
        """Open requests (requested, awaiting approval) numbered below ``sequence``."""
        ...

    async def newest(
        self, service: str, environment: str, artifact_id: str, statuses: frozenset[str]
    ) -> str | None:
        """The id of the newest release of the artifact to the environment in ``statuses``."""
        ...

    async def claim_scheduled(self, now: datetime) -> Release | None:
        """A scheduled release due at ``now`` (the earliest), held until the unit of work ends
        and skipped by every other unit of work meanwhile (where the engine can); None when
        none is due."""
        ...


class Approvals(Protocol):
    async def add(
        self, release_id: str, *, subject: str, email: str, name: str, decision: str, comment: str
    ) -> bool:
        """Record a vote (stamped now); False when this person already voted on this release."""
        ...

    async def of(self, release_id: str) -> list[Vote]:
        """The votes on a release, in the order they were cast."""
        ...


class Rollouts(Protocol):
    async def get(self, environment: str, service: str, artifact_id: str) -> Rollout | None: ...

    async def record(self, fact: Rollout) -> bool:
        """Keep the newest fact (a success is remembered for good); False when it is older."""
        ...


class Artifacts(Protocol):
    async def add(self, artifact: StoredArtifact) -> None:
        """Add to the catalog (ignored when the artifact is already in it)."""
        ...


class Inbox(Protocol):
    async def seen(self, event_id: str) -> bool: ...

    async def mark(self, event: CloudEvent) -> None: ...

    async def forget(self, processed_before: datetime) -> None: ...


class Outbox(Protocol):
    async def put(self, event: CloudEvent) -> None:
        """Queue ``event`` for the relay (ignored when the same id is already queued)."""
        ...

    async def forget(self, sent_before: datetime) -> None:
        """Drop relayed events sent before the given time."""
        ...


class UnitOfWork(Protocol):
    """One transaction over promotion's state; leaving it without ``commit`` rolls back."""

    @property
    def releases(self) -> Releases: ...

    @property
    def approvals(self) -> Approvals: ...

    @property
    def rollouts(self) -> Rollouts: ...

    @property
    def artifacts(self) -> Artifacts: ...

    @property
    def inbox(self) -> Inbox: ...

    @property
    def outbox(self) -> Outbox: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def commit(self) -> None: ...


#: A fresh unit of work per use case (``async with uow() as tx: ...``).
UnitOfWorkFactory = Callable[[], UnitOfWork]

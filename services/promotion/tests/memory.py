"""Promotion's state in memory, for service-layer tests that need no broker and no database.

:class:`MemoryUnitOfWork` implements the service layer's ``UnitOfWork``
Protocol: it works on a copy of :class:`MemoryState` and writes it back only on
``commit()``, so leaving without a commit rolls back as the SQL one does.
:class:`MemoryReadModel` reads the same state; :class:`FakeConfig` is a config
repo held in memory (or one whose fetch fails).
"""

from __future__ import annotations

import copy
import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

from ferry_events import ArtifactSpec, CloudEvent
from ferry_promotion.domain.access import Identity
from ferry_promotion.domain.decision import HistoryEntry, Status
from ferry_promotion.domain.records import Note, ReleaseDetail, Rollout, StoredArtifact, Vote
from ferry_promotion.domain.release import Release
from ferry_promotion.domain.snapshot import Snapshot
from ferry_runtime import TemporaryError


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class MemoryState:
    releases: dict[str, Release] = field(default_factory=dict)
    timeline: dict[str, list[Note]] = field(default_factory=dict)
    votes: dict[str, list[Vote]] = field(default_factory=dict)
    rollouts: dict[tuple[str, str, str], Rollout] = field(default_factory=dict)
    artifacts: dict[tuple[str, str], StoredArtifact] = field(default_factory=dict)
    inbox: dict[str, datetime] = field(default_factory=dict)
    outbox: dict[str, CloudEvent] = field(default_factory=dict)
    sent: dict[str, datetime] = field(default_factory=dict)
    #: How often each release was read through a unit of work (by id).
    loads: Counter[str] = field(default_factory=Counter)
    #: The last request number per (service, environment).
    sequences: Counter[tuple[str, str]] = field(default_factory=Counter)

    def published(self, event_type: str) -> list[CloudEvent]:
        return [e for e in self.outbox.values() if e.type == event_type]


class MemoryReleases:
    def __init__(self, state: MemoryState) -> None:
        self.s = state

    async def get(self, release_id: str, *, lock: bool = False) -> Release | None:
        self.s.loads[release_id] += 1
        return self.s.releases.get(release_id)

    async def add(self, release: Release) -> None:
        assert release.release_id not in self.s.releases, "duplicate release id"
        self.s.releases[release.release_id] = release

    async def update(self, release_id: str, **values: Any) -> None:
        current = self.s.releases[release_id]
        self.s.releases[release_id] = dataclasses.replace(current, updated_at=_now(), **values)

    async def note(
        self, release_id: str, status: str, event_type: str = "", detail: str = ""
    ) -> None:
        self.s.timeline.setdefault(release_id, []).append(
            Note(at=_now(), status=str(status), event_type=event_type, detail=detail)
        )

    async def overdue(self, now: datetime, chain_wait_started_before: datetime) -> list[Release]:
        return [
            r
            for r in self.s.releases.values()
            if (r.status == Status.AWAITING_APPROVAL and r.expires_at and r.expires_at <= now)
            or (
                r.status == Status.REQUESTED
                and r.waiting_since
                and r.waiting_since <= chain_wait_started_before
                and r.due_at is None
            )
        ]

    async def claim_due(self, now: datetime, lease_until: datetime, limit: int) -> list[Release]:
        due = sorted(
            (
                r
                for r in self.s.releases.values()
                if r.status == Status.REQUESTED and r.due_at is not None and r.due_at <= now
            ),
            key=lambda r: r.due_at or now,
        )[:limit]
        for r in due:
            self.s.releases[r.release_id] = dataclasses.replace(r, due_at=lease_until)
        return due

    async def waiting_for(self, service: str, artifact_id: str) -> list[Release]:
        return [
            r
            for r in self.s.releases.values()
            if r.service == service
            and r.status == Status.REQUESTED
            and r.waiting_since is not None
            and r.artifact_id == artifact_id
        ]

    async def committed_unrolled(self, service: str, environment: str) -> list[Release]:
        return [
            r
            for r in self.s.releases.values()
            if (r.service, r.environment) == (service, environment)
            and r.status == Status.COMMITTED
            and r.superseded_by is None
        ]

    async def next_sequence(self, service: str, environment: str) -> int:
        self.s.sequences[(service, environment)] += 1
        return self.s.sequences[(service, environment)]

    async def open_before(self, service: str, environment: str, sequence: int) -> list[Release]:
        return [
            r
            for r in self.s.releases.values()
            if (r.service, r.environment) == (service, environment)
            and r.open
            and r.sequence is not None
            and r.sequence < sequence
        ]

    async def newest(
        self, service: str, environment: str, artifact_id: str, statuses: frozenset[str]
    ) -> str | None:
        found = [
            r
            for r in self.s.releases.values()
            if (r.service, r.environment, r.artifact_id) == (service, environment, artifact_id)
            and r.status in statuses
        ]
        return max(found, key=lambda r: r.requested_at).release_id if found else None

    async def claim_scheduled(self, now: datetime) -> Release | None:
        due = [
            r
            for r in self.s.releases.values()
            if r.status == Status.SCHEDULED and r.scheduled_at and r.scheduled_at <= now
        ]
        return min(due, key=lambda r: (r.scheduled_at, r.release_id)) if due else None


class MemoryApprovals:
    def __init__(self, state: MemoryState) -> None:
        self.s = state

    async def add(
        self, release_id: str, *, subject: str, email: str, name: str, decision: str, comment: str
    ) -> bool:
        votes = self.s.votes.setdefault(release_id, [])
        if any(v.subject == subject for v in votes):
            return False
        votes.append(Vote(subject, email, decision, _now(), name=name, comment=comment))
        return True

    async def of(self, release_id: str) -> list[Vote]:
        return list(self.s.votes.get(release_id, []))


class MemoryRollouts:
    def __init__(self, state: MemoryState) -> None:
        self.s = state

    async def get(self, environment: str, service: str, artifact_id: str) -> Rollout | None:
        return self.s.rollouts.get((environment, service, artifact_id))

    async def record(self, fact: Rollout) -> bool:
        key = (fact.environment, fact.service, fact.artifact_id)
        known = self.s.rollouts.get(key)
        succeeded_at = fact.observed_at if fact.status == "succeeded" else None
        failed_at = fact.observed_at if fact.status == "failed" else None
        if known is None:
            self.s.rollouts[key] = dataclasses.replace(
                fact, succeeded_at=succeeded_at, failed_at=failed_at
            )
            return True
        newer = fact.observed_at > known.observed_at
        kept = known.succeeded_at or succeeded_at
        failed = max((t for t in (known.failed_at, failed_at) if t is not None), default=None)
        self.s.rollouts[key] = dataclasses.replace(
            fact if newer else known, succeeded_at=kept, failed_at=failed
        )
        return newer


class MemoryArtifacts:
    def __init__(self, state: MemoryState) -> None:
        self.s = state

    async def add(self, artifact: StoredArtifact) -> None:
        self.s.artifacts.setdefault((artifact.service, artifact.artifact_id), artifact)


class MemoryInbox:
    def __init__(self, state: MemoryState) -> None:
        self.s = state

    async def seen(self, event_id: str) -> bool:
        return event_id in self.s.inbox

    async def mark(self, event: CloudEvent) -> None:
        assert event.id not in self.s.inbox, "an event marked twice"
        self.s.inbox[event.id] = _now()

    async def forget(self, processed_before: datetime) -> None:
        self.s.inbox = {k: v for k, v in self.s.inbox.items() if v >= processed_before}


class MemoryOutbox:
    def __init__(self, state: MemoryState) -> None:
        self.s = state

    async def put(self, event: CloudEvent) -> None:
        self.s.outbox.setdefault(event.id, event)

    async def forget(self, sent_before: datetime) -> None:
        gone = {k for k, at in self.s.sent.items() if at < sent_before}
        self.s.outbox = {k: v for k, v in self.s.outbox.items() if k not in gone}


class MemoryUnitOfWork:
    """A unit of work over a copy of ``state``; ``commit()`` writes the copy back."""

    def __init__(self, state: MemoryState) -> None:
        self.state = state
        self.committed = False

    async def __aenter__(self) -> Self:
        loads = self.state.loads
        self._work = copy.deepcopy(dataclasses.replace(self.state, loads=Counter()))
        self._work.loads = loads  # reads are counted whether or not they commit
        self.releases = MemoryReleases(self._work)
        self.approvals = MemoryApprovals(self._work)
        self.rollouts = MemoryRollouts(self._work)
        self.artifacts = MemoryArtifacts(self._work)
        self.inbox = MemoryInbox(self._work)
        self.outbox = MemoryOutbox(self._work)
        return self

    async def commit(self) -> None:
        for f in dataclasses.fields(MemoryState):
            setattr(self.state, f.name, getattr(self._work, f.name))
        self._work = copy.deepcopy(dataclasses.replace(self.state, loads=Counter()))
        self._work.loads = self.state.loads
        self.committed = True

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._work = MemoryState()  # whatever was not committed is gone


class MemoryReadModel:
    def __init__(self, state: MemoryState) -> None:
        self.s = state

    async def release(self, release_id: str) -> ReleaseDetail | None:
        found = self.s.releases.get(release_id)
        if found is None:
            return None
        return ReleaseDetail(
            found, list(self.s.timeline.get(release_id, [])), list(self.s.votes.get(release_id, []))
        )

    async def get(self, release_id: str) -> Release | None:
        return self.s.releases.get(release_id)

    async def latest_of_branch(self, service: str, branch: str) -> str | None:
        found = [a for a in self.s.artifacts.values() if (a.service, a.branch) == (service, branch)]
        return max(found, key=lambda a: a.stored_at or _now()).artifact_id if found else None

    async def rollout_states(self) -> dict[tuple[str, str, str], tuple[str, str]]:
        return {k: (r.status, r.reason) for k, r in self.s.rollouts.items()}

    async def cataloged_services(self) -> set[str]:
        return {service for service, _ in self.s.artifacts}

    async def is_cataloged(self, service: str) -> bool:
        return service in await self.cataloged_services()

    async def artifacts(self, service: str, branch: str | None, limit: int) -> list[StoredArtifact]:
        found = [
            a
            for a in self.s.artifacts.values()
            if a.service == service and (not branch or a.branch == branch)
        ]
        return sorted(found, key=lambda a: a.stored_at or _now(), reverse=True)[:limit]


@dataclass
class FakeConfig:
    """The config repo in memory: a snapshot, the ``builds/`` artifacts and the history."""

    snapshot: Snapshot
    builds: dict[tuple[str, str], tuple[ArtifactSpec, list[str]]] = field(default_factory=dict)
    releases: list[HistoryEntry] = field(default_factory=list)
    #: When set, every fetch fails with it (the remote is down).
    unreachable: str = ""
    stale: list[str | None] = field(default_factory=list)

    async def current(
        self, *, fresh: bool = False, service: str | None = None, holding: str | None = None
    ) -> Snapshot:
        if self.unreachable:
            raise TemporaryError(self.unreachable, code="git-failed")
        return self.snapshot

    async def remote_head(self) -> str | None:
        if self.unreachable:
            raise TemporaryError(self.unreachable, code="git-failed")
        return self.snapshot.commit

    async def holds(self, commit: str) -> bool:
        return self.snapshot.commit == commit

    async def refresh(self, *, force: bool = False, at_least: int | None = None) -> Snapshot:
        return await self.current()

    def mark_stale(self, service: str | None = None) -> None:
        self.stale.append(service)

    async def artifact(self, service: str, artifact_id: str) -> ArtifactSpec | None:
        found = self.builds.get((service, artifact_id))
        return found[0] if found else None

    async def build_environments(self, service: str, artifact_id: str) -> list[str]:
        found = self.builds.get((service, artifact_id))
        return list(found[1]) if found else []

    async def list_builds(self, service: str) -> list[ArtifactSpec]:
        return [spec for (s, _), (spec, _) in self.builds.items() if s == service]

    async def files(self, commit: str, directory: str, keep: Any = None) -> dict[str, bytes]:
        return {}

    async def history(
        self, service: str, environment: str | None = None, *, limit: int = 5000
    ) -> list[HistoryEntry]:
        return [
            e
            for e in self.releases
            if e.service == service and (environment is None or e.environment == environment)
        ][:limit]


@dataclass
class FakeIdentities:
    people: dict[str, Identity] = field(default_factory=dict)

    def known(self, subject: str) -> Identity | None:
        return self.people.get(subject)

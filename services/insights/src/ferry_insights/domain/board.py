"""What the dashboard shows, from recorded events (plain data, no I/O).

- :func:`matrix`: what runs where: per service and environment the latest committed release
  (by its event's ``time``: :func:`commit_rank`) and the latest rollout fact of that artifact
  there (by ``observedAt``: :func:`fact_rank`), whatever order the events arrived in (the
  store keeps one of each per place as they arrive, with the same ranks);
- :func:`stories`: a service's timeline, one story per release, its steps in time order;
- :func:`waiting`: approvals that are still open, and :func:`may_approve`, who may act on one
  (promotion decides for real: the dashboard only hides buttons that would be refused).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ferry_insights.domain.facts import Change, EventRecord

COMMITTED = "ferry.release.committed.v1"
ROLLOUTS = ("ferry.rollout.started.v1", "ferry.rollout.succeeded.v1", "ferry.rollout.failed.v1")
APPROVAL_REQUESTED = "ferry.approval.requested.v1"
APPROVAL_GRANTED = "ferry.approval.granted.v1"
#: After one of these an approval request waits no more.
SETTLING = (
    "ferry.approval.denied.v1",
    "ferry.release.approved.v1",
    "ferry.release.rejected.v1",
    COMMITTED,
    "ferry.release.failed.v1",
)
_KNOWN_ORDER = ("dev", "staging", "prod")


def order_environments(names: Iterable[str]) -> list[str]:
    """dev, staging, prod first (the default chain), then the others by name."""
    found = set(names)
    return [n for n in _KNOWN_ORDER if n in found] + sorted(found - set(_KNOWN_ORDER))


def _actor(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("email") or value.get("name") or value.get("subject") or "")
    return ""


@dataclass(frozen=True, slots=True)
class Cell:
    service: str
    environment: str
    artifact_id: str
    release_id: str
    intent: str
    released_at: datetime
    released_by: str
    author: str = ""
    branch: str = ""
    commit_sha: str = ""
    rollout: str = "pending"
    rollout_reason: str = ""
    rollout_at: datetime | None = None

    @property
    def failed(self) -> bool:
        return self.rollout == "failed"


@dataclass(frozen=True, slots=True)
class Matrix:
    services: list[str]
    environments: list[str]
    cells: dict[tuple[str, str], Cell]


def _observed(record: EventRecord) -> str:
    return str(record.data.get("observedAt") or record.time.isoformat())


def commit_rank(record: EventRecord) -> tuple[datetime, str]:
    """Of two commits of a place, the one with the greater rank runs there."""
    return (record.time, record.event_id)


def fact_rank(record: EventRecord) -> tuple[str, str]:
    """Of two rollout facts of an artifact in a place, the one with the greater rank counts."""
    return (_observed(record), record.event_id)


def matrix(
    committed: Iterable[EventRecord],
    rollouts: Iterable[EventRecord],
    changes: Mapping[tuple[str, str], Change],
) -> Matrix:
    latest: dict[tuple[str, str], EventRecord] = {}
    for record in committed:
        key = (record.service, record.environment)
        if key not in latest or commit_rank(record) > commit_rank(latest[key]):
            latest[key] = record
    facts: dict[tuple[str, str, str], EventRecord] = {}
    for record in rollouts:
        key3 = (record.service, record.environment, record.artifact_id)
        known = facts.get(key3)
        if known is None or fact_rank(record) > fact_rank(known):
            facts[key3] = record
    cells: dict[tuple[str, str], Cell] = {}
    for (service, env), record in latest.items():
        change = changes.get((service, record.artifact_id))
        fact = facts.get((service, env, record.artifact_id))
        cells[(service, env)] = Cell(
            service=service,
            environment=env,
            artifact_id=record.artifact_id,
            release_id=record.release_id,
            intent=str(record.data.get("intent", "")),
            released_at=record.time,
            released_by=_actor(record.data.get("actor")),
            author=(change.author_name or change.author_email)
            if change
            else str(record.data.get("authorEmail", "")),
            branch=change.branch if change else "",
            commit_sha=str(record.data.get("commitSha", "")),
            rollout=fact.event_type.split(".")[2] if fact else "pending",
            rollout_reason=str(fact.data.get("reason", "")) if fact else "",
            rollout_at=datetime.fromisoformat(_observed(fact)) if fact else None,
        )
    return Matrix(
        services=sorted({s for s, _ in cells}),
        environments=order_environments(e for _, e in cells),
        cells=cells,
    )


@dataclass(frozen=True, slots=True)
class Step:
    at: datetime
    what: str
    who: str = ""
    detail: str = ""
    tone: str = "info"  # info, ok, wait, bad


@dataclass(slots=True)
class Story:
    """One release of a service: who asked for what, where, and everything that followed."""

    release_id: str
    service: str
    environment: str = ""
    intent: str = ""
    artifact_id: str = ""
    requested_by: str = ""
    requested_at: datetime | None = None
    status: str = "requested"
    commit_sha: str = ""
    ci_job_url: str = ""
    steps: list[Step] = field(default_factory=list)


_STEP: dict[str, tuple[str, str, str]] = {
    # event type -> (step, status after it, tone)
    "ferry.release.requested.v1": ("requested", "requested", "info"),
    "ferry.approval.requested.v1": ("approval requested", "awaiting-approval", "wait"),
    "ferry.approval.granted.v1": ("approved by", "awaiting-approval", "ok"),
    "ferry.approval.denied.v1": ("approval denied", "rejected", "bad"),
    "ferry.release.approved.v1": ("policies passed", "approved", "ok"),
    "ferry.release.rejected.v1": ("rejected by policy", "rejected", "bad"),
    COMMITTED: ("committed", "committed", "ok"),
    "ferry.release.failed.v1": ("commit failed", "failed", "bad"),
    "ferry.rollout.started.v1": ("rollout started", "committed", "wait"),
    "ferry.rollout.succeeded.v1": ("rolled out", "rolled-out", "ok"),
    "ferry.rollout.failed.v1": ("rollout failed", "failed", "bad"),
}


def _detail(record: EventRecord) -> str:
    data = record.data
    if record.event_type == "ferry.release.rejected.v1":
        return "; ".join(
            f"{v.get('policy')}: {v.get('message')}"
            for v in data.get("violations") or []
            if isinstance(v, dict)
        )
    if record.event_type == APPROVAL_REQUESTED:
        return f"{data.get('required', 1)} approval(s) needed"
    if record.event_type == APPROVAL_GRANTED:
        return f"{data.get('remaining', 0)} more needed"
    if record.event_type == COMMITTED:
        return str(data.get("commitSha", ""))[:12]
    if record.event_type == "ferry.rollout.failed.v1":
        said = [str(data.get(k) or "") for k in ("reason", "message")]
        return ": ".join(part for part in said if part)[:300]
    return str(data.get("message") or data.get("reason") or "")[:300]


def _who(record: EventRecord) -> str:
    data = record.data
    for key in ("approver", "by", "actor", "requester"):
        if key in data:
            return _actor(data[key])
    return str(data.get("author", ""))


def stories(
    records: Iterable[EventRecord], changes: Mapping[tuple[str, str], Change]
) -> list[Story]:
    """Every release among ``records``, newest first, each with its steps oldest first."""
    found: dict[str, Story] = {}
    for record in sorted(records, key=lambda r: (r.time, r.event_id)):
        if not record.release_id or record.event_type not in _STEP:
            continue
        story = found.setdefault(record.release_id, Story(record.release_id, record.service))
        what, status, tone = _STEP[record.event_type]
        data = record.data
        story.environment = story.environment or record.environment
        story.intent = story.intent or str(data.get("intent", ""))
        story.artifact_id = record.artifact_id or story.artifact_id
        if record.event_type == "ferry.release.requested.v1":
            story.requested_by = _actor(data.get("actor"))
            story.requested_at = record.time
        if record.event_type == COMMITTED:
            story.commit_sha = str(data.get("commitSha", ""))
        story.status = status
        story.steps.append(Step(record.time, what, _who(record), _detail(record), tone))
    for story in found.values():
        change = changes.get((story.service, story.artifact_id))
        story.ci_job_url = change.ci_job_url if change else ""
        if story.requested_at is None and story.steps:
            story.requested_at = story.steps[0].at
    return sorted(found.values(), key=lambda s: s.requested_at or s.steps[0].at, reverse=True)


@dataclass(frozen=True, slots=True)
class Waiting:
    release_id: str
    service: str
    environment: str
    artifact_id: str
    requested_at: datetime
    requester_subject: str
    requester: str
    required: int
    approvals: int
    approvers: tuple[str, ...]
    expires_at: datetime | None
    exclude_author: bool
    author_email: str
    reason: str = ""


def waiting(
    requested: Iterable[EventRecord], granted: Iterable[EventRecord], now: datetime
) -> list[Waiting]:
    """Open approval requests (not settled, not expired), oldest first."""
    by_release: dict[str, list[EventRecord]] = {}
    for record in granted:
        by_release.setdefault(record.release_id, []).append(record)
    out: list[Waiting] = []
    for record in requested:
        data = record.data
        expires = data.get("expiresAt")
        expires_at = datetime.fromisoformat(str(expires)) if expires else None
        if expires_at is not None and expires_at <= now:
            continue
        grants = by_release.get(record.release_id, [])
        requester = data.get("requester") or {}
        out.append(
            Waiting(
                release_id=record.release_id,
                service=record.service,
                environment=record.environment,
                artifact_id=record.artifact_id,
                requested_at=record.time,
                requester_subject=str(requester.get("subject", "")),
                requester=_actor(requester),
                required=int(data.get("required", 1)),
                approvals=max((int(g.data.get("approvals", 0)) for g in grants), default=0),
                approvers=tuple(
                    str((g.data.get("approver") or {}).get("subject", "")) for g in grants
                ),
                expires_at=expires_at,
                exclude_author=bool(data.get("excludeAuthor", False)),
                author_email=str(data.get("authorEmail", "")),
                reason=str(data.get("reason", "")),
            )
        )
    return sorted(out, key=lambda w: (w.requested_at, w.release_id))


def may_approve(subject: str, email: str, roles: Iterable[str], item: Waiting) -> bool:
    """Whether to offer this person the buttons: a role that may approve somewhere (admin,
    ``releaser:<env>``, or developer, which promotion allows for unprotected environments),
    not the requester, not already an approver, and not the author when the policy says so.
    Promotion still decides: a refusal it answers is shown to the person."""
    held = set(roles)
    allowed = bool({"admin", "developer", f"releaser:{item.environment}"} & held)
    if not allowed or subject == item.requester_subject or subject in item.approvers:
        return False
    return not (item.exclude_author and email and email.lower() == item.author_email.lower())

"""What an event means to people: a :class:`Notice`, built from the typed event data.

A notice is plain data: who it concerns (author, releaser), where (service,
environment, squad), what happened (``outcome``) and what a message about it
should show. Routing (:mod:`ferry_notifier.domain.routing`) decides who hears
it; the adapters render and send it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import partial
from typing import Final, TypedDict
from urllib.parse import quote

from ferry_events import (
    Actor,
    ApprovalDenied,
    ApprovalGranted,
    ApprovalRequested,
    ArtifactRejected,
    ArtifactStored,
    CloudEvent,
    EventData,
    HaltChanged,
    PolicyChanged,
    ReleaseApproved,
    ReleaseCommitted,
    ReleaseFailed,
    ReleaseRejected,
    RolloutFact,
    RolloutFailed,
    RolloutStarted,
    RolloutSucceeded,
    WorkloadDegraded,
)


class Outcome(StrEnum):
    """How an event turned out, for routing rules (``outcomes:``)."""

    SUCCESS = "success"
    FAILURE = "failure"
    PENDING = "pending"
    INFO = "info"


#: The event types the notifier tells people about.
NOTIFIED_TYPES: Final[tuple[type[EventData], ...]] = (
    ArtifactRejected,
    ReleaseApproved,
    ReleaseRejected,
    ReleaseCommitted,
    ReleaseFailed,
    ApprovalRequested,
    ApprovalGranted,
    ApprovalDenied,
    RolloutStarted,
    RolloutSucceeded,
    RolloutFailed,
    WorkloadDegraded,
    PolicyChanged,
    HaltChanged,
)

#: Heard only to remember an artifact's squad, author, commit and CI links.
CONTEXT_TYPES: Final[tuple[type[EventData], ...]] = (ArtifactStored,)

#: How far along its life a release is; the first message of a release's thread is
#: only ever updated forwards, whatever order events are handled in.
STAGE_RANK: Final[dict[str, int]] = {
    "approval.requested": 1,
    "approval.granted": 2,
    "release.approved": 3,
    "release.committed": 4,
    "rollout.started": 5,
    "approval.denied": 9,
    "release.rejected": 9,
    "release.failed": 9,
    "rollout.succeeded": 9,
    "rollout.failed": 9,
}


def short_type(event_type: str) -> str:
    """``ferry.rollout.failed.v1`` -> ``rollout.failed``."""
    parts = event_type.split(".")
    if parts and parts[0] == "ferry":
        parts = parts[1:]
    if parts and parts[-1].startswith("v") and parts[-1][1:].isdigit():
        parts = parts[:-1]
    return ".".join(parts)


@dataclass(frozen=True, slots=True)
class Link:
    label: str
    url: str


@dataclass(frozen=True, slots=True)
class ArtifactContext:
    """What the notifier remembers of an artifact (from ``ferry.artifact.stored.v1``)."""

    artifact_id: str
    service: str = ""
    squad: str = ""
    author_email: str = ""
    author_name: str = ""
    branch: str = ""
    sha: str = ""
    commit_url: str = ""
    ci_url: str = ""
    message: str = ""


@dataclass(frozen=True, slots=True)
class ReleaseContext:
    """What the notifier remembers of a release, so later events know its people."""

    release_id: str
    service: str = ""
    environment: str = ""
    artifact_id: str = ""
    releaser: str = ""
    author: str = ""
    approvers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Notice:
    """One event, as people should hear about it."""

    event_id: str
    event_type: str
    kind: str
    outcome: Outcome
    service: str = ""
    environment: str = ""
    squad: str = ""
    artifact_id: str = ""
    release_id: str = ""
    author: str = ""
    releaser: str = ""
    actor: str = ""
    approvers: tuple[str, ...] = ()
    commit_sha: str = ""
    reason: str = ""
    details: tuple[str, ...] = ()
    log_lines: tuple[str, ...] = ()
    links: tuple[Link, ...] = ()
    artifact: ArtifactContext | None = None
    #: Extra values for templates (counts, the policy, the approval numbers...).
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def thread_key(self) -> str:
        """Events with the same key share one Slack thread: one release, one thread."""
        if self.release_id:
            return f"release:{self.release_id}"
        if self.kind.startswith(("rollout.", "workload.")) and self.artifact_id:
            return f"rollout:{self.service}/{self.environment}/{self.artifact_id}"
        return ""

    @property
    def stage_rank(self) -> int:
        return STAGE_RANK.get(self.kind, 0)

    @property
    def flood_key(self) -> str:
        """Identical failures (a crash loop) share this key; other events have none."""
        if self.kind == "rollout.failed":
            return f"{self.service}/{self.environment}/{self.reason}"
        if self.kind == "workload.degraded":
            return f"degraded:{self.service}/{self.environment}/{self.reason}"
        return ""

    def people(self) -> dict[str, str]:
        """The roles this notice names, for ``slack-dm:<role>`` and ``email:<role>``."""
        return {"author": self.author, "releaser": self.releaser}

    def with_context(
        self, release: ReleaseContext | None, artifact: ArtifactContext | None
    ) -> Notice:
        """Fill what this event does not carry from what earlier events said."""
        notice = self
        if release is not None:
            notice = replace(
                notice,
                releaser=notice.releaser or release.releaser,
                author=notice.author or release.author,
                artifact_id=notice.artifact_id or release.artifact_id,
                approvers=notice.approvers or release.approvers,
            )
        if artifact is not None:
            links = list(notice.links)
            if artifact.commit_url:
                links.append(Link("commit", artifact.commit_url))
            if artifact.ci_url:
                links.append(Link("CI", artifact.ci_url))
            notice = replace(
                notice,
                squad=notice.squad or artifact.squad,
                author=notice.author or artifact.author_email,
                links=tuple(links),
                artifact=artifact,
            )
        return notice

    def with_dashboard(self, base_url: str) -> Notice:
        """A link to insights' dashboard (``FERRY_DASHBOARD_URL``): the release's page, else the
        service's timeline; unchanged when no dashboard is set or the event names neither."""
        if not base_url:
            return self
        base = base_url.rstrip("/")
        if self.release_id:
            url = f"{base}/releases/{quote(self.release_id, safe='')}"
        elif self.service:
            url = f"{base}/services/{quote(self.service, safe='')}"
        else:
            return self
        return replace(self, links=(*self.links, Link("dashboard", url)))

    def with_squad(self, squads: dict[str, str]) -> Notice:
        """The squad from the routing file's ``squads:`` map when events did not say."""
        if self.squad or self.service not in squads:
            return self
        return replace(self, squad=squads[self.service])


def release_context(notice: Notice) -> ReleaseContext | None:
    """What to remember of a release from this notice (None: nothing to remember)."""
    if not notice.release_id:
        return None
    return ReleaseContext(
        release_id=notice.release_id,
        service=notice.service,
        environment=notice.environment,
        artifact_id=notice.artifact_id,
        releaser=notice.releaser,
        author=notice.author,
        approvers=notice.approvers,
    )


def artifact_context(data: ArtifactStored) -> ArtifactContext:
    spec = data.artifact
    app = spec.application
    return ArtifactContext(
        artifact_id=spec.id,
        service=spec.service,
        squad=spec.squad,
        author_email=app.author_email,
        author_name=app.author_name,
        branch=app.branch,
        sha=app.sha,
        commit_url=app.url,
        ci_url=spec.ci.job_url,
        message=app.message.splitlines()[0] if app.message else "",
    )


class _Release(TypedDict):
    service: str
    environment: str
    artifact_id: str
    release_id: str


class _People(TypedDict):
    author: str
    releaser: str
    actor: str


#: The events that name one release of a service to an environment.
_OfRelease = (
    ReleaseApproved
    | ReleaseRejected
    | ReleaseCommitted
    | ReleaseFailed
    | ApprovalRequested
    | ApprovalGranted
    | ApprovalDenied
    | RolloutFact
)


def _release(data: _OfRelease) -> _Release:
    """Where and which release: the fields every event of a release carries."""
    return {
        "service": data.service,
        "environment": data.environment,
        "artifact_id": data.artifact_id or "",
        "release_id": data.release_id,
    }


def _released_by(releaser: Actor, author: str = "") -> _People:
    """The people of an event that someone released (or asked to release)."""
    return {"author": author, "releaser": releaser.email, "actor": releaser.display()}


def notice_for(event: CloudEvent, data: EventData) -> Notice:  # noqa: PLR0911 - one branch per type
    """The notice for one of :data:`NOTIFIED_TYPES`."""
    make = partial(Notice, event.id, event.type, short_type(event.type))
    if isinstance(data, ArtifactRejected):
        return make(
            outcome=Outcome.FAILURE,
            service=data.service or "",
            squad=data.squad or "",
            artifact_id=data.artifact_id or "",
            author=data.author_email or "",
            reason="; ".join(r.message for r in data.reasons),
            details=tuple(
                f"{r.field}: {r.message}" if r.field else r.message for r in data.reasons
            ),
            extra={"branch": data.branch or ""},
        )
    if isinstance(data, ReleaseApproved):
        return make(
            outcome=Outcome.SUCCESS,
            **_release(data),
            **_released_by(data.actor, data.author_email),
            reason=data.reason,
            extra={"intent": str(data.intent), "promoted_from": data.promoted_from or ""},
        )
    if isinstance(data, ReleaseRejected):
        return make(
            outcome=Outcome.FAILURE,
            **_release(data),
            **_released_by(data.actor, data.author_email),
            reason="; ".join(v.message for v in data.violations),
            details=tuple(f"{v.policy}: {v.message}" for v in data.violations),
            extra={"intent": str(data.intent)},
        )
    if isinstance(data, ReleaseCommitted):
        return make(
            outcome=Outcome.SUCCESS,
            **_release(data),
            **_released_by(data.actor, data.author_email),
            commit_sha=data.commit_sha,
            extra={
                "intent": str(data.intent),
                "promoted_from": data.promoted_from or "",
                "no_change": data.no_change,
            },
        )
    if isinstance(data, ReleaseFailed):
        return make(
            outcome=Outcome.FAILURE,
            **_release(data),
            **_released_by(data.actor, data.author_email),
            reason=data.message or data.reason,
            extra={"intent": str(data.intent), "code": data.reason},
        )
    if isinstance(data, ApprovalRequested):
        return make(
            outcome=Outcome.PENDING,
            **_release(data),
            **_released_by(data.requester, data.author_email),
            reason=data.reason,
            extra={
                "required": data.required,
                "expires_at": data.expires_at.isoformat(timespec="minutes"),
                "exclude_author": data.exclude_author,
            },
        )
    if isinstance(data, ApprovalGranted):
        return make(
            outcome=Outcome.SUCCESS if data.remaining == 0 else Outcome.PENDING,
            **_release(data),
            actor=data.approver.display(),
            extra={"approvals": data.approvals, "remaining": data.remaining},
        )
    if isinstance(data, ApprovalDenied):
        return make(
            outcome=Outcome.FAILURE,
            **_release(data),
            actor=data.by.display() if data.by else "",
            reason=data.reason,
            extra={"expired": data.expired},
        )
    if isinstance(data, RolloutFailed | RolloutSucceeded | RolloutStarted | WorkloadDegraded):
        # a degraded workload is an incident of a release that had rolled out: bad news for
        # its people, in its thread, as a failed rollout is
        failed = isinstance(data, RolloutFailed | WorkloadDegraded)
        outcome = (
            Outcome.FAILURE
            if failed
            else Outcome.SUCCESS
            if isinstance(data, RolloutSucceeded)
            else Outcome.PENDING
        )
        extra: dict[str, object] = {
            "cluster": data.cluster,
            "namespace": data.namespace,
            "workload": f"{data.workload.kind}/{data.workload.name}",
        }
        reason = ""
        logs: tuple[str, ...] = ()
        details: tuple[str, ...] = ()
        if isinstance(data, RolloutFailed | WorkloadDegraded):
            reason = data.reason
            logs = tuple(data.logs[-20:])
            details = (data.message,) if data.message else ()
            extra |= {"message": data.message, "container": data.container}
            extra["restarts"] = data.restarts
        return make(
            outcome=outcome,
            **_release(data),
            author=data.author,
            reason=reason,
            details=details,
            log_lines=logs,
            extra=extra,
        )
    if isinstance(data, PolicyChanged):
        return make(
            outcome=Outcome.INFO,
            service=data.service,
            **_released_by(data.actor),
            commit_sha=data.commit_sha,
            extra={"deleted": data.deleted, "policy": data.policy or {}},
        )
    if isinstance(data, HaltChanged):
        # a halt stops releases: bad news, heard where failures are (routing.py);
        # its resume is heard in the same places
        return make(
            outcome=Outcome.FAILURE if data.halted else Outcome.INFO,
            environment=data.environment,
            **_released_by(data.actor),
            reason=data.reason,
            commit_sha=data.commit_sha,
            extra={"halted": data.halted, "no_change": data.no_change},
        )
    raise ValueError(f"the notifier does not notify about {event.type}")

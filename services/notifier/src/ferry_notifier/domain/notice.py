"""What an event means to people: a :class:`Notice`, built from the typed event data.

A notice is plain data: who it concerns (author, releaser), where (service,
environment, squad), what happened (``outcome``) and what a message about it
should show. Routing (:mod:`ferry_notifier.domain.routing`) decides who hears
it; the adapters render and send it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Final
from urllib.parse import quote

from ferry_events import (
    ApprovalDenied,
    ApprovalGranted,
    ApprovalRequested,
    ArtifactRejected,
    ArtifactStored,
    EventData,
    HaltChanged,
    PolicyChanged,
    ReleaseApproved,
    ReleaseCommitted,
    ReleaseFailed,
    ReleaseRejected,
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

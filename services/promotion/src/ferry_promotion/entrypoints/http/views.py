"""What the API (and Slack) shows: pydantic models with camelCase JSON names, and the
functions that build them from the service layer's domain records."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from ferry_promotion.domain import records
from ferry_promotion.domain.release import Release
from ferry_promotion.domain.safety import Halt, Mark


class View(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class ActorView(View):
    subject: str
    email: str = ""
    name: str = ""


class ViolationView(View):
    policy: str
    message: str


class ApproverView(View):
    subject: str
    email: str = ""
    at: datetime
    comment: str = ""


class ApprovalsView(View):
    required: int = 0
    granted: list[ApproverView] = Field(default_factory=list)
    rejected_by: ApproverView | None = None
    expires_at: datetime | None = None


class TimelineEntry(View):
    at: datetime
    status: str
    event_type: str = ""
    detail: str = ""


class ReleaseView(View):
    release_id: str
    service: str
    environment: str
    intent: str
    artifact_id: str | None = None
    branch: str | None = None
    from_environment: str | None = None
    status: str
    actor: ActorView
    reason: str = ""
    override_freeze: bool = False
    requested_at: datetime
    updated_at: datetime
    commit_sha: str | None = None
    namespace: str | None = None
    promoted_from: str | None = None
    superseded_by: str | None = None
    #: Its number among the requests for this service and environment, in the order recorded.
    sequence: int | None = None
    #: Since when a request waits for a rollout result (its promotion chain); None otherwise.
    waiting_since: datetime | None = None
    #: When a request waiting for a soak is decided again (the soak's end); None otherwise.
    due_at: datetime | None = None
    #: When a release asked for at a time falls (or fell) due; None for one asked for now.
    scheduled_at: datetime | None = None
    author_email: str = ""
    violations: list[ViolationView] = Field(default_factory=list)
    approvals: ApprovalsView = Field(default_factory=ApprovalsView)
    timeline: list[TimelineEntry] = Field(default_factory=list)


class Accepted(View):
    release_id: str
    status: str
    #: When it falls due, for a scheduled release.
    scheduled_at: datetime | None = None


class MarkView(View):
    """A mark on a bad artifact: why, who, since when (``rejected/<service>.yaml``)."""

    reason: str = ""
    by: str = ""
    since: str = ""


class HaltView(View):
    """A halted environment (``*``: every one): why, who, since when (``halts.yaml``)."""

    environment: str
    reason: str = ""
    by: str = ""
    since: str = ""


class HaltsView(View):
    halts: list[HaltView]


class ChangeAccepted(View):
    """A halt, a resume or a mark asked of git-writer; ``ferry.*.changed.v1`` follows."""

    request_id: str
    status: str = "requested"


class EnvironmentState(View):
    artifact_id: str
    namespace: str = ""
    commit_sha: str | None = None
    released_at: datetime | None = None
    released_by: str | None = None
    rollout: str = "unknown"
    rollout_reason: str | None = None
    rejected: MarkView | None = None


class ServiceView(View):
    service: str
    environments: dict[str, EnvironmentState] = Field(default_factory=dict)


class ServicesView(View):
    environments: list[str]
    services: list[ServiceView]
    halts: list[HaltView] = Field(default_factory=list)


class HistoryItem(View):
    environment: str
    artifact_id: str
    intent: str = ""
    actor: str = ""
    commit_sha: str
    release_id: str = ""
    at: datetime
    promoted_from: str | None = None


class HistoryView(View):
    service: str
    history: list[HistoryItem]


class ArtifactItem(View):
    artifact_id: str
    branch: str = ""
    sha: str = ""
    author: str = ""
    message: str = ""
    stored_at: datetime | None = None
    environments: list[str] = Field(default_factory=list)
    rejected: MarkView | None = None


class ArtifactsView(View):
    service: str
    artifacts: list[ArtifactItem]


class PolicyAccepted(View):
    request_id: str
    status: str = "requested"


# --------------------------------------------------------------------------- from records


def mark_view(mark: Mark | None) -> MarkView | None:
    if mark is None:
        return None
    return MarkView(reason=mark.reason, by=mark.by, since=mark.since)


def halt_view(halt: Halt) -> HaltView:
    return HaltView(environment=halt.environment, reason=halt.reason, by=halt.by, since=halt.since)


def halts_view(halts: list[Halt]) -> HaltsView:
    return HaltsView(halts=[halt_view(h) for h in halts])


def accepted(release: Release) -> Accepted:
    return Accepted(
        release_id=release.release_id, status=release.status, scheduled_at=release.scheduled_at
    )


def _approver(vote: records.Vote) -> ApproverView:
    return ApproverView(subject=vote.subject, email=vote.email, at=vote.at, comment=vote.comment)


def release_view(detail: records.ReleaseDetail) -> ReleaseView:
    r = detail.release
    rejected_by = next((v for v in reversed(detail.votes) if v.decision == "rejected"), None)
    return ReleaseView(
        release_id=r.release_id,
        service=r.service,
        environment=r.environment,
        intent=r.intent,
        artifact_id=r.artifact_id,
        branch=r.branch,
        from_environment=r.from_environment,
        status=r.status,
        actor=ActorView(subject=r.actor_subject, email=r.actor_email, name=r.actor_name),
        reason=r.reason,
        override_freeze=r.override_freeze,
        requested_at=r.requested_at,
        updated_at=r.updated_at,
        commit_sha=r.commit_sha,
        namespace=r.namespace,
        promoted_from=r.promoted_from,
        superseded_by=r.superseded_by,
        sequence=r.sequence,
        waiting_since=r.waiting_since,
        due_at=r.due_at,
        scheduled_at=r.scheduled_at,
        author_email=r.author_email,
        violations=[ViolationView(policy=v["policy"], message=v["message"]) for v in r.violations],
        approvals=ApprovalsView(
            required=r.approvals_required,
            granted=[_approver(v) for v in detail.votes if v.decision == "granted"],
            rejected_by=_approver(rejected_by) if rejected_by is not None else None,
            expires_at=r.expires_at,
        ),
        timeline=[
            TimelineEntry(at=n.at, status=n.status, event_type=n.event_type, detail=n.detail)
            for n in detail.timeline
        ],
    )


def service_view(state: records.ServiceState) -> ServiceView:
    return ServiceView(
        service=state.service,
        environments={
            name: EnvironmentState(
                artifact_id=e.artifact_id,
                namespace=e.namespace,
                commit_sha=e.commit_sha,
                released_at=e.released_at,
                released_by=e.released_by,
                rollout=e.rollout,
                rollout_reason=e.rollout_reason,
                rejected=mark_view(e.rejected),
            )
            for name, e in state.environments.items()
        },
    )


def services_view(landscape: records.Landscape) -> ServicesView:
    return ServicesView(
        environments=landscape.environments,
        services=[service_view(s) for s in landscape.services],
        halts=[halt_view(h) for h in landscape.halts],
    )


def history_view(history: records.ServiceHistory) -> HistoryView:
    return HistoryView(
        service=history.service,
        history=[
            HistoryItem(
                environment=e.environment,
                artifact_id=e.artifact_id,
                intent=e.intent,
                actor=e.actor,
                commit_sha=e.commit_sha,
                release_id=e.release_id,
                at=e.at,
                promoted_from=e.promoted_from or None,
            )
            for e in history.history
        ],
    )


def artifacts_view(catalog: records.Catalog) -> ArtifactsView:
    return ArtifactsView(
        service=catalog.service,
        artifacts=[
            ArtifactItem(
                artifact_id=a.artifact_id,
                branch=a.branch,
                sha=a.sha,
                author=a.author_email or a.author_name,
                message=a.message,
                stored_at=a.stored_at,
                environments=a.environments,
                rejected=mark_view(catalog.marks.get(a.artifact_id)),
            )
            for a in catalog.artifacts
        ],
    )

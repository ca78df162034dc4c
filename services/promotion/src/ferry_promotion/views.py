"""What the API (and Slack) shows: pydantic models with camelCase JSON names."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


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
    author_email: str = ""
    violations: list[ViolationView] = Field(default_factory=list)
    approvals: ApprovalsView = Field(default_factory=ApprovalsView)
    timeline: list[TimelineEntry] = Field(default_factory=list)


class Accepted(View):
    release_id: str
    status: str


class EnvironmentState(View):
    artifact_id: str
    namespace: str = ""
    commit_sha: str | None = None
    released_at: datetime | None = None
    released_by: str | None = None
    rollout: str = "unknown"
    rollout_reason: str | None = None


class ServiceView(View):
    service: str
    environments: dict[str, EnvironmentState] = Field(default_factory=dict)


class ServicesView(View):
    environments: list[str]
    services: list[ServiceView]


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


class ArtifactsView(View):
    service: str
    artifacts: list[ArtifactItem]


class PolicyAccepted(View):
    request_id: str
    status: str = "requested"

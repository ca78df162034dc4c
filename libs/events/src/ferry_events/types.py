"""Every Ferry event type, one versioned pydantic model each.

Names: ``ferry.<noun>.<past-tense verb>.v<N>``. The version is part of the
type name and of the routing key; a reader upcasts older versions (see
:mod:`ferry_events.registry`).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar

from pydantic import Field

from ferry_events._wire import WireModel
from ferry_events.artifact import ArtifactSpec, Manifests


class EventData(WireModel):
    """Base of every event payload. ``event_type`` is the CloudEvents ``type``."""

    event_type: ClassVar[str]

    def subject(self) -> str | None:
        """The CloudEvents ``subject``: the service the event is about, when there is one."""
        service = getattr(self, "service", None)
        return service if isinstance(service, str) else None


class Intent(StrEnum):
    """What a release request asks for."""

    RELEASE = "release"
    PROMOTE = "promote"
    ROLLBACK = "rollback"
    AUTO_RELEASE = "auto-release"


class Actor(WireModel):
    """Who asked: always taken from a credential, never from a request body."""

    subject: str
    email: str = ""
    name: str = ""

    def display(self) -> str:
        """The best human-readable name for logs and commit titles."""
        return self.email or self.name or self.subject


class Reason(WireModel):
    """One reason a request or artifact was refused."""

    code: str
    message: str
    field: str | None = None


class PolicyViolation(WireModel):
    """One policy that refused a release, and why."""

    policy: str
    message: str


# --------------------------------------------------------------------------- artifacts


class ArtifactPublished(EventData):
    """CI finished a build. ``artifact`` is kept raw: artifact-ingest validates it
    and reports every problem at once rather than the first one."""

    event_type: ClassVar[str] = "ferry.artifact.published.v1"
    artifact: dict[str, Any]
    manifests: dict[str, Any] = Field(default_factory=dict)

    def subject(self) -> str | None:
        service = self.artifact.get("service")
        return service if isinstance(service, str) else None


class ArtifactAccepted(EventData):
    """artifact-ingest validated the artifact and its manifests."""

    event_type: ClassVar[str] = "ferry.artifact.accepted.v1"
    artifact: ArtifactSpec
    manifests: Manifests

    def subject(self) -> str | None:
        return self.artifact.service


class ArtifactRejected(EventData):
    """artifact-ingest refused the artifact; ``reasons`` lists every problem found."""

    event_type: ClassVar[str] = "ferry.artifact.rejected.v1"
    artifact_id: str | None = None
    service: str | None = None
    squad: str | None = None
    author_email: str | None = None
    branch: str | None = None
    reasons: list[Reason]


class ArtifactStored(EventData):
    """git-writer stored the artifact under ``builds/`` in the config repo."""

    event_type: ClassVar[str] = "ferry.artifact.stored.v1"
    artifact: ArtifactSpec
    environments: list[str]
    commit_sha: str
    path: str

    def subject(self) -> str | None:
        return self.artifact.service


# --------------------------------------------------------------------------- releases


class ReleaseRequested(EventData):
    """Someone (or a policy) asks to release, promote or roll back a service."""

    event_type: ClassVar[str] = "ferry.release.requested.v1"
    release_id: str
    service: str
    environment: str
    intent: Intent
    artifact_id: str | None = None
    branch: str | None = None
    from_environment: str | None = None
    reason: str = ""
    actor: Actor
    override_freeze: bool = False
    requested_at: datetime
    #: The config repo commit the API was at, or a newer one, when it accepted the request:
    #: the decision is made on this commit or a later one, whichever replica makes it.
    config_commit: str | None = None


class ReleaseApproved(EventData):
    """promotion decided: this artifact goes to this environment. git-writer commits it."""

    event_type: ClassVar[str] = "ferry.release.approved.v1"
    release_id: str
    service: str
    environment: str
    namespace: str
    artifact_id: str
    intent: Intent
    actor: Actor
    reason: str = ""
    promoted_from: str | None = None
    author_email: str = ""
    author_name: str = ""
    branch: str = ""
    #: The request's number among the requests for this service and environment, given by
    #: promotion when it recorded the request: git-writer never commits a lower one over a
    #: higher one (absent from producers before sequences: no order is enforced).
    sequence: int | None = Field(default=None, ge=1)


class ReleaseRejected(EventData):
    """promotion refused the request; ``violations`` names each policy that failed."""

    event_type: ClassVar[str] = "ferry.release.rejected.v1"
    release_id: str
    service: str
    environment: str
    intent: Intent
    artifact_id: str | None = None
    actor: Actor
    violations: list[PolicyViolation]
    author_email: str = ""


class ReleaseCommitted(EventData):
    """git-writer committed and pushed the environment folder."""

    event_type: ClassVar[str] = "ferry.release.committed.v1"
    release_id: str
    service: str
    environment: str
    namespace: str
    artifact_id: str
    intent: Intent
    actor: Actor
    commit_sha: str
    promoted_from: str | None = None
    author_email: str = ""
    no_change: bool = False


class ReleaseFailed(EventData):
    """git-writer could not commit the release."""

    event_type: ClassVar[str] = "ferry.release.failed.v1"
    release_id: str
    service: str
    environment: str
    artifact_id: str | None = None
    intent: Intent
    actor: Actor
    reason: str
    message: str
    author_email: str = ""


# --------------------------------------------------------------------------- approvals


class ApprovalRequested(EventData):
    """A protected environment needs people's approval before the release proceeds."""

    event_type: ClassVar[str] = "ferry.approval.requested.v1"
    release_id: str
    service: str
    environment: str
    artifact_id: str
    requester: Actor
    required: int
    exclude_author: bool = False
    author_email: str = ""
    expires_at: datetime
    reason: str = ""


class ApprovalGranted(EventData):
    """One person approved. ``remaining`` more approvals are needed (0: settled)."""

    event_type: ClassVar[str] = "ferry.approval.granted.v1"
    release_id: str
    service: str
    environment: str
    artifact_id: str
    approver: Actor
    approvals: int
    remaining: int


class ApprovalDenied(EventData):
    """Someone rejected the release, or its approval expired."""

    event_type: ClassVar[str] = "ferry.approval.denied.v1"
    release_id: str
    service: str
    environment: str
    artifact_id: str
    by: Actor | None = None
    reason: str
    expired: bool = False


# --------------------------------------------------------------------------- policies


class PolicyChangeRequested(EventData):
    """Someone asks to replace (``policy`` set) or delete (``policy`` null) a service policy."""

    event_type: ClassVar[str] = "ferry.policy.change.requested.v1"
    request_id: str
    service: str
    #: None (absent on the wire, since ``to_wire`` drops nulls) asks to delete the policy.
    policy: dict[str, Any] | None = None
    actor: Actor


class PolicyChanged(EventData):
    """git-writer committed a policy change."""

    event_type: ClassVar[str] = "ferry.policy.changed.v1"
    request_id: str
    service: str
    #: None (absent on the wire) when the policy was deleted.
    policy: dict[str, Any] | None = None
    actor: Actor
    commit_sha: str
    deleted: bool = False


# --------------------------------------------------------------------------- halts and marks

#: The environment name of a halt that stops every environment at once.
ALL_ENVIRONMENTS = "*"


class HaltChangeRequested(EventData):
    """Someone (or auto-rollback) asks to halt an environment (``"*"``: all) or to resume it.

    git-writer records it in ``halts.yaml``; ``requested_at`` is the "since" it writes.
    """

    event_type: ClassVar[str] = "ferry.halt.change.requested.v1"
    request_id: str
    environment: str
    halted: bool
    reason: str = ""
    actor: Actor
    requested_at: datetime


class HaltChanged(EventData):
    """git-writer committed a halt (``halted``) or a resume of ``environment``."""

    event_type: ClassVar[str] = "ferry.halt.changed.v1"
    request_id: str
    environment: str
    halted: bool
    reason: str = ""
    actor: Actor
    since: datetime
    commit_sha: str
    #: the repo already said so: no commit was made
    no_change: bool = False


class ArtifactMarkChangeRequested(EventData):
    """Someone (or a policy) marks an artifact bad (``rejected``) or lifts the mark."""

    event_type: ClassVar[str] = "ferry.artifact.mark.change.requested.v1"
    request_id: str
    service: str
    artifact_id: str
    rejected: bool
    reason: str = ""
    actor: Actor
    requested_at: datetime


class ArtifactMarkChanged(EventData):
    """git-writer recorded the mark (or its removal) in ``rejected/<service>.yaml``."""

    event_type: ClassVar[str] = "ferry.artifact.mark.changed.v1"
    request_id: str
    service: str
    artifact_id: str
    rejected: bool
    reason: str = ""
    actor: Actor
    since: datetime
    commit_sha: str
    no_change: bool = False


# --------------------------------------------------------------------------- rollouts


class Workload(WireModel):
    """The Kubernetes object a rollout fact is about."""

    kind: str
    name: str
    uid: str
    generation: int = 0


class RolloutFact(EventData):
    """Common fields of what a cluster-watcher reports, taken from ``ferry.dev/*`` annotations."""

    event_type: ClassVar[str] = "ferry.rollout.fact"
    cluster: str
    environment: str
    namespace: str
    service: str
    artifact_id: str
    release_id: str = ""
    author: str = ""
    workload: Workload
    observed_at: datetime


class RolloutStarted(RolloutFact):
    """A workload's template now carries a new artifact id."""

    event_type: ClassVar[str] = "ferry.rollout.started.v1"


class RolloutSucceeded(RolloutFact):
    """The rollout completed: all replicas updated, ready and available (or the Job completed)."""

    event_type: ClassVar[str] = "ferry.rollout.succeeded.v1"


class RolloutFailed(RolloutFact):
    """The rollout broke, with a reason such as CrashLoopBackOff and a message for people."""

    event_type: ClassVar[str] = "ferry.rollout.failed.v1"
    reason: str
    message: str
    container: str = ""
    logs: list[str] = Field(default_factory=list)
    restarts: int = 0


class WorkloadDegraded(RolloutFact):
    """A workload whose rollout had finished cannot run now (its pods crash, cannot pull their
    image...): an incident of the running release, not a result of its rollout. Reported once
    per rollout and reason family."""

    event_type: ClassVar[str] = "ferry.workload.degraded.v1"
    reason: str
    message: str
    container: str = ""
    logs: list[str] = Field(default_factory=list)
    restarts: int = 0


ALL_EVENT_TYPES: tuple[type[EventData], ...] = (
    ArtifactPublished,
    ArtifactAccepted,
    ArtifactRejected,
    ArtifactStored,
    ReleaseRequested,
    ReleaseApproved,
    ReleaseRejected,
    ApprovalRequested,
    ApprovalGranted,
    ApprovalDenied,
    ReleaseCommitted,
    ReleaseFailed,
    PolicyChangeRequested,
    PolicyChanged,
    HaltChangeRequested,
    HaltChanged,
    ArtifactMarkChangeRequested,
    ArtifactMarkChanged,
    RolloutStarted,
    RolloutSucceeded,
    RolloutFailed,
    WorkloadDegraded,
)

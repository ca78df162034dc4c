"""What promotion remembers besides a release itself: votes, timeline notes, rollout facts,
the artifact catalog, and the read-side records the API and Slack show. Plain data."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from ferry_promotion.domain.decision import HistoryEntry
from ferry_promotion.domain.release import Release
from ferry_promotion.domain.safety import Halt, Mark


@dataclass(frozen=True, slots=True)
class Vote:
    """One person's approval (``granted``) or refusal (``rejected``) of a release."""

    subject: str
    email: str
    decision: str
    at: datetime
    name: str = ""
    comment: str = ""


@dataclass(frozen=True, slots=True)
class Note:
    """One line of a release's timeline."""

    at: datetime
    status: str
    event_type: str = ""
    detail: str = ""


@dataclass(frozen=True, slots=True)
class ReleaseDetail:
    """A release with its timeline (oldest first) and its votes (in the order cast)."""

    release: Release
    timeline: list[Note] = field(default_factory=list)
    votes: list[Vote] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Rollout:
    """The newest fact about an artifact's rollout in one environment."""

    environment: str
    service: str
    artifact_id: str
    status: str
    observed_at: datetime
    reason: str = ""
    release_id: str = ""
    succeeded_at: datetime | None = None
    #: the newest failure observed (kept when later facts replace the status)
    failed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class StoredArtifact:
    """An artifact of the catalog (from ``ferry.artifact.stored.v1``, or ``builds/`` in git)."""

    service: str
    artifact_id: str
    branch: str = ""
    sha: str = ""
    author_name: str = ""
    author_email: str = ""
    message: str = ""
    stored_at: datetime | None = None
    environments: list[str] = field(default_factory=list)
    namespace: str = ""
    commit_sha: str = ""


@dataclass(frozen=True, slots=True)
class EnvironmentState:
    """What runs in one environment for a service, and how its rollout went."""

    artifact_id: str
    namespace: str = ""
    commit_sha: str | None = None
    released_at: datetime | None = None
    released_by: str | None = None
    rollout: str = "unknown"
    rollout_reason: str | None = None
    #: the mark on the running artifact, when it is marked bad
    rejected: Mark | None = None


@dataclass(frozen=True, slots=True)
class ServiceState:
    service: str
    environments: dict[str, EnvironmentState] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Landscape:
    """Every service and what runs where, with the environments in promotion order."""

    environments: list[str]
    services: list[ServiceState]
    halts: list[Halt] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ServiceHistory:
    service: str
    history: list[HistoryEntry]


@dataclass(frozen=True, slots=True)
class Catalog:
    service: str
    artifacts: list[StoredArtifact]
    #: artifact id -> its mark, for the listed artifacts marked bad
    marks: dict[str, Mark] = field(default_factory=dict)

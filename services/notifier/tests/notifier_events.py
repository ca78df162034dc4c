"""Event data for the notifier's tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ferry_events import (
    Actor,
    ApprovalDenied,
    ApprovalGranted,
    ApprovalRequested,
    ArtifactRejected,
    ArtifactSpec,
    ArtifactStored,
    Intent,
    PolicyChanged,
    PolicyViolation,
    Reason,
    ReleaseApproved,
    ReleaseCommitted,
    ReleaseFailed,
    ReleaseRejected,
    RolloutFailed,
    RolloutStarted,
    RolloutSucceeded,
    Workload,
)

AUTHOR = "dev@example.com"
RELEASER = "rel@example.com"
NOW = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
JANE = Actor(subject="rel", email=RELEASER, name="Rel Easer")


def stored(artifact_id: str = "master-abc-def", service: str = "payments") -> ArtifactStored:
    spec = ArtifactSpec.model_validate(
        {
            "id": artifact_id,
            "service": service,
            "squad": "pay",
            "application": {
                "branch": "master",
                "sha": "0017d995e3aaaa",
                "authorName": "Dev",
                "authorEmail": AUTHOR,
                "message": "Fix rounding\n\nlong text",
                "url": "https://git.example.com/payments/commit/0017d995e3",
            },
            "ci": {"jobUrl": "https://ci.example.com/job/42"},
        }
    )
    return ArtifactStored(
        artifact=spec, environments=["dev", "prod"], commit_sha="c0ffee", path="builds/x"
    )


def approved(
    release_id: str = "r-1", env: str = "prod", service: str = "payments"
) -> ReleaseApproved:
    return ReleaseApproved(
        release_id=release_id,
        service=service,
        environment=env,
        namespace="default",
        artifact_id="master-abc-def",
        intent=Intent.RELEASE,
        actor=JANE,
        author_email=AUTHOR,
    )


def committed(release_id: str = "r-1", env: str = "prod") -> ReleaseCommitted:
    return ReleaseCommitted(
        release_id=release_id,
        service="payments",
        environment=env,
        namespace="default",
        artifact_id="master-abc-def",
        intent=Intent.RELEASE,
        actor=JANE,
        commit_sha="1234567890abcdef",
        author_email=AUTHOR,
    )


def rejected(release_id: str = "r-1") -> ReleaseRejected:
    return ReleaseRejected(
        release_id=release_id,
        service="payments",
        environment="prod",
        intent=Intent.RELEASE,
        artifact_id="master-abc-def",
        actor=JANE,
        violations=[PolicyViolation(policy="freeze", message="prod is frozen until Monday")],
        author_email=AUTHOR,
    )


def failed(release_id: str = "r-1") -> ReleaseFailed:
    return ReleaseFailed(
        release_id=release_id,
        service="payments",
        environment="prod",
        artifact_id="master-abc-def",
        intent=Intent.RELEASE,
        actor=JANE,
        reason="push-rejected",
        message="the remote refused the push",
        author_email=AUTHOR,
    )


def artifact_rejected() -> ArtifactRejected:
    return ArtifactRejected(
        artifact_id="bad-1",
        service="payments",
        squad="pay",
        author_email=AUTHOR,
        branch="feature",
        reasons=[
            Reason(code="missing", message="manifests for prod are missing", field="manifests")
        ],
    )


def approval_requested(release_id: str = "r-1") -> ApprovalRequested:
    return ApprovalRequested(
        release_id=release_id,
        service="payments",
        environment="prod",
        artifact_id="master-abc-def",
        requester=JANE,
        required=1,
        author_email=AUTHOR,
        expires_at=NOW + timedelta(hours=4),
    )


def approval_granted(release_id: str = "r-1") -> ApprovalGranted:
    return ApprovalGranted(
        release_id=release_id,
        service="payments",
        environment="prod",
        artifact_id="master-abc-def",
        approver=Actor(subject="lead", email="lead@example.com"),
        approvals=1,
        remaining=0,
    )


def approval_denied(release_id: str = "r-1") -> ApprovalDenied:
    return ApprovalDenied(
        release_id=release_id,
        service="payments",
        environment="prod",
        artifact_id="master-abc-def",
        by=Actor(subject="lead", email="lead@example.com"),
        reason="not during the sale",
    )


def _workload() -> Workload:
    return Workload(kind="Deployment", name="payments", uid="uid-1", generation=3)


def rollout_started(release_id: str = "r-1", env: str = "prod") -> RolloutStarted:
    return RolloutStarted(
        cluster="local",
        environment=env,
        namespace="default",
        service="payments",
        artifact_id="master-abc-def",
        release_id=release_id,
        author=AUTHOR,
        workload=_workload(),
        observed_at=NOW,
    )


def rollout_succeeded(release_id: str = "r-1", env: str = "prod") -> RolloutSucceeded:
    return RolloutSucceeded(
        cluster="local",
        environment=env,
        namespace="default",
        service="payments",
        artifact_id="master-abc-def",
        release_id=release_id,
        author=AUTHOR,
        workload=_workload(),
        observed_at=NOW,
    )


def rollout_failed(
    release_id: str = "r-1", env: str = "prod", reason: str = "CrashLoopBackOff", restarts: int = 3
) -> RolloutFailed:
    return RolloutFailed(
        cluster="local",
        environment=env,
        namespace="default",
        service="payments",
        artifact_id="master-abc-def",
        release_id=release_id,
        author=AUTHOR,
        workload=_workload(),
        observed_at=NOW,
        reason=reason,
        message="back-off restarting failed container",
        container="app",
        logs=["starting", "panic: no DATABASE_URL"],
        restarts=restarts,
    )


def policy_changed() -> PolicyChanged:
    return PolicyChanged(
        request_id="p-1",
        service="payments",
        policy={"autoRelease": []},
        actor=JANE,
        commit_sha="feedbeef",
    )

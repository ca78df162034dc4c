"""Event data for the notifier's tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from ferry_events import (
    Actor,
    ApprovalDenied,
    ApprovalGranted,
    ApprovalRequested,
    ArtifactRejected,
    ArtifactSpec,
    ArtifactStored,
    HaltChanged,
    Intent,
    PolicyChanged,
    PolicyViolation,
    Reason,
    ReleaseApproved,
    ReleaseCommitted,
    ReleaseFailed,
    ReleaseRejected,
    RolloutFact,
    RolloutFailed,
    RolloutStarted,
    RolloutSucceeded,
    Workload,
    WorkloadDegraded,
)

AUTHOR = "dev@example.com"
RELEASER = "rel@example.com"
NOW = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
JANE = Actor(subject="rel", email=RELEASER, name="Rel Easer")
LEAD = Actor(subject="lead", email="lead@example.com")

R = TypeVar("R", bound=RolloutFact)


def _of_release(release_id: str, env: str = "prod", service: str = "payments") -> dict[str, Any]:
    """Which release, of what, where: the fields every event of a release carries."""
    return {
        "release_id": release_id,
        "service": service,
        "environment": env,
        "artifact_id": "master-abc-def",
    }


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
        **_of_release(release_id, env, service),
        namespace="default",
        intent=Intent.RELEASE,
        actor=JANE,
        author_email=AUTHOR,
    )


def committed(release_id: str = "r-1", env: str = "prod") -> ReleaseCommitted:
    return ReleaseCommitted(
        **_of_release(release_id, env),
        namespace="default",
        intent=Intent.RELEASE,
        actor=JANE,
        commit_sha="1234567890abcdef",
        author_email=AUTHOR,
    )


def rejected(release_id: str = "r-1") -> ReleaseRejected:
    return ReleaseRejected(
        **_of_release(release_id),
        intent=Intent.RELEASE,
        actor=JANE,
        violations=[PolicyViolation(policy="freeze", message="prod is frozen until Monday")],
        author_email=AUTHOR,
    )


def failed(release_id: str = "r-1") -> ReleaseFailed:
    return ReleaseFailed(
        **_of_release(release_id),
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
        **_of_release(release_id),
        requester=JANE,
        required=1,
        author_email=AUTHOR,
        expires_at=NOW + timedelta(hours=4),
    )


def approval_granted(release_id: str = "r-1") -> ApprovalGranted:
    return ApprovalGranted(
        **_of_release(release_id),
        approver=LEAD,
        approvals=1,
        remaining=0,
    )


def approval_denied(release_id: str = "r-1") -> ApprovalDenied:
    return ApprovalDenied(
        **_of_release(release_id),
        by=LEAD,
        reason="not during the sale",
    )


def _rollout(fact: type[R], release_id: str, env: str, **more: Any) -> R:
    """What the cluster-watcher reports of one workload of a release."""
    return fact(
        **_of_release(release_id, env),
        cluster="local",
        namespace="default",
        author=AUTHOR,
        workload=Workload(kind="Deployment", name="payments", uid="uid-1", generation=3),
        observed_at=NOW,
        **more,
    )


def rollout_started(release_id: str = "r-1", env: str = "prod") -> RolloutStarted:
    return _rollout(RolloutStarted, release_id, env)


def rollout_succeeded(release_id: str = "r-1", env: str = "prod") -> RolloutSucceeded:
    return _rollout(RolloutSucceeded, release_id, env)


def rollout_failed(
    release_id: str = "r-1", env: str = "prod", reason: str = "CrashLoopBackOff", restarts: int = 3
) -> RolloutFailed:
    return _rollout(
        RolloutFailed,
        release_id,
        env,
        reason=reason,
        message="back-off restarting failed container",
        container="app",
        logs=["starting", "panic: no DATABASE_URL"],
        restarts=restarts,
    )


def workload_degraded(
    release_id: str = "r-1", env: str = "prod", reason: str = "CrashLoopBackOff"
) -> WorkloadDegraded:
    return _rollout(
        WorkloadDegraded,
        release_id,
        env,
        reason=reason,
        message="Deployment payments: pod payments-1: container app keeps crashing",
        container="app",
        logs=["starting", "panic: lost the database"],
        restarts=4,
    )


def policy_changed() -> PolicyChanged:
    return PolicyChanged(
        request_id="p-1",
        service="payments",
        policy={"autoRelease": []},
        actor=JANE,
        commit_sha="feedbeef",
    )


def halt_changed(
    environment: str = "prod", *, halted: bool = True, request_id: str = "h-1"
) -> HaltChanged:
    return HaltChanged(
        request_id=request_id,
        environment=environment,
        halted=halted,
        reason="incident 4711" if halted else "",
        actor=JANE,
        since=NOW,
        commit_sha="feedbeef",
    )

"""What ``GET /v1/releases/preview`` answers (docs/api.md), built from a domain :class:`Preview`."""

from __future__ import annotations

from pydantic import Field

from ferry_promotion.domain.preview import Change, Preview
from ferry_promotion.entrypoints.http.views import View, ViolationView


class FileChangeView(View):
    path: str
    change: str
    diff: str
    binary: bool = False


class ChangeSummaryView(View):
    added: int = 0
    removed: int = 0
    changed: int = 0


class CheckView(View):
    policy: str
    verdict: str
    message: str


class CommitFailureView(View):
    reason: str
    message: str


class PreviewView(View):
    service: str
    environment: str
    intent: str
    artifact_id: str | None = None
    promoted_from: str | None = None
    namespace: str | None = None
    running_artifact_id: str | None = None
    config_commit: str | None = None
    release_id_placeholder: str
    outcome: str
    detail: str = ""
    violations: list[ViolationView] = Field(default_factory=list)
    checks: list[CheckView] = Field(default_factory=list)
    summary: ChangeSummaryView
    files: list[FileChangeView] = Field(default_factory=list)
    diff: str = ""
    commit_failure: CommitFailureView | None = None


def preview_view(preview: Preview, placeholder: str) -> PreviewView:
    failure = preview.commit_failure
    return PreviewView(
        service=preview.service,
        environment=preview.environment,
        intent=preview.intent.value,
        artifact_id=preview.artifact_id,
        promoted_from=preview.promoted_from,
        namespace=preview.namespace,
        running_artifact_id=preview.running_artifact_id,
        config_commit=preview.config_commit,
        release_id_placeholder=placeholder,
        outcome=preview.outcome.value,
        detail=preview.detail,
        violations=[ViolationView(policy=v.policy, message=v.message) for v in preview.violations],
        checks=[
            CheckView(policy=c.policy, verdict=c.verdict.value, message=c.message)
            for c in preview.checks
        ],
        summary=ChangeSummaryView(
            added=preview.count(Change.ADDED),
            removed=preview.count(Change.REMOVED),
            changed=preview.count(Change.CHANGED),
        ),
        files=[
            FileChangeView(path=f.path, change=f.change.value, diff=f.diff, binary=f.binary)
            for f in preview.files
        ],
        diff=preview.diff,
        commit_failure=CommitFailureView(reason=failure.reason, message=failure.message)
        if failure
        else None,
    )

"""A verdict turned into effects (pure: no broker, no database)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from ferry_events import (
    ApprovalRequested,
    ArtifactSpec,
    PolicyViolation,
    ReleaseApproved,
    ReleaseRejected,
)
from ferry_promotion.domain.decision import Outcome, Status, Verdict
from ferry_promotion.domain.effects import effects_of, rejection
from ferry_promotion.domain.policies import ApprovalRule
from ferry_promotion.domain.release import Release

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
SPEC = ArtifactSpec.model_validate(
    {
        "id": "m-2",
        "service": "payments",
        "application": {"branch": "master", "sha": "0" * 40, "authorEmail": "ann@example.com"},
    }
)
RELEASE = Release(
    release_id="r-1",
    service="payments",
    environment="prod",
    intent="promote",
    status=Status.REQUESTED.value,
    actor_subject="bob",
    requested_at=NOW,
    updated_at=NOW,
    correlation_id="r-1",
)


def _effects(verdict: Verdict, release: Release = RELEASE):  # type: ignore[no-untyped-def]
    return effects_of(
        release, verdict, artifact=SPEC, promoted_from="staging", namespace="pay", now=NOW
    )


def test_an_approval_sets_the_target_and_publishes_release_approved() -> None:
    found = _effects(Verdict(Outcome.APPROVE, notes=("freeze overridden",)))
    assert found.values["status"] == Status.APPROVED
    assert found.values["artifact_id"] == "m-2"
    assert found.values["from_environment"] == "staging"
    assert [(n.status, n.detail) for n in found.notes] == [
        ("requested", "freeze overridden"),
        ("approved", "m-2 to prod/pay, promoted from staging"),
    ]
    assert isinstance(found.event, ReleaseApproved)
    assert found.event.namespace == "pay"
    assert found.decided is not None
    assert found.decided.status == Status.APPROVED


def test_awaiting_approval_expires_after_the_rule_and_is_asked_once() -> None:
    rule = ApprovalRule(environment="prod", required=2, expires_after=timedelta(hours=4))
    verdict = Verdict(Outcome.AWAIT_APPROVAL, detail="needs 2 approvals", approval_rule=rule)
    found = _effects(verdict)
    assert found.values["expires_at"] == NOW + timedelta(hours=4)
    assert isinstance(found.event, ApprovalRequested)
    assert found.event.required == 2
    waiting = dataclasses.replace(RELEASE, status=Status.AWAITING_APPROVAL.value)
    again = _effects(verdict, waiting)
    assert again.event is None
    assert again.decided is None
    assert again.values == {"approvals_required": 2, "exclude_author": False}


def test_a_wait_for_a_rollout_is_noted_once() -> None:
    verdict = Verdict(Outcome.WAIT_FOR_ROLLOUT, detail="waiting for staging")
    first = _effects(verdict)
    assert first.values["waiting_since"] == NOW
    assert first.decided is not None
    assert first.decided.status == Status.REQUESTED
    later = _effects(verdict, dataclasses.replace(RELEASE, waiting_since=NOW))
    assert later.values == {}
    assert later.event is None
    assert later.decided is None


def test_a_rejection_names_every_violation() -> None:
    violations = [
        PolicyViolation(policy="branch", message="only master"),
        PolicyViolation(policy="freeze", message="frozen until Monday"),
    ]
    found = rejection(RELEASE, violations)
    assert found.values["violations"] == [v.to_wire() for v in violations]
    assert found.notes[0].detail == "branch: only master; freeze: frozen until Monday"
    assert isinstance(found.event, ReleaseRejected)
    assert found.event.artifact_id is None  # nothing was resolved
    assert found.decided is not None
    assert found.decided.violations == tuple(violations)

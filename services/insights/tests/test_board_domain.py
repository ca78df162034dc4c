"""What the dashboard shows, decided from plain records (no database, no browser)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from ferry_insights.domain.board import (
    Waiting,
    matrix,
    may_approve,
    order_environments,
    stories,
    waiting,
)
from ferry_insights.domain.facts import Change, EventRecord

T = datetime(2026, 12, 1, 9, tzinfo=UTC)


def record(kind: str, minute: int, release: str, artifact: str, **data: object) -> EventRecord:
    return EventRecord(
        event_id=f"{kind}-{minute}",
        event_type=f"ferry.{kind}.v1",
        time=T + timedelta(minutes=minute),
        service="payments",
        environment="prod",
        release_id=release,
        artifact_id=artifact,
        data=dict(data),
    )


def test_the_matrix_shows_the_latest_commit_and_its_latest_rollout_in_any_order() -> None:
    committed = [
        record("release.committed", 1, "r1", "a1", actor={"email": "jane@example.com"}),
        record("release.committed", 5, "r2", "a2", actor={"email": "bob@example.com"}),
    ]
    rollouts = [
        record("rollout.started", 6, "r2", "a2", observedAt=(T + timedelta(minutes=6)).isoformat()),
        record(
            "rollout.failed",
            7,
            "r2",
            "a2",
            observedAt=(T + timedelta(minutes=7)).isoformat(),
            reason="CrashLoopBackOff",
        ),
        record(
            "rollout.succeeded", 2, "r1", "a1", observedAt=(T + timedelta(minutes=2)).isoformat()
        ),
    ]
    changes = {("payments", "a2"): Change("payments", "a2", author_name="Dev", branch="main")}
    for seed in range(5):
        random.Random(seed).shuffle(committed)
        random.Random(seed).shuffle(rollouts)
        board = matrix(committed, rollouts, changes)
        cell = board.cells[("payments", "prod")]
        assert (cell.artifact_id, cell.released_by, cell.author, cell.branch) == (
            "a2",
            "bob@example.com",
            "Dev",
            "main",
        )
        assert (cell.rollout, cell.rollout_reason, cell.failed) == (
            "failed",
            "CrashLoopBackOff",
            True,
        )


def test_environments_in_chain_order_then_by_name() -> None:
    assert order_environments(["qa", "prod", "dev", "eu-prod", "staging"]) == [
        "dev",
        "staging",
        "prod",
        "eu-prod",
        "qa",
    ]


def test_a_story_has_every_step_and_ends_in_its_last_status() -> None:
    records = [
        record("rollout.succeeded", 9, "r1", "a1"),
        record("release.committed", 8, "r1", "a1", commitSha="c0ffee"),
        record("approval.granted", 7, "r1", "a1", approver={"email": "bob@example.com"}),
        record("approval.requested", 6, "r1", "a1", required=1),
        record(
            "release.requested", 5, "r1", "", actor={"email": "jane@example.com"}, intent="release"
        ),
    ]
    changes = {("payments", "a1"): Change("payments", "a1", ci_job_url="https://ci/1")}
    (story,) = stories(records, changes)
    assert [s.what for s in story.steps] == [
        "requested",
        "approval requested",
        "approved by",
        "committed",
        "rolled out",
    ]
    assert (story.status, story.requested_by, story.commit_sha, story.ci_job_url) == (
        "rolled-out",
        "jane@example.com",
        "c0ffee",
        "https://ci/1",
    )


def test_open_approvals_and_who_may_settle_them() -> None:
    requested = [
        record(
            "approval.requested",
            1,
            "r1",
            "a1",
            requester={"subject": "jane", "email": "jane@example.com"},
            required=2,
            expiresAt=(T + timedelta(hours=1)).isoformat(),
            excludeAuthor=True,
            authorEmail="dev@example.com",
        ),
        record("approval.requested", 2, "r2", "a2", expiresAt=(T - timedelta(hours=1)).isoformat()),
    ]
    granted = [record("approval.granted", 3, "r1", "a1", approver={"subject": "bob"}, approvals=1)]
    (item,) = waiting(requested, granted, T)  # r2 expired
    assert isinstance(item, Waiting)
    assert (item.approvals, item.required, item.approvers) == (1, 2, ("bob",))
    assert may_approve("carol", "carol@example.com", {"releaser:prod"}, item)
    assert not may_approve("vera", "vera@example.com", {"viewer"}, item)
    assert not may_approve("jane", "jane@example.com", {"admin"}, item)  # the requester
    assert not may_approve("bob", "bob@example.com", {"admin"}, item)  # approved already
    assert not may_approve("dev", "dev@example.com", {"admin"}, item)  # the author

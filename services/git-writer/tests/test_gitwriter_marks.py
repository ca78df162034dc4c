"""Halts (``halts.yaml``) and marks on bad artifacts (``rejected/<service>.yaml``):
planned from plain data, then written through the real broker into a real bare remote."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from ferry_events import (
    Actor,
    ArtifactMarkChangeRequested,
    CloudEvent,
    HaltChangeRequested,
)
from ferry_gitwriter.bootstrap import build
from ferry_gitwriter.domain.changes import CommitPlan, Refused, Unchanged, check_event
from ferry_gitwriter.domain.marks import plan_halt, plan_mark
from ferry_runtime import CODE_HEADER
from ferry_testing import BrokerNamespace, EventTap, git, log_subjects, running, show

from .test_gitwriter_domain import Tree
from .test_gitwriter_service import ARTIFACT_ID, accepted, publish_all, settings

JANE = Actor(subject="jane", email="jane@example.com", name="Jane Doe")
AT = datetime(2026, 12, 24, 2, 0, tzinfo=UTC)
STORED = {f"builds/payments/{ARTIFACT_ID}/artifact.json": b"{}"}


def halt(
    environment: str = "prod", reason: str = "incident 4711", **kw: object
) -> HaltChangeRequested:
    fields: dict[str, object] = {
        "request_id": "h1",
        "environment": environment,
        "halted": True,
        "reason": reason,
        "actor": JANE,
        "requested_at": AT,
    }
    fields.update(kw)
    return HaltChangeRequested.model_validate(fields)


def mark(rejected: bool = True, reason: str = "corrupts the ledger") -> ArtifactMarkChangeRequested:
    return ArtifactMarkChangeRequested(
        request_id="m1",
        service="payments",
        artifact_id=ARTIFACT_ID,
        rejected=rejected,
        reason=reason,
        actor=JANE,
        requested_at=AT,
    )


def apply(tree: Tree, plan: CommitPlan | Unchanged) -> None:
    assert isinstance(plan, CommitPlan)
    for path, content in plan.files.items():
        if content is None:
            tree.files.pop(path, None)
        else:
            tree.files[path] = content


# --------------------------------------------------------------------------- the plans


def test_halt_writes_who_when_why_and_a_resume_removes_it() -> None:
    tree = Tree()
    plan = plan_halt("e1", halt(), tree)
    assert isinstance(plan, CommitPlan)
    assert plan.title == "[halts] halt prod by jane@example.com"
    assert plan.body == "Reason: incident 4711"
    assert plan.trailers == (
        ("Ferry-Event-Id", "e1"),
        ("Ferry-Environment", "prod"),
        ("Ferry-Actor", "jane@example.com"),
    )
    apply(tree, plan)
    apply(tree, plan_halt("e2", halt("*", "freeze for the holidays"), tree))
    assert yaml.safe_load(tree.files["halts.yaml"]) == {
        "halts": [
            {
                "environment": "*",
                "reason": "freeze for the holidays",
                "by": "jane@example.com",
                "since": "2026-12-24T02:00:00Z",
            },
            {
                "environment": "prod",
                "reason": "incident 4711",
                "by": "jane@example.com",
                "since": "2026-12-24T02:00:00Z",
            },
        ]
    }
    # the same halt again changes nothing; a resume of a running environment neither
    assert isinstance(plan_halt("e3", halt(), tree), Unchanged)
    assert isinstance(plan_halt("e4", halt("staging", halted=False), tree), Unchanged)
    resume = plan_halt("e5", halt(halted=False, reason=""), tree)
    assert isinstance(resume, CommitPlan)
    assert resume.title == "[halts] resume prod by jane@example.com"
    apply(tree, resume)
    entries = yaml.safe_load(tree.files["halts.yaml"])["halts"]
    assert [e["environment"] for e in entries] == ["*"]


def test_a_new_reason_replaces_the_halt() -> None:
    tree = Tree()
    apply(tree, plan_halt("e1", halt(), tree))
    apply(tree, plan_halt("e2", halt(reason="incident 4712"), tree))
    [entry] = yaml.safe_load(tree.files["halts.yaml"])["halts"]
    assert entry["reason"] == "incident 4712"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"halts: [unclosed", "not valid YAML"),
        (b"- prod\n", "a mapping with a list under 'halts'"),
        (b"halts:\n  - prod\n", "entry 1 under 'halts' must be a mapping"),
    ],
)
def test_a_hand_edited_halts_file_it_cannot_read_is_refused_not_overwritten(
    content: bytes, message: str
) -> None:
    with pytest.raises(Refused, match=message) as caught:
        plan_halt("e1", halt(), Tree({"halts.yaml": content}))
    assert caught.value.code == "invalid-halts-file"


def test_halts_of_unsafe_environments_are_refused_from_the_event_alone() -> None:
    with pytest.raises(Refused) as caught:
        check_event(halt("../prod"))
    assert caught.value.code == "unsafe-path"
    check_event(halt("*"))


def test_a_mark_needs_a_stored_artifact_and_is_lifted_again() -> None:
    with pytest.raises(Refused) as caught:
        plan_mark("e1", mark(), Tree())
    assert caught.value.code == "unknown-artifact"
    tree = Tree(dict(STORED))
    plan = plan_mark("e1", mark(), tree)
    assert isinstance(plan, CommitPlan)
    assert plan.title == f"[rejected/payments] reject {ARTIFACT_ID} by jane@example.com"
    assert ("Ferry-Artifact-Id", ARTIFACT_ID) in plan.trailers
    apply(tree, plan)
    assert yaml.safe_load(tree.files["rejected/payments.yaml"]) == {
        "rejected": [
            {
                "artifactId": ARTIFACT_ID,
                "reason": "corrupts the ledger",
                "by": "jane@example.com",
                "since": "2026-12-24T02:00:00Z",
            }
        ]
    }
    assert isinstance(plan_mark("e2", mark(), tree), Unchanged)
    lift = plan_mark("e3", mark(rejected=False, reason=""), tree)
    assert isinstance(lift, CommitPlan)
    assert lift.title == f"[rejected/payments] unreject {ARTIFACT_ID} by jane@example.com"
    apply(tree, lift)
    assert yaml.safe_load(tree.files["rejected/payments.yaml"]) == {"rejected": []}


# --------------------------------------------------------------------------- through the broker


@pytest.mark.amqp
async def test_halts_and_marks_are_committed_once_and_answered(
    broker_ns: BrokerNamespace, event_tap: EventTap, bare_remote: Path, tmp_path: Path
) -> None:
    halt_event = CloudEvent.new(halt(), source="ferry/promotion")
    mark_event = CloudEvent.new(mark(), source="ferry/promotion")
    bad = CloudEvent.new(halt("Prod!", request_id="h2"), source="ferry/promotion")
    async with running(build(settings(broker_ns, bare_remote, tmp_path / "data"))):
        await publish_all(broker_ns, [accepted(), halt_event, mark_event, bad])
        halted = await event_tap.wait_one("ferry.halt.changed.v1")
        marked = await event_tap.wait_one("ferry.artifact.mark.changed.v1")
        # redelivered: answered again with the same commit, no second commit
        await broker_ns.publish(halt_event)
        _, again = await event_tap.wait_for("ferry.halt.changed.v1", count=2)
        [dead] = await broker_ns.dead_letters("git-writer")
    assert halted.data["halted"] is True
    assert halted.data["since"].startswith("2026-12-24T02:00:00")
    assert again.id == halted.id  # derived from the same cause: consumers drop it
    assert again.data["commitSha"] == halted.data["commitSha"]
    assert marked.data["rejected"] is True
    assert log_subjects(bare_remote) == [
        f"[rejected/payments] reject {ARTIFACT_ID} by jane@example.com",
        "[halts] halt prod by jane@example.com",
        f"[builds/payments] store {ARTIFACT_ID}",
    ]
    assert (
        marked.data["commitSha"] == git("--git-dir", str(bare_remote), "rev-parse", "main").strip()
    )
    halts = yaml.safe_load(show(bare_remote, "halts.yaml"))
    assert halts["halts"][0]["reason"] == "incident 4711"
    assert (dead.headers or {})[CODE_HEADER] == "unsafe-path"

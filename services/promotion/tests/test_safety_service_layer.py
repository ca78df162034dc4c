"""Halts and marks against the in-memory unit of work: who may ask, what is asked of
git-writer, and what a decision refuses while the config repo holds a halt or a mark."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from ferry_events import (
    ArtifactMarkChangeRequested,
    CloudEvent,
    HaltChangeRequested,
    Intent,
    ReleaseRejected,
    ReleaseRequested,
    RolloutFailed,
    Workload,
)
from ferry_promotion.domain.access import Identity
from ferry_promotion.domain.decision import Status
from ferry_promotion.domain.records import StoredArtifact
from ferry_promotion.domain.safety import parse_halts, parse_marks
from ferry_promotion.errors import Forbidden, Invalid, NotFound
from ferry_promotion.service_layer.safety import Safety

from .test_service_layer import ALICE, BOB, VIC, World, _snapshot, world

__all__ = ["world"]  # the fixture, re-used

ROOT = Identity("root", "root@example.com", "Root", frozenset({"admin"}))
HALT_PROD = "halts:\n  - {environment: prod, reason: incident 4711, by: root@example.com}\n"
MARK_M1 = "rejected:\n  - {artifactId: m-1, reason: corrupts the ledger, by: bob@example.com}\n"


def _safety(w: World) -> Safety:
    return Safety(w.uow, w.config, clock=lambda: w.clock[-1])


def _with(w: World, *, halts: str = "", marks: str = "") -> None:
    w.config.snapshot = dataclasses.replace(
        w.config.snapshot,
        halts=parse_halts(halts) if halts else {},
        marks={"payments": parse_marks("payments", marks)} if marks else {},
    )


async def _rollback(w: World, who: Identity, environment: str) -> str:
    release = await w.requests.request_release(
        who, service="payments", environment=environment, intent=Intent.ROLLBACK
    )
    [event] = [
        e
        for e in w.state.published(ReleaseRequested.event_type)
        if e.data["releaseId"] == release.release_id
    ]
    await w.requests.take(event, ReleaseRequested.model_validate(event.data))
    return release.release_id


async def test_an_admin_halt_and_resume_go_to_git_writer_through_the_outbox(world: World) -> None:
    safety = _safety(world)
    first = await safety.halt(ROOT, "prod", "  incident 4711 ")
    every = await safety.halt(ROOT, "*", "datacenter move")
    resumed = await safety.resume(ROOT, "prod")
    asked = [
        HaltChangeRequested.model_validate(e.data)
        for e in world.state.published(HaltChangeRequested.event_type)
    ]
    assert [(a.request_id, a.environment, a.halted, a.reason) for a in asked] == [
        (first, "prod", True, "incident 4711"),
        (every, "*", True, "datacenter move"),
        (resumed, "prod", False, ""),
    ]
    assert {a.actor.subject for a in asked} == {"root"}
    assert {a.requested_at for a in asked} == {world.clock[-1]}


@pytest.mark.parametrize(
    ("who", "environment", "reason", "error", "says"),
    [
        (BOB, "prod", "incident", Forbidden, "needs the role admin; bob has"),
        (ROOT, "qa", "incident", Invalid, "unknown environment 'qa'"),
        (ROOT, "prod", "   ", Invalid, "a halt needs a reason"),
    ],
)
async def test_a_halt_is_refused_with_what_was_wrong(
    world: World, who: Identity, environment: str, reason: str, error: type[Exception], says: str
) -> None:
    with pytest.raises(error, match=says):
        await _safety(world).halt(who, environment, reason)
    assert world.state.published(HaltChangeRequested.event_type) == []


async def test_while_halted_a_release_is_rejected_but_a_rollback_goes_through(
    world: World,
) -> None:
    _with(world, halts=HALT_PROD)
    refused = await world.ask(BOB, "prod")
    assert world.status(refused) == Status.REJECTED
    [event] = world.state.published(ReleaseRejected.event_type)
    [violation] = event.data["violations"]
    assert violation["policy"] == "halted"
    assert "incident 4711" in violation["message"]
    assert "root@example.com" in violation["message"]
    # other environments still take releases
    assert world.status(await world.ask(ALICE, "dev")) == Status.APPROVED
    # a rollback of prod is not stopped by the halt (here: it has nothing to go back to)
    back = await _rollback(world, BOB, "prod")
    rejected = world.state.releases[back].violations
    assert [v["policy"] for v in rejected] == ["rollback"]


async def test_a_halt_of_every_environment_stops_each(world: World) -> None:
    _with(world, halts="halts:\n  - {environment: '*', reason: freeze all}\n")
    refused = await world.ask(ALICE, "dev")
    assert [v["policy"] for v in world.state.releases[refused].violations] == ["halted"]


async def test_an_unreadable_halts_file_halts_everything_with_its_reason(world: World) -> None:
    _with(world, halts="halts: {prod: yes}\n")
    refused = await world.ask(ALICE, "dev")
    [violation] = world.state.releases[refused].violations
    assert violation["policy"] == "halted"
    assert "halts.yaml must be a mapping with a list under 'halts'" in violation["message"]


async def test_a_developer_marks_a_stored_artifact_and_a_viewer_may_not(world: World) -> None:
    safety = _safety(world)
    request_id = await safety.reject(ALICE, "payments", "m-1", "corrupts the ledger")
    lifted = await safety.unreject(ALICE, "payments", "m-1")
    asked = [
        ArtifactMarkChangeRequested.model_validate(e.data)
        for e in world.state.published(ArtifactMarkChangeRequested.event_type)
    ]
    assert [(a.request_id, a.artifact_id, a.rejected, a.reason) for a in asked] == [
        (request_id, "m-1", True, "corrupts the ledger"),
        (lifted, "m-1", False, ""),
    ]
    with pytest.raises(Forbidden, match="needs the role developer"):
        await safety.reject(VIC, "payments", "m-1", "bad")
    with pytest.raises(NotFound, match="no artifact m-9 of payments"):
        await safety.reject(ALICE, "payments", "m-9", "bad")
    with pytest.raises(Invalid, match="reason"):
        await safety.reject(ALICE, "payments", "m-1", "")
    assert len(world.state.published(ArtifactMarkChangeRequested.event_type)) == 2


async def test_a_marked_artifact_is_rejected_everywhere(world: World) -> None:
    _with(world, marks=MARK_M1)
    for who, environment in ((ALICE, "dev"), (ALICE, "staging"), (BOB, "prod")):
        refused = await world.ask(who, environment)
        [violation] = world.state.releases[refused].violations
        assert violation["policy"] == "rejected-artifact", environment
        assert "corrupts the ledger" in violation["message"]
        assert "bob@example.com" in violation["message"]


async def test_the_views_show_halts_and_marks(world: World) -> None:
    _with(world, halts=HALT_PROD, marks=MARK_M1)
    world.state.artifacts[("payments", "m-1")] = StoredArtifact("payments", "m-1", "master")
    world.state.artifacts[("payments", "m-2")] = StoredArtifact("payments", "m-2", "master")
    halts = await _safety(world).halts(VIC)
    assert [(h.environment, h.reason) for h in halts] == [("prod", "incident 4711")]
    catalog = await world.views.artifacts(VIC, "payments")
    assert {a.artifact_id for a in catalog.artifacts} == {"m-1", "m-2"}
    assert {k: m.reason for k, m in catalog.marks.items()} == {"m-1": "corrupts the ledger"}
    landscape = await world.views.services(VIC)
    assert [h.environment for h in landscape.halts] == ["prod"]


def _failed(release_id: str, environment: str = "dev") -> tuple[CloudEvent, RolloutFailed]:
    data = RolloutFailed(
        cluster="local",
        environment=environment,
        namespace="payments",
        service="payments",
        artifact_id="m-1",
        release_id=release_id,
        workload=Workload(kind="Deployment", name="payments", uid="u1"),
        observed_at=datetime(2026, 12, 1, 10, 0, tzinfo=UTC),
        reason="CrashLoopBackOff",
        message="back-off restarting failed container",
    )
    return CloudEvent.new(data, source="ferry/cluster-watcher"), data


async def test_a_failed_rollout_marks_the_artifact_bad_once_under_reject_on_failed_rollout(
    world: World,
) -> None:
    asked = ArtifactMarkChangeRequested.event_type
    # without the policy option, a failed rollout marks nothing
    event, data = _failed(await world.ask(BOB, "dev"))
    await world.results.rollout(event, data)
    assert world.state.published(asked) == []

    world.config.snapshot = _snapshot("rejectOnFailedRollout: true\n")
    event, data = _failed(await world.ask(BOB, "dev"), "staging")
    await world.results.rollout(event, data)
    await world.results.rollout(event, data)  # redelivered: asked once
    [request] = world.state.published(asked)
    mark = ArtifactMarkChangeRequested.model_validate(request.data)
    assert (mark.service, mark.artifact_id, mark.rejected) == ("payments", "m-1", True)
    assert mark.reason == (
        "its rollout failed in staging: CrashLoopBackOff: back-off restarting failed container "
        "(policy rejectOnFailedRollout)"
    )
    assert mark.actor.subject == "ferry-reject-on-failed-rollout"
    assert mark.requested_at == data.observed_at

    # once git-writer recorded the mark, another failure asks nothing more
    world.config.snapshot = dataclasses.replace(
        world.config.snapshot, marks={"payments": parse_marks("payments", MARK_M1)}
    )
    event, data = _failed(await world.ask(BOB, "dev"), "prod")
    await world.results.rollout(event, data)
    assert len(world.state.published(asked)) == 1

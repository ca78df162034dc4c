"""Auto-rollback (issue 14, item 3) against the in-memory unit of work: a failed rollout of
what runs in the environment asks once for a rollback to the last release that rolled out
successfully there, that rollback is decided without a person, and its own failure asks
for a halt instead."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from ferry_events import (
    CloudEvent,
    HaltChangeRequested,
    Intent,
    ReleaseRequested,
    RolloutFailed,
    RolloutSucceeded,
    Workload,
)
from ferry_promotion.domain.decision import HistoryEntry, Status
from ferry_promotion.domain.policies import parse_policy
from ferry_promotion.domain.snapshot import Deployment
from ferry_promotion.domain.yamldoc import DocumentError
from ferry_promotion.service_layer.results import Results

from .test_service_layer import BOB, World, _snapshot, _spec, world

__all__ = ["world"]  # the fixture, re-used

POLICY = "autoRollback:\n  - environment: prod\napprovals:\n  - {environment: prod, required: 2}\n"
T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
WORKLOAD = Workload(kind="Deployment", name="payments", uid="u1")


def _fact(
    kind: type[RolloutFailed] | type[RolloutSucceeded],
    artifact_id: str,
    *,
    release_id: str = "",
    minutes: int = 0,
) -> tuple[CloudEvent, RolloutFailed | RolloutSucceeded]:
    extra = (
        {"reason": "CrashLoopBackOff", "message": "back-off 5m0s"} if kind is RolloutFailed else {}
    )
    data = kind(
        cluster="local",
        environment="prod",
        namespace="payments",
        service="payments",
        artifact_id=artifact_id,
        release_id=release_id,
        workload=WORKLOAD,
        observed_at=T0 + timedelta(minutes=minutes),
        **extra,  # type: ignore[arg-type]
    )
    return CloudEvent.new(data, source="ferry/cluster-watcher"), data


def _prod(world: World, policy: str, running: str, *history: HistoryEntry) -> None:
    """The config repo: ``policy``, ``running`` in prod, ``history`` (newest first)."""
    for artifact_id in {running, *(e.artifact_id for e in history)}:
        world.config.builds[("payments", artifact_id)] = (_spec(artifact_id), ["prod"])
    snapshot = _snapshot(policy)
    world.config.snapshot = dataclasses.replace(
        snapshot,
        deployments={
            ("prod", "payments"): Deployment("prod", "payments", "payments", _spec(running))
        },
    )
    world.config.releases = list(history)


def _entry(
    artifact_id: str, commit: str, intent: str = "release", actor: str = "bob"
) -> HistoryEntry:
    return HistoryEntry(
        artifact_id=artifact_id,
        commit_sha=commit,
        at=T0,
        intent=intent,
        actor=actor,
        environment="prod",
        service="payments",
    )


async def _report(
    results: Results, event: CloudEvent, data: RolloutFailed | RolloutSucceeded
) -> None:
    await results.rollout(event, data)


async def test_a_failed_prod_rollout_asks_once_for_the_last_good_release_then_halts(
    world: World,
) -> None:
    _prod(world, POLICY, "m-3", _entry("m-3", "c3"), _entry("m-2", "c2"), _entry("m-1", "c1"))
    # m-1 rolled out in prod; m-2 never did (no fact): the last good one is m-1
    await _report(world.results, *_fact(RolloutSucceeded, "m-1", minutes=-60))

    failed = _fact(RolloutFailed, "m-3")
    await _report(world.results, *failed)
    await _report(world.results, *failed)  # redelivered
    # a second watcher reports the same failure under its own id
    again = _fact(RolloutFailed, "m-3", minutes=1)
    await _report(world.results, *again)
    [asked] = world.state.published(ReleaseRequested.event_type)
    request = ReleaseRequested.model_validate(asked.data)
    assert (request.intent, request.environment, request.artifact_id) == (
        Intent.ROLLBACK,
        "prod",
        "m-1",
    )
    assert request.actor.subject == "ferry-auto-rollback"
    assert request.reason.startswith("auto-rollback: m-3 failed to roll out in prod: ")
    assert "CrashLoopBackOff" in request.reason
    assert "back to m-1, the last release that rolled out successfully in prod" in request.reason
    assert world.state.published(HaltChangeRequested.event_type) == []

    # promotion decides it as any rollback, with no person: prod's two approvals do not apply
    await world.requests.take(asked, request)
    rollback = world.state.releases[request.release_id]
    assert rollback.status == Status.APPROVED, world.state.timeline[request.release_id]
    assert rollback.artifact_id == "m-1"

    # git-writer committed it; its own rollout fails: prod is halted, nothing more rolled back
    _prod(
        world,
        POLICY,
        "m-1",
        _entry("m-1", "c4", "rollback", "ferry-auto-rollback"),
        _entry("m-3", "c3"),
        _entry("m-2", "c2"),
        _entry("m-1", "c1"),
    )
    world.state.releases[request.release_id] = dataclasses.replace(
        rollback, status=Status.COMMITTED.value
    )
    second = _fact(RolloutFailed, "m-1", release_id=request.release_id, minutes=5)
    await _report(world.results, *second)
    await _report(world.results, *second)
    [halt] = world.state.published(HaltChangeRequested.event_type)
    data = HaltChangeRequested.model_validate(halt.data)
    assert (data.environment, data.halted, data.actor.subject) == (
        "prod",
        True,
        "ferry-auto-rollback",
    )
    assert data.reason.startswith("the auto-rollback of payments failed too: m-1 (release ")
    assert "nothing more is rolled back" in data.reason
    assert len(world.state.published(ReleaseRequested.event_type)) == 1
    notes = [n.detail for n in world.state.timeline[request.release_id]]
    assert any(n.startswith("halt of prod requested") for n in notes), notes


async def test_no_rollback_without_an_earlier_success_and_it_says_so(world: World) -> None:
    _prod(world, "autoRollback: [{environment: prod}]\n", "m-1", _entry("m-1", "c1"))
    release_id = await world.ask(BOB, "prod")  # m-1 again (already running): a record to note on
    world.state.releases[release_id] = dataclasses.replace(
        world.state.releases[release_id], status=Status.COMMITTED.value
    )
    await _report(world.results, *_fact(RolloutFailed, "m-1", release_id=release_id))
    [only] = world.state.published(ReleaseRequested.event_type)  # the ask's own
    assert only.data["releaseId"] == release_id
    assert world.state.published(HaltChangeRequested.event_type) == []
    notes = [n.detail for n in world.state.timeline[release_id]]
    assert "no auto-rollback: no earlier release of payments rolled out successfully in prod" in (
        notes
    )


@pytest.mark.parametrize(
    ("policy", "running"),
    [
        ("autoRollback: [{environment: staging}]\n", "m-3"),  # prod is not rolled back
        ("autoRollback: [{environment: prod}]\n", "m-2"),  # m-3 no longer runs there
    ],
)
async def test_no_rollback_when_the_policy_or_git_does_not_call_for_one(
    world: World, policy: str, running: str
) -> None:
    _prod(world, policy, running, _entry("m-3", "c3"), _entry("m-2", "c2"))
    await _report(world.results, *_fact(RolloutSucceeded, "m-2", minutes=-60))
    await _report(world.results, *_fact(RolloutFailed, "m-3"))
    assert world.state.published(ReleaseRequested.event_type) == []
    assert world.state.published(HaltChangeRequested.event_type) == []


async def test_a_rollback_request_in_its_name_without_the_rule_is_refused(world: World) -> None:
    _prod(world, "approvals: []\n", "m-3", _entry("m-3", "c3"), _entry("m-1", "c1"))
    forged = ReleaseRequested(
        release_id="forged-1",
        service="payments",
        environment="prod",
        intent=Intent.ROLLBACK,
        artifact_id="m-1",
        actor={"subject": "ferry-auto-rollback"},  # type: ignore[arg-type]
        requested_at=T0,
    )
    await world.requests.take(CloudEvent.new(forged, source="elsewhere"), forged)
    refused = world.state.releases["forged-1"]
    assert refused.status == Status.REJECTED
    assert [v["policy"] for v in refused.violations] == ["auto-rollback"]


@pytest.mark.parametrize(
    ("text", "field", "line", "words"),
    [
        ("autoRollback:\n  - {environment: Prod!}\n", "autoRollback[0].environment", 2, "DNS"),
        ("autoRollback:\n  - {env: prod}\n", "autoRollback[0].environment", 2, "required"),
        ("approvals: []\nautoRollback: prod\n", "autoRollback", 2, "list"),
    ],
)
def test_the_schema_refuses_bad_auto_rollback_values_with_field_and_line(
    text: str, field: str, line: int, words: str
) -> None:
    with pytest.raises(DocumentError) as caught:
        parse_policy(text, "payments")
    problem = caught.value.problems[0]
    assert (problem.field, problem.line) == (field, line)
    assert words in problem.message


def test_auto_rollback_round_trips_and_is_said_only_when_set() -> None:
    policy = parse_policy(POLICY, "payments")
    assert policy.rolls_back("prod")
    assert not policy.rolls_back("staging")
    assert policy.to_document()["autoRollback"] == [{"environment": "prod"}]
    assert "autoRollback" not in parse_policy("approvals: []\n", "payments").to_document()
    with pytest.raises(DocumentError, match="autoRollback lists environment 'prod' twice"):
        parse_policy("autoRollback: [{environment: prod}, {environment: prod}]\n", "payments")

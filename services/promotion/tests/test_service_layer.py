"""The use cases against the in-memory unit of work: no broker, no database, no git.

The same flows the end-to-end tests drive through the API and the queue, here
one call at a time, so each rule is pinned where it lives.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from ferry_events import (
    ApprovalDenied,
    ApprovalGranted,
    ArtifactSpec,
    CloudEvent,
    Intent,
    ReleaseApproved,
    ReleaseCommitted,
    ReleaseRejected,
    ReleaseRequested,
)
from ferry_promotion.domain.access import Identity
from ferry_promotion.domain.decision import Status
from ferry_promotion.domain.environments import DEFAULT_ENVIRONMENTS
from ferry_promotion.domain.policies import parse_policy
from ferry_promotion.domain.snapshot import PolicyFile, Snapshot
from ferry_promotion.errors import Conflict, Forbidden, Unavailable
from ferry_promotion.service_layer.deciding import Decider
from ferry_promotion.service_layer.expiring import Expiry
from ferry_promotion.service_layer.housekeeping import purge
from ferry_promotion.service_layer.lookups import snapshot_for_people
from ferry_promotion.service_layer.ports import usable_snapshot
from ferry_promotion.service_layer.requesting import Requests
from ferry_promotion.service_layer.resolving import Resolver
from ferry_promotion.service_layer.results import Results
from ferry_promotion.service_layer.views import Views
from ferry_runtime import TemporaryError

from .memory import (
    FakeConfig,
    FakeIdentities,
    MemoryReadModel,
    MemoryState,
    MemoryUnitOfWork,
)

ALICE = Identity("alice", "alice@example.com", "Alice", frozenset({"developer"}))
BOB = Identity("bob", "bob@example.com", "Bob", frozenset({"developer", "releaser:prod"}))
VIC = Identity("vic", "vic@example.com", "Vic", frozenset({"viewer"}))
APPROVALS = "approvals:\n  - {environment: prod, required: 1}\n"


def _spec(artifact_id: str, author: str = "ann@example.com") -> ArtifactSpec:
    return ArtifactSpec.model_validate(
        {
            "id": artifact_id,
            "service": "payments",
            "application": {"branch": "master", "sha": "0" * 40, "authorEmail": author},
            "ci": {"end": "2026-01-01T00:00:00+00:00"},
        }
    )


def _snapshot(policy: str | None = None, commit: str | None = "c0ffee") -> Snapshot:
    policies = {}
    if policy is not None:
        policies["payments"] = PolicyFile(
            "payments", policy, parse_policy(policy, "payments"), None
        )
    return Snapshot(commit, 1.0, DEFAULT_ENVIRONMENTS, None, policies)


@dataclass
class World:
    state: MemoryState
    config: FakeConfig
    requests: Requests
    decider: Decider
    results: Results
    expiry: Expiry
    views: Views
    clock: list[datetime]

    def uow(self) -> MemoryUnitOfWork:
        return MemoryUnitOfWork(self.state)

    async def ask(self, who: Identity, environment: str = "dev", **extra: object) -> str:
        """Request a release through the API's use case, then let the consumer take it."""
        release = await self.requests.request_release(
            who,
            service="payments",
            environment=environment,
            intent=Intent.RELEASE,
            artifact_id="m-1",
            **extra,  # type: ignore[arg-type]
        )
        [event] = [
            e
            for e in self.state.published(ReleaseRequested.event_type)
            if e.data["releaseId"] == release.release_id
        ]
        await self.requests.take(event, ReleaseRequested.model_validate(event.data))
        return release.release_id

    def status(self, release_id: str) -> str:
        return self.state.releases[release_id].status


@pytest.fixture
def world() -> World:
    state = MemoryState()
    config = FakeConfig(_snapshot())
    config.builds[("payments", "m-1")] = (_spec("m-1"), ["dev", "staging", "prod"])
    read = MemoryReadModel(state)
    clock = [datetime(2026, 3, 2, 12, 0, tzinfo=UTC)]

    def now() -> datetime:
        return clock[-1]

    def uow() -> MemoryUnitOfWork:
        return MemoryUnitOfWork(state)

    identities = FakeIdentities({p.subject: p for p in (ALICE, BOB, VIC)})
    decider = Decider(uow, Resolver(config, read), read, identities, clock=now)
    return World(
        state,
        config,
        Requests(uow, config, read, decider, clock=now),
        decider,
        Results(uow, decider),
        Expiry(uow, clock=now, chain_wait=timedelta(minutes=30)),
        Views(read, config),
        clock,
    )


async def test_a_request_is_recorded_published_and_approved_reading_its_row_once_per_step(
    world: World,
) -> None:
    release_id = await world.ask(ALICE)
    assert world.status(release_id) == Status.APPROVED
    [approved] = world.state.published(ReleaseApproved.event_type)
    assert approved.data["releaseId"] == release_id
    assert approved.data["namespace"] == "payments"
    # the consumer's intake reads the row once, the decision once more under lock
    assert world.state.loads[release_id] == 2
    detail = await world.views.status(VIC, release_id)
    assert [n.status for n in detail.timeline] == ["requested", "approved"]


async def test_the_decision_asks_the_identities_it_was_given(world: World) -> None:
    """Roles are checked again when deciding, from what the tokens store last loaded."""
    identities = world.decider.identities
    assert isinstance(identities, FakeIdentities)
    del identities.people["alice"]  # alice left the tokens file after asking
    release_id = await world.ask(ALICE)
    release = world.state.releases[release_id]
    assert release.status == Status.REJECTED
    assert any(v["policy"] == "authorization" for v in release.violations), release.violations


async def test_a_redelivered_request_changes_nothing(world: World) -> None:
    release_id = await world.ask(ALICE)
    outbox, timeline = dict(world.state.outbox), list(world.state.timeline[release_id])
    [event] = world.state.published(ReleaseRequested.event_type)
    await world.requests.take(event, ReleaseRequested.model_validate(event.data))
    assert world.state.outbox == outbox
    assert world.state.timeline[release_id] == timeline


async def test_a_request_from_another_producer_is_recorded_before_it_is_decided(
    world: World,
) -> None:
    data = ReleaseRequested(
        release_id="from-elsewhere",
        service="payments",
        environment="dev",
        intent=Intent.RELEASE,
        artifact_id="nope-1",
        actor=ALICE.actor,
        requested_at=world.clock[-1],
    )
    event = CloudEvent.new(data, source="elsewhere", correlation_id="from-elsewhere")
    await world.requests.take(event, data)
    release = world.state.releases["from-elsewhere"]
    assert release.status == Status.REJECTED
    assert "no artifact nope-1" in release.violations[0]["message"]
    assert world.state.loads["from-elsewhere"] == 2
    assert event.id in world.state.inbox


async def test_approval_is_voted_then_decided(world: World) -> None:
    world.config.snapshot = _snapshot(APPROVALS)
    release_id = await world.ask(BOB, "prod")
    assert world.status(release_id) == Status.AWAITING_APPROVAL
    with pytest.raises(Forbidden, match="requester of a release cannot approve it"):
        await world.requests.approve(BOB, release_id)
    with pytest.raises(Forbidden, match="releaser:prod"):
        await world.requests.approve(ALICE, release_id)
    dave = Identity("dave", "dave@example.com", roles=frozenset({"releaser:prod"}))
    shown = await world.requests.approve(dave, release_id, "looks good")
    assert [v.subject for v in shown.votes] == ["dave"]
    [granted] = world.state.published(ApprovalGranted.event_type)
    assert granted.data["remaining"] == 0
    await world.decider.decide(release_id, granted)
    assert world.status(release_id) == Status.APPROVED
    with pytest.raises(Conflict, match="is not awaiting approval: it is approved"):
        await world.requests.approve(dave, release_id)


async def test_a_rejection_denies_and_rejects_in_one_unit_of_work(world: World) -> None:
    world.config.snapshot = _snapshot(APPROVALS)
    release_id = await world.ask(BOB, "prod")
    shown = await world.requests.reject(BOB, release_id, "wrong artifact")  # withdrawn
    assert shown.release.status == Status.REJECTED
    assert [e.type for e in world.state.outbox.values()][-2:] == [
        ApprovalDenied.event_type,
        ReleaseRejected.event_type,
    ]


async def test_an_unanswered_approval_expires(world: World) -> None:
    world.config.snapshot = _snapshot(APPROVALS)
    release_id = await world.ask(BOB, "prod")
    assert await world.expiry.expire() == 0
    world.clock.append(world.clock[-1] + timedelta(days=3))
    assert await world.expiry.expire() == 1
    release = world.state.releases[release_id]
    assert release.status == Status.REJECTED
    assert "no decision before the approval expired" in release.violations[0]["message"]
    [denied] = world.state.published(ApprovalDenied.event_type)
    assert denied.data["expired"] is True


async def test_a_newer_commit_supersedes_a_committed_release(world: World) -> None:
    first, second = await world.ask(ALICE), await world.ask(ALICE)
    for release_id, sha in ((first, "a" * 40), (second, "b" * 40)):
        release = world.state.releases[release_id]
        committed = ReleaseCommitted(
            release_id=release_id,
            service="payments",
            environment="dev",
            namespace="payments",
            artifact_id="m-1",
            intent=Intent.RELEASE,
            actor=release.actor,
            commit_sha=sha,
        )
        await world.results.committed(
            CloudEvent.new(committed, source="ferry/git-writer"), committed
        )
    assert world.state.releases[first].superseded_by == second
    assert world.state.releases[second].superseded_by is None
    assert world.config.stale == ["payments", "payments"]


async def test_leaving_a_unit_of_work_without_commit_keeps_nothing(world: World) -> None:
    release_id = await world.ask(ALICE)
    async with world.uow() as uow:
        await uow.releases.update(release_id, status=Status.FAILED.value)
    assert world.status(release_id) == Status.APPROVED


async def test_one_fallback_rule_for_a_config_repo_that_cannot_be_fetched(world: World) -> None:
    world.config.unreachable = "git fetch failed (128): remote hung up"
    last = await usable_snapshot(world.config, fresh=True)
    assert last is world.config.snapshot  # it holds a commit: the last copy is used
    world.config.snapshot = _snapshot(commit=None)
    with pytest.raises(TemporaryError):  # nothing to fall back on: the consumer retries
        await usable_snapshot(world.config)
    with pytest.raises(Unavailable, match="the config repo cannot be read"):  # the API: 503
        await snapshot_for_people(world.config)


async def test_purge_forgets_old_inbox_ids(world: World) -> None:
    await world.ask(ALICE)
    assert world.state.inbox
    await purge(world.uow, sent_before=datetime.now(UTC), processed_before=datetime.now(UTC))
    assert not world.state.inbox

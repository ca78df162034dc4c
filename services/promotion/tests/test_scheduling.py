"""Scheduled releases against the in-memory unit of work, and the times people give.

A release asked for ``at`` a time is ``scheduled``: not numbered, not published, not
decided; when it falls due it is numbered, published and decided against the policies and
the clock of that moment. It can be cancelled only before.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from ferry_events import (
    ArtifactSpec,
    CloudEvent,
    Intent,
    ReleaseApproved,
    ReleaseCommitted,
    ReleaseRequested,
    derived_id,
)
from ferry_promotion.domain.access import Identity
from ferry_promotion.domain.decision import Status
from ferry_promotion.domain.environments import DEFAULT_ENVIRONMENTS
from ferry_promotion.domain.policies import parse_policy
from ferry_promotion.domain.schedule import (
    check_at,
    next_wall_clock,
    parse_at,
    wall_clock,
    zone_named,
)
from ferry_promotion.domain.snapshot import PolicyFile, Snapshot
from ferry_promotion.errors import Conflict, Forbidden, Invalid, NotFound
from ferry_promotion.service_layer.deciding import Decider
from ferry_promotion.service_layer.requesting import Requests
from ferry_promotion.service_layer.resolving import Resolver
from ferry_promotion.service_layer.results import Results
from ferry_promotion.service_layer.scheduling import Schedule

from .memory import FakeConfig, FakeIdentities, MemoryReadModel, MemoryState, MemoryUnitOfWork

ALICE = Identity("alice", "alice@example.com", "Alice", frozenset({"developer"}))
BOB = Identity("bob", "bob@example.com", "Bob", frozenset({"developer", "releaser:prod"}))
VIC = Identity("vic", "vic@example.com", "Vic", frozenset({"viewer"}))
NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def _spec(artifact_id: str) -> ArtifactSpec:
    return ArtifactSpec.model_validate(
        {
            "id": artifact_id,
            "service": "payments",
            "application": {"branch": "master", "sha": "0" * 40, "authorEmail": "a@example.com"},
            "ci": {"end": "2026-01-01T00:00:00+00:00"},
        }
    )


def _snapshot(policy: str | None = None, commit: str = "c0ffee") -> Snapshot:
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
    results: Results
    schedule: Schedule
    clock: list[datetime]

    async def ask(
        self, who: Identity, environment: str = "dev", artifact: str = "m-1", **extra: object
    ) -> str:
        release = await self.requests.request_release(
            who,
            service="payments",
            environment=environment,
            intent=Intent.RELEASE,
            artifact_id=artifact,
            **extra,  # type: ignore[arg-type]
        )
        return release.release_id

    def requested_event(self, release_id: str) -> CloudEvent:
        [event] = [
            e
            for e in self.state.published(ReleaseRequested.event_type)
            if e.data["releaseId"] == release_id
        ]
        return event

    async def take(self, release_id: str) -> None:
        """What the consumer does with the request event of ``release_id``."""
        event = self.requested_event(release_id)
        await self.requests.take(event, ReleaseRequested.model_validate(event.data))

    async def commit(self, release_id: str) -> None:
        """What git-writer does with the approved event of ``release_id``."""
        [approved] = [
            e
            for e in self.state.published(ReleaseApproved.event_type)
            if e.data["releaseId"] == release_id
        ]
        data = ReleaseApproved.model_validate(approved.data)
        committed = ReleaseCommitted(
            release_id=release_id,
            service=data.service,
            environment=data.environment,
            namespace=data.namespace,
            artifact_id=data.artifact_id,
            intent=data.intent,
            actor=data.actor,
            commit_sha="ab" * 20,
        )
        await self.results.committed(
            CloudEvent.new(committed, source="ferry/git-writer", cause=approved), committed
        )

    def release(self, release_id: str) -> object:
        return self.state.releases[release_id]

    def status(self, release_id: str) -> str:
        return self.state.releases[release_id].status


@pytest.fixture
def world() -> World:
    state = MemoryState()
    config = FakeConfig(_snapshot())
    for artifact in ("m-1", "m-2"):
        config.builds[("payments", artifact)] = (_spec(artifact), ["dev", "staging", "prod"])
    read = MemoryReadModel(state)
    clock = [NOON]

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
        Results(uow, decider),
        Schedule(uow, config, read, clock=now),
        clock,
    )


async def test_a_scheduled_release_waits_unnumbered_and_unpublished_until_its_time(world: World):
    rid = await world.ask(ALICE, at=NOON + timedelta(hours=1))
    scheduled = world.state.releases[rid]
    assert scheduled.status == Status.SCHEDULED
    assert scheduled.scheduled_at == NOON + timedelta(hours=1)
    assert scheduled.sequence is None
    assert scheduled.config_commit is None  # the config is read when it falls due
    assert world.state.published(ReleaseRequested.event_type) == []
    assert "scheduled for 2026-03-02 13:00:00 UTC by alice@example.com" in (
        world.state.timeline[rid][0].detail
    )

    world.clock.append(NOON + timedelta(minutes=59))
    assert await world.schedule.release_due() == 0
    assert world.status(rid) == Status.SCHEDULED

    world.config.snapshot = _snapshot(commit="beef01")
    world.clock.append(NOON + timedelta(hours=1))
    assert await world.schedule.release_due() == 1
    due = world.state.releases[rid]
    assert (due.status, due.sequence, due.config_commit) == (Status.REQUESTED, 1, "beef01")
    event = world.requested_event(rid)
    assert event.id == derived_id(rid, "due", ReleaseRequested.event_type) == due.request_event_id
    assert event.data["configCommit"] == "beef01"

    await world.take(rid)
    assert world.status(rid) == Status.APPROVED
    # claimed once: a second round finds nothing due and publishes nothing more
    assert await world.schedule.release_due() == 0
    assert len(world.state.published(ReleaseRequested.event_type)) == 1
    assert len(world.state.published(ReleaseApproved.event_type)) == 1


async def test_its_policies_are_the_ones_in_force_when_it_falls_due(world: World):
    rid = await world.ask(BOB, "prod", at=NOON + timedelta(hours=2))
    # the policy that asks for an approval in prod lands after the request, before its time
    world.config.snapshot = _snapshot("approvals:\n  - {environment: prod, required: 1}\n")
    world.clock.append(NOON + timedelta(hours=2, seconds=1))
    assert await world.schedule.release_due() == 1
    await world.take(rid)
    assert world.status(rid) == Status.AWAITING_APPROVAL
    # and the approval expiry runs from the decision, not from the request
    expires_at = world.state.releases[rid].expires_at
    assert expires_at is not None
    assert expires_at > NOON + timedelta(hours=2)


async def test_releases_committed_before_its_time_do_not_supersede_it_and_it_is_newest(
    world: World,
):
    scheduled = await world.ask(ALICE, artifact="m-2", at=NOON + timedelta(hours=1))
    now_one = await world.ask(ALICE, artifact="m-1")
    await world.take(now_one)
    await world.commit(now_one)
    assert world.status(now_one) == Status.COMMITTED
    assert world.status(scheduled) == Status.SCHEDULED
    assert world.state.releases[scheduled].superseded_by is None

    # a request still open when the scheduled one commits is older: it is superseded
    open_one = await world.ask(
        BOB, artifact="m-1", reason="waits", at=None
    )  # numbered now, before the scheduled one's time
    world.clock.append(NOON + timedelta(hours=1))
    assert await world.schedule.release_due() == 1
    numbers = {r: world.state.releases[r].sequence for r in (now_one, open_one, scheduled)}
    assert numbers == {now_one: 1, open_one: 2, scheduled: 3}
    await world.take(scheduled)
    await world.commit(scheduled)
    assert world.status(scheduled) == Status.COMMITTED
    assert world.status(open_one) == Status.REJECTED
    assert world.state.releases[open_one].superseded_by == scheduled


async def test_the_requester_or_a_releaser_there_cancels_it_only_while_scheduled(world: World):
    rid = await world.ask(ALICE, at=NOON + timedelta(hours=1))
    with pytest.raises(Forbidden, match="cancelling a release to dev needs the role developer"):
        await world.schedule.cancel(VIC, rid)
    detail = await world.schedule.cancel(ALICE, rid, "not tonight")
    assert detail.release.status == Status.CANCELLED
    assert detail.timeline[-1].detail == "cancelled by alice@example.com: not tonight"
    with pytest.raises(Conflict, match="cannot be cancelled: it was cancelled already"):
        await world.schedule.cancel(ALICE, rid)
    world.clock.append(NOON + timedelta(hours=2))
    assert await world.schedule.release_due() == 0
    assert world.status(rid) == Status.CANCELLED
    assert world.state.published(ReleaseRequested.event_type) == []

    # someone who may release to prod cancels another person's release there
    prod = await world.ask(BOB, "prod", at=NOON + timedelta(hours=3))
    with pytest.raises(Forbidden, match="releaser:prod or admin; alice has developer"):
        await world.schedule.cancel(ALICE, prod)
    admin = Identity("ada", "ada@example.com", "Ada", frozenset({"admin"}))
    assert (await world.schedule.cancel(admin, prod)).release.status == Status.CANCELLED

    # one asked for now, or one that fell due, is not scheduled any more
    now_one = await world.ask(ALICE)
    with pytest.raises(Conflict, match="it was asked for without a time and is requested"):
        await world.schedule.cancel(ALICE, now_one)
    later = await world.ask(ALICE, at=NOON + timedelta(hours=2, minutes=30))
    world.clock.append(NOON + timedelta(hours=2, minutes=30))
    await world.schedule.release_due()
    with pytest.raises(Conflict, match="it fell due at 2026-03-02 14:30:00 UTC and is requested"):
        await world.schedule.cancel(ALICE, later)
    with pytest.raises(NotFound):
        await world.schedule.cancel(ALICE, "no-such-release")


async def test_a_time_in_the_past_or_too_far_ahead_is_refused_and_nothing_is_recorded(
    world: World,
):
    with pytest.raises(Invalid, match="is in the past") as past:
        await world.ask(ALICE, at=NOON - timedelta(minutes=10))
    assert past.value.errors[0].field == "at"
    with pytest.raises(Invalid, match="more than 90 days ahead"):
        await world.ask(ALICE, at=NOON + timedelta(days=91))
    with pytest.raises(Invalid, match="needs an offset"):
        await world.ask(ALICE, at=datetime(2026, 3, 2, 13, 0))
    assert world.state.releases == {}
    # a moment ago (the requester's clock runs behind) is due at once
    rid = await world.ask(ALICE, at=NOON - timedelta(seconds=30))
    assert world.status(rid) == Status.SCHEDULED
    assert await world.schedule.release_due() == 1


async def test_a_scheduled_request_is_checked_like_any_other_when_asked(world: World):
    with pytest.raises(Forbidden, match="releasing to prod needs the role releaser:prod"):
        await world.ask(ALICE, "prod", at=NOON + timedelta(hours=1))
    with pytest.raises(Forbidden, match="overriding a freeze window needs the role admin"):
        await world.ask(BOB, "prod", at=NOON + timedelta(hours=1), override_freeze=True, reason="x")
    assert world.state.releases == {}


# --------------------------------------------------------------------------- the times


def test_rfc3339_with_an_offset_is_read_as_utc_and_anything_else_is_refused():
    assert parse_at("2026-12-24T02:00:00Z") == datetime(2026, 12, 24, 2, tzinfo=UTC)
    assert parse_at("2026-12-24T03:00:00.5+01:00") == datetime(
        2026, 12, 24, 2, 0, 0, 500000, tzinfo=UTC
    )
    for bad, says in (
        ("2026-12-24T02:00:00", "it has no offset"),
        ("2026-12-24 02:00", "it has no offset"),
        ("tomorrow", "not an RFC 3339 time"),
        ("1798070400", "not an RFC 3339 time"),
        ("2026-02-30T02:00:00Z", "not a date and time that exists"),
    ):
        with pytest.raises(Invalid, match=says) as err:
            parse_at(bad)
        assert err.value.errors[0].field == "at"


def test_check_at_keeps_a_small_grace_and_a_horizon():
    assert check_at(NOON - timedelta(minutes=1), NOON) == NOON - timedelta(minutes=1)
    assert check_at(NOON + timedelta(days=90), NOON) == NOON + timedelta(days=90)
    with pytest.raises(Invalid, match="in the past"):
        check_at(NOON - timedelta(minutes=3), NOON)


def test_the_next_wall_clock_time_in_a_zone_is_today_or_tomorrow_across_daylight_saving():
    copenhagen = ZoneInfo("Europe/Copenhagen")
    # 12:00 UTC is 13:00 in Copenhagen in March (CET): 02:00 is tomorrow, 01:00 UTC
    assert next_wall_clock(2, 0, copenhagen, NOON) == datetime(2026, 3, 3, 1, tzinfo=UTC)
    assert next_wall_clock(14, 30, copenhagen, NOON) == datetime(2026, 3, 2, 13, 30, tzinfo=UTC)
    assert next_wall_clock(12, 0, UTC, NOON) == datetime(2026, 3, 3, 12, tzinfo=UTC)
    # the night the clocks go forward (29 March 2026): 02:30 does not exist there
    evening = datetime(2026, 3, 28, 22, 0, tzinfo=UTC)
    jumped = next_wall_clock(2, 30, copenhagen, evening)
    assert jumped > evening
    assert jumped - evening < timedelta(hours=6)
    # summer time (CEST): 02:00 is 00:00 UTC
    june = datetime(2026, 6, 1, 12, tzinfo=UTC)
    assert next_wall_clock(2, 0, copenhagen, june) == datetime(2026, 6, 2, 0, tzinfo=UTC)


def test_wall_clock_and_zone_names():
    assert wall_clock("02:00") == (2, 0)
    assert wall_clock("2:05") == (2, 5)
    assert wall_clock("24:00") is None
    assert wall_clock("02:60") is None
    assert zone_named("America/Los_Angeles")[1] == "America/Los_Angeles"
    assert zone_named(None) == (UTC, "UTC")
    assert zone_named("Mars/Olympus_Mons") == (UTC, "UTC")
    assert zone_named("../../etc/passwd") == (UTC, "UTC")

"""Soak and verification (issue 14, item 4) through the use cases: a soak wait recorded with
its due time and decided by the timer when it ends (on the in-memory unit of work and on
PostgreSQL, where replicas claim due rows with SKIP LOCKED), a failure during the soak, and
Prometheus checks against a real Prometheus server scraping an exporter the test controls."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from aiohttp import web

from ferry_events import CloudEvent, ReleaseApproved, RolloutFailed, RolloutSucceeded, Workload
from ferry_promotion.adapters.db import Store, outbox
from ferry_promotion.adapters.prometheus import PrometheusMetrics, step_of
from ferry_promotion.adapters.queries import SqlReadModel
from ferry_promotion.adapters.unit_of_work import SqlAlchemyUnitOfWork
from ferry_promotion.domain.decision import Status
from ferry_promotion.domain.policies import Verification, parse_policy
from ferry_promotion.domain.records import Rollout
from ferry_promotion.domain.release import Release
from ferry_promotion.domain.verification import judge
from ferry_promotion.service_layer.deciding import Decider
from ferry_promotion.service_layer.resolving import Resolver
from ferry_promotion.service_layer.soaking import Soaks
from ferry_testing.net import free_port, serve_app
from ferry_testing.prometheus import Prometheus, prometheus

from .memory import FakeConfig, FakeIdentities
from .test_service_layer import BOB, World, _snapshot, _spec, world

__all__ = ["world"]  # the fixture, re-used

SOAK = "promotionChain: {environments: [staging, prod], soak: 3s}\n"
CHECK = (
    "verification:\n  - environment: staging\n"
    "    prometheus: {query: ferry_test_value, max: 0.01, for: 3s}\n"
)
WORKLOAD = Workload(kind="Deployment", name="payments", uid="u1")


def _fact(kind: type[RolloutFailed] | type[RolloutSucceeded], at: datetime) -> CloudEvent:
    extra = {"reason": "CrashLoopBackOff", "message": "back-off"} if kind is RolloutFailed else {}
    data = kind(
        cluster="local",
        environment="staging",
        namespace="payments",
        service="payments",
        artifact_id="m-1",
        workload=WORKLOAD,
        observed_at=at,
        **extra,  # type: ignore[arg-type]
    )
    return CloudEvent.new(data, source="ferry/cluster-watcher")


async def _report(world: World, event: CloudEvent) -> None:
    """What the consumer does with a rollout fact: record it, re-decide who waited for it."""
    data = (RolloutFailed if event.type == RolloutFailed.event_type else RolloutSucceeded)(
        **event.data
    )
    for waiting in await world.results.rollout(event, data):
        await world.results.redecide(event, data, waiting)


def _soaks(world: World) -> Soaks:
    return Soaks(world.uow, world.decider, clock=lambda: world.clock[-1])


async def test_a_soak_wait_is_decided_by_the_timer_when_it_ends(world: World) -> None:
    world.config.snapshot = _snapshot(SOAK)
    rolled_out = world.clock[-1]
    await _report(world, _fact(RolloutSucceeded, rolled_out))
    release_id = await world.ask(BOB, "prod")
    waiting = world.state.releases[release_id]
    assert waiting.status == Status.REQUESTED
    assert waiting.due_at == rolled_out + timedelta(seconds=3)
    assert "m-1 soaks in staging until" in world.state.timeline[release_id][-1].detail
    soaks = _soaks(world)
    world.clock.append(rolled_out + timedelta(seconds=2))
    assert await soaks.wake() == 0  # not due yet
    assert world.status(release_id) == Status.REQUESTED
    world.clock.append(rolled_out + timedelta(seconds=3))
    assert await soaks.wake() == 1
    assert world.status(release_id) == Status.APPROVED
    assert world.state.releases[release_id].due_at is None
    [approved] = world.state.published(ReleaseApproved.event_type)
    assert approved.data["releaseId"] == release_id
    assert await soaks.wake() == 0  # decided once


async def test_a_long_soak_outlives_the_chain_wait_and_a_failure_during_it_rejects(
    world: World,
) -> None:
    world.config.snapshot = _snapshot(SOAK.replace("3s", "2h"))
    start = world.clock[-1]
    await _report(world, _fact(RolloutSucceeded, start))
    release_id = await world.ask(BOB, "prod")
    world.clock.append(start + timedelta(hours=1))  # past FERRY_CHAIN_WAIT_SECONDS (30 min)
    await world.expiry.expire()
    assert world.status(release_id) == Status.REQUESTED  # a soak ends on its own clock
    # the artifact crashes in staging during the soak: the request waiting for it is rejected
    await _report(world, _fact(RolloutFailed, start + timedelta(hours=1)))
    rejected = world.state.releases[release_id]
    assert rejected.status == Status.REJECTED
    [violation] = rejected.violations
    assert violation["policy"] == "soak"
    assert "failed in staging" in violation["message"]
    assert "CrashLoopBackOff" in violation["message"]
    assert rejected.due_at is None
    world.clock.append(start + timedelta(hours=3))
    assert await _soaks(world).wake() == 0


def _release(release_id: str, due: datetime) -> Release:
    return Release(
        release_id=release_id,
        service="payments",
        environment="prod",
        intent="release",
        status=Status.REQUESTED.value,
        actor_subject="bob",
        requested_at=due,
        updated_at=due,
        correlation_id=release_id,
        artifact_id="m-1",
        waiting_since=due,
        due_at=due,
    )


@pytest.mark.postgres
async def test_replicas_claim_each_due_request_once_with_skip_locked(postgres_url: str) -> None:
    first, second = Store(postgres_url), Store(postgres_url)
    try:
        await first.create_schema()
        due = datetime.now(UTC) - timedelta(seconds=1)
        async with SqlAlchemyUnitOfWork(first) as uow:
            for i in range(4):
                await uow.releases.add(_release(f"r{i}", due + timedelta(milliseconds=i)))
            await uow.commit()
        now, lease = datetime.now(UTC), datetime.now(UTC) + timedelta(minutes=2)
        async with SqlAlchemyUnitOfWork(first) as one:
            mine = await one.releases.claim_due(now, lease, 2)
            # while the first replica's claim is not committed, the second skips its rows
            async with SqlAlchemyUnitOfWork(second) as other:
                theirs = await other.releases.claim_due(now, lease, 10)
                await other.commit()
            await one.commit()
        assert [r.release_id for r in mine] == ["r0", "r1"]
        assert [r.release_id for r in theirs] == ["r2", "r3"]
        async with SqlAlchemyUnitOfWork(second) as again:
            assert await again.releases.claim_due(now, lease, 10) == []  # leased ahead
            # after the lease a replica that died is replaced: the rows are due again
            late = await again.releases.claim_due(lease, lease + timedelta(minutes=2), 10)
            assert sorted(r.release_id for r in late) == ["r0", "r1", "r2", "r3"]
    finally:
        await first.close()
        await second.close()


def _sql_soaks(store: Store, config: FakeConfig, now: datetime) -> Soaks:
    """A promotion process's decider and timer over ``store`` (a fresh one per "process")."""

    def uow() -> SqlAlchemyUnitOfWork:
        return SqlAlchemyUnitOfWork(store)

    read = SqlReadModel(store)
    decider = Decider(
        uow, Resolver(config, read), read, FakeIdentities({"bob": BOB}), clock=lambda: now
    )
    return Soaks(uow, decider, clock=lambda: now)


async def test_a_soak_recorded_before_a_restart_is_decided_after_it(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'promotion.db'}"
    config = FakeConfig(_snapshot(SOAK))
    config.builds[("payments", "m-1")] = (_spec("m-1"), ["dev", "staging", "prod"])
    rolled_out = datetime.now(UTC).replace(microsecond=0)
    before = Store(url)
    await before.create_schema()
    await _soaking(before, config, rolled_out, "r1")
    waiting = await SqlReadModel(before).get("r1")
    assert waiting is not None
    assert waiting.status == Status.REQUESTED
    assert waiting.due_at == rolled_out + timedelta(seconds=3)
    await before.close()  # the process stops with the soak not over

    after = Store(url)
    try:
        await after.create_schema()
        again = _sql_soaks(after, config, rolled_out + timedelta(seconds=3))
        assert await again.wake() == 1
        decided = await SqlReadModel(after).get("r1")
        assert decided is not None
        assert decided.status == Status.APPROVED
        assert decided.due_at is None
        assert await again.wake() == 0
    finally:
        await after.close()


async def _soaking(store: Store, config: FakeConfig, rolled_out: datetime, release_id: str) -> None:
    """``release_id`` waiting for the 3 s soak of m-1, which rolled out in staging then."""
    async with SqlAlchemyUnitOfWork(store) as uow:
        await uow.rollouts.record(
            Rollout("staging", "payments", "m-1", "succeeded", observed_at=rolled_out)
        )
        await uow.releases.add(
            dataclasses.replace(_release(release_id, rolled_out), due_at=None, waiting_since=None)
        )
        await uow.commit()
    cause = CloudEvent(
        id=f"intake-{release_id}",
        source="test",
        type="test",
        time=rolled_out,
        correlationid=release_id,
    )
    await _sql_soaks(store, config, rolled_out).decider.decide(release_id, cause)


@pytest.mark.postgres
async def test_two_replicas_waking_together_decide_an_ended_soak_once(postgres_url: str) -> None:
    config = FakeConfig(_snapshot(SOAK))
    config.builds[("payments", "m-1")] = (_spec("m-1"), ["dev", "staging", "prod"])
    rolled_out = datetime.now(UTC).replace(microsecond=0)
    first, second = Store(postgres_url), Store(postgres_url)
    try:
        await first.create_schema()
        for i in range(6):
            await _soaking(first, config, rolled_out, f"r{i}")
        ended = rolled_out + timedelta(seconds=3)
        replicas = [_sql_soaks(store, config, ended) for store in (first, second)]
        for replica in replicas:
            replica.batch = 2  # several rounds each, interleaved
        claimed = 0
        for _ in range(4):
            claimed += sum(await asyncio.gather(*(r.wake() for r in replicas)))
        assert claimed == 6
        async with first.read() as conn:
            approvals = (
                await conn.execute(
                    sa.select(outbox.c.event_id).where(
                        outbox.c.event_type == ReleaseApproved.event_type
                    )
                )
            ).all()
        assert len(approvals) == 6  # one approval per release, whichever replica decided
        read = SqlReadModel(first)
        for i in range(6):
            decided = await read.get(f"r{i}")
            assert decided is not None
            assert decided.status == Status.APPROVED
    finally:
        await first.close()
        await second.close()


# --------------------------------------------------------------------------- real Prometheus


@pytest.fixture
async def prom(tmp_path: Path) -> AsyncIterator[Prometheus]:
    async with prometheus(tmp_path / "prometheus", value=0.001) as running:
        yield running


def _check(text: str = CHECK) -> Verification:
    rule = parse_policy(text, "payments").verification_of("staging")
    assert rule is not None
    return rule


async def test_a_check_passes_while_every_sample_stays_under_its_max(prom: Prometheus) -> None:
    await asyncio.sleep(3)  # three seconds of good samples
    rule = _check()
    samples = await PrometheusMetrics(prom.url).samples(rule.prometheus, datetime.now(UTC))
    assert samples.error == ""
    assert samples.series == 1
    assert len(samples.values) >= 2
    measured = judge(rule, samples)
    assert measured.passed, measured.message
    assert measured.value == 0.001
    assert step_of(rule.prometheus.window) == 1.0


async def test_a_check_fails_with_the_value_over_its_max_and_without_data(
    prom: Prometheus,
) -> None:
    prom.set(0.5)
    await prom.until(0.5)
    metrics = PrometheusMetrics(prom.url)
    rule = _check()
    measured = judge(rule, await metrics.samples(rule.prometheus, datetime.now(UTC)))
    assert not measured.passed
    assert measured.value == 0.5
    assert "'ferry_test_value' over the last 3s in staging reached 0.5" in measured.message
    # a query that matches nothing, a query Prometheus refuses, a Prometheus that is not there
    for text, words in (
        (CHECK.replace("ferry_test_value", "no_such_metric"), "returned no data"),
        (CHECK.replace("ferry_test_value", "'rate(('"), "Prometheus refused the query"),
    ):
        rule = _check(text)
        measured = judge(rule, await metrics.samples(rule.prometheus, datetime.now(UTC)))
        assert not measured.passed
        assert words in measured.message
    nobody = PrometheusMetrics(f"http://127.0.0.1:{free_port()}", timeout=2)
    measured = judge(rule, await nobody.samples(rule.prometheus, datetime.now(UTC)))
    assert not measured.passed
    assert "Prometheus is unreachable" in measured.message


async def test_a_promotion_out_of_staging_is_decided_by_what_prometheus_measured(
    world: World, prom: Prometheus
) -> None:
    world.config.snapshot = _snapshot(CHECK)
    world.decider.metrics = PrometheusMetrics(prom.url)
    world.clock.append(datetime.now(UTC))
    passed = await world.ask(BOB, "prod")
    assert world.status(passed) == Status.APPROVED
    notes = [n.detail for n in world.state.timeline[passed]]
    assert any(n.startswith("verification passed: 'ferry_test_value'") for n in notes), notes

    prom.set(0.5)
    await prom.until(0.5)
    world.clock.append(datetime.now(UTC))
    failed = await world.ask(BOB, "prod")
    release = world.state.releases[failed]
    assert release.status == Status.REJECTED
    [violation] = release.violations
    assert violation["policy"] == "verification"
    assert "reached 0.5; it must stay at most 0.01" in violation["message"]
    # a release within staging is not promoted out of it: no check
    within = await world.ask(BOB, "staging")
    assert world.status(within) == Status.APPROVED

    # without a Prometheus configured, a gated request is refused, never let through
    world.decider.metrics = None
    refused_id = await world.ask(BOB, "prod")
    refused = world.state.releases[refused_id]
    assert refused.status == Status.REJECTED
    assert [v["policy"] for v in refused.violations] == ["verification"]
    assert "no Prometheus is configured (FERRY_PROMETHEUS_URL)" in refused.violations[0]["message"]


async def test_answers_that_are_large_slow_or_no_matrix_are_read_whole_or_refused() -> None:
    """A loopback server speaking the query_range API: an answer of many chunks is read
    whole, one over the size cap, one later than the timeout and one that is no range of
    samples are each a clear failure, never a pass."""
    points = [[1_700_000_000 + i, "0.001"] for i in range(20_000)]  # about 500 KB
    answers: dict[str, object] = {
        "big": {
            "status": "success",
            "data": {"resultType": "matrix", "result": [{"metric": {}, "values": points}]},
        },
        "vector": {"status": "success", "data": {"resultType": "vector", "result": []}},
    }

    async def query_range(request: web.Request) -> web.StreamResponse:
        kind = request.query["query"]
        if kind == "slow":
            await asyncio.sleep(2.5)
        if kind == "huge":
            response = web.StreamResponse()
            await response.prepare(request)
            for _ in range(10):
                await response.write(b" " * (1024 * 1024))
            return response
        return web.json_response(answers[kind])

    app = web.Application()
    app.router.add_get("/api/v1/query_range", query_range)
    runner, port = await serve_app(app)
    try:
        metrics = PrometheusMetrics(f"http://127.0.0.1:{port}/", timeout=1)
        for kind, words in (
            ("huge", "more than 8388608 bytes"),
            ("slow", "did not answer within 1s"),
            ("vector", "no range of samples"),
        ):
            rule = _check(CHECK.replace("ferry_test_value", kind))
            measured = judge(rule, await metrics.samples(rule.prometheus, datetime.now(UTC)))
            assert not measured.passed
            assert words in measured.message, measured.message
        big = await metrics.samples(
            _check(CHECK.replace("ferry_test_value", "big")).prometheus, datetime.now(UTC)
        )
        assert big.error == ""
        assert len(big.values) == 20_000
    finally:
        await runner.cleanup()

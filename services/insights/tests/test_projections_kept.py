"""What the store keeps at write time (the DORA columns, the cells of what runs where) gives
the answers the definitions give over every fact, whatever the arrival order, one by one or
in batches, on SQLite and PostgreSQL; two replicas writing at once agree; migration 0003
back-fills a database of the release before with the same answers.

The reference is the domain itself: :func:`ferry_insights.domain.dora.report` and
:func:`ferry_insights.domain.board.matrix` over every fact of a random history (ties of
times included), read in the test from the events, not from the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from insights_history import ACTOR, SQUADS, TO, at, history

from ferry_events import (
    ArtifactSpec,
    ArtifactStored,
    CloudEvent,
    EventData,
    Intent,
    ReleaseCommitted,
    ReleaseRequested,
    RolloutFailed,
    RolloutStarted,
    RolloutSucceeded,
    Workload,
    decode,
    default_registry,
    encode,
    utcnow,
)
from ferry_insights.adapters.board import BoardReads
from ferry_insights.adapters.db import Store
from ferry_insights.domain.board import COMMITTED, ROLLOUTS, Matrix, matrix
from ferry_insights.domain.dora import Window, report
from ferry_insights.domain.facts import Change, Deployment, Facts, Outcome, facts_of, first_result
from ferry_insights.entrypoints.api import report_json
from ferry_insights.service_layer.use_cases import dora
from ferry_testing.database import postgres_database

SERVICES = ("payments", "search")
ENVIRONMENTS = ("staging", "prod")
#: (window end, days): the whole history, windows that end inside it (facts after the end
#: must not count), and one with a week cut short
WINDOWS = [(TO, 30), (TO, 14), (at(20, 12), 7), (at(25, 10, 30), 10), (at(27, 13), 3)]
FILTERS: list[dict[str, str]] = [{}, {"service": "payments"}, {"squad": "discovery"}]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'insights.db'}"
    else:
        async with postgres_database() as found:
            yield found


@contextlib.asynccontextmanager
async def opened(url: str) -> AsyncIterator[Store]:
    store = Store(url)
    try:
        await store.create_schema()
        yield store
    finally:
        await store.close()


def random_history(seed: int) -> list[CloudEvent]:
    """Artifacts of two services released to two environments at random minutes of a small
    pool (so that results, rollbacks and deployments tie), some failing, some rolled back,
    some reported twice, some with no ``committedAt`` or no artifact event at all."""
    rng = random.Random(seed)
    ids = itertools.count()
    moments = [at(10, 0) + timedelta(minutes=37 * n) for n in range(800)]
    moments = [m for m in moments if m < TO + timedelta(days=1)]

    def event(data: EventData, time: datetime) -> CloudEvent:
        return CloudEvent.new(data, source="ferry/test", time=time, event_id=f"e{next(ids)}")

    out: list[CloudEvent] = []
    for service in SERVICES:
        for n in range(14):
            artifact = f"{service[0]}{seed}-{n}"
            changed = rng.choice(moments)
            if rng.random() < 0.9:  # else never announced: no change known
                application: dict[str, Any] = {"branch": "master", "sha": f"{n:040d}"}
                if rng.random() < 0.7:
                    application["committedAt"] = changed.isoformat()
                spec = ArtifactSpec.model_validate(
                    {
                        "id": artifact,
                        "service": service,
                        "squad": SQUADS[service],
                        "application": {**application, "authorEmail": f"{n}@example.com"},
                        "ci": {"jobUrl": "https://ci.example.com/1", "start": changed},
                    }
                )
                data = ArtifactStored(
                    artifact=spec, environments=list(ENVIRONMENTS), commit_sha="c", path="b"
                )
                out.append(event(data, changed))
            for env in ENVIRONMENTS:
                if rng.random() < 0.25:
                    continue
                release = f"rel-{env}-{artifact}"
                first = rng.choice(moments)
                out.append(
                    event(
                        ReleaseCommitted(
                            release_id=release,
                            service=service,
                            environment=env,
                            namespace=service,
                            artifact_id=artifact,
                            intent=Intent.RELEASE,
                            actor=ACTOR,
                            commit_sha=f"{n:040x}",
                        ),
                        rng.choice(moments),
                    )
                )
                fields: dict[str, Any] = {
                    "cluster": "local",
                    "environment": env,
                    "namespace": service,
                    "service": service,
                    "artifact_id": artifact,
                    "release_id": release,
                    "workload": Workload(kind="Deployment", name=service, uid=service),
                }
                out.append(event(RolloutStarted(**fields, observed_at=first), first))
                for _ in range(rng.choice((1, 1, 2, 3))):  # results reported more than once
                    when = rng.choice(moments)
                    result: EventData = (
                        RolloutFailed(**fields, observed_at=when, reason="x", message="y")
                        if rng.random() < 0.3
                        else RolloutSucceeded(**fields, observed_at=when)
                    )
                    out.append(event(result, when))
        for env in ENVIRONMENTS:
            for _ in range(6):
                when = rng.choice(moments)
                back = ReleaseRequested(
                    release_id=f"rb-{next(ids)}",
                    service=service,
                    environment=env,
                    intent=Intent.ROLLBACK,
                    actor=ACTOR,
                    requested_at=when,
                )
                out.append(event(back, when))
    rng.shuffle(out)
    return out


def facts_in_order(events: list[CloudEvent]) -> list[Facts]:
    return [facts_of(*default_registry.parse(decode(encode(e)))) for e in events]


def expected_report(
    facts: list[Facts], env: str, window: Window, service: str | None, squad: str | None
) -> dict[str, Any]:
    """The definitions over every fact (as arrived: a change's last word counts)."""
    changes: dict[tuple[str, str], Change] = {}
    found: dict[tuple[str, str], Deployment] = {}
    for f in facts:
        if f.change is not None:
            changes[(f.change.service, f.change.artifact_id)] = f.change
        if f.rollout is not None and f.rollout.environment == env:
            key = (f.rollout.service, f.rollout.artifact_id)
            found[key] = first_result(found.get(key), f.rollout)
    backs = [f.rollback for f in facts if f.rollback and f.rollback.environment == env]
    wins = [
        f.rollout
        for f in facts
        if f.rollout and f.rollout.environment == env and f.rollout.outcome is Outcome.SUCCEEDED
    ]

    def counted(d: Deployment) -> bool:
        change = changes.get((d.service, d.artifact_id))
        return (service is None or d.service == service) and (
            squad is None or (change is not None and change.squad == squad)
        )

    answer = report(list(found.values()), changes, backs, wins, window, counted=counted)
    return report_json(answer, environment=env, service=service, squad=squad)


def expected_matrix(facts: list[Facts]) -> Matrix:
    records = [f.record for f in facts]
    changes = {(f.change.service, f.change.artifact_id): f.change for f in facts if f.change}
    return matrix(
        [r for r in records if r.event_type == COMMITTED],
        [r for r in records if r.event_type in ROLLOUTS],
        changes,
    )


async def check(store: Store, facts: list[Facts]) -> None:
    for (end, days), env, filters in itertools.product(WINDOWS, (*ENVIRONMENTS, "dev"), FILTERS):
        window = Window.days_before(end, days)
        service, squad = filters.get("service"), filters.get("squad")
        found = await dora(store, env, window, service=service, squad=squad)
        answer = report_json(found, environment=env, service=service, squad=squad)
        assert answer == expected_report(facts, env, window, service, squad), (end, env, filters)
    reads = BoardReads(store.engine)
    assert matrix(*await reads.matrix_inputs()) == expected_matrix(facts)


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_kept_one_by_one_in_any_order_it_answers_as_the_definitions(
    url: str, seed: int
) -> None:
    events = random_history(seed)
    facts = facts_in_order(events)
    async with opened(url) as store:
        for f in facts:
            assert await store.record(f, received_at=utcnow())
        assert (await store.counts())["deployments"] > 20
        await check(store, facts)


@pytest.mark.parametrize("seed", [4, 5])
async def test_kept_in_batches_it_answers_as_one_by_one(url: str, seed: int) -> None:
    facts = facts_in_order(random_history(seed))
    async with opened(url) as store:
        third = len(facts) // 3
        await store.record_many(facts[third:], received_at=utcnow())
        for f in facts[:third]:  # the rest one by one, after: late facts of known places
            await store.record(f, received_at=utcnow())
        await check(store, facts)


@pytest.mark.postgres
async def test_two_replicas_writing_at_once_keep_the_same_projections() -> None:
    """Two stores (two replicas' connection pools) write one history on one PostgreSQL
    database at the same time, every place written by both: the place lock makes each
    refresh see the other's facts."""
    facts = facts_in_order(random_history(6))
    async with postgres_database() as url, opened(url) as one, opened(url) as two:

        async def write(store: Store, part: list[Facts]) -> None:
            for f in part:
                await store.record(f, received_at=utcnow())

        await asyncio.gather(write(one, facts[0::2]), write(two, facts[1::2]))
        await check(one, facts)


async def test_migration_0003_back_fills_a_database_of_the_release_before(url: str) -> None:
    """A database at revision 0002 with its facts (what the release before kept) is migrated
    to 0003: the DORA columns and the cells are computed from those facts."""
    facts = facts_in_order([*history(), *random_history(7)])
    async with opened(url) as store:
        await store.record_many(facts, received_at=utcnow())
        prod = report_json(
            await dora(store, "prod", Window.days_before(TO, 14)),
            environment="prod",
            service=None,
            squad=None,
        )
        async with store.engine.begin() as conn:
            await conn.run_sync(lambda sync: _alembic(sync, "downgrade", "0002"))
    async with opened(url) as store:  # its start migrates to the newest revision
        await check(store, facts)
        again = report_json(
            await dora(store, "prod", Window.days_before(TO, 14)),
            environment="prod",
            service=None,
            squad=None,
        )
        assert again == prod


def _alembic(connection: Any, action: str, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", "ferry_insights.adapters:migrations")
    config.attributes["connection"] = connection
    getattr(command, action)(config, revision)

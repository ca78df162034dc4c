"""The scripted history replayed into the real database (SQLite, and PostgreSQL), in order,
shuffled and twice: every number of the DORA answer is the one computed by hand."""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from insights_history import (
    DAYS,
    DISCOVERY,
    NO_DATA,
    PAYMENTS,
    PROD,
    PROD_WEEKS,
    STAGING,
    TO,
    history,
    subset,
)

from ferry_events import decode, default_registry, encode, utcnow
from ferry_insights.adapters.db import Store
from ferry_insights.domain.dora import Window
from ferry_insights.domain.facts import facts_of
from ferry_insights.entrypoints.api import report_json
from ferry_insights.service_layer.use_cases import dora, project
from ferry_testing.database import postgres_database


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async with contextlib.AsyncExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite+aiosqlite:///{tmp_path / 'insights.db'}"
        else:
            url = await stack.enter_async_context(postgres_database())
        found = Store(url)
        await found.create_schema()
        await found.create_schema()  # a second start (or replica) migrates nothing twice
        yield found
        await found.close()


async def replay(store: Store, events: list) -> list[bool]:
    fresh = []
    for event in events:
        parsed, data = default_registry.parse(decode(encode(event)))  # as a consumer reads it
        fresh.append(await project(store, parsed, data, utcnow()))
    return fresh


async def answer(store: Store, environment: str = "prod", **filters: str) -> dict:
    found = await dora(store, environment, Window.days_before(TO, DAYS), **filters)
    return report_json(
        found,
        environment=environment,
        service=filters.get("service"),
        squad=filters.get("squad"),
    )


async def test_the_history_gives_the_hand_computed_numbers(store: Store) -> None:
    assert all(await replay(store, history()))
    prod = await answer(store)
    assert subset(prod, PROD) == PROD
    assert prod["weekly"] == PROD_WEEKS
    assert (prod["from"], prod["to"], prod["days"]) == (
        "2026-11-17T00:00:00Z",
        "2026-12-01T00:00:00Z",
        14.0,
    )
    assert subset(await answer(store, service="payments"), PAYMENTS) == PAYMENTS
    assert subset(await answer(store, squad="discovery"), DISCOVERY) == DISCOVERY
    assert subset(await answer(store, "staging"), STAGING) == STAGING
    assert subset(await answer(store, "dev"), NO_DATA) == NO_DATA
    assert subset(await answer(store, squad="nobody"), NO_DATA) == NO_DATA
    assert await store.environments() == ["prod", "staging"]


async def test_shuffled_and_repeated_deliveries_change_nothing(store: Store) -> None:
    events = history()
    shuffled = events[:]
    random.Random(7).shuffle(shuffled)
    assert all(await replay(store, shuffled))
    assert not any(await replay(store, events))  # every id is known: nothing is written
    counts = await store.counts()
    assert counts["inbox"] == len(events)
    assert counts["deployments"] == 9  # 8 artifacts in prod (a0 included), a1 in staging
    prod = await answer(store)
    assert subset(prod, PROD) == PROD
    assert prod["weekly"] == PROD_WEEKS


async def test_projected_in_bulk_it_is_the_same_as_one_by_one(store: Store) -> None:
    """``record_many`` (replays, back-fills, the benchmark) keeps the same rules: duplicates
    within a batch and across batches write nothing, the earliest result of each deployment
    counts whatever the order, and a change's last word is kept."""
    events = history()
    shuffled = events[:]
    random.Random(11).shuffle(shuffled)
    facts = [facts_of(*default_registry.parse(decode(encode(e)))) for e in shuffled]
    # the later half first, with a repeat of one event inside its batch...
    assert await store.record_many([*facts[10:], facts[12]], received_at=utcnow()) == len(
        facts[10:]
    )
    # ...then the earlier half with everything again: only the earlier half is new
    assert await store.record_many(facts, received_at=utcnow()) == 10
    assert await store.record_many(facts, received_at=utcnow()) == 0
    counts = await store.counts()
    assert counts["inbox"] == len(events)
    assert counts["deployments"] == 9
    prod = await answer(store)
    assert subset(prod, PROD) == PROD
    assert prod["weekly"] == PROD_WEEKS
    assert subset(await answer(store, "staging"), STAGING) == STAGING
    assert subset(await answer(store, service="payments"), PAYMENTS) == PAYMENTS

"""pytest fixtures shared by every package's tests (loaded by the root conftest)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from ferry_testing.broker import BrokerNamespace, EventTap, resolve_amqp_url
from ferry_testing.database import postgres_answers, postgres_database
from ferry_testing.git import make_bare_remote


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    """The broker: FERRY_AMQP_URL, the local one, or a testcontainers one."""
    url, stop = resolve_amqp_url()
    yield url
    stop()


@pytest.fixture
async def broker_ns(amqp_url: str) -> AsyncIterator[BrokerNamespace]:
    """An exchange and queue prefix of this test's own; deleted afterwards."""
    ns = BrokerNamespace(amqp_url)
    yield ns
    await ns.cleanup()


@pytest.fixture
async def event_tap(broker_ns: BrokerNamespace) -> AsyncIterator[EventTap]:
    """Every event published on the test's exchange."""
    async with EventTap(broker_ns) as tap:
        yield tap


@pytest.fixture
def bare_remote(tmp_path: Path) -> Path:
    """An empty bare git repository: the config repo's remote."""
    return make_bare_remote(tmp_path / "config-remote.git")


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """A fresh PostgreSQL database (SQLAlchemy asyncpg URL), dropped after the test."""
    if not postgres_answers():
        pytest.fail(
            "PostgreSQL is not reachable (FERRY_TEST_POSTGRES_URL or 127.0.0.1:5432); "
            "start it or point FERRY_TEST_POSTGRES_URL at one"
        )
    async with postgres_database() as url:
        yield url

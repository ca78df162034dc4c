"""Promotion's consumers on the in-memory runtime: its real composition root, database (SQLite)
and config repo (real git), no broker. The same rules against the real broker are in
``test_release_flow.py``; here they run in a fraction of the time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ferry_events import Actor, CloudEvent, Intent, ReleaseRequested
from ferry_promotion.bootstrap import PromotionService, build
from ferry_promotion.settings import PromotionSettings
from ferry_testing import InMemoryBroker, in_memory

APPROVED = "ferry.release.approved.v1"
REJECTED = "ferry.release.rejected.v1"


def _request(release_id: str, environment: str = "dev", **changes: Any) -> CloudEvent:
    data = ReleaseRequested(
        release_id=release_id,
        service="payments",
        environment=environment,
        intent=Intent.RELEASE,
        artifact_id="master-1",
        actor=Actor(subject="alice", email="alice@example.com"),
        requested_at=datetime.now(UTC),
    )
    return CloudEvent.new(data.model_copy(update=changes), source="ferry/other")


@pytest.fixture
async def promotion(config: Any, tokens: Any, tmp_path: Path) -> PromotionService:
    config.store("payments", "master-1")
    settings = PromotionSettings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'promotion.db'}",
        config_repo_url=str(config.remote),
        api_tokens_file=tokens.path,
        config_max_age=0.0,
    )
    return await build(settings)


@pytest.fixture
async def broker(promotion: PromotionService) -> AsyncIterator[InMemoryBroker]:
    async with in_memory(promotion.runtime) as running:
        running.tap("ferry.release.#", "ferry.approval.#")
        yield running


async def test_a_request_from_another_producer_is_approved_once_however_often_it_comes(
    broker: InMemoryBroker,
) -> None:
    event = _request("elsewhere-1")
    await broker.publish(event)
    await broker.publish(event)  # a duplicate, as after a lost ack
    [approved] = await broker.wait_for(APPROVED)
    assert approved.data["releaseId"] == "elsewhere-1"
    assert approved.causationid == event.id
    assert approved.data["namespace"] == "payments"
    assert len(broker.events(APPROVED)) == 1
    assert not broker.dead_letters("promotion")


async def test_a_request_to_prod_without_releaser_rights_is_rejected_with_the_policy(
    broker: InMemoryBroker,
) -> None:
    await broker.publish(_request("elsewhere-2", environment="prod"))
    [rejected] = await broker.wait_for(REJECTED)
    assert rejected.data["releaseId"] == "elsewhere-2"
    assert rejected.data["violations"][0]["policy"] == "authorization"
    assert not broker.events(APPROVED)


async def test_an_auto_release_without_its_artifact_is_dead_lettered_as_invalid(
    broker: InMemoryBroker,
) -> None:
    await broker.publish(_request("auto-1", intent=Intent.AUTO_RELEASE, artifact_id=None))
    [dead] = broker.dead_letters("promotion")
    assert dead.code == "invalid"
    assert "must name its artifactId" in dead.reason
    assert not broker.retried

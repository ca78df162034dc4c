"""Duplicate and out-of-order events, the outbox after a restart, and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from ferry_events import CloudEvent, ReleaseCommitted, RolloutSucceeded, Workload

from .conftest import harness

pytestmark = pytest.mark.amqp


async def _approved(h, artifact: str = "master-1", env: str = "dev") -> str:
    h.config.store("payments", artifact)
    release_id = await h.request(
        "alice", service="payments", environment=env, intent="release", artifactId=artifact
    )
    await h.wait_status(release_id, "approved")
    return release_id


async def test_duplicate_and_out_of_order_results(h) -> None:
    release_id = await _approved(h)
    # the rollout result arrives before the commit result
    succeeded = RolloutSucceeded(
        cluster="local",
        environment="dev",
        namespace="payments",
        service="payments",
        artifact_id="master-1",
        release_id=release_id,
        workload=Workload(kind="Deployment", name="payments", uid="u"),
        observed_at=datetime.now(UTC),
    )
    await h.ns.publish(succeeded)
    await h.wait_status(release_id, "rolled-out")
    committed = await h.commit_approved(release_id)
    await h.ns.publish(committed)  # duplicate delivery
    found = await h.wait_status(release_id, "rolled-out")
    async_timeline = [t for t in found["timeline"] if t["eventType"] == ReleaseCommitted.event_type]
    while not async_timeline:
        found = await h.release(release_id)
        async_timeline = [
            t for t in found["timeline"] if t["eventType"] == ReleaseCommitted.event_type
        ]
    assert found["status"] == "rolled-out"  # a late commit does not move it back
    assert found["commitSha"] == committed.data["commitSha"]
    assert len(async_timeline) == 1


async def test_unsent_outbox_events_are_relayed_after_a_restart(
    broker_ns, event_tap, config, tokens, tmp_path
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'restart.db'}"
    config.store("payments", "master-1")
    async with harness(broker_ns, event_tap, config, tokens, url, tmp_path / "d1") as first:
        await first.service.relay.stop()  # the relay dies: events stay in the outbox
        release_id = await first.request(
            "alice", service="payments", environment="dev", intent="release", artifactId="master-1"
        )
        assert await first.service.relay.pending() == 1
    assert event_tap.of_type("ferry.release.requested.v1") == []
    async with harness(broker_ns, event_tap, config, tokens, url, tmp_path / "d2") as second:
        found = await second.wait_status(release_id, "approved")
        assert found["artifactId"] == "master-1"
        assert event_tap.of_type("ferry.release.requested.v1")  # relayed by the new process
        async with asyncio.timeout(10):  # the approval's own event follows it out
            while await second.service.relay.pending():
                await asyncio.sleep(0.05)


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_release_approval_and_commit_on_postgres(h) -> None:
    h.config.write("policies/payments.yaml", "approvals:\n  - {environment: prod}\n")
    h.config.store("payments", "master-1")
    release_id = await h.request(
        "bob", service="payments", environment="prod", intent="release", artifactId="master-1"
    )
    await h.wait_status(release_id, "awaiting-approval")
    response = await h.client.post(f"/v1/releases/{release_id}/approve", headers=h.h("dave"))
    assert response.status_code == 200, response.text
    await h.wait_status(release_id, "approved")
    commit = await h.commit_approved(release_id)
    await h.ns.publish(commit)
    found = await h.wait_status(release_id, "committed")
    assert found["commitSha"] == commit.data["commitSha"]
    assert [t["status"] for t in found["timeline"]].count("committed") == 1
    rollback = await h.request("bob", service="payments", environment="prod", intent="rollback")
    refused = await h.wait_status(rollback, "rejected")
    assert "only release" in refused["violations"][0]["message"]
    assert isinstance(commit, CloudEvent)


async def test_purge_forgets_relayed_events_and_old_inbox_ids(h) -> None:
    import sqlalchemy as sa

    from ferry_promotion.adapters.db import inbox, outbox
    from ferry_promotion.service_layer.housekeeping import purge

    await _approved(h)
    later = datetime.now(UTC) + timedelta(days=1)
    store = h.service.store
    async with store.read() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).select_from(inbox)) > 0
    await purge(h.service.uow, sent_before=later, processed_before=later)
    async with store.read() as conn:
        sent = await conn.scalar(
            sa.select(sa.func.count()).select_from(outbox).where(outbox.c.sent_at.is_not(None))
        )
        assert sent == 0
        assert await conn.scalar(sa.select(sa.func.count()).select_from(inbox)) == 0

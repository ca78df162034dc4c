"""Scheduled releases through the HTTP API, the real broker and a real database: refused
times as problem+json, the timer publishing a due release once, a cancel, a restart in
between, and two replicas on PostgreSQL claiming the due releases once each."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from ferry_promotion.bootstrap import build
from ferry_testing import running

from .conftest import harness, settings_for

pytestmark = pytest.mark.amqp

NOON = datetime(2026, 12, 23, 12, 0, tzinfo=UTC)
RELEASE = {"service": "payments", "environment": "dev", "intent": "release", "artifactId": "m-1"}


def _at(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
async def test_a_scheduled_release_is_decided_at_its_time_and_a_cancelled_one_never(h) -> None:
    h.clock.append(NOON)
    h.config.store("payments", "m-1")
    at = NOON + timedelta(hours=14)  # 2026-12-24T02:00:00Z
    response = await h.client.post(
        "/v1/releases", json={**RELEASE, "at": _at(at)}, headers=h.h("alice")
    )
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "scheduled"
    assert response.json()["scheduledAt"] == "2026-12-24T02:00:00Z"
    scheduled = response.json()["releaseId"]
    cancelled = await h.request("alice", **RELEASE, at="2026-12-24T03:00:00+01:00")

    shown = await h.release(scheduled)
    assert (shown["status"], shown["sequence"], shown["scheduledAt"]) == (
        "scheduled",
        None,
        "2026-12-24T02:00:00Z",
    )
    assert shown["timeline"][0]["detail"].startswith("release scheduled for 2026-12-24 02:00:00")

    # only its requester, or someone who may release there, cancels it
    refused = await h.client.post(f"/v1/releases/{cancelled}/cancel", headers=h.h("vic"))
    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith("application/problem+json")
    done = await h.client.post(
        f"/v1/releases/{cancelled}/cancel", json={"reason": "not tonight"}, headers=h.h("alice")
    )
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "cancelled"
    again = await h.client.post(f"/v1/releases/{cancelled}/cancel", headers=h.h("alice"))
    assert again.status_code == 409
    assert "cannot be cancelled: it was cancelled already" in again.json()["detail"]

    h.clock.append(at)  # the timer (every second) finds it due
    decided = await h.wait_status(scheduled, "approved")
    assert decided["sequence"] == 1
    assert [e["status"] for e in decided["timeline"]][:3] == ["scheduled", "requested", "approved"]
    assert (await h.release(cancelled))["status"] == "cancelled"
    requested = h.tap.of_type("ferry.release.requested.v1")
    assert [e.data["releaseId"] for e in requested] == [scheduled]
    late = await h.client.post(f"/v1/releases/{scheduled}/cancel", headers=h.h("alice"))
    assert late.status_code == 409
    assert "it fell due at 2026-12-24 02:00:00 UTC and is approved" in late.json()["detail"]


BAD_TIMES = [
    ("2026-12-24T02:00:00", "no offset"),
    ("24/12/2026 02:00", "not an RFC 3339 time"),
    ("2026-12-23T11:00:00Z", "is in the past"),
    ("2027-06-01T00:00:00Z", "more than 90 days ahead"),
    ("", "at"),
]


async def test_a_naive_past_or_far_time_is_refused_with_a_problem(h) -> None:
    h.clock.append(NOON)
    for at, says in BAD_TIMES:
        response = await h.client.post(
            "/v1/releases", json={**RELEASE, "at": at}, headers=h.h("alice")
        )
        assert response.status_code == 422, (at, response.text)
        problem = response.json()
        assert response.headers["content-type"].startswith("application/problem+json")
        assert says in problem["detail"], problem
        assert any(e["field"].endswith("at") for e in problem["errors"]), problem
    unknown = await h.client.post("/v1/releases/nope/cancel", headers=h.h("alice"))
    assert unknown.status_code == 404


async def test_a_scheduled_release_survives_a_restart(
    broker_ns, event_tap, config, tokens, database_url, tmp_path
) -> None:
    config.store("payments", "m-1")
    data = tmp_path / "data"
    async with harness(broker_ns, event_tap, config, tokens, database_url, data) as first:
        first.clock.append(NOON)
        rid = await first.request("alice", **RELEASE, at=_at(NOON + timedelta(hours=1)))
    # promotion stopped before the time: the schedule is in the database
    async with harness(broker_ns, event_tap, config, tokens, database_url, data) as second:
        second.clock.append(NOON + timedelta(hours=1, seconds=5))
        await second.wait_status(rid, "approved")
        assert len(event_tap.of_type("ferry.release.requested.v1")) == 1


async def test_two_replicas_on_postgresql_publish_each_due_release_once(
    broker_ns, event_tap, config, tokens, postgres_url, tmp_path
) -> None:
    config.store("payments", "m-1")
    clock = [NOON]
    services = await asyncio.gather(
        *(
            build(
                settings_for(
                    broker_ns,
                    config.remote,
                    tmp_path / name,
                    tokens.path,
                    postgres_url,
                    schedule_check_interval=0.05,
                ),
                clock=lambda: clock[-1],
            )
            for name in ("a", "b")
        )
    )
    async with contextlib.AsyncExitStack() as stack:
        clients: list[httpx.AsyncClient] = []
        for service in services:
            await stack.enter_async_context(running(service.runtime))
            clients.append(
                await stack.enter_async_context(
                    httpx.AsyncClient(
                        base_url=f"http://127.0.0.1:{service.runtime.http_port}", timeout=10
                    )
                )
            )
        ids = []
        for n in range(8):
            environment = ("dev", "staging")[n % 2]
            response = await clients[n % 2].post(
                "/v1/releases",
                json={**RELEASE, "environment": environment, "at": _at(NOON + timedelta(hours=1))},
                headers=tokens.header("alice"),
            )
            assert response.status_code == 202, response.text
            ids.append(response.json()["releaseId"])
        clock.append(NOON + timedelta(hours=1))

        async def settled() -> list[dict[str, Any]]:
            async with asyncio.timeout(60):
                while True:
                    found = [
                        (await clients[0].get(f"/v1/releases/{rid}", headers=tokens.header("vic")))
                        .raise_for_status()
                        .json()
                        for rid in ids
                    ]
                    if all(r["status"] not in ("scheduled", "requested") for r in found):
                        return found
                    await asyncio.sleep(0.1)

        releases = await settled()
    requested = [e.data["releaseId"] for e in event_tap.of_type("ferry.release.requested.v1")]
    assert sorted(requested) == sorted(ids)  # each once, by whichever replica claimed it
    for environment in ("dev", "staging"):
        numbers = sorted(r["sequence"] for r in releases if r["environment"] == environment)
        assert numbers == [1, 2, 3, 4]
    # a release decided once: one approval (or one supersession) each, never two
    approved = [e.data["releaseId"] for e in event_tap.of_type("ferry.release.approved.v1")]
    assert len(approved) == len(set(approved))

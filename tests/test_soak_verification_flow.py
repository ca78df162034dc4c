"""Issue 14, item 4, end to end: a promotion waits for its soak in the environment before and
is decided by promotion's timer when the soak ends, and a Prometheus check (a real Prometheus
server scraping an exporter the test controls) lets one promotion out of staging and refuses
the next, through the real broker, git-writer and a bare remote. Rollout results are
published on the broker as the cluster-watcher reports them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ferry_events import RolloutFailed, RolloutSucceeded, Workload
from ferry_testing import BrokerNamespace, EventTap, git, show
from ferry_testing.prometheus import Prometheus, prometheus

from .test_promotion_flow import Flow, artifact, flow
from .test_safety_flow import _until

pytestmark = pytest.mark.amqp

A = "master-aaaaaaaaaa-1111111111"
B = "master-bbbbbbbbbb-2222222222"
C = "master-cccccccccc-3333333333"
POLICY = {
    "promotionChain": {"environments": ["prod"], "soak": "3s"},
    "verification": [
        {
            "environment": "staging",
            "prometheus": {"query": "ferry_test_value", "max": 0.01, "for": "3s"},
        }
    ],
}


@pytest.fixture
async def prom(tmp_path: Path) -> AsyncIterator[Prometheus]:
    async with prometheus(tmp_path / "prometheus", value=0.001) as running:
        yield running


async def _rolled_out(f: Flow, done: dict[str, Any], *, failed: bool = False) -> None:
    """What the cluster-watcher reports about the rollout of the release ``done``."""
    kind = RolloutFailed if failed else RolloutSucceeded
    extra = {"reason": "CrashLoopBackOff", "message": "payments keeps crashing"} if failed else {}
    fact = kind(
        cluster="local",
        environment=done["environment"],
        namespace=f.service,
        service=f.service,
        artifact_id=done["artifactId"],
        release_id=done["releaseId"],
        workload=Workload(kind="Deployment", name=f.service, uid="u1"),
        observed_at=datetime.now(UTC),
        **extra,  # type: ignore[arg-type]
    )
    await f.ns.publish(fact, source="ferry/cluster-watcher")
    if not failed:
        await f.wait(done["releaseId"], "rolled-out")


async def _soaking(f: Flow, release_id: str) -> dict[str, Any]:
    """The release once it waits for its soak (``dueAt`` set while it is ``requested``)."""
    found = await _until(
        f, f"/v1/releases/{release_id}", lambda b: b["dueAt"] or b["status"] != "requested"
    )
    assert found["status"] == "requested", found
    return found


def _running_in_prod(f: Flow) -> str | None:
    paths = [
        p
        for p in git("ls-tree", "-r", "--name-only", "main", cwd=f.remote).split()
        if p.startswith("environments/prod/") and p.endswith(f"/{f.service}/artifact.json")
    ]
    return str(json.loads(show(f.remote, paths[0]))["id"]) if paths else None


async def test_a_soak_ends_in_a_decision_and_prometheus_lets_one_promotion_out_not_the_next(
    broker_ns: BrokerNamespace,
    event_tap: EventTap,
    bare_remote: Path,
    tmp_path: Path,
    prom: Prometheus,
) -> None:
    async with flow(
        broker_ns,
        event_tap,
        bare_remote,
        tmp_path,
        prometheus_url=prom.url,
        prometheus_timeout=5,
        expiry_check_interval=0.2,
    ) as f:
        bad = await f.client.put(
            f"/v1/policies/{f.service}",
            json={**POLICY, "promotionChain": {"environments": ["prod"], "soak": "soon"}},
            headers=f.auth("root"),
        )
        assert bad.status_code == 422, bad.text
        assert "promotionChain.soak" in bad.text
        put = await f.client.put(f"/v1/policies/{f.service}", json=POLICY, headers=f.auth("root"))
        assert put.status_code == 202, put.text
        await f.tap.wait_one("ferry.policy.changed.v1", timeout=20)
        for artifact_id in (A, B, C):
            await f.store(artifact(artifact_id))

        # A rolls out in staging; its promotion to prod soaks 3 s, then the check passes
        staged = await f.committed(environment="staging", intent="release", artifactId=A)
        await _rolled_out(f, staged)
        promoted = await f.request(environment="prod", intent="promote")
        soaking = await _soaking(f, promoted)
        assert soaking["waitingSince"] is not None
        done = await f.wait(promoted, "committed", "rejected", timeout=30)
        assert done["status"] == "committed", done
        assert done["artifactId"] == A
        assert _running_in_prod(f) == A
        lines = [line["detail"] for line in done["timeline"]]
        assert any(f"{A} soaks in staging until" in line for line in lines), lines
        assert any(line.startswith("verification passed: 'ferry_test_value'") for line in lines), (
            lines
        )

        # staging's error rate goes up: B soaks, then the check refuses it with the value
        prom.set(0.5)
        await prom.until(0.5)
        staged = await f.committed(environment="staging", intent="release", artifactId=B)
        await _rolled_out(f, staged)
        refused = await f.wait(
            await f.request(environment="prod", intent="promote"), "rejected", timeout=30
        )
        [violation] = refused["violations"]
        assert violation["policy"] == "verification"
        assert "reached 0.5; it must stay at most 0.01" in violation["message"]
        assert _running_in_prod(f) == A

        # C crashes in staging during its soak: the waiting promotion is refused at once
        staged = await f.committed(environment="staging", intent="release", artifactId=C)
        await _rolled_out(f, staged)
        waiting = await f.request(environment="prod", intent="release", artifactId=C)
        await _soaking(f, waiting)
        await _rolled_out(f, staged, failed=True)
        crashed = await f.wait(waiting, "rejected", timeout=30)
        assert [v["policy"] for v in crashed["violations"]] == ["soak"]
        assert "failed in staging" in crashed["violations"][0]["message"]
        assert _running_in_prod(f) == A

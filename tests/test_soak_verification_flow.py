"""Issue 14, item 4, end to end: a promotion waits for its soak in the environment before and
is decided by promotion's timer when the soak ends, and a Prometheus check (a real Prometheus
server scraping an exporter the test controls) lets one promotion out of staging and refuses
the next.

git-writer, promotion and the cluster-watcher run as their own processes on the real broker
and a bare remote; the cluster is the API-compatible Kubernetes test server, with the
simulator playing Flux and the kubelet for staging, so every rollout fact is the watcher's.
For a crash during a soak, the cluster breaks the workload (a fault the simulator injects)
and the artifact, released to staging again, fails there."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ferry_testing import BrokerNamespace, EventTap, git, show, wait_until
from ferry_testing.prometheus import Prometheus, prometheus
from ferry_testing.releases import ReleaseApi, accepted_build
from ferry_testing.system import release_system

pytestmark = [pytest.mark.amqp, pytest.mark.slow, pytest.mark.timeout(300)]

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
ROLES = {"jane": ["developer", "releaser:prod"], "root": ["admin"]}
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


async def _staged(f: ReleaseApi, artifact_id: str, ends: str = "rolled-out") -> dict[str, Any]:
    """Release ``artifact_id`` to staging; the release once the cluster says ``ends``."""
    release_id = await f.request(environment="staging", intent="release", artifactId=artifact_id)
    found = await f.wait(release_id, "rolled-out", "failed", "rejected", timeout=60)
    assert found["status"] == ends, found
    return found


async def _soaking(f: ReleaseApi, release_id: str) -> dict[str, Any]:
    """The release once it waits for its soak (``dueAt`` set while it is ``requested``)."""

    async def found() -> Any:
        response = await f.client.get(f"/v1/releases/{release_id}", headers=f.auth("jane"))
        assert response.status_code == 200, response.text
        body = response.json()
        return body if body["dueAt"] or body["status"] != "requested" else None

    soaking: dict[str, Any] = await wait_until(found, timeout=20, what=f"{release_id} to soak")
    assert soaking["status"] == "requested", soaking
    return soaking


def _running_in_prod(f: ReleaseApi) -> str | None:
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
    async with release_system(
        broker_ns,
        event_tap,
        tmp_path,
        bare_remote,
        examples=EXAMPLES,
        environments=["staging"],
        roles=ROLES,
        env={
            "promotion": {
                "FERRY_PROMETHEUS_URL": prom.url,
                "FERRY_PROMETHEUS_TIMEOUT": "5",
                "FERRY_EXPIRY_CHECK_INTERVAL": "0.2",
            }
        },
    ) as system:
        f = system.api
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
            await f.store(accepted_build(EXAMPLES, artifact_id))

        # A rolls out in staging; its promotion to prod soaks 3 s, then the check passes
        await _staged(f, A)
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
        await _staged(f, B)
        refused = await f.wait(
            await f.request(environment="prod", intent="promote"), "rejected", timeout=30
        )
        [violation] = refused["violations"]
        assert violation["policy"] == "verification"
        assert "reached 0.5; it must stay at most 0.01" in violation["message"]
        assert _running_in_prod(f) == A

        # C crashes in staging during its soak: the waiting promotion is refused at once.
        # A soak long enough for the cluster to crash C meanwhile: B goes back to staging,
        # the cluster breaks payments there, and C, released there again, crash-loops.
        put = await f.client.put(
            f"/v1/policies/{f.service}",
            json={**POLICY, "promotionChain": {"environments": ["prod"], "soak": "10m"}},
            headers=f.auth("root"),
        )
        assert put.status_code == 202, put.text
        await f.tap.wait_for("ferry.policy.changed.v1", count=2, timeout=20)
        await _staged(f, C)
        await _staged(f, B)
        waiting = await f.request(environment="prod", intent="release", artifactId=C)
        await _soaking(f, waiting)
        system.fail("staging", "crashloop")
        await _staged(f, C, ends="failed")
        crashed = await f.wait(waiting, "rejected", timeout=30)
        assert [v["policy"] for v in crashed["violations"]] == ["soak"]
        assert "failed in staging" in crashed["violations"][0]["message"]
        assert _running_in_prod(f) == A

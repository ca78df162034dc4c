"""Issue 14, item 3, end to end: a crash-looping prod rollout is rolled back in git by
git-writer to the last release that rolled out successfully there, and the failure of that
rollback halts prod in halts.yaml.

git-writer, promotion and the cluster-watcher run as their own processes on the real broker
and a bare remote; the cluster is the API-compatible Kubernetes test server, with the
simulator playing Flux and the kubelet for prod, so every rollout fact is the watcher's: a
build whose manifests ask for ``crashloop`` crash-loops, and once the cluster breaks the
workload (a fault the simulator injects) the rollback crash-loops too."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from ferry_testing import BrokerNamespace, EventTap, git, log_subjects, show, wait_until
from ferry_testing.releases import ReleaseApi, accepted_build
from ferry_testing.system import release_system

pytestmark = [pytest.mark.amqp, pytest.mark.slow, pytest.mark.timeout(300)]

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
ROLES = {"jane": ["developer", "releaser:prod"], "root": ["admin"]}
A = "master-aaaaaaaaaa-1111111111"
B = "master-bbbbbbbbbb-2222222222"
C = "master-cccccccccc-3333333333"


def _auto_rollbacks(f: ReleaseApi) -> list[Any]:
    return [
        e
        for e in f.tap.events
        if e.type == "ferry.release.requested.v1"
        and e.data["actor"]["subject"] == "ferry-auto-rollback"
    ]


async def _released(f: ReleaseApi, artifact_id: str, ends: str) -> dict[str, Any]:
    """Release ``artifact_id`` to prod; the release once the cluster says ``ends``."""
    release_id = await f.request(environment="prod", intent="release", artifactId=artifact_id)
    found = await f.wait(release_id, "rolled-out", "failed", "rejected", timeout=60)
    assert found["status"] == ends, found
    return found


async def test_a_crash_looping_prod_rollout_is_rolled_back_in_git_then_a_second_failure_halts(
    broker_ns: BrokerNamespace, event_tap: EventTap, bare_remote: Path, tmp_path: Path
) -> None:
    async with release_system(
        broker_ns,
        event_tap,
        tmp_path,
        bare_remote,
        examples=EXAMPLES,
        environments=["prod"],
        roles=ROLES,
    ) as system:
        f = system.api
        for artifact_id in (A, B, C):
            simulate = "" if artifact_id == A else "crashloop"
            await f.store(accepted_build(EXAMPLES, artifact_id, simulate=simulate))
        # A rolls out in prod; B crash-loops there before any auto-rollback policy: it never
        # rolled out, so it is no rollback target
        await _released(f, A, "rolled-out")
        await _released(f, B, "failed")

        bad = await f.client.put(
            f"/v1/policies/{f.service}",
            json={"autoRollback": [{"environment": "Prod!"}]},
            headers=f.auth("root"),
        )
        assert bad.status_code == 422, bad.text
        assert "autoRollback[0].environment" in bad.text
        put = await f.client.put(
            f"/v1/policies/{f.service}",
            json={"autoRollback": [{"environment": "prod"}]},
            headers=f.auth("root"),
        )
        assert put.status_code == 202, put.text
        await f.tap.wait_one("ferry.policy.changed.v1", timeout=20)

        # from now on the cluster breaks payments in prod whatever runs; C crash-loops
        system.fail("prod", "crashloop")
        crashing = await _released(f, C, "failed")
        failed = await f.tap.wait_one(
            "ferry.rollout.failed.v1",
            lambda e: e.data["releaseId"] == crashing["releaseId"],
            timeout=60,
        )
        await f.ns.publish(failed)  # two watchers report the same failure under the same id

        asked = await f.tap.wait_one(
            "ferry.release.requested.v1",
            lambda e: e.data["actor"]["subject"] == "ferry-auto-rollback",
            timeout=30,
        )
        assert (asked.data["intent"], asked.data["artifactId"]) == ("rollback", A)
        assert (
            f"{C} (release {crashing['releaseId']}) failed to roll out in prod"
            in (asked.data["reason"])
        )
        back = await f.wait(asked.data["releaseId"], "committed", "rejected", "failed", timeout=30)
        assert back["status"] in ("committed", "failed"), back
        assert back["artifactId"] == A
        [path] = [
            p
            for p in git("ls-tree", "-r", "--name-only", "main", cwd=f.remote).split()
            if p.startswith("environments/prod/") and p.endswith(f"/{f.service}/artifact.json")
        ]
        assert json.loads(show(f.remote, path))["id"] == A
        trailers = git("log", "-1", "--format=%(trailers:only,unfold)", "main", cwd=f.remote)
        assert "Ferry-Intent: rollback" in trailers
        assert "Ferry-Actor: ferry-auto-rollback" in trailers
        detail = (
            await f.client.get(f"/v1/releases/{crashing['releaseId']}", headers=f.auth("jane"))
        ).json()
        assert detail["status"] == "failed"
        assert any(
            f"auto-rollback to {A} requested" in line["detail"] for line in detail["timeline"]
        ), detail["timeline"]

        # the rollback's own rollout crash-loops too: prod is halted, nothing more rolled back
        changed = await f.tap.wait_one(
            "ferry.halt.changed.v1", lambda e: e.data["environment"] == "prod", timeout=60
        )
        assert changed.data["halted"] is True
        assert (await f.wait(back["releaseId"], "failed", timeout=30))["artifactId"] == A
        assert log_subjects(f.remote)[0] == "[halts] halt prod by ferry-auto-rollback"
        [entry] = yaml.safe_load(show(f.remote, "halts.yaml"))["halts"]
        assert entry["by"] == "ferry-auto-rollback"
        assert "the auto-rollback of" in entry["reason"]
        assert "nothing more is rolled back" in entry["reason"]

        async def halts() -> Any:
            response = await f.client.get("/v1/halts", headers=f.auth("jane"))
            assert response.status_code == 200, response.text
            return response.json()["halts"]

        await wait_until(halts, timeout=20, what="promotion to list the halt")
        refused = await f.wait(
            await f.request(environment="prod", intent="release", artifactId=C), "rejected"
        )
        assert [v["policy"] for v in refused["violations"]] == ["halted"]
        assert len(_auto_rollbacks(f)) == 1

"""Issue 14, item 3, end to end: a crash-looping prod rollout (reported on the real broker as
the cluster-watcher reports it) is rolled back in git by git-writer to the last release that
rolled out successfully there, and the failure of that rollback halts prod in halts.yaml."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from ferry_events import CloudEvent, RolloutFailed, RolloutSucceeded, Workload
from ferry_testing import BrokerNamespace, EventTap, git, log_subjects, show

from .test_promotion_flow import Flow, artifact, flow
from .test_safety_flow import _until

pytestmark = pytest.mark.amqp

A = "master-aaaaaaaaaa-1111111111"
B = "master-bbbbbbbbbb-2222222222"
C = "master-cccccccccc-3333333333"


def _fact(f: Flow, kind: type[RolloutFailed] | type[RolloutSucceeded], done: dict[str, Any]) -> Any:
    """What the cluster-watcher reports about the rollout of the release ``done``."""
    extra: dict[str, Any] = {}
    if kind is RolloutFailed:
        extra = {"reason": "CrashLoopBackOff", "message": "payments keeps crashing"}
    return kind(
        cluster="local",
        environment=done["environment"],
        namespace=f.service,
        service=f.service,
        artifact_id=done["artifactId"],
        release_id=done["releaseId"],
        workload=Workload(kind="Deployment", name=f.service, uid="u1"),
        observed_at=datetime.now(UTC),
        **extra,
    )


def _auto_rollbacks(f: Flow) -> list[Any]:
    return [
        e
        for e in f.tap.events
        if e.type == "ferry.release.requested.v1"
        and e.data["actor"]["subject"] == "ferry-auto-rollback"
    ]


async def test_a_crash_looping_prod_rollout_is_rolled_back_in_git_then_a_second_failure_halts(
    broker_ns: BrokerNamespace, event_tap: EventTap, bare_remote: Path, tmp_path: Path
) -> None:
    async with flow(broker_ns, event_tap, bare_remote, tmp_path) as f:
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
        for artifact_id in (A, B, C):
            await f.store(artifact(artifact_id))

        # A rolled out in prod; B was released but never reported; C crash-loops
        good = await f.committed(environment="prod", intent="release", artifactId=A)
        await f.ns.publish(_fact(f, RolloutSucceeded, good), source="ferry/cluster-watcher")
        await f.wait(good["releaseId"], "rolled-out")
        await f.committed(environment="prod", intent="release", artifactId=B)
        crashing = await f.committed(environment="prod", intent="release", artifactId=C)
        failed = CloudEvent.new(_fact(f, RolloutFailed, crashing), source="ferry/cluster-watcher")
        await f.ns.publish(failed)
        await f.ns.publish(failed)  # two watchers report the same failure under the same id

        asked = await f.tap.wait_one(
            "ferry.release.requested.v1",
            lambda e: e.data["actor"]["subject"] == "ferry-auto-rollback",
            timeout=20,
        )
        assert (asked.data["intent"], asked.data["artifactId"]) == ("rollback", A)
        assert (
            f"{C} (release {crashing['releaseId']}) failed to roll out in prod"
            in (asked.data["reason"])
        )
        back = await f.wait(asked.data["releaseId"], "committed", "rejected", timeout=30)
        assert back["status"] == "committed", back
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
        await f.ns.publish(_fact(f, RolloutFailed, back), source="ferry/cluster-watcher")
        changed = await f.tap.wait_one(
            "ferry.halt.changed.v1", lambda e: e.data["environment"] == "prod", timeout=20
        )
        assert changed.data["halted"] is True
        assert log_subjects(f.remote)[0] == "[halts] halt prod by ferry-auto-rollback"
        [entry] = yaml.safe_load(show(f.remote, "halts.yaml"))["halts"]
        assert entry["by"] == "ferry-auto-rollback"
        assert "the auto-rollback of" in entry["reason"]
        assert "nothing more is rolled back" in entry["reason"]
        await _until(f, "/v1/halts", lambda b: b["halts"])
        refused = await f.wait(
            await f.request(environment="prod", intent="release", artifactId=C), "rejected"
        )
        assert [v["policy"] for v in refused["violations"]] == ["halted"]
        assert len(_auto_rollbacks(f)) == 1

"""Issue 14, items 1 and 2 (with ``rejectOnFailedRollout``), end to end: the API (or a failed
rollout) asks, promotion's outbox publishes on the real broker, git-writer commits
``halts.yaml`` or ``rejected/<service>.yaml`` to a real bare remote, and promotion's next
decisions read it from there."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from ferry_events import RolloutFailed, Workload
from ferry_testing import BrokerNamespace, EventTap, log_subjects, show

from .test_cli_release_e2e import ferry
from .test_promotion_flow import Flow, artifact, flow

pytestmark = pytest.mark.amqp

A = "master-aaaaaaaaaa-1111111111"
B = "master-bbbbbbbbbb-2222222222"


async def _until(f: Flow, path: str, found: Any, timeout: float = 20) -> dict[str, Any]:
    """GET ``path`` until ``found(json)`` holds (a fresh read: promotion has fetched it)."""
    async with asyncio.timeout(timeout):
        while True:
            response = await f.client.get(path, headers=f.auth("jane"))
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            if found(body):
                return body
            await asyncio.sleep(0.1)


async def test_a_halt_refuses_a_release_lets_a_rollback_through_then_a_resume(
    broker_ns: BrokerNamespace, event_tap: EventTap, bare_remote: Path, tmp_path: Path
) -> None:
    async with flow(broker_ns, event_tap, bare_remote, tmp_path) as f:
        await f.store(artifact(A))
        await f.store(artifact(B))
        await f.committed(environment="prod", intent="release", artifactId=A)
        await f.committed(environment="prod", intent="release", artifactId=B)

        # bad input: a specific problem+json each, and nothing is asked of git-writer
        for who, body, status, says in (
            ("jane", {"environment": "prod", "reason": "x"}, 403, "needs the role admin"),
            ("root", {"environment": "qa", "reason": "x"}, 422, "unknown environment 'qa'"),
            ("root", {"environment": "prod", "reason": " "}, 422, "needs a reason"),
            ("root", {"environment": "Prod!", "reason": "x"}, 422, "environment"),
        ):
            bad = await f.client.post("/v1/halts", json=body, headers=f.auth(who))
            assert bad.status_code == status, bad.text
            assert bad.headers["content-type"].startswith("application/problem+json")
            assert says in bad.text

        halted = await f.client.post(
            "/v1/halts",
            json={"environment": "prod", "reason": "incident 4711"},
            headers=f.auth("root"),
        )
        assert halted.status_code == 202, halted.text
        request_id = halted.json()["requestId"]
        changed = await f.tap.wait_one(
            "ferry.halt.changed.v1", lambda e: e.data["requestId"] == request_id, timeout=20
        )
        assert changed.data["halted"] is True
        assert log_subjects(f.remote)[0] == "[halts] halt prod by root@example.com"
        [entry] = yaml.safe_load(show(f.remote, "halts.yaml"))["halts"]
        assert (entry["environment"], entry["reason"], entry["by"]) == (
            "prod",
            "incident 4711",
            "root@example.com",
        )
        listed = await _until(f, "/v1/halts", lambda b: b["halts"])
        assert listed["halts"][0]["reason"] == "incident 4711"
        landscape = await _until(f, "/v1/services", lambda b: b["halts"])
        assert landscape["halts"][0]["environment"] == "prod"

        refused = await f.wait(
            await f.request(environment="prod", intent="release", artifactId=A), "rejected"
        )
        [violation] = refused["violations"]
        assert violation["policy"] == "halted"
        assert "incident 4711" in violation["message"]
        # staging is not halted
        await f.committed(environment="staging", intent="release", artifactId=A)
        back = await f.committed(environment="prod", intent="rollback")
        assert back["artifactId"] == A

        resumed = await f.client.delete("/v1/halts/prod", headers=f.auth("root"))
        assert resumed.status_code == 202, resumed.text
        await f.tap.wait_one(
            "ferry.halt.changed.v1",
            lambda e: e.data["requestId"] == resumed.json()["requestId"],
            timeout=20,
        )
        assert yaml.safe_load(show(f.remote, "halts.yaml"))["halts"] == []
        await _until(f, "/v1/halts", lambda b: b["halts"] == [])
        again = await f.committed(environment="prod", intent="release", artifactId=B)
        assert again["artifactId"] == B


async def test_a_marked_artifact_is_refused_everywhere_until_the_mark_is_lifted(
    broker_ns: BrokerNamespace, event_tap: EventTap, bare_remote: Path, tmp_path: Path
) -> None:
    async with flow(broker_ns, event_tap, bare_remote, tmp_path) as f:
        await f.store(artifact(A))
        await f.committed(environment="dev", intent="release", artifactId=A)
        path = f"/v1/services/{f.service}/artifacts/{A}/reject"

        empty = await f.client.post(path, json={"reason": ""}, headers=f.auth("jane"))
        assert empty.status_code == 422, empty.text
        unknown = await f.client.post(
            f"/v1/services/{f.service}/artifacts/master-nope/reject",
            json={"reason": "bad"},
            headers=f.auth("jane"),
        )
        assert unknown.status_code == 404, unknown.text

        marked = await f.client.post(
            path, json={"reason": "corrupts the ledger"}, headers=f.auth("jane")
        )
        assert marked.status_code == 202, marked.text
        await f.tap.wait_one(
            "ferry.artifact.mark.changed.v1",
            lambda e: e.data["requestId"] == marked.json()["requestId"],
            timeout=20,
        )
        [entry] = yaml.safe_load(show(f.remote, f"rejected/{f.service}.yaml"))["rejected"]
        assert (entry["artifactId"], entry["reason"]) == (A, "corrupts the ledger")
        listing = await _until(
            f,
            f"/v1/services/{f.service}/artifacts",
            lambda b: any(a.get("rejected") for a in b["artifacts"]),
        )
        assert listing["artifacts"][0]["rejected"]["reason"] == "corrupts the ledger"
        status = (await f.client.get(f"/v1/services/{f.service}", headers=f.auth("jane"))).json()
        assert status["environments"]["dev"]["rejected"]["by"] == "jane@example.com"

        for body in (
            {"environment": "staging", "intent": "promote"},
            {"environment": "prod", "intent": "release", "artifactId": A},
        ):
            refused = await f.wait(await f.request(**body), "rejected")
            [violation] = refused["violations"]
            assert violation["policy"] == "rejected-artifact", refused
            assert "corrupts the ledger" in violation["message"]

        lifted = await f.client.delete(path, headers=f.auth("jane"))
        assert lifted.status_code == 202, lifted.text
        await f.tap.wait_one(
            "ferry.artifact.mark.changed.v1",
            lambda e: e.data["requestId"] == lifted.json()["requestId"],
            timeout=20,
        )
        await _until(
            f,
            f"/v1/services/{f.service}/artifacts",
            lambda b: not any(a.get("rejected") for a in b["artifacts"]),
        )
        promoted = await f.committed(environment="staging", intent="promote")
        assert promoted["artifactId"] == A


async def test_the_cli_halts_resumes_and_marks_through_the_services(
    broker_ns: BrokerNamespace, event_tap: EventTap, bare_remote: Path, tmp_path: Path
) -> None:
    async with flow(broker_ns, event_tap, bare_remote, tmp_path) as f:
        await f.store(artifact(A))
        server = str(f.client.base_url)

        def env(who: str) -> dict[str, str]:
            return {"FERRY_SERVER": server, "FERRY_TOKEN": f.tokens[who]}

        code, out, err = await ferry("halt", "prod", "--reason", "incident 4711", env=env("jane"))
        assert code == 4, (out, err)
        assert "needs the role admin" in out + err
        code, out, err = await ferry("halt", "prod", "--reason", " ", env=env("root"))
        assert code == 1, (out, err)
        assert "reason" in out + err
        code, out, err = await ferry("halt", "prod", "--reason", "incident 4711", env=env("root"))
        assert code == 0, (out, err)
        assert "git-writer commits it to halts.yaml" in out
        await f.tap.wait_one(
            "ferry.halt.changed.v1", lambda e: e.data["halted"] is True, timeout=20
        )
        await _until(f, "/v1/halts", lambda b: b["halts"])
        code, out, err = await ferry("halts", env=env("jane"))
        assert code == 0, (out, err)
        assert "incident 4711" in out
        assert "root@example.com" in out
        code, out, err = await ferry("status", env=env("jane"))
        assert "prod halted by root@example.com" in out, out

        code, out, err = await ferry(
            "artifact", "reject", f.service, A, "--reason", "corrupts the ledger", env=env("jane")
        )
        assert code == 0, (out, err)
        await f.tap.wait_one("ferry.artifact.mark.changed.v1", timeout=20)
        await _until(
            f,
            f"/v1/services/{f.service}/artifacts",
            lambda b: any(a.get("rejected") for a in b["artifacts"]),
        )
        code, out, err = await ferry("artifacts", f.service, env=env("jane"))
        assert code == 0, (out, err)
        assert "marked bad by jane@example.com: corrupts the ledger" in out

        code, out, err = await ferry("resume", "prod", env=env("root"))
        assert code == 0, (out, err)
        await f.tap.wait_one(
            "ferry.halt.changed.v1", lambda e: e.data["halted"] is False, timeout=20
        )
        code, out, err = await ferry("artifact", "unreject", f.service, A, env=env("jane"))
        assert code == 0, (out, err)
        await _until(f, "/v1/halts", lambda b: b["halts"] == [])
        assert "halts:" in show(f.remote, "halts.yaml")


async def test_a_failed_rollout_marks_the_artifact_under_reject_on_failed_rollout(
    broker_ns: BrokerNamespace, event_tap: EventTap, bare_remote: Path, tmp_path: Path
) -> None:
    """Issue 14, item 2: with ``rejectOnFailedRollout: true``, the cluster's report of a failed
    rollout makes promotion ask git-writer for the mark, and a later promotion is refused."""
    async with flow(broker_ns, event_tap, bare_remote, tmp_path) as f:
        put = await f.client.put(
            f"/v1/policies/{f.service}",
            json={"rejectOnFailedRollout": True},
            headers=f.auth("root"),
        )
        assert put.status_code == 202, put.text
        await f.tap.wait_one("ferry.policy.changed.v1", timeout=20)
        bad = await f.client.put(
            f"/v1/policies/{f.service}",
            json={"rejectOnFailedRollout": "yes"},
            headers=f.auth("root"),
        )
        assert bad.status_code == 422, bad.text
        assert "rejectOnFailedRollout" in bad.text

        await f.store(artifact(A))
        dev = await f.committed(environment="dev", intent="release", artifactId=A)
        failed = RolloutFailed(
            cluster="local",
            environment="dev",
            namespace=f.service,
            service=f.service,
            artifact_id=A,
            release_id=dev["releaseId"],
            workload=Workload(kind="Deployment", name=f.service, uid="u1"),
            observed_at=datetime.now(UTC),
            reason="CrashLoopBackOff",
            message="back-off restarting failed container",
        )
        await f.ns.publish(failed, source="ferry/cluster-watcher")
        changed = await f.tap.wait_one(
            "ferry.artifact.mark.changed.v1", lambda e: e.data["artifactId"] == A, timeout=20
        )
        assert changed.data["rejected"] is True
        assert changed.data["actor"]["subject"] == "ferry-reject-on-failed-rollout"
        [entry] = yaml.safe_load(show(f.remote, f"rejected/{f.service}.yaml"))["rejected"]
        assert entry["artifactId"] == A
        assert "rollout failed in dev: CrashLoopBackOff" in entry["reason"]
        assert log_subjects(f.remote)[0] == (
            f"[rejected/{f.service}] reject {A} by ferry-reject-on-failed-rollout"
        )

        listing = await _until(
            f,
            f"/v1/services/{f.service}/artifacts",
            lambda b: any(a.get("rejected") for a in b["artifacts"]),
        )
        assert "rejectOnFailedRollout" in listing["artifacts"][0]["rejected"]["reason"]
        refused = await f.wait(await f.request(environment="staging", intent="promote"), "rejected")
        [violation] = refused["violations"]
        assert violation["policy"] == "rejected-artifact", refused
        assert "rollout failed in dev" in violation["message"]
        # the watcher's report came once: the mark was asked for once
        asked = [
            e
            for e in f.tap.events
            if e.type == "ferry.artifact.mark.change.requested.v1" and e.data["artifactId"] == A
        ]
        assert len(asked) == 1

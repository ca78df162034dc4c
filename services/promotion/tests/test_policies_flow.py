"""Each policy allowing and denying, decided by the running service against the config repo."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from ferry_events import PolicyChanged, RolloutFailed, RolloutStarted, RolloutSucceeded, Workload

pytestmark = pytest.mark.amqp


async def _release(h, who: str, environment: str, artifact: str, **body) -> str:
    """``who`` asks to release ``artifact`` of payments to ``environment``; the release id."""
    return await h.request(
        who,
        service="payments",
        environment=environment,
        intent="release",
        artifactId=artifact,
        **body,
    )


async def _commit(h, release_id: str) -> None:
    found = await h.wait_status(release_id, "approved", "rejected", "awaiting-approval")
    assert found["status"] == "approved", found
    await h.commit_approved(release_id)
    await h.wait_status(release_id, "committed")


def _rollout(kind, env: str, artifact: str, release_id: str = "", minutes: int = 0, **extra):
    return kind(
        cluster="local",
        environment=env,
        namespace="payments",
        service="payments",
        artifact_id=artifact,
        release_id=release_id,
        workload=Workload(kind="Deployment", name="payments", uid="u-1"),
        observed_at=datetime.now(UTC) + timedelta(minutes=minutes),
        **extra,
    )


async def test_branch_restriction_allows_and_denies(h) -> None:
    h.config.write(
        "policies/payments.yaml",
        "branchRestrictions:\n  - {environment: staging, branchRegex: 'master|release/.*'}\n",
    )
    h.config.store("payments", "feature-1", branch="feature/x")
    h.config.store("payments", "release-1", branch="release/1.0")
    denied = await _release(h, "alice", "staging", "feature-1")
    found = await h.wait_status(denied, "rejected")
    assert found["violations"][0]["policy"] == "branch-restriction"
    assert "feature/x" in found["violations"][0]["message"]
    allowed = await _release(h, "alice", "staging", "release-1")
    assert (await h.wait_status(allowed, "approved", "rejected"))["status"] == "approved"


async def test_promotion_chain_waits_for_the_rollout_result(h) -> None:
    h.config.write("policies/payments.yaml", "promotionChain: {environments: [staging]}\n")
    h.config.store("payments", "master-1")
    h.config.store("payments", "master-2")
    # never released to dev: refused at once
    never = await _release(h, "alice", "staging", "master-1")
    found = await h.wait_status(never, "rejected")
    assert found["violations"][0]["policy"] == "promotion-chain"

    dev = await _release(h, "alice", "dev", "master-1")
    await _commit(h, dev)
    promote = await h.request("alice", service="payments", environment="staging", intent="promote")
    async with asyncio.timeout(15):  # decided: it waits for the chain (waitingSince is set)
        while not (waiting := await h.release(promote)).get("waitingSince"):
            await asyncio.sleep(0.05)
    assert waiting["status"] == "requested"
    assert "waiting for master-1 to roll out in dev" in waiting["timeline"][-1]["detail"]
    # out of order: succeeded is observed after started but arrives first
    await h.ns.publish(_rollout(RolloutSucceeded, "dev", "master-1", dev, minutes=1))
    await h.ns.publish(_rollout(RolloutStarted, "dev", "master-1", dev))
    found = await h.wait_status(promote, "approved", "rejected")
    assert found["status"] == "approved", found
    assert (await h.release(dev))["status"] == "rolled-out"
    service = (await h.client.get("/v1/services/payments", headers=h.h("vic"))).json()
    assert service["environments"]["dev"]["rollout"] == "succeeded"

    # a failed rollout in dev refuses the chain with its reason
    dev2 = await _release(h, "alice", "dev", "master-2")
    await _commit(h, dev2)
    await h.ns.publish(
        _rollout(RolloutFailed, "dev", "master-2", dev2, reason="CrashLoopBackOff", message="boom")
    )
    await h.wait_status(dev2, "failed")
    refused = await h.request("alice", service="payments", environment="staging", intent="promote")
    found = await h.wait_status(refused, "rejected")
    assert "CrashLoopBackOff" in found["violations"][0]["message"]


async def test_freeze_window_and_admin_override(h) -> None:
    now = datetime.now(UTC)
    h.config.write(
        "policies/payments.yaml",
        yaml.safe_dump(
            {
                "freezeWindows": [
                    {
                        "environment": "prod",
                        "timezone": "UTC",
                        "start": (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S"),
                        "end": (now + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S"),
                        "reason": "black friday",
                    }
                ]
            }
        ),
    )
    h.config.store("payments", "master-1")
    h.config.store("payments", "master-2")
    frozen = await _release(h, "bob", "prod", "master-1")
    found = await h.wait_status(frozen, "rejected")
    assert found["violations"][0]["policy"] == "freeze-window"
    assert "black friday" in found["violations"][0]["message"]
    # a non-admin cannot ask for an override
    response = await h.client.post(
        "/v1/releases",
        json={
            "service": "payments",
            "environment": "prod",
            "intent": "release",
            "artifactId": "master-1",
            "overrideFreeze": True,
            "reason": "please",
        },
        headers=h.h("bob"),
    )
    assert response.status_code == 403
    assert "admin" in response.json()["detail"]
    override = await _release(h, "carol", "prod", "master-1", overrideFreeze=True, reason="hotfix")
    found = await h.wait_status(override, "approved", "rejected")
    assert found["status"] == "approved", found
    assert any("freeze overridden" in t["detail"] for t in found["timeline"])
    # the clock moves past the window: no freeze
    h.clock.append(now + timedelta(hours=2))
    later = await _release(h, "bob", "prod", "master-2")
    assert (await h.wait_status(later, "approved", "rejected"))["status"] == "approved"


async def test_approvals_by_others_requester_refused_and_expiry(h) -> None:
    h.config.write(
        "policies/payments.yaml",
        "approvals:\n  - {environment: prod, required: 1, excludeAuthor: true, expiresAfter: 1s}\n",
    )
    h.config.store("payments", "master-1", author="dave@example.com")
    h.config.store("payments", "master-2", author="dave@example.com")
    release_id = await _release(h, "bob", "prod", "master-1")
    found = await h.wait_status(release_id, "awaiting-approval")
    assert found["approvals"]["required"] == 1
    asked = await h.tap.wait_one("ferry.approval.requested.v1")
    assert asked.data["excludeAuthor"] is True
    # wait for it to expire
    expired = await h.wait_status(release_id, "rejected")
    assert "expired" in expired["violations"][0]["message"]
    denied = await h.tap.wait_one("ferry.approval.denied.v1")
    assert denied.data["expired"] is True
    late = await h.client.post(f"/v1/releases/{release_id}/approve", json={}, headers=h.h("carol"))
    assert late.status_code == 409
    assert "expired" in late.json()["detail"]


async def test_approval_by_someone_else_completes_the_release(h) -> None:
    h.config.write(
        "policies/payments.yaml",
        "approvals:\n  - {environment: prod, required: 1, excludeAuthor: true}\n",
    )
    h.config.store("payments", "master-1", author="dave@example.com")
    release_id = await _release(h, "bob", "prod", "master-1")
    await h.wait_status(release_id, "awaiting-approval")
    own = await h.client.post(f"/v1/releases/{release_id}/approve", json={}, headers=h.h("bob"))
    assert own.status_code == 403
    assert "requester" in own.json()["detail"]
    author = await h.client.post(f"/v1/releases/{release_id}/approve", headers=h.h("dave"))
    assert author.status_code == 403
    assert "wrote the change" in author.json()["detail"]
    developer = await h.client.post(f"/v1/releases/{release_id}/approve", headers=h.h("alice"))
    assert developer.status_code == 403  # prod approvals need releaser:prod or admin
    ok = await h.client.post(
        f"/v1/releases/{release_id}/approve", json={"comment": "lgtm"}, headers=h.h("carol")
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["approvals"]["granted"][0]["subject"] == "carol"
    found = await h.wait_status(release_id, "approved")
    assert found["approvals"]["granted"][0]["comment"] == "lgtm"
    granted = await h.tap.wait_one("ferry.approval.granted.v1")
    assert granted.data["remaining"] == 0
    again = await h.client.post(f"/v1/releases/{release_id}/approve", headers=h.h("carol"))
    assert again.status_code == 409


async def test_reject_settles_an_awaiting_release(h) -> None:
    h.config.write("policies/payments.yaml", "approvals:\n  - {environment: prod}\n")
    h.config.store("payments", "master-1")
    release_id = await _release(h, "bob", "prod", "master-1")
    await h.wait_status(release_id, "awaiting-approval")
    response = await h.client.post(
        f"/v1/releases/{release_id}/reject", json={"reason": "not today"}, headers=h.h("dave")
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "rejected"
    assert "not today" in response.json()["violations"][0]["message"]
    denied = await h.tap.wait_one("ferry.approval.denied.v1")
    assert denied.data["by"]["subject"] == "dave"
    await h.tap.wait_one("ferry.release.rejected.v1")


async def test_invalid_policy_file_in_git_refuses_releases_until_fixed(h) -> None:
    h.config.write(
        "policies/payments.yaml", "approvals:\n  - environment: prod\n    required: many\n"
    )
    h.config.store("payments", "master-1")
    release_id = await _release(h, "alice", "dev", "master-1")
    found = await h.wait_status(release_id, "rejected")
    assert found["violations"][0]["policy"] == "policy-invalid"
    assert "line 3" in found["violations"][0]["message"]
    response = await h.client.get("/v1/policies/payments", headers=h.h("vic"))
    assert response.status_code == 409
    sha = h.config.write("policies/payments.yaml", "approvals:\n  - environment: prod\n")
    await h.ns.publish(
        PolicyChanged(
            request_id="r", service="payments", policy={}, actor={"subject": "x"}, commit_sha=sha
        )
    )
    again = await _release(h, "alice", "dev", "master-1")
    assert (await h.wait_status(again, "approved", "rejected"))["status"] == "approved"


async def test_policy_api_put_get_delete(h) -> None:
    document = {
        "approvals": [{"environment": "prod", "required": 2, "expiresAfter": "2h"}],
        "branchRestrictions": [{"environment": "prod", "branchRegex": "master"}],
    }
    denied = await h.client.put("/v1/policies/payments", json=document, headers=h.h("alice"))
    assert denied.status_code == 403
    bad = await h.client.put(
        "/v1/policies/payments",
        json={"approvals": [{"environment": "qa", "required": 0}]},
        headers=h.h("carol"),
    )
    assert bad.status_code == 422
    fields = {e["field"] for e in bad.json()["errors"]}
    assert "approvals[0].required" in fields
    accepted = await h.client.put("/v1/policies/payments", json=document, headers=h.h("carol"))
    assert accepted.status_code == 202, accepted.text
    change = await h.tap.wait_one("ferry.policy.change.requested.v1")
    assert change.data["policy"]["approvals"][0]["expiresAfter"] == 7200
    assert change.data["actor"]["subject"] == "carol"
    assert (await h.client.get("/v1/policies/payments", headers=h.h("vic"))).status_code == 404
    h.config.write("policies/payments.yaml", yaml.safe_dump(change.data["policy"]))
    await h.service.reader.refresh(force=True)
    got = await h.client.get("/v1/policies/payments", headers=h.h("vic"))
    assert got.json()["branchRestrictions"][0]["branchRegex"] == "master"
    deleted = await h.client.delete("/v1/policies/payments", headers=h.h("carol"))
    assert deleted.status_code == 202
    removal = await h.tap.wait_for("ferry.policy.change.requested.v1", count=2)
    assert "policy" not in removal[1].data or removal[1].data["policy"] is None

"""What the release view, the request bodies and the logs say: unknown fields refused,
malformed JSON located, superseded releases marked, resolved promote values shown,
one log line per decision, and 404 for services Ferry has never seen."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from ferry_events import CloudEvent, ReleaseApproved, ReleaseFailed

pytestmark = pytest.mark.amqp

RELEASE = {"service": "payments", "environment": "dev", "intent": "release", "artifactId": "m-1"}


async def test_unknown_body_fields_are_refused_by_name(h) -> None:
    for typo in ({"bogus": 1}, {"overideFreeze": True}):
        response = await h.client.post(
            "/v1/releases", json={**RELEASE, **typo}, headers=h.h("alice")
        )
        assert response.status_code == 422, response.text
        [name] = typo
        assert name in [e["field"] for e in response.json()["errors"]], response.json()
    for route, body in (("approve", {"coment": "x"}), ("reject", {"reason": "x", "why": "y"})):
        response = await h.client.post(
            f"/v1/releases/nope/{route}", json=body, headers=h.h("carol")
        )
        assert response.status_code == 422, response.text
        assert list(body)[-1] in [e["field"] for e in response.json()["errors"]]
    assert len(h.tap.of_type("ferry.release.requested.v1")) == 0


async def test_malformed_json_names_the_body_and_the_position(h) -> None:
    response = await h.client.post(
        "/v1/releases",
        content=b'{"service": "payments",\n  nope}',
        headers={**h.h("alice"), "content-type": "application/json"},
    )
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error["field"] == "body"
    assert "line 2 column 3 (character 26)" in error["message"], error
    assert "double quotes" in error["message"], error


async def test_a_release_replaced_before_it_rolled_out_is_superseded(h) -> None:
    h.config.store("payments", "m-1")
    h.config.store("payments", "m-2")
    first = await h.request("alice", **RELEASE)
    await h.wait_status(first, "approved")
    await h.commit_approved(first)
    assert (await h.wait_status(first, "committed"))["supersededBy"] is None
    second = await h.request("alice", **{**RELEASE, "artifactId": "m-2"})
    await h.wait_status(second, "approved")
    await h.commit_approved(second)
    done = await h.wait_status(second, "committed")
    assert done["supersededBy"] is None
    old = await h.release(first)
    assert old["status"] == "committed"
    assert old["supersededBy"] == second
    assert old["timeline"][-1]["status"] == "committed"
    assert f"superseded by {second}" in old["timeline"][-1]["detail"]


async def test_a_promote_shows_its_resolved_namespace_and_source(h) -> None:
    h.config.write("policies/payments.yaml", "approvals:\n  - {environment: prod}\n")
    h.config.store("payments", "m-1")
    h.config.release("staging", "payments", "m-1")
    promote = await h.request("bob", service="payments", environment="prod", intent="promote")
    found = await h.wait_status(promote, "awaiting-approval", "rejected")
    assert found["status"] == "awaiting-approval", found
    assert found["namespace"] == "payments"
    assert found["fromEnvironment"] == "staging"
    assert found["promotedFrom"] == "staging"


async def test_every_decision_is_logged_once_with_its_release(h) -> None:
    h.config.write("policies/payments.yaml", "approvals:\n  - {environment: prod}\n")
    h.config.store("payments", "m-1")
    with capture_logs() as logs:
        approved = await h.request("alice", **RELEASE)
        await h.wait_status(approved, "approved")
        await h.commit_approved(approved)
        await h.wait_status(approved, "committed")
        rejected = await h.request("alice", **{**RELEASE, "artifactId": "nope-1"})
        await h.wait_status(rejected, "rejected")
        waiting = await h.request("bob", **{**RELEASE, "environment": "prod"})
        await h.wait_status(waiting, "awaiting-approval")
        failing = await h.request("alice", **{**RELEASE, "environment": "staging"})
        await h.wait_status(failing, "approved")
        event = await h.tap.wait_one(
            "ferry.release.approved.v1", lambda e: e.data["releaseId"] == failing
        )
        data = ReleaseApproved.model_validate(event.data)
        failed = ReleaseFailed(
            release_id=failing,
            service="payments",
            environment="staging",
            artifact_id="m-1",
            intent=data.intent,
            actor=data.actor,
            reason="push-rejected",
            message="the remote refused the push",
        )
        await h.ns.publish(CloudEvent.new(failed, source="ferry/git-writer", cause=event))
        await h.wait_status(failing, "failed")
    decisions = [e for e in logs if e["event"] == "release decision"]

    def statuses(release_id: str) -> list[str]:
        return [e["status"] for e in decisions if e["release_id"] == release_id]

    assert statuses(approved) == ["requested", "approved", "committed"]
    assert statuses(rejected) == ["requested", "rejected"]
    assert statuses(waiting) == ["requested", "awaiting-approval"]
    assert statuses(failing) == ["requested", "approved", "failed"]
    [refusal] = [e for e in decisions if e["release_id"] == rejected and e["status"] == "rejected"]
    assert "no artifact nope-1" in refusal["violations"][0]
    for entry in decisions:
        assert entry["subject"] == "payments"
        assert "service" not in entry
        assert entry["intent"] == "release"
        assert entry["environment"] in ("dev", "staging", "prod")
        assert "artifact_id" in entry


async def test_history_and_artifacts_of_an_unknown_service_are_not_found(h) -> None:
    h.config.store("payments", "m-1")
    for path in ("", "/history", "/artifacts"):
        missing = await h.client.get(f"/v1/services/nothing-here{path}", headers=h.h("vic"))
        assert missing.status_code == 404, (path, missing.text)
        assert missing.json()["detail"] == (
            "no service nothing-here: nothing of it is stored or released"
        )
    # a stored but never released service has an empty history, not a 404
    history = await h.client.get("/v1/services/payments/history", headers=h.h("vic"))
    assert history.status_code == 200
    assert history.json()["history"] == []

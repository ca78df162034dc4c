"""Release, promote, roll back and auto-release through the API, the real broker and a real
git remote (written here as git-writer writes it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ferry_events import (
    Actor,
    ArtifactStored,
    CloudEvent,
    Intent,
    ReleaseRequested,
)

pytestmark = pytest.mark.amqp


async def _released(h, env: str, artifact: str, who: str = "alice", **body) -> str:
    release_id = await h.request(who, service="payments", environment=env, **body)
    found = await h.wait_status(release_id, "approved", "rejected", "awaiting-approval")
    assert found["status"] == "approved", found
    await h.commit_approved(release_id)
    await h.wait_status(release_id, "committed")
    return release_id


async def test_release_by_artifact_id_is_approved_and_committed(h) -> None:
    h.config.store("payments", "master-1")
    release_id = await h.request(
        "alice", service="payments", environment="dev", intent="release", artifactId="master-1"
    )
    found = await h.wait_status(release_id, "approved", "rejected")
    assert found["status"] == "approved", found
    assert found["namespace"] == "payments"
    approved = await h.tap.wait_one("ferry.release.approved.v1")
    assert approved.correlationid == release_id
    assert approved.data["authorEmail"] == "ann@example.com"
    commit = await h.commit_approved(release_id)
    done = await h.wait_status(release_id, "committed")
    assert done["commitSha"] == commit.data["commitSha"]
    assert [t["status"] for t in done["timeline"]] == ["requested", "approved", "committed"]


@pytest.mark.parametrize(
    "database_url",
    ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
    indirect=True,
)
async def test_release_latest_of_branch_then_promote_then_rollbacks(h) -> None:
    now = datetime.now(UTC)
    h.config.store("payments", "master-1", end=now - timedelta(minutes=3))
    h.config.store("payments", "master-2", end=now - timedelta(minutes=2), namespace="money")
    h.config.store("payments", "feature-1", branch="feature", end=now - timedelta(minutes=1))
    first = await h.request(
        "alice", service="payments", environment="dev", intent="release", branch="master"
    )
    assert (await h.wait_status(first, "approved"))["artifactId"] == "master-2"
    await h.commit_approved(first)
    await h.wait_status(first, "committed")

    promote = await h.request("alice", service="payments", environment="staging", intent="promote")
    found = await h.wait_status(promote, "approved", "rejected")
    assert found["artifactId"] == "master-2"
    assert found["promotedFrom"] == "dev"
    assert found["namespace"] == "money"
    await h.commit_approved(promote)
    await h.wait_status(promote, "committed")

    await _released(h, "dev", "master-1", intent="release", artifactId="master-1")
    await _released(h, "dev", "feature-1", intent="release", artifactId="feature-1")

    back = await h.request("alice", service="payments", environment="dev", intent="rollback")
    found = await h.wait_status(back, "approved", "rejected")
    assert found["artifactId"] == "master-1", found
    await h.commit_approved(back)
    await h.wait_status(back, "committed")

    named = await h.request(
        "alice", service="payments", environment="dev", intent="rollback", artifactId="master-2"
    )
    assert (await h.wait_status(named, "approved", "rejected"))["artifactId"] == "master-2"

    history = (
        await h.client.get("/v1/services/payments/history?environment=dev", headers=h.h("vic"))
    ).json()
    assert [e["artifactId"] for e in history["history"]] == [
        "master-1",
        "feature-1",
        "master-1",
        "master-2",
    ]
    assert history["history"][0]["intent"] == "rollback"
    services = (await h.client.get("/v1/services", headers=h.h("vic"))).json()
    [payments] = services["services"]
    assert payments["environments"]["staging"]["artifactId"] == "master-2"
    assert payments["environments"]["dev"]["artifactId"] == "master-1"


async def test_release_of_what_already_runs_is_rejected_as_a_no_op(h) -> None:
    h.config.store("payments", "master-1")
    await _released(h, "dev", "master-1", intent="release", artifactId="master-1")
    again = await h.request(
        "alice", service="payments", environment="dev", intent="release", artifactId="master-1"
    )
    found = await h.wait_status(again, "rejected")
    assert found["violations"][0]["policy"] == "already-running"
    assert "already runs in dev" in found["violations"][0]["message"]


UNRESOLVABLE = [
    ({"intent": "release", "artifactId": "nope-1"}, "artifact", "no artifact nope-1"),
    ({"intent": "release", "branch": "nope"}, "artifact", "branch 'nope'"),
    ({"intent": "promote"}, "promote", "nothing of payments runs in dev"),
    ({"intent": "rollback"}, "rollback", "nothing has been released"),
]


async def test_unresolvable_requests_are_rejected_with_a_reason(h) -> None:
    h.config.store("payments", "master-1")
    for body, policy, words in UNRESOLVABLE:
        release_id = await h.request("alice", service="payments", environment="staging", **body)
        found = await h.wait_status(release_id, "rejected")
        assert found["violations"][0]["policy"] == policy
        assert words in found["violations"][0]["message"]
        rejected = await h.tap.wait_one(
            "ferry.release.rejected.v1", lambda e, r=release_id: e.data["releaseId"] == r
        )
        assert rejected.data["violations"][0]["policy"] == policy


async def test_auto_release_on_artifact_stored(h) -> None:
    h.config.write(
        "policies/payments.yaml", "autoRelease:\n  - {branch: master, environment: dev}\n"
    )
    spec = h.config.store("payments", "master-7")
    feature = h.config.store("payments", "feature-7", branch="feature")
    for artifact in (spec, feature):
        stored = ArtifactStored(
            artifact=artifact,
            environments=["dev", "staging", "prod"],
            commit_sha="c" * 40,
            path=f"builds/payments/{artifact.id}",
        )
        event = await h.ns.publish(stored, source="ferry/git-writer")
        await h.ns.publish(event)  # a duplicate delivery changes nothing
    requested = await h.tap.wait_one(
        "ferry.release.requested.v1", lambda e: e.data["intent"] == "auto-release"
    )
    approved = await h.tap.wait_one("ferry.release.approved.v1")
    assert approved.data["artifactId"] == "master-7"
    assert approved.data["intent"] == "auto-release"
    assert approved.causationid == requested.id
    # the actor is documented (docs/policies.md) as subject ferry-auto-release, shown as
    # "auto-release policy" in history and releasedBy
    assert approved.data["actor"]["subject"] == "ferry-auto-release"
    await h.commit_approved(approved.data["releaseId"])
    status = await h.wait_status(approved.data["releaseId"], "committed")
    assert status["actor"]["subject"] == "ferry-auto-release"
    history = (await h.client.get("/v1/services/payments/history", headers=h.h("vic"))).json()
    assert history["history"][0]["actor"] == "auto-release policy"
    service = (await h.client.get("/v1/services/payments", headers=h.h("vic"))).json()
    assert service["environments"]["dev"]["releasedBy"] == "auto-release policy"
    assert service["environments"]["dev"]["namespace"] == "payments"
    artifacts = (await h.client.get("/v1/services/payments/artifacts", headers=h.h("vic"))).json()
    assert {a["artifactId"] for a in artifacts["artifacts"]} == {"master-7", "feature-7"}
    assert len(h.tap.of_type("ferry.release.requested.v1")) == 1


async def test_requests_from_other_producers_and_duplicates(h) -> None:
    h.config.store("payments", "master-1")
    request = ReleaseRequested(
        release_id="from-elsewhere-1",
        service="payments",
        environment="dev",
        intent=Intent.RELEASE,
        artifact_id="master-1",
        actor=Actor(subject="alice", email="alice@example.com"),
        requested_at=datetime.now(UTC),
    )
    event = CloudEvent.new(request, source="ferry/other")
    await h.ns.publish(event)
    await h.ns.publish(event)
    found = await h.wait_status("from-elsewhere-1", "approved")
    assert found["actor"]["subject"] == "alice"
    # the same request to prod by someone without releaser:prod is refused
    to_prod = request.model_copy(update={"release_id": "from-elsewhere-2", "environment": "prod"})
    await h.ns.publish(CloudEvent.new(to_prod, source="ferry/other"))
    refused = await h.wait_status("from-elsewhere-2", "rejected")
    assert refused["violations"][0]["policy"] == "authorization"
    assert len(h.tap.of_type("ferry.release.approved.v1")) == 1


async def test_requests_for_one_service_and_env_are_decided_in_order(h) -> None:
    for n in range(5):
        h.config.store("payments", f"master-{n}")
    ids = [
        await h.request(
            "alice",
            service="payments",
            environment="dev",
            intent="release",
            artifactId=f"master-{n}",
        )
        for n in range(5)
    ]
    approved = await h.tap.wait_for("ferry.release.approved.v1", count=5)
    assert [e.data["releaseId"] for e in approved] == ids

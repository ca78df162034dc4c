"""``GET /v1/releases/preview`` through the API, the real broker and a real git remote: the diff,
the verdicts, and every refusal as specific problem+json; nothing recorded or published."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.amqp

PREVIEW = "/v1/releases/preview"


async def _preview(h, who: str, status: int = 200, **params: str) -> dict[str, Any]:
    response = await h.client.get(PREVIEW, params=params, headers=h.h(who))
    assert response.status_code == status, response.text
    if status != 200:
        assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    return body


DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: payments
spec:
  template:
    metadata:
      labels:
        app: payments
    spec:
      containers:
      - name: payments
        image: payments:{tag}
---
apiVersion: v1
kind: Service
metadata: {{name: payments}}
"""


def _store(h, artifact_id: str, **options: Any) -> None:
    """A stored build whose manifests git-writer can stamp (the fixture's are bare stubs)."""
    h.config.store("payments", artifact_id, **options)
    for env in ("dev", "staging", "prod"):
        h.config.write(
            f"builds/payments/{artifact_id}/{env}/deployment.yaml",
            DEPLOYMENT.format(tag=artifact_id),
        )


def _verdicts(preview: dict[str, Any]) -> dict[str, str]:
    return {c["policy"]: c["verdict"] for c in preview["checks"]}


async def test_a_release_preview_shows_the_stamped_diff_and_the_verdicts(h) -> None:
    _store(h, "master-1")
    _store(h, "master-2", author="zed@example.com")
    h.config.release("dev", "payments", "master-1")
    h.config.write(
        "policies/payments.yaml",
        "branchRestrictions:\n  - environment: dev\n    branchRegex: '^master$'\n",
    )

    found = await _preview(h, "alice", service="payments", environment="dev", artifactId="master-2")
    assert found["outcome"] == "approve", found
    assert found["commitFailure"] is None, found
    assert (found["artifactId"], found["runningArtifactId"]) == ("master-2", "master-1")
    assert found["namespace"] == "payments"
    folder = "environments/dev/payments/payments"
    assert [(f["path"], f["change"]) for f in found["files"]] == [
        (f"{folder}/artifact.json", "changed"),
        (f"{folder}/deployment.yaml", "added"),
    ]
    assert found["summary"] == {"added": 1, "removed": 0, "changed": 1}
    deployment = found["files"][1]["diff"]
    assert deployment.startswith(f"--- /dev/null\n+++ b/{folder}/deployment.yaml\n")
    # stamped exactly as git-writer stamps, with the id the request will get left open
    assert "+    ferry.dev/artifact-id: master-2\n" in deployment
    assert "+      annotations:\n+        ferry.dev/service: payments\n" in deployment  # pods too
    assert "+kind: Service\n" in deployment  # other documents as CI wrote them
    assert "+    ferry.dev/author: zed@example.com\n" in deployment
    assert f"+    ferry.dev/release-id: {found['releaseIdPlaceholder']}\n" in deployment
    assert '-  "id": "master-1",\n+  "id": "master-2",\n' in found["files"][0]["diff"]
    assert found["diff"] == found["files"][0]["diff"] + deployment
    verdicts = _verdicts(found)
    assert verdicts["branch-restriction"] == "passed"
    assert verdicts["authorization"] == "passed"
    assert verdicts["halted"] == "passed"
    assert "promotion-chain" not in verdicts  # no chain in this policy

    latest = await _preview(h, "alice", service="payments", environment="dev", branch="master")
    assert (latest["artifactId"], latest["diff"]) == ("master-2", found["diff"])

    # nothing was recorded, published or numbered: the next real request is the first
    assert h.tap.of_type("ferry.release.requested.v1") == []
    release_id = await h.request(
        "alice", service="payments", environment="dev", intent="release", artifactId="master-2"
    )
    decided = await h.wait_status(release_id, "approved", "rejected")
    assert decided["status"] == "approved"
    assert decided["timeline"][0]["detail"].endswith("(#1)")


async def test_promote_and_rollback_are_resolved_as_the_request_would_be(h) -> None:
    _store(h, "master-1")
    _store(h, "master-2")
    h.config.release("dev", "payments", "master-1")
    h.config.release("dev", "payments", "master-2")
    h.config.write(
        "policies/payments.yaml",
        "branchRestrictions:\n  - environment: prod\n    branchRegex: '^release/'\n"
        "promotionChain:\n  environments: [staging, prod]\n",
    )

    promote = await _preview(h, "bob", service="payments", environment="staging", intent="promote")
    assert (promote["artifactId"], promote["promotedFrom"]) == ("master-2", "dev")
    assert promote["runningArtifactId"] is None
    assert {f["change"] for f in promote["files"]} == {"added"}
    # the chain: master-2 runs in dev with no rollout result yet, so the request would wait
    assert promote["outcome"] == "wait-for-rollout", promote["violations"]
    assert _verdicts(promote)["promotion-chain"] == "waiting"

    prod = await _preview(h, "bob", service="payments", environment="prod", artifactId="master-1")
    assert prod["outcome"] == "reject"
    refused = {v["policy"] for v in prod["violations"]}
    assert refused == {"branch-restriction", "promotion-chain"}
    verdicts = _verdicts(prod)
    assert verdicts["branch-restriction"] == verdicts["promotion-chain"] == "failed"

    back = await _preview(h, "alice", service="payments", environment="dev", intent="rollback")
    assert back["artifactId"] == "master-1"
    assert back["outcome"] == "approve"
    assert "halted" not in _verdicts(back)  # a rollback goes through a halt

    same = await _preview(h, "alice", service="payments", environment="dev", artifactId="master-2")
    assert same["outcome"] == "reject"
    assert same["checks"] == [
        {
            "policy": "already-running",
            "verdict": "failed",
            "message": "master-2 already runs in dev; nothing to release",
        }
    ]

    nothing = await _preview(
        h, "alice", service="payments", environment="staging", intent="rollback"
    )
    assert nothing["outcome"] == "reject"
    assert nothing["violations"][0]["policy"] == "rollback"
    assert nothing["artifactId"] is None
    assert h.tap.of_type("ferry.release.requested.v1") == []


async def test_a_manifest_git_writer_would_refuse_is_named_before_the_release(h) -> None:
    h.config.store("payments", "stub-1")  # its deployment.yaml is a Deployment without a spec
    found = await _preview(h, "alice", service="payments", environment="dev", artifactId="stub-1")
    assert found["outcome"] == "approve"
    assert found["files"] == []
    assert found["commitFailure"] == {
        "reason": "invalid-manifest",
        "message": "builds/payments/stub-1/deployment.yaml: document 1: "
        "Deployment.spec is missing or not a mapping",
    }


REFUSALS = [
    ("alice", {"environment": "dev"}, 422, "artifactId: give artifactId=<id>, branch=<branch> or"),
    ("alice", {"environment": "dev", "artifactId": "m-1", "branch": "master"}, 422, "not both"),
    (
        "alice",
        {"environment": "dev", "artifactId": "master-1", "intent": "promote"},
        422,
        "not both",
    ),
    ("alice", {"environment": "qa", "artifactId": "master-1"}, 422, "unknown environment 'qa'"),
    ("alice", {"environment": "dev", "intent": "release"}, 422, "intent"),
    ("alice", {"environment": "dev", "artifactId": "../etc"}, 422, "artifactId"),
    (
        "alice",
        {"environment": "dev", "intent": "rollback", "fromEnvironment": "staging"},
        422,
        "only intent=promote takes fromEnvironment",
    ),
    (
        "alice",
        {"environment": "dev", "intent": "promote", "fromEnvironment": "dev"},
        422,
        "must differ from environment",
    ),
    ("alice", {"environment": "dev", "artifactId": "master-9"}, 404, "no artifact master-9"),
    (
        "alice",
        {"environment": "prod", "artifactId": "master-1"},
        403,
        "releasing to prod needs the role releaser:prod or admin; alice has developer",
    ),
    ("vic", {"environment": "dev", "artifactId": "master-1"}, 403, "vic has viewer"),
]


async def test_refusals_are_specific_problems(h) -> None:
    h.config.store("payments", "master-1")
    for who, params, status, says in REFUSALS:
        found = await _preview(h, who, status, service="payments", **params)
        assert says in found["detail"], (params, found)
    unknown = await _preview(
        h, "alice", 404, service="nobody", environment="dev", artifactId="master-1"
    )
    assert unknown["detail"].startswith("no service nobody")
    bad_name = await _preview(
        h, "alice", 422, service="Not A Name", environment="dev", artifactId="master-1"
    )
    assert bad_name["errors"][0]["field"] == "service"
    missing = await h.client.get(
        PREVIEW, params={"service": "payments", "environment": "dev", "artifactId": "master-1"}
    )
    assert missing.status_code == 401
    assert h.tap.of_type("ferry.release.requested.v1") == []

"""Issue 14, item 6, end to end: a preview (``GET /v1/releases/preview``) against the real broker,
git-writer and a real bare remote says what the release then does. The diff git-writer commits
to the config repo is the diff previewed (the release id, given only when the request is made,
filled in), and the decision is the verdict previewed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ferry_events import ArtifactAccepted, ArtifactSpec, CloudEvent
from ferry_promotion.domain.preview import folder_diff, unified_diff
from ferry_testing import BrokerNamespace, EventTap, git

from .test_promotion_flow import EXAMPLES, Flow, artifact, flow

pytestmark = pytest.mark.amqp

A = "master-aaaaaaaaaa-1111111111"
B = "master-bbbbbbbbbb-2222222222"
C = "feature-cccccccccc-3333333333"


def _changed(artifact_id: str, *, namespace: str) -> CloudEvent:
    """The example build with a new id, another namespace and five replicas."""
    raw = json.loads((EXAMPLES / "artifact.json").read_text())
    spec = ArtifactSpec.model_validate({**raw, "id": artifact_id, "namespace": namespace})
    manifests = {
        env.name: {
            file.name: file.read_text().replace("replicas: 3", "replicas: 5")
            for file in sorted(env.iterdir())
        }
        for env in sorted((EXAMPLES / "manifests").iterdir())
    }
    return CloudEvent.new(
        ArtifactAccepted(artifact=spec, manifests=manifests), source="ferry/artifact-ingest"
    )


def _tree(remote: Path, commit: str, directory: str) -> dict[str, bytes]:
    """The files below ``directory`` at ``commit`` of ``remote``, by repo path."""
    names = git("--git-dir", str(remote), "ls-tree", "-r", "--name-only", commit, "--", directory)
    return {
        name: git("--git-dir", str(remote), "show", f"{commit}:{name}").encode()
        for name in names.splitlines()
    }


async def _preview(f: Flow, who: str = "jane", **params: str) -> dict[str, Any]:
    response = await f.client.get(
        "/v1/releases/preview", params={"service": f.service, **params}, headers=f.auth(who)
    )
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def _violations(body: dict[str, Any]) -> list[tuple[str, str]]:
    return [(v["policy"], v["message"]) for v in body["violations"]]


async def test_the_preview_is_what_the_release_then_commits_and_decides(
    broker_ns: BrokerNamespace, event_tap: EventTap, bare_remote: Path, tmp_path: Path
) -> None:
    async with flow(broker_ns, event_tap, bare_remote, tmp_path) as f:
        await f.store(artifact(A))
        await f.store(_changed(B, namespace="money"))
        await f.store(artifact(C, branch="feature"))
        await f.committed(environment="prod", intent="release", artifactId=A)

        # B moves payments to namespace money in prod and changes its replicas
        seen = await _preview(f, environment="prod", artifactId=B)
        assert seen["outcome"] == "approve", seen
        assert seen["violations"] == []
        assert {c["verdict"] for c in seen["checks"]} == {"passed"}
        assert seen["commitFailure"] is None
        assert seen["summary"] == {"added": 3, "removed": 3, "changed": 0}
        head = git("--git-dir", str(bare_remote), "rev-parse", "main").strip()
        assert seen["configCommit"] == head

        done = await f.committed(environment="prod", intent="release", artifactId=B)
        commit = done["commitSha"]
        assert git("--git-dir", str(bare_remote), "rev-parse", f"{commit}^").strip() == head
        before = _tree(bare_remote, head, "environments/prod")
        after = _tree(bare_remote, commit, "environments/prod")
        committed = unified_diff(folder_diff(before, after))
        placeholder = seen["releaseIdPlaceholder"]
        assert placeholder in seen["diff"]
        assert seen["diff"].replace(placeholder, done["releaseId"]) == committed
        assert "+  replicas: 5\n" in committed
        # and git itself names the same files with the same kind of change
        status = git(
            "--git-dir",
            str(bare_remote),
            "diff",
            "--no-renames",
            "--name-status",
            head,
            commit,
            "--",
            "environments",
        )
        kinds = {"A": "added", "D": "removed", "M": "changed"}
        assert sorted(
            (p, kinds[k]) for k, p in (line.split("\t") for line in status.splitlines())
        ) == [(file["path"], file["change"]) for file in seen["files"]]

        # a rollback previewed, then done: back to A in namespace payments
        back = await _preview(f, environment="prod", intent="rollback")
        assert (back["artifactId"], back["outcome"]) == (A, "approve")
        rolled = await f.committed(environment="prod", intent="rollback")
        after_back = _tree(bare_remote, rolled["commitSha"], "environments/prod")
        assert back["diff"].replace(back["releaseIdPlaceholder"], rolled["releaseId"]) == (
            unified_diff(folder_diff(after, after_back))
        )

        # a refusal previewed is the refusal decided: a branch restriction and a halt
        policy = await f.client.put(
            f"/v1/policies/{f.service}",
            json={"branchRestrictions": [{"environment": "prod", "branchRegex": "master"}]},
            headers=f.auth("root"),
        )
        assert policy.status_code == 202, policy.text
        halted = await f.client.post(
            "/v1/halts",
            json={"environment": "prod", "reason": "incident 4711"},
            headers=f.auth("root"),
        )
        assert halted.status_code == 202, halted.text
        for accepted, event_type in ((policy, "policy"), (halted, "halt")):
            request_id = accepted.json()["requestId"]
            await f.tap.wait_one(
                f"ferry.{event_type}.changed.v1",
                lambda e, rid=request_id: e.data["requestId"] == rid,
                timeout=20,
            )
        refused = await _preview(f, environment="prod", artifactId=C)
        assert refused["outcome"] == "reject"
        verdicts = {c["policy"]: c["verdict"] for c in refused["checks"]}
        assert verdicts["halted"] == verdicts["branch-restriction"] == "failed"
        assert verdicts["authorization"] == "passed"
        release = await f.wait(
            await f.request(environment="prod", intent="release", artifactId=C), "rejected"
        )
        assert _violations(release) == _violations(refused)
        assert _tree(bare_remote, "main", "environments/prod") == after_back  # nothing released

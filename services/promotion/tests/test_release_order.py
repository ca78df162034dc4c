"""Order by construction: every request numbered per service and environment when recorded, the
number carried to git-writer, older open requests superseded when a newer one commits, and ten
releases requested back to back over two promotion replicas ending at the tenth."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import httpx
import pytest

from ferry_gitwriter.bootstrap import build as build_gitwriter
from ferry_gitwriter.settings import GitWriterSettings
from ferry_promotion.bootstrap import build
from ferry_testing import git, running

from .conftest import settings_for
from .test_slack_chatops import store

pytestmark = pytest.mark.amqp

APPROVALS = "approvals:\n  - {environment: prod, required: 1}\n"


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
async def test_a_waiting_request_overtaken_by_a_newer_one_is_superseded(h) -> None:
    h.config.write("policies/payments.yaml", APPROVALS)
    for artifact in ("master-1", "master-2"):
        h.config.store("payments", artifact)
    older = await h.request(
        "bob", service="payments", environment="prod", intent="release", artifactId="master-1"
    )
    await h.wait_status(older, "awaiting-approval")
    newer = await h.request(
        "bob", service="payments", environment="prod", intent="release", artifactId="master-2"
    )
    await h.wait_status(newer, "awaiting-approval")
    assert [(await h.release(r))["sequence"] for r in (older, newer)] == [1, 2]

    approved = await h.client.post(f"/v1/releases/{newer}/approve", headers=h.h("dave"))
    assert approved.status_code == 200, approved.text
    await h.wait_status(newer, "approved")
    event = await h.tap.wait_one(
        "ferry.release.approved.v1", lambda e: e.data["releaseId"] == newer
    )
    assert event.data["sequence"] == 2
    await h.ns.publish(await h.commit_approved(newer))
    await h.wait_status(newer, "committed")

    found = await h.wait_status(older, "rejected")
    assert found["supersededBy"] == newer
    [violation] = found["violations"]
    assert violation["policy"] == "superseded"
    assert newer in violation["message"]
    assert "#2" in violation["message"]
    rejected = await h.tap.wait_one(
        "ferry.release.rejected.v1", lambda e: e.data["releaseId"] == older
    )
    assert rejected.data["violations"][0]["policy"] == "superseded"
    # an approval of the superseded request comes too late: it would take prod back
    late = await h.client.post(f"/v1/releases/{older}/approve", headers=h.h("dave"))
    assert late.status_code == 409
    # a rollback is a new request, numbered after both
    rollback = await h.request(
        "bob", service="payments", environment="prod", intent="rollback", artifactId="master-1"
    )
    assert (await h.release(rollback))["sequence"] == 3


def _dev_artifact(remote: Path) -> str:
    """The artifact of the last commit to the dev environment."""
    return git(
        "--git-dir",
        str(remote),
        "log",
        "-1",
        "--format=%(trailers:key=Ferry-Artifact-Id,valueonly)",
        "main",
        "--",
        "environments/dev",
    ).strip()


async def test_ten_releases_back_to_back_over_two_replicas_end_at_the_tenth(
    broker_ns, event_tap, config, tokens, postgres_url, tmp_path
) -> None:
    artifacts = [f"master-{n}" for n in range(1, 11)]
    for artifact in artifacts:
        store(config, artifact)
    services = await asyncio.gather(
        *(
            build(
                settings_for(broker_ns, config.remote, tmp_path / name, tokens.path, postgres_url)
            )
            for name in ("a", "b")
        )
    )
    writer = build_gitwriter(
        GitWriterSettings(
            **broker_ns.settings(),
            data_dir=tmp_path / "git-writer",
            config_repo_url=str(config.remote),
        )
    )
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(running(writer))
        clients: list[httpx.AsyncClient] = []
        for service in services:
            await stack.enter_async_context(running(service.runtime))
            clients.append(
                await stack.enter_async_context(
                    httpx.AsyncClient(
                        base_url=f"http://127.0.0.1:{service.runtime.http_port}", timeout=10
                    )
                )
            )
        ids = []
        for n, artifact in enumerate(artifacts):
            response = await clients[n % 2].post(
                "/v1/releases",
                json={
                    "service": "payments",
                    "environment": "dev",
                    "intent": "release",
                    "artifactId": artifact,
                },
                headers=tokens.header("alice"),
            )
            assert response.status_code == 202, response.text
            ids.append(response.json()["releaseId"])

        async def settled() -> list[dict[str, Any]]:
            async with asyncio.timeout(60):
                while True:
                    found = []
                    for rid in ids:
                        got = await clients[0].get(
                            f"/v1/releases/{rid}", headers=tokens.header("vic")
                        )
                        found.append(got.json())
                    if all(r["status"] in ("committed", "failed", "rejected") for r in found):
                        return found
                    await asyncio.sleep(0.2)

        releases = await settled()
    assert [r["sequence"] for r in releases] == list(range(1, 11))
    assert releases[-1]["status"] == "committed"
    assert _dev_artifact(config.remote) == "master-10"
    for older in releases[:-1]:  # each committed before the tenth, or refused as older
        if older["status"] == "failed":
            assert any("superseded" in t["detail"] for t in older["timeline"]), older

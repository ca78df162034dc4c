"""Issue 14, item 7, end to end: GitHub deployment statuses in order.

promotion, git-writer, the cluster-watcher and the notifier run as their own processes on
the real broker, the config repo (a bare git remote) and PostgreSQL; the cluster is the
API-compatible Kubernetes test server, with the simulator playing Flux and the kubelet; the
notifier's ``github`` destination calls a loopback server that speaks GitHub's REST API.
A build whose ``application.url`` is a repository on that GitHub is released to dev: one
deployment of its commit, ``in_progress`` then ``success``. A build whose pods crash-loop
is released next: ``in_progress`` then ``failure``. The token is in no service's log.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from ferry_events import CloudEvent
from ferry_testing import BrokerNamespace, EventTap, ServiceProcess, make_bare_remote, wait_until
from ferry_testing.database import postgres_answers, postgres_database
from ferry_testing.github_api import Deployment, GitHubApi
from ferry_testing.releases import ReleaseApi, accepted_build
from ferry_testing.system import release_system

pytestmark = [
    pytest.mark.amqp,
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.timeout(300),
    pytest.mark.asyncio(loop_scope="module"),
]

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
REPOSITORY = "org/payments"
GOOD = "master-aaaaaaaaaa-1111111111"
BAD = "master-bbbbbbbbbb-2222222222"
SHA = {GOOD: "a" * 40, BAD: "b" * 40}
TOKEN = f"ghp_{secrets.token_hex(12)}"
DASHBOARD = "https://ferry.example.com"
ROUTES = """\
routes:
  - name: GitHub deployments
    match: {events: [release.committed, release.failed, "rollout.*"]}
    to: [github]
"""


@dataclass
class System:
    api: ReleaseApi
    github: GitHubApi
    processes: dict[str, ServiceProcess]

    def deployments(self, release_id: str) -> list[Deployment]:
        return [
            d
            for d in self.github.deployments(REPOSITORY)
            if d.body["payload"]["ferry"]["releaseId"] == release_id
        ]

    def states(self, release_id: str) -> list[list[str]]:
        return [[s["state"] for s in d.statuses] for d in self.deployments(release_id)]

    async def release(self, artifact_id: str, *, ends: str) -> dict[str, Any]:
        """Release ``artifact_id`` to dev; the release once its rollout has ended ``ends``,
        and once GitHub has been told so."""
        release_id = await self.api.request(
            environment="dev", intent="release", artifactId=artifact_id
        )
        done = await self.api.wait(release_id, "rolled-out", "failed", "rejected", timeout=60)
        assert done["status"] == ends, done
        last = "success" if ends == "rolled-out" else "failure"
        await wait_until(
            lambda: any(s[-1:] == [last] for s in self.states(release_id)),
            timeout=30,
            what=f"GitHub to hear {last} for {release_id}",
        )
        return done

    def assert_no_token_logged(self) -> None:
        for name, process in self.processes.items():
            assert process.logs(), f"{name} logged nothing"
            assert TOKEN not in process.logs(), f"{name} logged the GitHub token"
        lines = [json.loads(line) for line in self.processes["notifier"].logs().splitlines()]
        [starting] = [line for line in lines if line.get("event") == "starting"]
        assert starting["settings"]["github_token"] == "***"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def system(amqp_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[System]:
    """One system for every test of this module: its processes are the slow part."""
    if not postgres_answers():
        pytest.fail("PostgreSQL is not reachable (FERRY_TEST_POSTGRES_URL or 127.0.0.1:5432)")
    tmp = tmp_path_factory.mktemp("github-deployments")
    ns = BrokerNamespace(amqp_url)
    remote = make_bare_remote(tmp / "config-remote.git")
    (tmp / "routes.yaml").write_text(ROUTES)
    try:
        async with (
            postgres_database() as promotion_db,
            postgres_database() as notifier_db,
            GitHubApi(token=TOKEN) as github,
            EventTap(ns) as tap,
        ):
            github.add_repository(REPOSITORY, commits=list(SHA.values()))
            env = {
                "promotion": {"FERRY_DATABASE_URL": promotion_db},
                "notifier": {
                    "FERRY_DATABASE_URL": notifier_db,
                    "FERRY_ROUTES_FILE": str(tmp / "routes.yaml"),
                    "FERRY_GITHUB_TOKEN": TOKEN,
                    "FERRY_GITHUB_API_URL": github.base_url,
                    "FERRY_DASHBOARD_URL": DASHBOARD,
                    "FERRY_DELIVERY_BACKOFF": "0.05",
                    "FERRY_SEND_TIMEOUT": "2",
                    # one event at a time, in the order they were published: on a busy
                    # machine a rollout's success handled before its start would leave out
                    # in_progress (statuses only move forwards): right, but not this check
                    "FERRY_CONCURRENCY": "1",
                },
            }
            async with release_system(
                ns,
                tap,
                tmp,
                remote,
                examples=EXAMPLES,
                environments=["dev"],
                roles={"jane": ["developer"]},
                services={"notifier": "ferry_notifier"},
                env=env,
            ) as running:
                system = System(running.api, github, running.processes)
                yield system
                await running.stop()
                system.assert_no_token_logged()  # what they logged on the way out too
    finally:
        await ns.cleanup()


def _build(artifact_id: str, github: GitHubApi, simulate: str = "") -> CloudEvent:
    sha = SHA[artifact_id]
    url = f"{github.web_url}/{REPOSITORY}/commit/{sha}"
    return accepted_build(
        EXAMPLES, artifact_id, application={"sha": sha, "url": url}, simulate=simulate
    )


async def test_a_release_that_rolls_out_is_one_deployment_in_progress_then_success(
    system: System,
) -> None:
    await system.api.store(_build(GOOD, system.github))
    done = await system.release(GOOD, ends="rolled-out")
    release_id = done["releaseId"]

    [deployment] = system.deployments(release_id)
    assert deployment.body["ref"] == SHA[GOOD]
    assert deployment.body["environment"] == "dev"
    assert deployment.body["payload"]["ferry"] == {
        "releaseId": release_id,
        "service": system.api.service,
        "environment": "dev",
        "artifactId": GOOD,
    }
    assert [s["state"] for s in deployment.statuses] == ["in_progress", "success"]
    for status in deployment.statuses:
        assert status["log_url"] == f"{DASHBOARD}/releases/{release_id}"
        assert status["environment_url"] == f"{DASHBOARD}/releases/{release_id}"
    creates = [
        c
        for c in system.github.calls
        if c.method == "POST"
        and c.path == f"/repos/{REPOSITORY}/deployments"
        and c.body["payload"]["ferry"]["releaseId"] == release_id
    ]
    assert len(creates) == 1
    assert all(c.headers["Authorization"] == f"Bearer {TOKEN}" for c in system.github.calls)
    system.assert_no_token_logged()


async def test_a_release_whose_pods_crash_loop_is_in_progress_then_failure(
    system: System,
) -> None:
    await system.api.store(_build(BAD, system.github, simulate="crashloop"))
    done = await system.release(BAD, ends="failed")
    release_id = done["releaseId"]

    [deployment] = system.deployments(release_id)
    assert deployment.body["ref"] == SHA[BAD]
    assert deployment.body["environment"] == "dev"
    assert deployment.body["payload"]["ferry"]["artifactId"] == BAD
    assert [s["state"] for s in deployment.statuses] == ["in_progress", "failure"]
    assert "CrashLoopBackOff" in deployment.statuses[-1]["description"]
    assert deployment.statuses[-1]["log_url"] == f"{DASHBOARD}/releases/{release_id}"
    system.assert_no_token_logged()

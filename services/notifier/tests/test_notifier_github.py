"""GitHub deployments through the real broker: the notifier (in this process on SQLite, and
as two OS processes on one PostgreSQL database) against a loopback server that speaks
GitHub's REST API. Every event is published twice, as after a lost ack."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import notifier_events as ev
import pytest
from conftest import NotifierFactory

from ferry_events import ArtifactSpec, ArtifactStored, CloudEvent, EventData
from ferry_notifier.adapters.store import Store
from ferry_runtime import REASON_HEADER
from ferry_testing import BrokerNamespace, ServiceProcess, wait_until
from ferry_testing.github_api import Deployment, GitHubApi

pytestmark = pytest.mark.amqp

SHA = "0017d995e3aaaa"
TOKEN = f"ghp_{secrets.token_hex(12)}"
ROUTES = "routes:\n  - to: [github]\n"
DASHBOARD = "https://ferry.example.com"


@pytest.fixture
async def github() -> AsyncIterator[GitHubApi]:
    async with GitHubApi(token=TOKEN) as server:
        server.add_repository("org/payments", commits=[SHA])
        yield server


def _stored(url: str, artifact_id: str = "master-abc-def", sha: str = SHA) -> ArtifactStored:
    spec = ArtifactSpec.model_validate(
        {
            "id": artifact_id,
            "service": "payments",
            "squad": "pay",
            "application": {
                "branch": "master",
                "sha": sha,
                "authorName": "Dev",
                "authorEmail": ev.AUTHOR,
                "message": "Fix rounding",
                "url": url,
            },
            "ci": {"jobUrl": "https://ci.example.com/job/42"},
        }
    )
    return ArtifactStored(artifact=spec, environments=["prod"], commit_sha="c0ffee", path="b/x")


def _of(github: GitHubApi, release_id: str) -> list[Deployment]:
    return [
        d
        for d in github.deployments("org/payments")
        if d.body["payload"]["ferry"]["releaseId"] == release_id
    ]


def _states(github: GitHubApi, release_id: str) -> list[list[str]]:
    return [[s["state"] for s in d.statuses] for d in _of(github, release_id)]


def _creates(github: GitHubApi) -> int:
    return len([c for c in github.calls if c.method == "POST" and c.path.endswith("/deployments")])


async def _twice(broker_ns: BrokerNamespace, *events: EventData) -> None:
    for data in events:
        event = CloudEvent.new(data, source="ferry/test")
        await broker_ns.publish(event)
        await broker_ns.publish(event)  # the same event id again


async def test_each_release_is_one_deployment_whose_statuses_only_move_forwards(
    notifier: NotifierFactory, broker_ns: BrokerNamespace, github: GitHubApi
) -> None:
    settings = {
        "github_token": TOKEN,
        "github_api_url": github.base_url,
        "dashboard_url": DASHBOARD,
        "concurrency": 1,  # in order, so the last release's deployment says all are handled
    }
    async with notifier(ROUTES, **settings):
        await broker_ns.publish(_stored(f"{github.web_url}/org/payments"))
        await _twice(broker_ns, ev.committed("r-1"), ev.rollout_started("r-1"))
        await _twice(broker_ns, ev.rollout_succeeded("r-1"))
        await _twice(broker_ns, ev.committed("r-2"), ev.rollout_failed("r-2"))
        # late news: the rollout is reported before the commit that started it
        await _twice(broker_ns, ev.rollout_succeeded("r-3"), ev.committed("r-3"))
        await _twice(broker_ns, ev.committed("r-4"))
        await wait_until(lambda: _states(github, "r-4") == [["in_progress"]], what="r-4")

    assert _states(github, "r-1") == [["in_progress", "success"]]
    assert _states(github, "r-2") == [["in_progress", "failure"]]
    assert _states(github, "r-3") == [["success"]]  # never a late in_progress after it
    assert _creates(github) == 4  # one per release, whatever was delivered twice
    [first] = _of(github, "r-1")
    assert first.body["ref"] == SHA
    assert first.body["environment"] == "prod"
    assert first.body["required_contexts"] == []
    assert first.body["auto_merge"] is False
    assert first.body["production_environment"] is True
    assert first.body["transient_environment"] is False
    for status in first.statuses:
        assert status["log_url"] == f"{DASHBOARD}/releases/r-1"
        assert status["environment_url"] == f"{DASHBOARD}/releases/r-1"
    [failed] = _of(github, "r-2")
    assert "CrashLoopBackOff" in failed.statuses[-1]["description"]
    assert all(c.headers["Authorization"] == f"Bearer {TOKEN}" for c in github.calls)
    assert await broker_ns.dead_letters("notifier", timeout=0.5) == []


async def test_a_url_of_no_github_repository_is_skipped_and_a_refusal_dead_lettered(
    notifier: NotifierFactory, broker_ns: BrokerNamespace, github: GitHubApi, tmp_path: Path
) -> None:
    elsewhere = ev.committed("r-gitlab").model_copy(update={"artifact_id": "on-gitlab"})
    unknown = ev.committed("r-unknown").model_copy(update={"artifact_id": "unknown-sha"})
    github.fail(503)  # the first call fails; the retry goes through
    async with notifier(ROUTES, github_token=TOKEN, github_api_url=github.base_url):
        await broker_ns.publish(_stored("https://gitlab.example.com/org/payments", "on-gitlab"))
        await broker_ns.publish(_stored(f"{github.web_url}/org/payments", "unknown-sha", "beef"))
        await broker_ns.publish(_stored(f"{github.web_url}/org/payments"))
        skipped = await broker_ns.publish(elsewhere)
        refused = await broker_ns.publish(unknown)
        await broker_ns.publish(ev.committed("r-ok"))
        [dead] = await broker_ns.dead_letters("notifier", timeout=15)
        await wait_until(lambda: _states(github, "r-ok") == [["in_progress"]], what="r-ok")

    assert json.loads(dead.body)["id"] == refused.id
    headers = dead.headers or {}
    assert headers["x-ferry-destination"] == "github"
    assert "HTTP 422 No ref found for: beef" in str(headers[REASON_HEADER])
    assert [c.status for c in github.calls].count(503) == 1  # and then tried again
    assert _creates(github) == 2  # r-ok's and the refused one; none for the skipped one
    store = Store.from_url(f"sqlite+aiosqlite:///{tmp_path / 'notifier.db'}")
    try:
        record = await store.delivery(skipped.id, "github")
    finally:
        await store.close()
    assert record is not None
    assert record.status == "skipped"
    assert "is not on 127.0.0.1:" in record.detail
    assert "FERRY_GITHUB_API_URL" in record.detail


# --------------------------------------------------------------------------- two replicas

LEASE = 10.0


def _replica(
    name: str, tmp_path: Path, broker_ns: BrokerNamespace, github: GitHubApi, database: str
) -> ServiceProcess:
    data_dir = tmp_path / name
    data_dir.mkdir()
    routes = data_dir / "routes.yaml"
    routes.write_text(ROUTES)
    env = broker_ns.env(
        FERRY_DATA_DIR=str(data_dir),
        FERRY_DATABASE_URL=database,
        FERRY_ROUTES_FILE=str(routes),
        FERRY_GITHUB_TOKEN=TOKEN,
        FERRY_GITHUB_API_URL=github.base_url,
        FERRY_DASHBOARD_URL=DASHBOARD,
        FERRY_REPLICA_NAME=name,
        FERRY_CLAIM_LEASE=str(LEASE),
        FERRY_SEND_TIMEOUT="2",
        FERRY_DELIVERY_BACKOFF="0.05",
        FERRY_DELIVERY_ATTEMPTS="3",
        FERRY_RETRY_DELAYS="[0.2, 0.5, 1.0]",
        FERRY_HTTP_PORT="0",
        FERRY_LOG_FORMAT="json",
        FERRY_LOG_LEVEL="DEBUG",
    )
    return ServiceProcess("ferry_notifier", env, tmp_path / f"{name}.log")


def _logged(process: ServiceProcess, name: str) -> int:
    count = 0
    for line in process.logs().splitlines():
        try:
            record: Any = json.loads(line)
        except ValueError:
            continue
        count += isinstance(record, dict) and record.get("event") == name
    return count


@pytest.fixture
def replicas() -> Iterator[list[ServiceProcess]]:
    started: list[ServiceProcess] = []
    yield started
    for process in started:
        if process.proc is not None and process.proc.poll() is None:
            process.terminate()


@pytest.mark.postgres
async def test_two_replicas_given_every_event_twice_create_each_deployment_once(
    tmp_path: Path,
    broker_ns: BrokerNamespace,
    github: GitHubApi,
    postgres_url: str,
    replicas: list[ServiceProcess],
) -> None:
    a = _replica("a", tmp_path, broker_ns, github, postgres_url)
    b = _replica("b", tmp_path, broker_ns, github, postgres_url)
    replicas += [a, b]
    for process in replicas:
        process.start()
    for process in replicas:
        await wait_until(
            lambda p=process: _logged(p, "consuming") >= 1,  # type: ignore[misc]
            what=f"{process.log_path.name} to consume",
        )
    await broker_ns.publish(_stored(f"{github.web_url}/org/payments"))
    store = Store.from_url(postgres_url)
    try:  # the artifact is known before its releases are heard of

        async def known() -> bool:
            return (await store.remember(None, "master-abc-def", "probe")).artifact is not None

        await wait_until(known, what="the artifact to be remembered")
    finally:
        await store.close()
    releases = [f"r-{n}" for n in range(4)]
    await _twice(broker_ns, *(ev.committed(r) for r in releases))
    await wait_until(
        lambda: all(_states(github, r) == [["in_progress"]] for r in releases),
        what="every deployment in progress",
    )
    await _twice(
        broker_ns,
        ev.rollout_succeeded("r-0"),
        ev.rollout_succeeded("r-1"),
        ev.rollout_failed("r-2"),
        ev.rollout_succeeded("r-3"),
    )
    await wait_until(
        lambda: all(len(states) == 2 for r in releases for states in _states(github, r)),
        what="every rollout's status",
    )
    # a second workload of r-3 fails after the first rolled out: a failure follows a success
    await _twice(broker_ns, ev.rollout_failed("r-3"))
    handled = 2 * len(releases) + 2 * 5  # every copy of every commit and rollout
    await wait_until(
        lambda: _logged(a, "notified") + _logged(b, "notified") >= handled,
        what="both replicas to handle every copy",
    )
    assert _states(github, "r-0") == [["in_progress", "success"]]
    assert _states(github, "r-1") == [["in_progress", "success"]]
    assert _states(github, "r-2") == [["in_progress", "failure"]]
    assert _states(github, "r-3") == [["in_progress", "success", "failure"]]
    assert _creates(github) == len(releases)
    assert _logged(a, "notified") > 0
    assert _logged(b, "notified") > 0
    assert await broker_ns.dead_letters("notifier", timeout=0.5) == []

    # A proxy in front of GitHub refuses, echoing the credentials it was sent: the reason
    # is logged and dead-lettered, the token in neither.
    github.refuse("denied for {authorization}")
    refused = await broker_ns.publish(ev.committed("r-refused"))
    [dead] = await broker_ns.dead_letters("notifier", timeout=20)
    assert json.loads(dead.body)["id"] == refused.id
    reason = str((dead.headers or {})[REASON_HEADER])
    assert "denied for Bearer ***" in reason
    for process in (a, b):
        process.terminate()
    logs = a.logs() + b.logs()
    assert "denied for Bearer ***" in logs
    assert TOKEN not in logs
    assert TOKEN not in reason
    for process in (a, b):
        for line in process.logs().splitlines():
            record = json.loads(line)
            if record.get("event") == "starting":
                assert record["settings"]["github_token"] == "***"

"""Every service as two OS processes, as operators run them, with a SIGKILL mid-stream.

Two replicas each of artifact-ingest, git-writer, promotion, cluster-watcher, notifier
and insights, every replica with its own data dir; promotion, notifier and insights on
PostgreSQL (one database per service, shared by its replicas); the cluster is the
API-compatible simulator, which plays Flux from the config repo. Builds and releases
are sent through both promotion API replicas; halfway, one replica of every service is
SIGKILLed (and started again, as Kubernetes would). Then:

- every artifact is stored once, and no release is committed twice;
- dev ends at the newest release requested;
- every person is told of each release in one Slack thread;
- an approval clicked on both replicas at once counts once;
- a policy committed through one replica applies to the next request the other decides;
- a signed Slack request replayed on the other replica is refused (401).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import secrets
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from ferry_events import ArtifactPublished, CloudEvent
from ferry_testing import BrokerNamespace, EventTap, ServiceProcess, wait_until
from ferry_testing.database import postgres_answers, postgres_database
from ferry_testing.net import free_port
from ferry_testing.slack_api import SlackApi
from ferry_testing.slack_signing import signed_headers, slash_command_body

pytestmark = [pytest.mark.amqp, pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(420)]

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SERVICE = json.loads((EXAMPLES / "artifact.json").read_text())["service"]
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
BUILDS = 8
JANE, BOB = "U0JANE0001", "U0BOB00001"


def _artifact(number: int) -> CloudEvent:
    raw = json.loads((EXAMPLES / "artifact.json").read_text())
    raw["id"] = f"master-{number:010d}-{number:010d}"
    raw["application"]["authorEmail"] = "jane@example.com"
    manifests = {
        env.name: {f.name: f.read_text() for f in sorted(env.iterdir()) if f.is_file()}
        for env in sorted((EXAMPLES / "manifests").iterdir())
        if env.is_dir()
    }
    data = ArtifactPublished(artifact=raw, manifests=manifests)
    return CloudEvent.new(data, source="ci/test")


@dataclass
class Replica:
    name: str
    process: ServiceProcess
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class System:
    replicas: dict[str, Replica] = field(default_factory=dict)

    def api(self, n: int) -> str:
        return self.replicas[f"promotion-{n}"].url


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


async def _ready(client: httpx.AsyncClient, replica: Replica) -> bool:
    if replica.process.proc is not None and replica.process.proc.poll() is not None:
        raise AssertionError(f"{replica.name} exited:\n{replica.process.logs()[-3000:]}")
    try:
        return (await client.get(f"{replica.url}/readyz", timeout=2)).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
async def slack_api() -> AsyncIterator[SlackApi]:
    async with SlackApi() as api:
        yield api


@pytest.fixture
def started() -> Iterator[list[ServiceProcess]]:
    processes: list[ServiceProcess] = []
    yield processes
    for process in processes:
        if process.proc is not None and process.proc.poll() is None:
            try:
                process.terminate(30)
            except subprocess.TimeoutExpired:
                process.kill()


@contextlib.asynccontextmanager
async def _databases() -> AsyncIterator[dict[str, str]]:
    if not postgres_answers():
        pytest.skip("no PostgreSQL on 127.0.0.1:5432")
    async with (
        postgres_database() as promotion,
        postgres_database() as notifier,
        postgres_database() as insights,
    ):
        yield {"promotion": promotion, "notifier": notifier, "insights": insights}


async def test_two_replicas_of_every_service_with_a_kill_mid_stream(
    tmp_path: Path,
    broker_ns: BrokerNamespace,
    bare_remote: Path,
    slack_api: SlackApi,
    started: list[ServiceProcess],
) -> None:
    tokens = {"jane": secrets.token_urlsafe(16), "bob": secrets.token_urlsafe(16)}
    roles = {"jane": ["admin"], "bob": ["developer", "releaser:prod"]}
    tokens_file = tmp_path / "tokens.yaml"
    tokens_file.write_text(
        "tokens:\n"
        + "".join(
            f"  - subject: {who}\n    email: {who}@example.com\n"
            f"    roles: {json.dumps(roles[who])}\n"
            f"    sha256: {hashlib.sha256(token.encode()).hexdigest()}\n"
            for who, token in tokens.items()
        )
    )
    slack_api.add_user("jane@example.com", JANE)
    slack_api.add_user("bob@example.com", BOB)
    routes = tmp_path / "routes.yaml"
    routes.write_text('routes:\n  - to: ["slack:#deploys", slack-dm:author]\n')
    kubeconfig = tmp_path / "kubeconfig"

    async with _databases() as databases:
        base = broker_ns.env(
            FERRY_RETRY_DELAYS="[0.2, 0.5, 1.0]",
            FERRY_LOG_FORMAT="json",
            FERRY_CONFIG_REPO_URL=str(bare_remote),
            FERRY_API_TOKENS_FILE=str(tokens_file),
            FERRY_CONFIG_MAX_AGE="600",  # no replica refreshes on its own: commits rule
            FERRY_SLACK_SIGNING_SECRET=SIGNING_SECRET,
            FERRY_SLACK_BOT_TOKEN="xoxb-test",
            FERRY_SLACK_API_URL=slack_api.base_url,
            FERRY_ROUTES_FILE=str(routes),
            FERRY_CLAIM_LEASE="10",
            FERRY_SEND_TIMEOUT="2",
            KUBECONFIG=str(kubeconfig),
            FERRY_CLUSTER_ENVIRONMENTS="dev,staging,prod",
        )
        with (tmp_path / "kube-sim.log").open("ab") as sim_log:
            sim = subprocess.Popen(
                [
                    sys.executable, "-m", "ferry_kube_sim", "--config-repo", str(bare_remote),
                    "--port", str(free_port()), "--kubeconfig-out", str(kubeconfig),
                ],
                stdout=sim_log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            await wait_until(kubeconfig.exists, timeout=60, what="the simulator's kubeconfig")
            system = System()
            for name, module in (
                ("artifact-ingest", "ferry_ingest"),
                ("git-writer", "ferry_gitwriter"),
                ("promotion", "ferry_promotion"),
                ("cluster-watcher", "ferry_watcher"),
                ("notifier", "ferry_notifier"),
                ("insights", "ferry_insights"),
            ):
                for n in (1, 2):
                    label = f"{name}-{n}"
                    port = free_port()
                    data_dir = tmp_path / label
                    data_dir.mkdir()
                    env = {
                        **base,
                        "FERRY_DATA_DIR": str(data_dir),
                        "FERRY_HTTP_PORT": str(port),
                        "FERRY_REPLICA_NAME": label,
                    }
                    if name in databases:
                        env["FERRY_DATABASE_URL"] = databases[name]
                    process = ServiceProcess(module, env, tmp_path / f"{label}.log")
                    system.replicas[label] = Replica(label, process, port)
            async with httpx.AsyncClient() as client, EventTap(broker_ns) as tap:
                for replica in system.replicas.values():
                    started.append(replica.process.start())
                for replica in system.replicas.values():
                    await wait_until(
                        lambda r=replica: _ready(client, r),  # type: ignore[misc]
                        timeout=120,
                        what=f"{replica.name} to be ready",
                    )
                await _story(system, client, tap, broker_ns, bare_remote, slack_api, tokens)
        finally:
            sim.terminate()
            sim.wait(30)


async def _story(
    system: System,
    client: httpx.AsyncClient,
    tap: EventTap,
    broker_ns: BrokerNamespace,
    remote: Path,
    slack: SlackApi,
    tokens: dict[str, str],
) -> None:
    def auth(who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens[who]}"}

    async def release(n: int, artifact_id: str, environment: str = "dev") -> str:
        body = {"service": SERVICE, "environment": environment, "artifactId": artifact_id,
                "intent": "release"}  # fmt: skip
        try:
            reply = await client.post(
                f"{system.api(n)}/v1/releases", json=body, headers=auth("jane")
            )
        except httpx.TransportError:
            # a replica that was just killed: the load balancer sends it to the other one
            reply = await client.post(
                f"{system.api(3 - n)}/v1/releases", json=body, headers=auth("jane")
            )
        assert reply.status_code == 202, reply.text
        return str(reply.json()["releaseId"])

    async def status(release_id: str, n: int = 1) -> dict[str, Any]:
        reply = await client.get(f"{system.api(n)}/v1/releases/{release_id}", headers=auth("jane"))
        assert reply.status_code == 200, reply.text
        return dict(reply.json())

    builds = [_artifact(n) for n in range(1, BUILDS + 1)]
    ids = [f"master-{n:010d}-{n:010d}" for n in range(1, BUILDS + 1)]
    released: list[str] = []
    for index, build in enumerate(builds):
        await broker_ns.publish(build)
        await tap.wait_for(
            "ferry.artifact.stored.v1",
            lambda e, b=build: e.causationid == b.id or e.correlationid == b.correlationid,  # type: ignore[misc]
            timeout=60,
        )
        released.append(await release(1 + index % 2, ids[index]))
        if index == BUILDS // 2:
            # one replica of every service dies mid-stream, and is started again
            for name in ("artifact-ingest", "git-writer", "promotion", "cluster-watcher",
                         "notifier", "insights"):  # fmt: skip
                system.replicas[f"{name}-1"].process.kill()
            for name in ("artifact-ingest", "git-writer", "promotion", "cluster-watcher",
                         "notifier", "insights"):  # fmt: skip
                replica = system.replicas[f"{name}-1"]
                replica.process.start()
    for replica in system.replicas.values():
        await wait_until(
            lambda r=replica: _ready(client, r),  # type: ignore[misc]
            timeout=120,
            what=f"{replica.name} to be ready again",
        )

    # every request decided; dev ends at the newest one requested
    for release_id in released:
        await wait_until(
            lambda r=release_id: _decided(status, r),  # type: ignore[misc]
            timeout=90,
            what=f"release {release_id} to be decided",
        )
    newest = await wait_until(
        lambda: _running_in_dev(remote) == ids[-1] or None,
        timeout=90,
        what=f"dev to run {ids[-1]}",
    )
    assert newest

    # every artifact stored once, no release committed twice
    log = _git(remote, "log", "--format=%B%x00", "main")
    stored = Counter(
        line.split(": ", 1)[1]
        for body in log.split("\x00")
        if "Ferry-Release-Id" not in body
        for line in body.splitlines()
        if line.startswith("Ferry-Artifact-Id: ")
    )
    assert all(stored[i] == 1 for i in ids), stored
    committed = Counter(
        line.split(": ", 1)[1] for line in log.splitlines() if line.startswith("Ferry-Release-Id: ")
    )
    assert committed, log
    assert max(committed.values()) == 1, committed

    # every person is told of each release in one thread: the team channel, and jane (the
    # author) in her DM
    def threads() -> Counter[tuple[str, str]]:
        parents = [m for m in slack.messages.values() if m.thread_ts is None]
        return Counter((m.channel, _mentioned(m.text, ids)) for m in parents)

    await wait_until(
        lambda: (
            {c for c, _ in threads()} >= {"#deploys", "D" + JANE[1:]}
            and len(threads()) >= 2 * BUILDS
        ),
        timeout=90,
        what="a thread per release and person",
    )
    await asyncio.sleep(2)  # a second thread would have come by now
    assert max(threads().values()) == 1, threads()

    # a policy committed through replica 1 applies to the next request replica 2 decides
    reply = await client.put(
        f"{system.api(1)}/v1/policies/{SERVICE}",
        json={"approvals": [{"environment": "prod", "required": 1}]},
        headers=auth("jane"),
    )
    assert reply.status_code == 202, reply.text
    await tap.wait_for("ferry.policy.changed.v1", lambda e: True, timeout=60)
    # read back through the replica it was written through, whichever replica heard the
    # change: the read holds the remote's commit
    shown = await client.get(f"{system.api(1)}/v1/policies/{SERVICE}", headers=auth("jane"))
    assert shown.status_code == 200, shown.text
    assert "approvals" in shown.text
    to_prod = await release(2, ids[-1], environment="prod")
    decided = await wait_until(
        lambda: _decided(status, to_prod, 2), timeout=60, what="the prod release's decision"
    )
    assert decided["status"] == "awaiting-approval", decided

    # bob approves on both replicas at once: it counts once
    votes = await asyncio.gather(
        *(
            client.post(
                f"{system.api(n)}/v1/releases/{to_prod}/approve",
                json={"comment": "ok"},
                headers=auth("bob"),
            )
            for n in (1, 2)
        )
    )
    assert sorted(v.status_code for v in votes) == [200, 409], [v.text for v in votes]
    done = await wait_until(
        lambda: _status_in(status, to_prod, {"committed", "rolled-out"}),
        timeout=60,
        what="the approved prod release to commit",
    )
    assert [g["subject"] for g in done["approvals"]["granted"]] == ["bob"]

    # a signed Slack request used on replica 1, replayed on replica 2: refused
    body = slash_command_body("status", user_id=JANE, response_url=slack.response_url("replay"))
    headers = signed_headers(SIGNING_SECRET, body)
    first = await client.post(f"{system.api(1)}/v1/slack/commands", content=body, headers=headers)
    again = await client.post(f"{system.api(2)}/v1/slack/commands", content=body, headers=headers)
    assert first.status_code == 200, first.text
    assert again.status_code == 401, again.text


def _running_in_dev(remote: Path) -> str | None:
    listing = _git(remote, "ls-tree", "-r", "--name-only", "main", "environments/dev/")
    files = [p for p in listing.splitlines() if p.endswith(f"/{SERVICE}/artifact.json")]
    if not files:
        return None
    return str(json.loads(_git(remote, "show", f"main:{files[0]}"))["id"])


def _mentioned(text: str, ids: list[str]) -> str:
    return next((i for i in ids if i in text), text[:60])


async def _decided(status: Callable[..., Any], release_id: str, n: int = 1) -> Any:
    found = await status(release_id, n)
    if found["status"] == "requested" and not found.get("waitingSince"):
        return None
    return found


async def _status_in(status: Callable[..., Any], release_id: str, wanted: set[str]) -> Any:
    found = await status(release_id)
    return found if found["status"] in wanted else None

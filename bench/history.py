"""Benchmark (issue 15): Ferry on a config repo with years of history.

Builds two config repos with ``git fast-import``, both with the same services in the same
environments (default 300 services x dev, staging, prod):

* **fresh**: each service stored once and released once to each environment;
* **history**: the same, then stores and releases until the branch has 20,000 commits,
  each with the trailers git-writer writes (docs/config-repo.md).

On each, git-writer and promotion run as their own processes (fresh data dirs, a fresh
broker namespace), and it measures:

* git-writer's start-up (process start to consuming: the fetch and its trailer index);
* git-writer's cycle for one release (``release.approved`` published to ``committed``) and
  for a batch of 50 published at once (to the last ``committed``);
* promotion's decision (``POST /v1/releases`` to ``release.approved``);
* ``GET /v1/services/{service}`` and ``GET /v1/services/{service}/history`` right after a
  commit (promotion fetches it first).

Goal: each figure on the history repo within 1.5x the fresh repo's, start-up under 5 s.

    uv run python bench/history.py [--services 300] [--commits 20000] [--samples 10]
    uv run python bench/history.py --small      # a tiny repo: checks the script works
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import aio_pika
import httpx
import yaml
from aio_pika.abc import AbstractIncomingMessage
from report import Report

from ferry_events import Actor, CloudEvent, Intent, ReleaseApproved, decode
from ferry_runtime import ServiceQueues
from ferry_testing import BrokerNamespace, ServiceProcess, git, resolve_amqp_url
from ferry_testing.net import free_port

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
ENVIRONMENTS = ("dev", "staging", "prod")
COMMITTED = "ferry.release.committed.v1"
APPROVED = "ferry.release.approved.v1"
FAILED = "ferry.release.failed.v1"
REJECTED = "ferry.release.rejected.v1"
EPOCH = 1_700_000_000


# --------------------------------------------------------------------------- the repo


@dataclass
class Layout:
    """What the built repo holds: the stored artifacts of each service."""

    services: list[str]
    builds: dict[str, list[str]]
    commits: int
    running: dict[tuple[str, str], str]


def _manifests() -> dict[str, dict[str, bytes]]:
    return {
        env: {f.name: f.read_bytes() for f in sorted((EXAMPLES / "manifests" / env).iterdir())}
        for env in ENVIRONMENTS
    }


class Stream:
    """A ``git fast-import`` stream onto ``refs/heads/main``."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.marks = 0
        self.commits = 0
        self.blobs: dict[bytes, int] = {}

    def blob(self, content: bytes) -> int:
        known = self.blobs.get(content)
        if known is not None:
            return known
        self.marks += 1
        self.out.write(b"blob\nmark :%d\ndata %d\n" % (self.marks, len(content)))
        self.out.write(content + b"\n")
        self.blobs[content] = self.marks
        return self.marks

    def commit(
        self, title: str, trailers: list[tuple[str, str]], files: dict[str, int], folder: str
    ) -> None:
        when = EPOCH + self.commits * 60
        message = f"{title}\n\n" + "".join(f"{k}: {v}\n" for k, v in trailers)
        body = message.encode()
        self.out.write(b"commit refs/heads/main\n")
        self.out.write(b"author Dev <dev@example.com> %d +0000\n" % when)
        self.out.write(b"committer Ferry <ferry@localhost> %d +0000\n" % when)
        self.out.write(b"data %d\n%s\n" % (len(body), body))
        if folder:
            self.out.write(f"D {folder}\n".encode())
        for path, mark in files.items():
            self.out.write(f"M 100644 :{mark} {path}\n".encode())
        self.out.write(b"\n")
        self.commits += 1


def _artifact(service: str, artifact_id: str) -> bytes:
    raw = json.loads((EXAMPLES / "artifact.json").read_text())
    raw.update(id=artifact_id, service=service, namespace=service)
    return (json.dumps(raw, indent=2) + "\n").encode()


def _commits(services: list[str], total: int, stream: Stream) -> Iterator[None]:
    manifests = _manifests()
    marks = {env: {n: stream.blob(c) for n, c in files.items()} for env, files in manifests.items()}
    artifact_marks: dict[tuple[str, str], int] = {}
    builds: dict[str, list[str]] = {s: [] for s in services}
    running: dict[tuple[str, str], str] = {}

    def store(service: str) -> None:
        artifact_id = f"master-{len(builds[service]):010d}-{secrets.token_hex(5)}"
        mark = stream.blob(_artifact(service, artifact_id))
        artifact_marks[(service, artifact_id)] = mark
        builds[service].append(artifact_id)
        folder = f"builds/{service}/{artifact_id}"
        files = {f"{folder}/artifact.json": mark}
        for env in ENVIRONMENTS:
            files.update({f"{folder}/{env}/{n}": m for n, m in marks[env].items()})
        stream.commit(
            f"[builds/{service}] store {artifact_id}",
            [
                ("Ferry-Event-Id", str(uuid.uuid4())),
                ("Ferry-Artifact-Id", artifact_id),
                ("Ferry-Service", service),
                ("Ferry-Actor", "dev@example.com"),
            ],
            files,
            "",
        )

    def release(service: str, env: str, intent: str) -> None:
        artifact_id = builds[service][-1]
        running[(service, env)] = artifact_id
        folder = f"environments/{env}/{service}/{service}"
        files = {f"{folder}/artifact.json": artifact_marks[(service, artifact_id)]}
        files.update({f"{folder}/{n}": m for n, m in marks[env].items()})
        stream.commit(
            f"[{env}/{service}] {intent} {artifact_id} by jane@example.com",
            [
                ("Ferry-Event-Id", str(uuid.uuid4())),
                ("Ferry-Release-Id", str(uuid.uuid4())),
                ("Ferry-Artifact-Id", artifact_id),
                ("Ferry-Service", service),
                ("Ferry-Environment", env),
                ("Ferry-Intent", intent),
                ("Ferry-Actor", "jane@example.com"),
                *([("Ferry-Promoted-From", ENVIRONMENTS[0])] if env != "dev" else []),
            ],
            files,
            folder,
        )

    # fresh: every service stored twice and released once to each environment
    for service in services:
        store(service)
        store(service)
        yield
    for env in ENVIRONMENTS:
        for service in services:
            release(service, env, "release" if env == "dev" else "promote")
            yield
    # history: a store, then its release to dev, staging and prod, service after service
    i = 0
    while stream.commits < total:
        service = services[i % len(services)]
        store(service)
        for env in ENVIRONMENTS:
            if stream.commits < total:
                release(service, env, "auto-release" if env == "dev" else "promote")
        i += 1
        yield
    stream.layout = Layout(services, builds, stream.commits, running)  # type: ignore[attr-defined]


def build_repo(path: Path, services: int, commits: int) -> Layout:
    """A bare config repo of ``services`` x 3 environments with ``commits`` commits (at least
    one store and three releases per service)."""
    names = [f"svc-{i:03d}" for i in range(services)]
    subprocess.run(["git", "init", "--quiet", "--bare", str(path)], check=True)
    subprocess.run(["git", "symbolic-ref", "HEAD", "refs/heads/main"], cwd=path, check=True)
    process = subprocess.Popen(
        ["git", "fast-import", "--quiet", "--done"], cwd=path, stdin=subprocess.PIPE
    )
    assert process.stdin is not None
    stream = Stream(process.stdin)
    for _ in _commits(names, commits, stream):
        pass
    process.stdin.write(b"done\n")
    process.stdin.close()
    if process.wait() != 0:
        sys.exit("git fast-import failed")
    subprocess.run(["git", "gc", "--quiet"], cwd=path, check=True)
    layout: Layout = stream.layout  # type: ignore[attr-defined]
    return layout


# --------------------------------------------------------------------------- measuring


class Outcomes:
    """When each release was approved and committed, by release id."""

    def __init__(self, ns: BrokerNamespace) -> None:
        self.ns = ns
        self.approved: dict[str, float] = {}
        self.committed: dict[str, float] = {}
        self.failed: dict[str, Any] = {}
        self.changed = asyncio.Event()

    async def start(self, connection: aio_pika.abc.AbstractConnection) -> None:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(
            self.ns.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        for key in (COMMITTED, APPROVED, FAILED, REJECTED):
            await queue.bind(exchange, key)
        await queue.consume(self._on, no_ack=True)

    async def _on(self, message: AbstractIncomingMessage) -> None:
        now = time.perf_counter()
        event = decode(
            message.body, headers=message.headers or {}, content_type=message.content_type
        )
        release_id = str(event.data.get("releaseId"))
        if event.type == APPROVED:
            self.approved.setdefault(release_id, now)
        elif event.type == COMMITTED:
            self.committed.setdefault(release_id, now)
        else:
            self.failed[release_id] = event.data
        self.changed.set()

    async def wait(self, release_ids: list[str], timeout: float = 120) -> None:
        async with asyncio.timeout(timeout):
            while True:
                bad = [r for r in release_ids if r in self.failed]
                if bad:
                    raise RuntimeError(f"release refused or failed: {self.failed[bad[0]]}")
                if all(r in self.committed for r in release_ids):
                    return
                self.changed.clear()
                await self.changed.wait()


async def consuming(ns: BrokerNamespace, service: str, process: ServiceProcess) -> None:
    """Wait until ``service`` consumes its main queue."""
    name = ServiceQueues(service, ns.queue_prefix, (), ()).main
    connection = await aio_pika.connect(ns.amqp_url)
    async with connection, asyncio.timeout(120):
        while True:
            if process.proc is not None and process.proc.poll() is not None:
                sys.exit(f"{process.module} exited: {process.logs()[-2000:]}")
            channel = await connection.channel()
            try:
                queue = await channel.declare_queue(name, passive=True)
                if queue.declaration_result.consumer_count:
                    return
            except aio_pika.exceptions.ChannelClosed:
                pass
            finally:
                if not channel.is_closed:
                    await channel.close()
            await asyncio.sleep(0.02)


async def ready(url: str, process: ServiceProcess) -> None:
    async with httpx.AsyncClient() as client, asyncio.timeout(120):
        while True:
            if process.proc is not None and process.proc.poll() is not None:
                sys.exit(f"{process.module} exited: {process.logs()[-2000:]}")
            try:
                if (await client.get(url, timeout=2)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.05)


def approved(service: str, env: str, artifact_id: str) -> CloudEvent:
    return CloudEvent.new(
        ReleaseApproved(
            release_id=str(uuid.uuid4()),
            service=service,
            environment=env,
            namespace=service,
            artifact_id=artifact_id,
            intent=Intent.RELEASE,
            actor=Actor(subject="bench", email="bench@example.com"),
        ),
        source="ferry/promotion",
    )


def tokens_file(path: Path) -> str:
    token = secrets.token_urlsafe(24)
    digest = hashlib.sha256(token.encode()).hexdigest()
    entry = {"subject": "bench", "email": "bench@example.com", "roles": ["admin"]}
    path.write_text(yaml.safe_dump({"tokens": [{**entry, "sha256": digest}]}))
    return token


async def measure(
    amqp_url: str, remote: Path, layout: Layout, work: Path, samples: int, batch: int
) -> dict[str, float]:
    """Every figure on one repo: git-writer and promotion as processes on their own namespace."""
    ns = BrokerNamespace(amqp_url)
    work.mkdir()
    token = tokens_file(work / "tokens.yaml")
    port = free_port()
    common = {
        "FERRY_LOG_LEVEL": "WARNING",
        "FERRY_LOG_FORMAT": "json",
        "FERRY_CONFIG_REPO_URL": str(remote),
    }
    writer = ServiceProcess(
        "ferry_gitwriter",
        ns.env(**common, FERRY_DATA_DIR=str(work / "gw"), FERRY_HTTP_PORT=str(free_port())),
        work / "git-writer.log",
    )
    promotion = ServiceProcess(
        "ferry_promotion",
        ns.env(
            **common,
            FERRY_DATA_DIR=str(work / "promotion"),
            FERRY_HTTP_PORT=str(port),
            FERRY_API_TOKENS_FILE=str(token and work / "tokens.yaml"),
        ),
        work / "promotion.log",
    )
    figures: dict[str, float] = {}
    connection = await aio_pika.connect(amqp_url)
    try:
        outcomes = Outcomes(ns)
        await outcomes.start(connection)
        started = time.perf_counter()
        writer.start()
        await consuming(ns, "git-writer", writer)
        figures["writer_start"] = time.perf_counter() - started
        started = time.perf_counter()
        promotion.start()
        await ready(f"http://127.0.0.1:{port}/readyz", promotion)
        await consuming(ns, "promotion", promotion)
        figures["promotion_start"] = time.perf_counter() - started

        services = layout.services
        # one release at a time, straight to git-writer (approved -> committed)
        cycles = []
        for i in range(samples + 1):
            service = services[i % len(services)]
            event = approved(service, "dev", layout.builds[service][0])
            sent = time.perf_counter()
            await ns.publish(event)
            release_id = event.data["releaseId"]
            await outcomes.wait([release_id])
            layout.running[(service, "dev")] = event.data["artifactId"]
            if i:  # the first one warms the clone up
                cycles.append(outcomes.committed[release_id] - sent)
        figures["writer_cycle"] = statistics.median(cycles)

        # a batch published at once
        events = [
            approved(s, "staging", layout.builds[s][0])
            for s in (services[i % len(services)] for i in range(batch))
        ]
        sent = time.perf_counter()
        await asyncio.gather(*(ns.publish(e) for e in events))
        ids = [e.data["releaseId"] for e in events]
        await outcomes.wait(ids)
        figures["writer_batch"] = max(outcomes.committed[r] for r in ids) - sent

        # promotion: request -> decision, and the reads right after a commit
        decisions: list[float] = []
        reads: list[float] = []
        histories: list[float] = []
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=60
        ) as client:
            for i in range(samples + 1):
                service = services[(i * 7 + 1) % len(services)]
                running = layout.running.get((service, "dev"))
                artifact_id = next(a for a in layout.builds[service] if a != running)
                sent = time.perf_counter()
                response = await client.post(
                    "/v1/releases",
                    json={
                        "service": service,
                        "environment": "dev",
                        "intent": "release",
                        "artifactId": artifact_id,
                    },
                )
                response.raise_for_status()
                release_id = response.json()["releaseId"]
                await outcomes.wait([release_id])
                layout.running[(service, "dev")] = artifact_id
                t0 = time.perf_counter()
                (await client.get(f"/v1/services/{service}")).raise_for_status()
                t1 = time.perf_counter()
                got = await client.get(f"/v1/services/{service}/history")
                got.raise_for_status()
                t2 = time.perf_counter()
                if i:
                    decisions.append(outcomes.approved[release_id] - sent)
                    reads.append(t1 - t0)
                    histories.append(t2 - t1)
        figures["decision"] = statistics.median(decisions)
        figures["get_service"] = statistics.median(reads)
        figures["get_history"] = statistics.median(histories)
        figures["commits"] = float(
            git("--git-dir", str(remote), "rev-list", "--count", "main").strip()
        )
    finally:
        for process in (promotion, writer):
            if process.proc is not None and process.terminate(30) != 0:
                print(f"{process.module} exited badly:", file=sys.stderr)
                print("\n".join(process.logs().splitlines()[-20:]), file=sys.stderr)
        await connection.close()
        await ns.cleanup()
    return figures


LABELS = {
    "writer_start": "git-writer start-up (fetch + trailer index)",
    "writer_cycle": "git-writer cycle, one release (median)",
    "writer_batch": "git-writer cycle, batch of releases",
    "decision": "promotion decision, POST to approved (median)",
    "get_service": "GET /v1/services/{service} after a commit (median)",
    "get_history": "GET /v1/services/{service}/history after a commit (median)",
    "promotion_start": "promotion start-up (clone + snapshot)",
}


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--services", type=int, default=300)
    parser.add_argument("--commits", type=int, default=20_000)
    parser.add_argument("--samples", type=int, default=10, help="releases per median")
    parser.add_argument("--batch", type=int, default=50, help="releases in the batch")
    parser.add_argument("--small", action="store_true", help="a tiny run (checks the script)")
    parser.add_argument("--build-only", type=Path, help="only build the history repo here")
    parser.add_argument("--keep", action="store_true", help="keep the work dir")
    args = parser.parse_args()
    if args.small:
        args.services, args.commits, args.samples, args.batch = 5, 60, 2, 5

    if args.build_only:
        started = time.perf_counter()
        layout = build_repo(args.build_only, args.services, args.commits)
        print(f"{layout.commits} commits in {time.perf_counter() - started:.1f} s")
        return

    work = Path(tempfile.mkdtemp(prefix="ferry-bench-history-"))
    amqp_url, stop_broker = resolve_amqp_url()
    try:
        built: dict[str, tuple[Path, Layout, float]] = {}
        fresh_commits = args.services * (2 + len(ENVIRONMENTS))
        for kind, commits in (("fresh", fresh_commits), ("history", args.commits)):
            started = time.perf_counter()
            layout = build_repo(work / f"{kind}.git", args.services, commits)
            built[kind] = (work / f"{kind}.git", layout, time.perf_counter() - started)
            print(f"{kind}: {layout.commits} commits built in {built[kind][2]:.1f} s")
        results = {}
        for kind, (remote, layout, _) in built.items():
            results[kind] = await measure(
                amqp_url, remote, layout, work / f"run-{kind}", args.samples, args.batch
            )
            print(f"{kind}: " + ", ".join(f"{k} {v:.3f}" for k, v in results[kind].items()))
    finally:
        stop_broker()
        if args.keep:
            print(f"work dir kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)

    fresh, history = results["fresh"], results["history"]
    report = Report("history")
    note = f"{int(history['commits'])} vs {int(fresh['commits'])} commits"
    for key, text in LABELS.items():
        value, base = history[key], fresh[key]
        if key == "promotion_start":
            goal, met = "", None
        else:
            goal, met = "<= 1.5x fresh", value <= 1.5 * base
        if key == "writer_start":
            goal, met = "<= 1.5x fresh, < 5 s", met and value < 5.0
        label = (
            f"git-writer cycle, batch of {args.batch} releases" if key == "writer_batch" else text
        )
        report.add(
            label,
            value * 1000,
            "ms",
            baseline=base * 1000,
            baseline_name="fresh repo",
            goal=goal,
            met=met,
            note=note if key == "writer_start" else "",
        )
    report.save()


if __name__ == "__main__":
    asyncio.run(main())

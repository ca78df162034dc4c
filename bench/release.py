"""Benchmark (issue 3): release requests from promotion's API to ``ferry.release.committed.v1``.

Runs promotion and git-writer as their own processes on a fresh broker namespace and a
temporary bare remote (seeded with stored artifacts of several services), and reports
from ONE run:

* steady rate (default 20 requests/s for 15 s): releases committed per second and the
  p50/p95/p99 latency from the API call to ``ferry.release.committed.v1``;
* a burst of N requests sent at once: releases committed per second (capacity);
* the baseline, what release-manager does: one ``git clone`` + copy + commit + ``git push``
  per release with the git CLI, fed at the same steady rate: its throughput and latency;
* the ratios.

    uv run python bench/release.py [--rate 20] [--duration 15] [--burst 200] [--baseline 20]
        [--replicas 2] [--postgres] [--environments dev,staging,prod] [--mixed]

``--replicas N`` runs N promotion and N git-writer processes (promotion's replicas on one
PostgreSQL database, each replica with its own data dir) and spreads the requests over
every promotion API; ``--postgres`` puts even one promotion on PostgreSQL, so that one and
two replicas compare on the same database.

``--mixed`` is issue 15's mixed load: 100 services x dev, staging and prod, 50 requests/s for
60 s spread over two promotion replicas (and two git-writers), with its p99.

Goals: p95 < 1 s at 20 requests/s, and 10x the baseline's throughput; p99 < 1 s mixed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

import aio_pika
import httpx
import yaml
from aio_pika.abc import AbstractIncomingMessage
from report import Report

from ferry_events import ArtifactAccepted, ArtifactSpec, CloudEvent, decode
from ferry_testing import BrokerNamespace, ServiceProcess, git, make_bare_remote, resolve_amqp_url
from ferry_testing.database import postgres_database
from ferry_testing.net import free_port

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
OUTCOMES = ("ferry.release.committed.v1", "ferry.release.rejected.v1", "ferry.release.failed.v1")
DECIDED = ("ferry.release.approved.v1", "ferry.release.rejected.v1")


def manifests() -> dict[str, dict[str, str]]:
    return {
        env.name: {f.name: f.read_text() for f in sorted(env.iterdir()) if f.is_file()}
        for env in sorted((EXAMPLES / "manifests").iterdir())
        if env.is_dir()
    }


def spec(service: str, n: int) -> ArtifactSpec:
    raw = json.loads((EXAMPLES / "artifact.json").read_text())
    raw.update(id=f"master-{n:010d}-{secrets.token_hex(5)}", service=service, namespace=service)
    return ArtifactSpec.model_validate(raw)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(latencies: list[float]) -> str:
    p50, p95, p99 = (percentile(latencies, q) * 1000 for q in (50, 95, 99))
    return f"p50 {p50:7.1f} ms  p95 {p95:7.1f} ms  p99 {p99:7.1f} ms"


class Outcomes:
    """When each release's outcome event arrived, by release id."""

    def __init__(self, ns: BrokerNamespace) -> None:
        self.ns = ns
        self.at: dict[str, float] = {}
        self.kind: dict[str, str] = {}
        self.stored: int = 0
        self.decided: dict[str, float] = {}
        self._connection: aio_pika.abc.AbstractConnection | None = None

    async def start(self) -> None:
        self._connection = await aio_pika.connect(self.ns.amqp_url)
        channel = await self._connection.channel()
        exchange = await channel.declare_exchange(
            self.ns.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        for key in (*OUTCOMES, *DECIDED, "ferry.artifact.stored.v1"):
            await queue.bind(exchange, key)
        await queue.consume(self._on, no_ack=True)

    async def _on(self, message: AbstractIncomingMessage) -> None:
        event = decode(
            message.body, headers=message.headers or {}, content_type=message.content_type
        )
        if event.type == "ferry.artifact.stored.v1":
            self.stored += 1
            return
        release_id = str(event.data.get("releaseId"))
        if event.type in DECIDED:
            self.decided.setdefault(release_id, time.perf_counter())
            if event.type != "ferry.release.rejected.v1":
                return
        self.at.setdefault(release_id, time.perf_counter())
        self.kind.setdefault(release_id, event.type.split(".")[2])

    async def stop(self) -> None:
        if self._connection is not None:
            await self._connection.close()


async def wait_ready(url: str, process: ServiceProcess, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while True:
            try:
                if (await client.get(url, timeout=2)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                sys.exit(f"{process.module} not ready: {process.logs()[-2000:]}")
            await asyncio.sleep(0.2)


async def run_requests(
    clients: list[httpx.AsyncClient],
    outcomes: Outcomes,
    token: str,
    targets: list[tuple[str, str, str]],
    rate: float | None,
    timeout: float = 120,
) -> tuple[list[float], float, dict[str, int]]:
    """Send one release per target (at ``rate``/s, or all at once); wait for every outcome."""
    sent: dict[str, float] = {}
    headers = {"Authorization": f"Bearer {token}"}
    limit = asyncio.Semaphore(50)

    async def one(i: int, service: str, artifact_id: str, environment: str) -> None:
        async with limit:
            started = time.perf_counter()
            response = await clients[i % len(clients)].post(
                "/v1/releases",
                json={
                    "service": service,
                    "environment": environment,
                    "intent": "release",
                    "artifactId": artifact_id,
                },
                headers=headers,
            )
            response.raise_for_status()
            sent[response.json()["releaseId"]] = started

    began = time.perf_counter()
    tasks = []
    for i, (service, artifact_id, environment) in enumerate(targets):
        if rate:
            delay = began + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, service, artifact_id, environment)))
    await asyncio.gather(*tasks)
    deadline = time.perf_counter() + timeout
    while not all(r in outcomes.at for r in sent) and time.perf_counter() < deadline:
        await asyncio.sleep(0.02)
    done = [r for r in sent if r in outcomes.at]
    latencies = [outcomes.at[r] - sent[r] for r in done]
    decided = [outcomes.decided[r] - sent[r] for r in done if r in outcomes.decided]
    print(f"  (request to decision: {summary(decided)})")
    finished = max((outcomes.at[r] for r in done), default=began)
    kinds: dict[str, int] = {}
    for r in sent:
        kind = outcomes.kind.get(r, "missing")
        kinds[kind] = kinds.get(kind, 0) + 1
    return latencies, finished - began, kinds


def baseline(
    remote: Path, work: Path, targets: list[tuple[str, str, str]], rate: float
) -> tuple[list[float], float]:
    """release-manager's way: per release, clone, copy the build to the env folder, commit, push."""
    latencies: list[float] = []
    began = time.perf_counter()
    for i, (service, artifact_id, environment) in enumerate(targets):
        arrival = began + i / rate
        now = time.perf_counter()
        if now < arrival:
            time.sleep(arrival - now)
        checkout = work / f"clone-{i}"
        git("clone", "--quiet", "--branch", "main", str(remote), str(checkout))
        git("config", "user.email", "release-manager@example.com", cwd=checkout)
        git("config", "user.name", "release-manager", cwd=checkout)
        source = checkout / "builds" / service / artifact_id
        target = checkout / "environments" / environment / service / service
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        shutil.copy(source / "artifact.json", target / "artifact.json")
        for manifest in (source / environment).iterdir():
            shutil.copy(manifest, target / manifest.name)
        git("add", "-A", cwd=checkout)
        git(
            "commit",
            "--quiet",
            "-m",
            f"[{environment}/{service}] release {artifact_id} by bench",
            cwd=checkout,
        )
        git("push", "--quiet", "origin", "HEAD:main", cwd=checkout)
        shutil.rmtree(checkout)
        latencies.append(time.perf_counter() - arrival)
    return latencies, time.perf_counter() - began


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--burst", type=int, default=200)
    parser.add_argument("--baseline", type=int, default=20, help="releases in the baseline run")
    parser.add_argument("--services", type=int, default=20)
    parser.add_argument("--replicas", type=int, default=1, help="of promotion and git-writer")
    parser.add_argument(
        "--postgres", action="store_true", help="promotion on PostgreSQL (always with replicas)"
    )
    parser.add_argument(
        "--environments", default="dev", help="comma list; requests go to each in turn"
    )
    parser.add_argument(
        "--mixed",
        action="store_true",
        help="issue 15's mixed load: 100 services x dev, staging, prod, 50 requests/s for 60 s "
        "over 2 promotion replicas (each of those settings can still be given)",
    )
    args = parser.parse_args()
    if args.mixed:
        given = set(sys.argv[1:])
        defaults = {
            "--services": ("services", 100),
            "--environments": ("environments", "dev,staging,prod"),
            "--rate": ("rate", 50.0),
            "--duration": ("duration", 60.0),
            "--replicas": ("replicas", 2),
        }
        for flag, (name, value) in defaults.items():
            if flag not in given:
                setattr(args, name, value)
    async with contextlib.AsyncExitStack() as stack:
        database = ""
        if args.postgres or args.replicas > 1:
            database = await stack.enter_async_context(postgres_database())
        await measure(args, database)


async def measure(args: argparse.Namespace, database: str) -> None:
    """One run: the services, the seeding, the steady rate and the burst, then the baseline."""

    steady_n = int(args.rate * args.duration)
    per_service = -(-(steady_n + args.burst) // args.services) + 1
    amqp_url, stop_broker = resolve_amqp_url()
    ns = BrokerNamespace(amqp_url)
    tmp = Path(tempfile.mkdtemp(prefix="ferry-bench-release-"))
    remote = make_bare_remote(tmp / "config.git")
    token = secrets.token_urlsafe(24)
    tokens = tmp / "tokens.yaml"
    tokens.write_text(
        yaml.safe_dump(
            {
                "tokens": [
                    {
                        "subject": "bench",
                        "email": "bench@example.com",
                        "roles": ["admin"],
                        "sha256": hashlib.sha256(token.encode()).hexdigest(),
                    }
                ]
            }
        )
    )
    common = {
        "FERRY_LOG_LEVEL": "WARNING",
        "FERRY_LOG_FORMAT": "json",
        "FERRY_CONFIG_REPO_URL": str(remote),
    }
    writers = [
        ServiceProcess(
            "ferry_gitwriter",
            ns.env(**common, FERRY_DATA_DIR=str(tmp / f"gw-{n}"), FERRY_HTTP_PORT=str(free_port())),
            tmp / f"git-writer-{n}.log",
        )
        for n in range(args.replicas)
    ]
    ports = [free_port() for _ in range(args.replicas)]
    promotions = [
        ServiceProcess(
            "ferry_promotion",
            ns.env(
                **common,
                FERRY_DATA_DIR=str(tmp / f"promotion-{n}"),
                FERRY_HTTP_PORT=str(port),
                FERRY_API_TOKENS_FILE=str(tokens),
                **({"FERRY_DATABASE_URL": database} if database else {}),
            ),
            tmp / f"promotion-{n}.log",
        )
        for n, port in enumerate(ports)
    ]
    writer = writers[0]
    outcomes = Outcomes(ns)
    await outcomes.start()
    for process in (*writers, *promotions):
        process.start()
    try:
        for port, promotion in zip(ports, promotions, strict=True):
            await wait_ready(f"http://127.0.0.1:{port}/readyz", promotion)
        await asyncio.sleep(1.0)  # git-writer declares its queue on start
        # seed: artifacts of several services, stored by git-writer
        services = [f"svc-{i:02d}" for i in range(args.services)]
        artifacts = {s: [spec(s, n) for n in range(per_service)] for s in services}
        total = sum(len(v) for v in artifacts.values())
        print(f"seeding {total} artifacts of {len(services)} services through git-writer ...")
        seed_start = time.perf_counter()
        for s in services:
            for a in artifacts[s]:
                await ns.publish(
                    CloudEvent.new(
                        ArtifactAccepted(artifact=a, manifests=manifests()),
                        source="ferry/artifact-ingest",
                    )
                )
        while outcomes.stored < total:
            if time.perf_counter() - seed_start > 300:
                sys.exit(f"seeding stalled at {outcomes.stored}/{total}: {writer.logs()[-2000:]}")
            await asyncio.sleep(0.1)
        print(f"seeded in {time.perf_counter() - seed_start:.1f} s")

        environments = [e.strip() for e in args.environments.split(",") if e.strip()]
        order = [
            (s, artifacts[s][n].id, environments[(n + i) % len(environments)])
            for n in range(per_service)
            for i, s in enumerate(services)
        ]
        steady_targets, burst_targets = order[:steady_n], order[steady_n : steady_n + args.burst]
        async with contextlib.AsyncExitStack() as clients_open:
            clients = [
                await clients_open.enter_async_context(
                    httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30)
                )
                for port in ports
            ]
            steady, steady_span, steady_kinds = await run_requests(
                clients, outcomes, token, steady_targets, args.rate
            )
            burst, burst_span, burst_kinds = await run_requests(
                clients, outcomes, token, burst_targets, None
            )
        print(
            f"\nferry, steady {args.rate:g} req/s for {args.duration:g} s "
            f"({len(steady_targets)} releases, {args.services} services x "
            f"{args.environments}): {steady_kinds}"
        )
        steady_tput = len(steady) / steady_span if steady_span else 0.0
        print(f"  committed {steady_tput:6.1f} releases/s   {summary(steady)}")
        burst_tput = len(burst) / burst_span if burst_span else 0.0
        print(f"ferry, burst of {len(burst_targets)} at once: {burst_kinds}")
        print(f"  committed {burst_tput:6.1f} releases/s   {summary(burst)}")
    finally:
        for process in (*promotions, *writers):
            process.terminate()
        await outcomes.stop()
        await ns.cleanup()

    # the baseline on its own remote (a copy of the seeded one), at the same steady rate
    base_remote = tmp / "baseline.git"
    git("clone", "--quiet", "--bare", str(remote), str(base_remote))
    work = tmp / "baseline-work"
    work.mkdir()
    base_targets = order[: args.baseline]
    base_lat, base_span = baseline(base_remote, work, base_targets, args.rate)
    base_tput = len(base_lat) / base_span
    print(
        f"baseline (git clone + commit + push per release), fed at {args.rate:g} req/s, "
        f"{len(base_targets)} releases:"
    )
    print(f"  committed {base_tput:6.1f} releases/s   {summary(base_lat)}")
    print("\nratios (ferry / baseline):")
    print(f"  throughput, burst capacity: {burst_tput / base_tput:5.1f}x")
    print(f"  throughput at the steady rate: {steady_tput / base_tput:5.1f}x")
    lower = percentile(base_lat, 95) / percentile(steady, 95)
    print(f"  p95 latency at the steady rate: {lower:5.1f}x lower")
    goal_p95 = percentile(steady, 95) < 1.0
    goal_tput = burst_tput >= 10 * base_tput
    print(
        f"\ngoals: p95 < 1 s at {args.rate:g} req/s: {'met' if goal_p95 else 'NOT met'}; "
        f"10x baseline throughput: {'met' if goal_tput else 'NOT met'}"
    )
    shape = (
        f", {args.replicas} replicas" if args.replicas > 1 else (", PostgreSQL" if database else "")
    )
    report = Report(
        "release-mixed" if args.mixed else ("release" if not shape else f"release-{args.replicas}x")
    )
    report.add(
        f"p95 request to committed at {args.rate:g} req/s{shape}",
        percentile(steady, 95) * 1000,
        "ms",
        baseline=percentile(base_lat, 95) * 1000,
        baseline_name="clone+commit+push",
        goal="< 1 s",
        met=goal_p95,
    )
    report.add(
        f"committed, burst of {len(burst_targets)}{shape}",
        burst_tput,
        "releases/s",
        baseline=base_tput,
        baseline_name="clone+commit+push",
        goal=">= 10x baseline",
        met=goal_tput,
    )
    if args.mixed:
        report.add(
            f"p99 request to committed, {args.services} services x {args.environments} at "
            f"{args.rate:g} req/s for {args.duration:g} s{shape}",
            percentile(steady, 99) * 1000,
            "ms",
            baseline=percentile(base_lat, 99) * 1000,
            baseline_name="clone+commit+push",
            goal="< 1 s (issue 15)",
            met=percentile(steady, 99) < 1.0,
        )
    report.save()
    shutil.rmtree(tmp, ignore_errors=True)
    stop_broker()


if __name__ == "__main__":
    asyncio.run(main())

"""Benchmark (issue 2): how fast built artifacts land in the config repo.

Runs artifact-ingest and git-writer as their own processes on a fresh broker
namespace and a temporary bare remote, and reports from ONE run:

* a burst of N artifacts published at once: artifacts stored per second, and
  p50/p95 latency from publish to ``ferry.artifact.stored.v1``;
* the same burst of ``ferry.artifact.accepted.v1`` fed to git-writer alone;
* single-artifact latency on an idle system (p50/p95 over sequential artifacts);
* the baseline: one ``git clone`` + commit + ``git push`` per artifact with the git CLI;
* the ceiling: raw RabbitMQ publish-to-consume throughput with confirms, same broker;
* each service's peak memory (RSS), and the ratio stored/baseline.

    uv run python bench/ingest.py [--n 500] [--idle 20] [--baseline 50]

Goals: stored/s >= 10x the baseline, single-artifact p50 < 250 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage
from report import Report

from ferry_events import (
    ArtifactAccepted,
    ArtifactPublished,
    ArtifactSpec,
    CloudEvent,
    decode,
    encode,
)
from ferry_runtime import ServiceQueues, build_message
from ferry_testing import BrokerNamespace, ServiceProcess, git, make_bare_remote, resolve_amqp_url

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
STORED = "ferry.artifact.stored.v1"
REJECTED = "ferry.artifact.rejected.v1"


def example() -> tuple[dict[str, Any], dict[str, dict[str, str]]]:
    artifact = json.loads((EXAMPLES / "artifact.json").read_text())
    manifests = {
        env.name: {f.name: f.read_text() for f in sorted(env.iterdir()) if f.is_file()}
        for env in sorted((EXAMPLES / "manifests").iterdir())
        if env.is_dir()
    }
    return artifact, manifests


def artifact_event(artifact_id: str) -> CloudEvent:
    artifact, manifests = example()
    artifact["id"] = artifact_id
    return CloudEvent.new(
        ArtifactPublished(artifact=artifact, manifests=manifests), source="ferry/ci"
    )


def accepted_event(artifact_id: str) -> CloudEvent:
    artifact, manifests = example()
    artifact["id"] = artifact_id
    spec = ArtifactSpec.model_validate(artifact)
    return CloudEvent.new(
        ArtifactAccepted(artifact=spec, manifests=manifests), source="ferry/artifact-ingest"
    )


def pct(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


class Outcomes:
    """Hears stored/rejected events and notes when each arrived (by correlation id)."""

    def __init__(self, ns: BrokerNamespace) -> None:
        self.ns = ns
        self.arrived: dict[str, float] = {}
        self.rejected: list[CloudEvent] = []
        self.changed = asyncio.Event()

    async def start(self, connection: aio_pika.abc.AbstractConnection) -> None:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=1000)
        exchange = await channel.declare_exchange(
            self.ns.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        for key in (STORED, REJECTED):
            await queue.bind(exchange, key)
        await queue.consume(self._on_message, no_ack=True)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        now = time.perf_counter()
        event = decode(
            message.body, headers=message.headers or {}, content_type=message.content_type
        )
        if event.type == REJECTED:
            self.rejected.append(event)
        self.arrived.setdefault(event.correlationid, now)
        self.changed.set()

    async def wait(self, ids: list[str], timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not all(i in self.arrived for i in ids):
                self.changed.clear()
                await self.changed.wait()
        if self.rejected:
            raise RuntimeError(f"artifacts were rejected: {self.rejected[0].data}")


async def wait_for_consumers(ns: BrokerNamespace, services: list[str], timeout: float = 60) -> None:
    connection = await aio_pika.connect(ns.amqp_url)
    async with connection, asyncio.timeout(timeout):
        for service in services:
            name = ServiceQueues(service, ns.queue_prefix, (), ()).main
            while True:
                channel = await connection.channel()
                try:
                    queue = await channel.declare_queue(name, passive=True)
                    if queue.declaration_result.consumer_count:
                        await channel.close()
                        break
                    await channel.close()
                except aio_pika.exceptions.ChannelClosed:
                    pass
                await asyncio.sleep(0.2)


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# --------------------------------------------------------------------------- measurements


#: the services that also consume every ``artifact.stored`` when the whole system runs
#: (cluster-watcher needs a cluster and consumes no artifact events)
SYSTEM = (
    ("promotion", "ferry_promotion"),
    ("notifier", "ferry_notifier"),
    ("insights", "ferry_insights"),
)


async def run_services(
    ns: BrokerNamespace,
    work: Path,
    n: int,
    idle: int,
    log_level: str,
    system: bool = False,
) -> dict[str, Any]:
    """The figures with artifact-ingest and git-writer alone, or (``system``) with every
    service that consumes artifact events running as its own process, as ``make run`` does."""
    work.mkdir(parents=True, exist_ok=True)
    remote = make_bare_remote(work / "config.git")
    env = ns.env(
        FERRY_CONFIG_REPO_URL=str(remote),
        FERRY_DATA_DIR=str(work / "data"),
        FERRY_HTTP_PORT="0",
        FERRY_LOG_LEVEL=log_level,
        FERRY_LOG_FORMAT="json",
    )
    ingest = ServiceProcess("ferry_ingest", env, work / "ingest.log").start()
    writer = ServiceProcess("ferry_gitwriter", env, work / "git-writer.log").start()
    others = (
        [ServiceProcess(module, env, work / f"{name}.log").start() for name, module in SYSTEM]
        if system
        else []
    )
    results: dict[str, Any] = {}
    try:
        names = ["artifact-ingest", "git-writer"]
        await wait_for_consumers(ns, names + ([n for n, _ in SYSTEM] if system else []))
        connection = await aio_pika.connect(ns.amqp_url)
        async with connection:
            outcomes = Outcomes(ns)
            await outcomes.start(connection)
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            exchange = await channel.declare_exchange(
                ns.exchange, aio_pika.ExchangeType.TOPIC, durable=True
            )
            run = uuid.uuid4().hex[:6]

            async def one(artifact_id: str) -> float:
                event = artifact_event(artifact_id)
                started = time.perf_counter()
                await exchange.publish(build_message(event), routing_key=event.type, mandatory=True)
                await outcomes.wait([event.correlationid], timeout=30)
                return outcomes.arrived[event.correlationid] - started

            for i in range(3):  # warm-up: imports, first clone, first pack
                await one(f"warmup-{run}-{i}")
            idle_latencies = [await one(f"idle-{run}-{i:03d}") for i in range(idle)]
            results["idle_p50"] = statistics.median(idle_latencies)
            results["idle_p95"] = pct(idle_latencies, 95)

            events = [artifact_event(f"burst-{run}-{i:05d}") for i in range(n)]
            sent: dict[str, float] = {}

            async def publish(event: CloudEvent) -> None:
                sent[event.correlationid] = time.perf_counter()
                await exchange.publish(build_message(event), routing_key=event.type, mandatory=True)

            started = time.perf_counter()
            await asyncio.gather(*(publish(e) for e in events))
            published = time.perf_counter()
            await outcomes.wait(list(sent), timeout=max(120.0, n * 0.5))
            last = max(outcomes.arrived[i] for i in sent)
            latencies = [outcomes.arrived[i] - sent[i] for i in sent]
            results["burst_seconds"] = last - started
            results["publish_seconds"] = published - started
            results["stored_per_s"] = n / (last - started)
            results["burst_p50"] = statistics.median(latencies)
            results["burst_p95"] = pct(latencies, 95)

            # git-writer alone: the same burst as artifact-ingest would have passed it on
            accepted = [accepted_event(f"direct-{run}-{i:05d}") for i in range(n)]
            sent.clear()
            started = time.perf_counter()
            await asyncio.gather(*(publish(e) for e in accepted))
            await outcomes.wait(list(sent), timeout=max(120.0, n * 0.5))
            last = max(outcomes.arrived[i] for i in sent)
            results["writer_per_s"] = n / (last - started)
        results["rss_ingest"] = peak_rss_mib(ingest.proc.pid)  # type: ignore[union-attr]
        results["rss_git_writer"] = peak_rss_mib(writer.proc.pid)  # type: ignore[union-attr]
        commits = git("--git-dir", str(remote), "rev-list", "--count", "main").strip()
        results["commits"] = int(commits)
    finally:
        for process in (ingest, writer, *others):
            if process.terminate(30) != 0:
                print(f"{process.module} exited badly; last log lines:", file=sys.stderr)
                print("\n".join(process.logs().splitlines()[-20:]), file=sys.stderr)
    return results


def baseline(work: Path, count: int) -> dict[str, float]:
    """One clone + commit + push per artifact, the way a simple writer would do it."""
    remote = make_bare_remote(work / "baseline.git")
    _, manifests = example()
    latencies: list[float] = []
    started = time.perf_counter()
    for i in range(count):
        t0 = time.perf_counter()
        checkout = work / f"baseline-{i}"
        git("clone", "--quiet", str(remote), str(checkout))
        git("symbolic-ref", "HEAD", "refs/heads/main", cwd=checkout)
        event = artifact_event(f"baseline-{i:05d}")
        folder = checkout / "builds" / "payments" / f"baseline-{i:05d}"
        folder.mkdir(parents=True)
        (folder / "artifact.json").write_text(json.dumps(event.data["artifact"], indent=2) + "\n")
        for env_name, files in manifests.items():
            (folder / env_name).mkdir()
            for name, text in files.items():
                (folder / env_name / name).write_text(text)
        git("add", "-A", cwd=checkout)
        git(
            "-c",
            "user.name=Ferry",
            "-c",
            "user.email=ferry@localhost",
            "commit",
            "--quiet",
            "-m",
            f"[builds/payments] store baseline-{i:05d}",
            "-m",
            f"Ferry-Event-Id: {event.id}",
            cwd=checkout,
        )
        git("push", "--quiet", "origin", "HEAD:refs/heads/main", cwd=checkout)
        shutil.rmtree(checkout)
        latencies.append(time.perf_counter() - t0)
    total = time.perf_counter() - started
    return {
        "per_s": count / total,
        "p50": statistics.median(latencies),
        "p95": pct(latencies, 95),
    }


async def ceiling(ns: BrokerNamespace, n: int) -> float:
    """Raw publish (confirms, persistent, quorum queue) to consume (manual ack) throughput."""
    body = encode(artifact_event("ceiling"))
    name = f"{ns.queue_prefix}.bench-ceiling"
    connection = await aio_pika.connect(ns.amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=500)
        queue = await channel.declare_queue(
            name, durable=True, arguments={"x-queue-type": "quorum"}
        )
        done = asyncio.Event()
        consumed = 0

        async def on_message(message: AbstractIncomingMessage) -> None:
            nonlocal consumed
            await message.ack()
            consumed += 1
            if consumed == n:
                done.set()

        tag = await queue.consume(on_message)
        started = time.perf_counter()
        await asyncio.gather(
            *(
                channel.default_exchange.publish(
                    aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    routing_key=name,
                )
                for _ in range(n)
            )
        )
        await asyncio.wait_for(done.wait(), 120)
        elapsed = time.perf_counter() - started
        await queue.cancel(tag)
        await channel.queue_delete(name)
    return n / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=500, help="artifacts in the burst")
    parser.add_argument(
        "--idle", type=int, default=20, help="sequential artifacts on an idle system"
    )
    parser.add_argument(
        "--baseline", type=int, default=50, help="artifacts for the git CLI baseline"
    )
    parser.add_argument("--log-level", default="WARNING", help="the services' log level")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (repos, logs)")
    parser.add_argument(
        "--system",
        action="store_true",
        help="also run the burst with every service that consumes artifact events running",
    )
    args = parser.parse_args()

    amqp_url, stop_broker = resolve_amqp_url()
    ns = BrokerNamespace(amqp_url)
    work = Path(tempfile.mkdtemp(prefix="ferry-bench-ingest-"))
    try:
        raw = await ceiling(ns, args.n)
        measured = await run_services(ns, work / "alone", args.n, args.idle, args.log_level)
        whole = (
            await run_services(ns, work / "system", args.n, 3, args.log_level, system=True)
            if args.system
            else None
        )
        base = await asyncio.to_thread(baseline, work, min(args.baseline, args.n))
    finally:
        await ns.cleanup()
        if args.keep:
            print(f"work dir kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
        stop_broker()

    ratio = measured["stored_per_s"] / base["per_s"]
    lines = [
        f"ferry bench ingest: burst of {args.n} artifacts, {args.idle} idle, "
        f"{min(args.baseline, args.n)} baseline (one run)",
        f"  stored (ingest + git-writer)    {measured['stored_per_s']:8.1f} artifacts/s"
        f"   p50 {ms(measured['burst_p50'])}  p95 {ms(measured['burst_p95'])}"
        f"   (burst {measured['burst_seconds']:.2f} s)",
        f"  git-writer alone (accepted in)  {measured['writer_per_s']:8.1f} artifacts/s",
        f"  single artifact, idle system                     "
        f"   p50 {ms(measured['idle_p50'])}  p95 {ms(measured['idle_p95'])}",
        f"  baseline (clone+commit+push)    {base['per_s']:8.1f} artifacts/s"
        f"   p50 {ms(base['p50'])}  p95 {ms(base['p95'])}",
        f"  ceiling (RabbitMQ, confirms)    {raw:8.1f} messages/s",
        f"  peak RSS                        artifact-ingest {measured['rss_ingest']:.0f} MiB, "
        f"git-writer {measured['rss_git_writer']:.0f} MiB",
        f"  ratio stored/baseline           {ratio:8.1f}x   (goal >= 10x: "
        f"{'met' if ratio >= 10 else 'NOT met'})",
        f"  single-artifact p50             {ms(measured['idle_p50']):>8}   (goal < 250 ms: "
        f"{'met' if measured['idle_p50'] < 0.25 else 'NOT met'})",
        f"  config repo                     {measured['commits']} commits "
        f"(expected {3 + args.idle + 2 * args.n}: one per artifact)",
        f"  stored/ceiling                  {measured['stored_per_s'] / raw:8.2f}",
    ]
    print("\n".join(lines))
    report = Report("ingest")
    report.add(
        f"stored, burst of {args.n} (ingest + git-writer)",
        measured["stored_per_s"],
        "artifacts/s",
        baseline=base["per_s"],
        baseline_name="clone+commit+push",
        goal=">= 10x baseline",
        met=ratio >= 10,
    )
    if whole is not None:
        print(
            f"  whole system (+ {', '.join(n for n, _ in SYSTEM)}) "
            f"{whole['stored_per_s']:8.1f} artifacts/s   p50 {ms(whole['burst_p50'])}  "
            f"p95 {ms(whole['burst_p95'])}   (ingest + git-writer alone "
            f"{measured['stored_per_s']:.1f})"
        )
        report.add(
            f"stored, burst of {args.n}, whole system",
            whole["stored_per_s"],
            "artifacts/s",
            baseline=base["per_s"],
            baseline_name="clone+commit+push",
            goal="500/s, 50x baseline (issue 15)",
            met=whole["stored_per_s"] >= 500 and whole["stored_per_s"] >= 50 * base["per_s"],
            note=f"ingest + git-writer alone: {measured['stored_per_s']:.0f}/s",
        )
    report.add(
        "git-writer alone (accepted in)",
        measured["writer_per_s"],
        "artifacts/s",
        baseline=base["per_s"],
        baseline_name="clone+commit+push",
    )
    report.add(
        "single artifact, idle, p50",
        measured["idle_p50"] * 1000,
        "ms",
        baseline=base["p50"] * 1000,
        baseline_name="clone+commit+push",
        goal="< 250 ms",
        met=measured["idle_p50"] < 0.25,
    )
    report.save()


if __name__ == "__main__":
    asyncio.run(main())

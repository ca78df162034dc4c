"""Benchmark (issue 15, item 5): time to production.

Runs Ferry as ``make run`` does (``scripts/run_local.py``: every service its own process and
the local Kubernetes simulator playing Flux and the kubelet) on a broker namespace and a data
dir of its own, applies a policy that auto-releases master builds to dev, then pushes
``--pushes`` builds one after another with ``ferry artifact push --wait`` (the CLI, as CI runs
it) and times each from the CLI's start to ``ferry.rollout.succeeded.v1`` in dev.

A tap on the exchange stamps when each event of a push arrived, so the table splits the time
into the part each service takes:

- **CLI**: process start to ``artifact.published`` (the CLI's own start-up and publish);
- **artifact-ingest**: published to ``artifact.accepted``;
- **git-writer (store)**: accepted to ``artifact.stored``;
- **promotion**: stored to ``release.approved`` (auto-release request and decision);
- **git-writer (commit)**: approved to ``release.committed``;
- **Flux + rollout**: committed to ``rollout.started`` (the simulator's poll of the config repo
  and its apply; a real Flux with a webhook receiver starts at once);
- **rollout + cluster-watcher**: started to ``rollout.succeeded`` (the simulated kubelet's
  rollout steps and the watcher's report).

The baseline, measured in the same run, is what a CI job does without Ferry: ``git clone`` of
the config repo, copy the build's manifests into ``environments/dev``, commit, ``git push``,
then wait for the same simulator to apply it (its poll interval and rollout steps are the same
as Ferry's).

    uv run python bench/e2e.py [--pushes 50] [--poll-interval 0.2] [--keep]

Goal: p95 from ``ferry artifact push --wait`` to ``rollout.succeeded`` under 2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aio_pika
import httpx
from aio_pika.abc import AbstractIncomingMessage
from report import Report

from ferry_events import CloudEvent, decode
from ferry_testing import BrokerNamespace, resolve_amqp_url
from ferry_testing.net import free_base_port

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SERVICE = "payments"

#: (event type, what part ends when it arrives) in the order a push goes through them.
HOPS = (
    ("ferry.artifact.published.v1", "CLI (start-up and publish)"),
    ("ferry.artifact.accepted.v1", "artifact-ingest (validate)"),
    ("ferry.artifact.stored.v1", "git-writer (store the build)"),
    ("ferry.release.approved.v1", "promotion (auto-release, decide)"),
    ("ferry.release.committed.v1", "git-writer (commit dev)"),
    ("ferry.rollout.started.v1", "Flux + apply (simulator poll)"),
    ("ferry.rollout.succeeded.v1", "rollout + cluster-watcher"),
)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def artifact_of(event: CloudEvent) -> str:
    data: dict[str, Any] = event.data if isinstance(event.data, dict) else {}
    artifact = data.get("artifact")
    if isinstance(artifact, dict) and isinstance(artifact.get("id"), str):
        return str(artifact["id"])
    return str(data.get("artifactId") or "")


class Tap:
    """When each (event type, artifact) was first seen on the exchange (dev only for releases)."""

    def __init__(self, ns: BrokerNamespace) -> None:
        self.ns = ns
        self.seen: dict[tuple[str, str], float] = {}
        self.changed = asyncio.Event()
        self.connection: aio_pika.abc.AbstractConnection | None = None

    async def start(self) -> None:
        self.connection = await aio_pika.connect(self.ns.amqp_url)
        channel = await self.connection.channel()
        exchange = await channel.declare_exchange(
            self.ns.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(exchange, "#")
        await queue.consume(self._on_message, no_ack=True)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        at = time.time()
        try:
            event = decode(message.body)
        except Exception:  # the tap only times what it can read
            return
        data = event.data if isinstance(event.data, dict) else {}
        environment = data.get("environment")
        if environment not in (None, "dev"):
            return
        self.seen.setdefault((event.type, artifact_of(event)), at)
        self.changed.set()

    async def wait(self, event_type: str, artifact_id: str, timeout: float) -> float:
        async with asyncio.timeout(timeout):
            while (event_type, artifact_id) not in self.seen:
                self.changed.clear()
                await self.changed.wait()
        return self.seen[(event_type, artifact_id)]

    async def close(self) -> None:
        if self.connection is not None:
            await self.connection.close()


def write_build(target: Path, artifact_id: str) -> tuple[Path, Path]:
    artifact: dict[str, Any] = json.loads((EXAMPLES / "artifact.json").read_text())
    artifact["id"] = artifact_id
    manifests = target / "manifests"
    shutil.copytree(EXAMPLES / "manifests", manifests)
    for env_dir in manifests.iterdir():
        deployment = env_dir / "deployment.yaml"
        deployment.write_text(
            deployment.read_text().replace("master-0017d995e3-67e9d69164", artifact_id)
        )
    path = target / "artifact.json"
    path.write_text(json.dumps(artifact))
    return path, manifests


async def wait_for_line(
    log: Path, text: str, proc: subprocess.Popen[bytes], timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in log.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            break
        await asyncio.sleep(0.3)
    raise RuntimeError(
        f"{text!r} not seen; make run said:\n{log.read_text(errors='replace')[-4000:]}"
    )


async def push(env: dict[str, str], artifact: Path, manifests: Path) -> float:
    """``ferry artifact push --wait``; returns when the CLI process started (epoch seconds)."""
    started = time.time()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ferry_cli", "artifact", "push", str(artifact),
        "--manifests", str(manifests), "--wait", "--timeout", "60",
        env=env, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(
            f"ferry artifact push failed ({proc.returncode}): {out.decode()[-2000:]}"
        )
    return started


async def rolled_out(kube: httpx.AsyncClient, namespace: str, name: str, artifact_id: str) -> bool:
    """The deployment runs ``artifact_id``'s image and its rollout finished."""
    response = await kube.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}")
    if response.status_code != 200:
        return False
    body = response.json()
    image = str(body["spec"]["template"]["spec"]["containers"][0].get("image", ""))
    status = body.get("status") or {}
    replicas = body["spec"].get("replicas", 1)
    return (
        artifact_id in image
        and status.get("observedGeneration", 0) >= body["metadata"].get("generation", 1)
        and status.get("updatedReplicas") == replicas
        and status.get("availableReplicas") == replicas
    )


def git(*args: str, cwd: Path | None = None) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


async def baseline(
    repo: str, kube_url: str, namespace: str, count: int, timeout: float
) -> list[float]:
    """A CI job without Ferry: clone, copy the build into environments/dev, commit, push, and
    wait for the same simulator to have rolled it out (read from its API, as a watcher would)."""
    work = Path(tempfile.mkdtemp(prefix="ferry-bench-e2e-baseline-"))
    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=kube_url, timeout=5) as kube:
        try:
            for n in range(count):
                artifact_id = f"master-{uuid.uuid4().hex[:10]}-base{n:06d}"
                _, manifests = write_build(work / f"b{n}", artifact_id)
                started = time.time()
                checkout = work / f"c{n}"
                await asyncio.to_thread(
                    git, "clone", "--quiet", "--depth", "1", repo, str(checkout)
                )
                target = checkout / "environments" / "dev" / "baseline"
                shutil.rmtree(target, ignore_errors=True)
                shutil.copytree(manifests / "dev", target)
                deployment = target / "deployment.yaml"
                deployment.write_text(
                    deployment.read_text().replace("name: payments", "name: baseline", 1)
                )
                await asyncio.to_thread(git, "add", "-A", cwd=checkout)
                await asyncio.to_thread(
                    git, "-c", "user.name=ci", "-c", "user.email=ci@example.com",
                    "commit", "--quiet", "-m", f"deploy {artifact_id}", cwd=checkout,
                )  # fmt: skip
                await asyncio.to_thread(git, "push", "--quiet", "origin", "HEAD:main", cwd=checkout)
                deadline = time.monotonic() + timeout
                while not await rolled_out(kube, namespace, "baseline", artifact_id):
                    if time.monotonic() > deadline:
                        raise RuntimeError("the baseline's deployment was never applied")
                    await asyncio.sleep(0.02)
                latencies.append(time.time() - started)
                shutil.rmtree(checkout, ignore_errors=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return latencies


async def measure(args: argparse.Namespace, ns: BrokerNamespace, work: Path) -> Report:
    base = free_base_port()
    data_dir = work / "ferry"
    env = {
        **os.environ,
        **ns.env(),
        "FERRY_LOG_FORMAT": "json",
        "FERRY_LOG_LEVEL": args.log_level,
        "FERRY_SIMULATOR_POLL_INTERVAL": str(args.poll_interval),
    }
    env.pop("KUBECONFIG", None)
    log = work / "run.log"
    with log.open("wb") as out:
        run = subprocess.Popen(
            [sys.executable, "scripts/run_local.py", "--data-dir", str(data_dir),
             "--base-port", str(base)],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    tap = Tap(ns)
    try:
        await wait_for_line(log, "Ferry is running", run, 120)
        await tap.start()
        token = (data_dir / "dev-token").read_text().strip()
        cli_env = {**env, "FERRY_SERVER": f"http://127.0.0.1:{base}", "FERRY_TOKEN": token}
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{base}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        ) as api:
            policy = {
                "service": SERVICE,
                "autoRelease": [{"branch": "master", "environment": "dev"}],
            }
            (await api.put(f"/v1/policies/{SERVICE}", json=policy)).raise_for_status()
        await tap.wait("ferry.policy.changed.v1", "", 60)

        builds = work / "builds"
        hops: dict[str, list[float]] = {name: [] for _, name in HOPS}
        totals: list[float] = []
        for n in range(args.warmup + args.pushes):
            artifact_id = f"master-{uuid.uuid4().hex[:10]}-e2e{n:06d}"
            artifact, manifests = write_build(builds / str(n), artifact_id)
            started = await push(cli_env, artifact, manifests)
            done = await tap.wait("ferry.rollout.succeeded.v1", artifact_id, 60)
            if n < args.warmup:
                continue
            totals.append(done - started)
            previous = started
            for event_type, name in HOPS:
                at = tap.seen.get((event_type, artifact_id), previous)
                hops[name].append(max(0.0, at - previous))
                previous = max(previous, at)
            print(f"  push {n - args.warmup + 1:3d}/{args.pushes}: {totals[-1] * 1000:7.0f} ms")

        kubeconfig = data_dir / "kubeconfig"
        kube_url = next(
            line.split("server:", 1)[1].strip()
            for line in kubeconfig.read_text().splitlines()
            if "server:" in line
        )
        repo = str(data_dir / "config.git")
        base_latencies = await baseline(repo, kube_url, "dev-payments", args.baseline, 60)
    finally:
        await tap.close()
        if run.poll() is None:
            run.send_signal(signal.SIGINT)
        try:
            run.wait(60)
        except subprocess.TimeoutExpired:
            run.kill()

    p95 = pct(totals, 95)
    base_p95 = pct(base_latencies, 95)
    print(f"\nferry bench e2e: {args.pushes} pushes, simulator poll {args.poll_interval} s")
    print(f"  {'part':38s} {'p50':>9s} {'p95':>9s}")
    for _, name in HOPS:
        print(
            f"  {name:38s} {pct(hops[name], 50) * 1000:7.0f}ms {pct(hops[name], 95) * 1000:7.0f}ms"
        )
    whole = "push --wait to rollout.succeeded"
    print(f"  {whole:38s} {pct(totals, 50) * 1000:7.0f}ms {p95 * 1000:7.0f}ms")
    print(
        f"  {'baseline: clone+commit+push+apply':38s} {pct(base_latencies, 50) * 1000:7.0f}ms "
        f"{base_p95 * 1000:7.0f}ms"
    )
    report = Report("e2e")
    report.add(
        f"p95 push --wait to rollout.succeeded in dev ({args.pushes} pushes)",
        p95 * 1000,
        "ms",
        baseline=base_p95 * 1000,
        baseline_name="clone+commit+push, same simulator",
        goal="< 2 s",
        met=p95 < 2.0,
    )
    for _, name in HOPS:
        report.add(f"p50 part: {name}", statistics.median(hops[name]) * 1000, "ms")
    return report


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pushes", type=int, default=50, help="builds pushed, one after another")
    parser.add_argument("--warmup", type=int, default=2, help="pushes not counted, first")
    parser.add_argument("--baseline", type=int, default=20, help="pushes of the git baseline")
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=0.2,
        help="the simulator's (Flux's) seconds between fetches of the config repo",
    )
    parser.add_argument("--log-level", default="WARNING", help="the services' log level")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (repos, logs)")
    parser.add_argument(
        "--parts",
        type=Path,
        default=None,
        help="where the figures go [default: bench/results/parts]",
    )
    args = parser.parse_args()
    amqp_url, stop_broker = resolve_amqp_url()
    ns = BrokerNamespace(amqp_url)
    work = Path(tempfile.mkdtemp(prefix="ferry-bench-e2e-"))
    try:
        report = await measure(args, ns, work)
    finally:
        await ns.cleanup()
        if args.keep:
            print(f"work dir kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
        stop_broker()
    if args.parts is None:
        report.save()
    else:
        report.save(args.parts)


if __name__ == "__main__":
    asyncio.run(main())

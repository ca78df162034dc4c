"""Benchmark (issue 4): how fast the cluster-watcher classifies and reports rollouts.

Reports from ONE run:

* classifier throughput: workload and pod updates per second through the pure
  domain (parse + tracker) from a synthetic stream, and the memory its cache takes
  for many workloads and pods;
* end-to-end throughput through the real kubernetes_asyncio client and the API
  test server (watch events per second the watcher consumes);
* delay from a status change on the test server to the ``ferry.rollout.succeeded.v1``
  event on the broker (p50/p95), with the whole cluster-watcher running;
* two baselines measured in the same run: the raw broker publish-to-consume delay
  (the floor any reporter pays) and a naive poller that re-lists every second.

    uv run python bench/watch.py [--updates 20000] [--workloads 5000] [--samples 100]

Goal: delay p95 < 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import aio_pika
import psutil
from aio_pika.abc import AbstractIncomingMessage
from report import Report

from ferry_events import CloudEvent, RolloutSucceeded, Workload, decode, utcnow
from ferry_kube_sim import KubeApiServer
from ferry_kube_sim import objects as k
from ferry_runtime import build_message
from ferry_testing import BrokerNamespace, resolve_amqp_url
from ferry_watcher.adapters.kube import connect
from ferry_watcher.bootstrap import build
from ferry_watcher.domain import RolloutTracker, parse_pod, parse_workload
from ferry_watcher.entrypoints.watch import ClusterWatcher
from ferry_watcher.settings import WatcherSettings

SUCCEEDED = "ferry.rollout.succeeded.v1"


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def ms(values: list[float]) -> str:
    p50, p95, top = (pct(values, 50) * 1000, pct(values, 95) * 1000, max(values) * 1000)
    return f"p50 {p50:7.1f} ms   p95 {p95:7.1f} ms   max {top:7.1f} ms"


# --------------------------------------------------------------------------- 1. the classifier


def stored(obj: dict[str, Any], i: int) -> dict[str, Any]:
    obj["metadata"].update(
        uid=f"uid-{i}", generation=1, namespace=f"ns-{i % 50}", resourceVersion=str(i)
    )
    return obj


def classifier(updates: int, workloads: int) -> None:
    print("\n== classifier (pure domain, synthetic stream)")
    base = [stored(k.deployment(f"svc-{i}", replicas=3), i) for i in range(500)]
    statuses = [
        k.rollout_status(base[0], updated=u, ready=r)
        for u, r in ((1, 0), (1, 1), (2, 1), (2, 2), (3, 2))
    ] + [k.complete_status(base[0])]
    stream = [{**base[i % 500], "status": statuses[i % len(statuses)]} for i in range(updates)]
    pods = []
    for i in range(updates):
        p = k.pod_for(
            base[i % 500],
            f"svc-{i % 500}-p{i % 3}",
            containers=[
                k.container_status(
                    f"svc-{i % 500}",
                    waiting="CrashLoopBackOff",
                    restarts=i % 7,
                    last_terminated="Error",
                )
            ],
        )
        p["metadata"].update(uid=f"pod-{i}", namespace=base[i % 500]["metadata"]["namespace"])
        pods.append(p)
    tracker = RolloutTracker()
    facts = 0
    t0 = time.perf_counter()
    for obj in stream:
        view = parse_workload("Deployment", obj)
        assert view is not None
        facts += len(tracker.workload_seen(view))
    wl_rate = updates / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for p in pods:
        pod = parse_pod(p)
        assert pod is not None
        facts += len(tracker.pod_seen(pod))
    pod_rate = updates / (time.perf_counter() - t0)
    print(
        f"workload updates classified: {wl_rate:10,.0f} /s   ({updates:,} updates, 500 workloads)"
    )
    print(f"pod updates classified:      {pod_rate:10,.0f} /s   ({updates:,} updates)")
    print(
        f"facts produced: {facts:,} "
        "(each once: started per rollout, then succeeded or one failure per reason family; "
        "after a success, one degradation per reason family)"
    )

    gc.collect()
    tracemalloc.start()
    rss0 = psutil.Process().memory_info().rss
    big = RolloutTracker()
    for i in range(workloads):
        obj = stored(k.deployment(f"w-{i}", replicas=2), i)
        view = parse_workload("Deployment", {**obj, "status": k.complete_status(obj)})
        assert view is not None
        big.workload_seen(view)
        for j in range(2):
            p = k.pod_for(obj, f"w-{i}-{j}")
            p["metadata"].update(uid=f"p-{i}-{j}", namespace=obj["metadata"]["namespace"])
            pv = parse_pod(p)
            assert pv is not None
            big.pod_seen(pv)
    current, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss = psutil.Process().memory_info().rss - rss0
    print(
        f"cache for {workloads:,} workloads + {2 * workloads:,} pods: "
        f"{current / 2**20:6.1f} MiB traced "
        f"({current / (3 * workloads):,.0f} B per object), RSS +{rss / 2**20:.1f} MiB"
    )


# --------------------------------------------------------------------------- 2. client + server


async def through_client(kubeconfig: Path, kube: KubeApiServer, n: int) -> None:
    print("\n== through kubernetes_asyncio + the API test server (one process, one event loop)")
    api = await connect(kubeconfig, in_cluster=False, context=None)
    facts = 0
    done = asyncio.Event()

    def sink(batch: list[Any]) -> None:
        nonlocal facts
        facts += sum(1 for f in batch if f.outcome == "succeeded")
        if facts >= n:
            done.set()

    watcher = ClusterWatcher(api, sink, kinds=["Deployment"])
    await watcher.start()
    await watcher.wait_synced()
    objs = [kube.create(k.deployment(f"load-{i}", namespace="load")) for i in range(n)]
    t0 = time.perf_counter()
    for obj in objs:
        kube.update_status("Deployment", "load", obj["metadata"]["name"], k.complete_status(obj))
    await asyncio.wait_for(done.wait(), 120)
    rate = n / (time.perf_counter() - t0)
    print(f"watch events consumed and classified: {rate:10,.0f} /s   ({n:,} status updates)")
    await watcher.stop()
    await api.close()


# --------------------------------------------------------------------------- 3. delay to the broker


class StampedTap:
    def __init__(self, ns: BrokerNamespace) -> None:
        self.ns = ns
        self.arrived: dict[str, float] = {}
        self.events: dict[str, CloudEvent] = {}
        self.changed = asyncio.Event()

    async def __aenter__(self) -> StampedTap:
        self.connection = await aio_pika.connect(self.ns.amqp_url)
        channel = await self.connection.channel()
        exchange = await channel.declare_exchange(
            self.ns.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(exchange, "#")
        await queue.consume(self._on, no_ack=True)
        self.exchange = exchange
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.connection.close()

    async def _on(self, message: AbstractIncomingMessage) -> None:
        now = time.perf_counter()
        event = decode(
            message.body, headers=message.headers or {}, content_type=message.content_type
        )
        name = event.data.get("workload", {}).get("name")
        key = f"{event.type}:{name}:{event.data.get('releaseId')}"
        self.arrived[key] = now
        self.events[key] = event
        self.changed.set()

    async def wait(self, key: str, timeout: float = 10) -> float:
        async with asyncio.timeout(timeout):
            while key not in self.arrived:
                self.changed.clear()
                await self.changed.wait()
        return self.arrived[key]


async def broker_floor(ns: BrokerNamespace, tap: StampedTap, samples: int) -> list[float]:
    connection = await aio_pika.connect(ns.amqp_url)
    channel = await connection.channel(publisher_confirms=True)
    exchange = await channel.declare_exchange(
        ns.exchange, aio_pika.ExchangeType.TOPIC, durable=True
    )
    delays = []
    for i in range(-10, samples):  # the first ten warm the connection up and are not counted
        data = RolloutSucceeded(
            cluster="bench",
            environment="dev",
            namespace="n",
            service="s",
            artifact_id="a",
            release_id=f"floor-{i}",
            workload=Workload(kind="Deployment", name="floor", uid="u"),
            observed_at=utcnow(),
        )
        event = CloudEvent.new(data, source="ferry/bench")
        t0 = time.perf_counter()
        await exchange.publish(build_message(event), routing_key=event.type)
        arrived = await tap.wait(f"{SUCCEEDED}:floor:floor-{i}")
        if i >= 0:
            delays.append(arrived - t0)
    await connection.close()
    return delays


async def watcher_delay(kube: KubeApiServer, tap: StampedTap, samples: int) -> list[float]:
    delays = []
    for i in range(samples):
        obj = kube.create(k.deployment(f"lat-{i}", namespace="lat", release_id=f"rel-{i}"))
        await tap.wait(f"ferry.rollout.started.v1:lat-{i}:rel-{i}")
        t0 = time.perf_counter()
        kube.update_status("Deployment", "lat", f"lat-{i}", k.complete_status(obj))
        delays.append(await tap.wait(f"{SUCCEEDED}:lat-{i}:rel-{i}") - t0)
    return delays


async def poller_delay(
    kubeconfig: Path, kube: KubeApiServer, samples: int, interval: float
) -> list[float]:
    """Baseline: list every ``interval`` seconds and classify, no watch."""
    api = await connect(kubeconfig, in_cluster=False, context=None)
    tracker = RolloutTracker()
    seen: dict[str, float] = {}

    async def poll() -> None:
        while True:
            items, _ = await api.list("Deployment", "poll")
            for obj in items:
                view = parse_workload("Deployment", obj)
                if view is None:
                    continue
                for fact in tracker.workload_seen(view):
                    if fact.outcome == "succeeded":
                        seen[view.ref.name] = time.perf_counter()
            await asyncio.sleep(interval)

    task = asyncio.create_task(poll())
    delays = []
    for i in range(samples):
        obj = kube.create(k.deployment(f"poll-{i}", namespace="poll"))
        await asyncio.sleep(interval * (0.37 * i % 1))  # change at varied points of the cycle
        t0 = time.perf_counter()
        kube.update_status("Deployment", "poll", f"poll-{i}", k.complete_status(obj))
        async with asyncio.timeout(10):
            while f"poll-{i}" not in seen:
                if task.done():
                    task.result()
                await asyncio.sleep(0.005)
        delays.append(seen[f"poll-{i}"] - t0)
    task.cancel()
    await api.close()
    return delays


async def main(args: argparse.Namespace) -> None:
    classifier(args.updates, args.workloads)
    amqp_url, stop_broker = resolve_amqp_url()
    ns = BrokerNamespace(amqp_url)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            async with KubeApiServer() as kube:
                kubeconfig = kube.write_kubeconfig(Path(tmp) / "kubeconfig")
                await through_client(kubeconfig, kube, args.client_updates)
                async with StampedTap(ns) as tap:
                    print("\n== delay: status change on the API server -> event on the broker")
                    floor = await broker_floor(ns, tap, args.samples)
                    settings = WatcherSettings(
                        **{
                            **ns.settings(),
                            "log_level": "WARNING",
                            "kubeconfig": Path(kubeconfig),
                            "watch_namespaces": "lat",
                        }
                    )
                    app = build(settings)
                    task = asyncio.create_task(app.runtime.run(install_signals=False))
                    await app.wait_synced()
                    rss = psutil.Process().memory_info().rss
                    delays = await watcher_delay(kube, tap, args.samples)
                    app.runtime.stop()
                    await task
                    polled = await poller_delay(kubeconfig, kube, args.poll_samples, 1.0)
        print(f"raw broker publish->consume (floor):      {ms(floor)}   ({args.samples} samples)")
        print(f"cluster-watcher status->event:            {ms(delays)}   ({args.samples} samples)")
        print(
            f"naive poller (re-list every 1 s) baseline: {ms(polled)}   "
            f"({args.poll_samples} samples)"
        )
        print(
            f"process RSS with the watcher running: {rss / 2**20:.0f} MiB "
            "(test server, broker client and watcher in one process)"
        )
        print("\n== ratios")
        print(f"watcher p95 / broker floor p95: {pct(delays, 95) / pct(floor, 95):5.1f}x")
        print(
            f"poller p50 / watcher p50:       {pct(polled, 50) / pct(delays, 50):5.1f}x  "
            "(watching is that much sooner)"
        )
        goal = "MET" if pct(delays, 95) < 0.100 else "MISSED"
        print(f"goal p95 < 100 ms: {goal} ({pct(delays, 95) * 1000:.1f} ms)")
        print(f"(median of the watcher's delays: {statistics.median(delays) * 1000:.1f} ms)")
        report = Report("watch")
        report.add(
            "p95 status change to event",
            pct(delays, 95) * 1000,
            "ms",
            baseline=pct(polled, 95) * 1000,
            baseline_name="re-list every 1 s",
            goal="< 100 ms",
            met=pct(delays, 95) < 0.100,
        )
        report.save()
    finally:
        await ns.cleanup()
        stop_broker()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--updates", type=int, default=20_000)
    parser.add_argument("--workloads", type=int, default=5_000)
    parser.add_argument("--client-updates", type=int, default=2_000)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--poll-samples", type=int, default=20)
    asyncio.run(main(parser.parse_args()))

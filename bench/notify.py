"""Benchmark: notifications delivered to a loopback webhook receiver.

Runs the notifier as its own process (``python -m ferry_notifier``) against the
real broker, with one route: every event to a signed webhook on loopback. Measures

- the delay from event published to webhook received, at a steady 100 events/s
  (p50/p95/max; goal p95 < 100 ms),
- notifications per second when a burst of events is published at once,
- the notifier's resident memory (peak, sampled every 100 ms),

and, as the baseline in the same run, the same receiver fed by direct signed POSTs
from this process (no broker, no notifier, no delivery record).

    uv run python bench/notify.py [--rate 100] [--seconds 10] [--burst 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import psutil
from report import Report

from ferry_events import CloudEvent, RolloutSucceeded, Workload, encode, utcnow
from ferry_testing import BrokerNamespace, resolve_amqp_url
from ferry_testing.webhook import WebhookReceiver

SECRET = b"bench-secret"


def _event(n: int) -> CloudEvent:
    data = RolloutSucceeded(
        cluster="bench",
        environment="dev",
        namespace="default",
        service=f"svc-{n % 50}",
        artifact_id=f"master-{n:08d}",
        release_id=f"bench-{n}",
        author="dev@example.com",
        workload=Workload(kind="Deployment", name="svc", uid=f"u{n}"),
        observed_at=utcnow(),
    )
    return CloudEvent.new(data, source="ferry/bench")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Timings:
    """When each event id was sent and received (monotonic seconds)."""

    def __init__(self, receiver: WebhookReceiver) -> None:
        self.receiver = receiver
        self.sent: dict[str, float] = {}

    def delays_ms(self, ids: list[str]) -> list[float]:
        received = {r.event["id"]: r.at for r in self.receiver.received}
        return [(received[i] - self.sent[i]) * 1000 for i in ids if i in received]

    async def wait_all(self, ids: list[str], timeout: float = 120.0) -> float:
        wanted = set(ids)
        async with asyncio.timeout(timeout):
            while True:
                got = {r.event["id"] for r in self.receiver.received} & wanted
                if len(got) == len(wanted):
                    return max(r.at for r in self.receiver.received if r.event["id"] in wanted)
                await asyncio.sleep(0.01)


async def paced(send: Any, events: list[CloudEvent], rate: float, timings: Timings) -> None:
    start = time.monotonic()
    for i, event in enumerate(events):
        due = start + i / rate
        now = time.monotonic()
        if due > now:
            await asyncio.sleep(due - now)
        timings.sent[event.id] = time.monotonic()
        await send(event)


async def burst(send: Any, events: list[CloudEvent], timings: Timings, width: int = 200) -> float:
    """Publish all at once (``width`` in flight); return notifications/s until the last arrives."""
    start = time.monotonic()
    queue = list(events)

    async def worker() -> None:
        while queue:
            event = queue.pop()
            timings.sent[event.id] = time.monotonic()
            await send(event)

    await asyncio.gather(*(worker() for _ in range(width)))
    last = await timings.wait_all([e.id for e in events])
    return len(events) / (last - start)


def _signed_post(session: aiohttp.ClientSession, url: str) -> Any:
    async def send(event: CloudEvent) -> None:
        body = encode(event)
        ts = str(int(time.time()))
        sig = hmac.new(SECRET, ts.encode() + b"." + body, hashlib.sha256).hexdigest()
        headers = {
            "Content-Type": "application/cloudevents+json",
            "X-Ferry-Timestamp": ts,
            "X-Ferry-Signature": f"sha256={sig}",
        }
        async with session.post(url, data=body, headers=headers) as response:
            await response.read()

    return send


def _summary(name: str, delays: list[float]) -> dict[str, float]:
    out = {
        "p50": statistics.median(delays),
        "p95": _pct(delays, 0.95),
        "max": max(delays),
        "n": len(delays),
    }
    print(
        f"  {name:<22} n={out['n']:<5.0f} p50={out['p50']:7.2f} ms  "
        f"p95={out['p95']:7.2f} ms  max={out['max']:7.2f} ms"
    )
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=100.0, help="events/s in the paced phase")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the paced phase")
    parser.add_argument("--burst", type=int, default=2000, help="events in the burst phase")
    parser.add_argument("--concurrency", type=int, default=32, help="FERRY_CONCURRENCY")
    parser.add_argument(
        "--database-url", default="", help="FERRY_DATABASE_URL (default: SQLite in a temp dir)"
    )
    args = parser.parse_args()
    paced_count = int(args.rate * args.seconds)

    amqp_url, stop_broker = resolve_amqp_url()
    ns = BrokerNamespace(amqp_url)
    workdir = Path(tempfile.mkdtemp(prefix="ferry-bench-notify-"))
    async with WebhookReceiver(SECRET) as receiver:
        timings = Timings(receiver)
        routes = workdir / "routes.yaml"
        routes.write_text(f'routes:\n  - to: ["webhook:{receiver.url("/notifier")}"]\n')
        env = {
            **os.environ,
            **ns.env(),
            "FERRY_ROUTES_FILE": str(routes),
            "FERRY_WEBHOOK_SECRET": SECRET.decode(),
            "FERRY_DATABASE_URL": args.database_url
            or f"sqlite+aiosqlite:///{workdir / 'notifier.db'}",
            "FERRY_HTTP_PORT": "0",
            "FERRY_LOG_LEVEL": "WARNING",
            "FERRY_LOG_FORMAT": "json",
            "FERRY_CONCURRENCY": str(args.concurrency),
            "FERRY_PREFETCH": str(max(64, args.concurrency * 2)),
        }
        log_path = workdir / "notifier.log"
        with log_path.open("wb") as log_file:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "ferry_notifier", env=env, stdout=log_file, stderr=log_file
            )
        process = psutil.Process(proc.pid)
        peak_rss = 0

        async def sample() -> None:
            nonlocal peak_rss
            while True:
                with contextlib.suppress(psutil.Error):
                    peak_rss = max(peak_rss, process.memory_info().rss)
                await asyncio.sleep(0.1)

        sampler = asyncio.create_task(sample())
        connection = await aio_pika.connect(amqp_url)
        try:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.declare_exchange(
                ns.exchange, aio_pika.ExchangeType.TOPIC, durable=True
            )

            async def publish(event: CloudEvent) -> None:
                message = aio_pika.Message(
                    encode(event),
                    content_type="application/cloudevents+json",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    message_id=event.id,
                )
                await exchange.publish(message, routing_key=event.type)

            # Warm up: until the notifier consumes and its first deliveries are through.
            warm = [_event(-i - 1) for i in range(20)]
            async with asyncio.timeout(60):
                while not receiver.at("/notifier"):
                    for e in warm[:1]:
                        timings.sent[e.id] = time.monotonic()
                        with contextlib.suppress(aio_pika.exceptions.DeliveryError):
                            await publish(e)
                    await asyncio.sleep(0.5)
            for e in warm[1:]:
                await publish(e)
            await timings.wait_all([e.id for e in warm[1:]])
            idle_rss = process.memory_info().rss

            database = "PostgreSQL" if args.database_url.startswith("postgres") else "SQLite"
            print(
                f"notifier pid {proc.pid}; {database}; concurrency {args.concurrency}; "
                f"{os.cpu_count()} cores"
            )
            print(f"\npaced: {paced_count} events at {args.rate:.0f}/s, published -> received")
            events = [_event(i) for i in range(paced_count)]
            await paced(publish, events, args.rate, timings)
            await timings.wait_all([e.id for e in events])
            notifier_paced = _summary(
                "via broker+notifier", timings.delays_ms([e.id for e in events])
            )

            # Broker alone: the same publish, consumed by this process (quorum queue, acked).
            probe = await channel.declare_queue(
                f"{ns.queue_prefix}.bench-probe",
                durable=True,
                arguments={"x-queue-type": "quorum"},
            )
            await probe.bind(exchange, routing_key="bench.probe")
            broker_seen: dict[str, float] = {}

            async def on_probe(message: aio_pika.abc.AbstractIncomingMessage) -> None:
                broker_seen[str(message.message_id)] = time.monotonic()
                await message.ack()

            probe_tag = await probe.consume(on_probe)

            async def publish_probe(event: CloudEvent) -> None:
                await exchange.publish(
                    aio_pika.Message(
                        encode(event),
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        message_id=event.id,
                    ),
                    routing_key="bench.probe",
                )

            probes = [_event(400_000 + i) for i in range(paced_count)]
            await paced(publish_probe, probes, args.rate, timings)
            async with asyncio.timeout(60):
                while len(broker_seen) < len(probes):
                    await asyncio.sleep(0.01)
            _summary(
                "baseline broker only",
                [(broker_seen[e.id] - timings.sent[e.id]) * 1000 for e in probes],
            )
            await probe.cancel(probe_tag)
            await probe.delete(if_unused=False, if_empty=False)

            async with aiohttp.ClientSession() as session:
                direct = _signed_post(session, receiver.url("/direct"))
                baseline_events = [_event(100_000 + i) for i in range(paced_count)]
                await paced(direct, baseline_events, args.rate, timings)
                await timings.wait_all([e.id for e in baseline_events])
                baseline_paced = _summary(
                    "baseline direct POST", timings.delays_ms([e.id for e in baseline_events])
                )

                print(f"\nburst: {args.burst} events published at once")
                events = [_event(200_000 + i) for i in range(args.burst)]
                cpu_before = sum(process.cpu_times()[:2])
                notifier_rate = await burst(publish, events, timings)
                cpu_ms = (sum(process.cpu_times()[:2]) - cpu_before) * 1000 / args.burst
                baseline_events = [_event(300_000 + i) for i in range(args.burst)]
                baseline_rate = await burst(
                    direct, baseline_events, timings, width=args.concurrency
                )
            print(f"  via broker+notifier    {notifier_rate:8.0f} notifications/s")
            print(f"  baseline direct POST   {baseline_rate:8.0f} notifications/s")
            print(f"  notifier CPU time      {cpu_ms:8.2f} ms per notification")
            print(f"  load average           {os.getloadavg()[0]:8.2f} (1 min, whole machine)")

            bad = [r for r in receiver.received if not r.verified]
            print("\nnotifier memory (RSS)")
            print(f"  after warm-up {idle_rss / 2**20:6.1f} MiB, peak {peak_rss / 2**20:6.1f} MiB")
            print("\nratios (notifier / baseline)")
            print(
                f"  p50 delay x{notifier_paced['p50'] / baseline_paced['p50']:.1f}, "
                f"p95 delay x{notifier_paced['p95'] / baseline_paced['p95']:.1f}, "
                f"throughput x{notifier_rate / baseline_rate:.2f}"
            )
            goal = "met" if notifier_paced["p95"] < 100 else "NOT met"
            print(f"\ngoal p95 < 100 ms at {args.rate:.0f}/s: {goal}")
            print(
                f"signatures verified: {len(receiver.received) - len(bad)}/{len(receiver.received)}"
            )
            dupes = len(receiver.at("/notifier")) - len(
                {r.event["id"] for r in receiver.at("/notifier")}
            )
            print(f"duplicate deliveries: {dupes}")
            report = Report("notify")
            report.add(
                f"p95 published to received at {args.rate:.0f}/s",
                notifier_paced["p95"],
                "ms",
                baseline=baseline_paced["p95"],
                baseline_name="direct POST",
                goal="< 100 ms",
                met=notifier_paced["p95"] < 100,
            )
            report.add(
                f"burst of {args.burst}",
                notifier_rate,
                "notifications/s",
                baseline=baseline_rate,
                baseline_name="direct POST",
            )
            report.add(
                "peak RSS", peak_rss / 2**20, "MiB", goal="< 80 MiB", met=peak_rss < 80 * 2**20
            )
            report.save()
        finally:
            sampler.cancel()
            await connection.close()
            if proc.returncode is None:
                proc.terminate()
                await proc.wait()
            await ns.cleanup(["notifier"])
            stop_broker()


if __name__ == "__main__":
    asyncio.run(main())

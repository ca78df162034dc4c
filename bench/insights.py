"""Benchmark: insights' dashboard pages and DORA query over a large history.

Fills insights' projections through the real projection code, in bulk (``Store.record_many``:
2,000 events a transaction, the same rules as one event at a time), with ``--services``
services in 3 environments and ``--releases`` releases (each: the stored
artifact, the request, the commit and a rollout result; one in ten fails, one in twenty is
rolled back), then serves insights' HTTP app on loopback (uvicorn, as in production) and
times, logged in as an admin:

- ``GET /v1/insights/dora`` (prod, 30 days), ``GET /dora`` (the page, every environment);
- ``GET /`` (what runs where), ``GET /services/<s>`` (a timeline), ``GET /approvals``;
- and, as the baseline in the same run, ``GET /healthz`` (no database).

Goal: p95 under 100 ms for each page and the DORA query.

    uv run python bench/insights.py [--services 100] [--releases 10000] [--requests 50]
                                    [--postgres | --database-url postgresql+asyncpg://...]

``--postgres`` runs on a new, empty PostgreSQL database (dropped after), and reports as
``insights-postgres``; the default is SQLite in a temporary folder.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import re
import statistics
import tempfile
import time
from contextlib import AsyncExitStack
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import yaml
from report import Report

from ferry_events import (
    Actor,
    ArtifactSpec,
    ArtifactStored,
    CloudEvent,
    Intent,
    ReleaseCommitted,
    ReleaseRequested,
    RolloutFailed,
    RolloutSucceeded,
    Workload,
    default_registry,
    utcnow,
)
from ferry_insights.adapters.board import BoardReads
from ferry_insights.adapters.db import Store
from ferry_insights.adapters.promotion import PromotionApi
from ferry_insights.adapters.tokens import TokenStore
from ferry_insights.domain.facts import facts_of
from ferry_insights.entrypoints.api import ApiDeps, create_app
from ferry_insights.entrypoints.dashboard import routes
from ferry_insights.entrypoints.gauges import DoraGauges
from ferry_insights.entrypoints.web import Web
from ferry_runtime import HttpServer, Readiness, configure_logging, health_routes
from ferry_testing.database import postgres_database

ENVIRONMENTS = ("dev", "staging", "prod")
TOKEN = "bench-admin-token"
ACTOR = Actor(subject="dev", email="dev@example.com")


def history(services: int, releases: int, now: datetime) -> list[CloudEvent]:
    """``releases`` releases spread over 60 days before ``now``, round robin."""
    events: list[CloudEvent] = []
    step = timedelta(days=60) / releases
    for n in range(releases):
        service = f"svc-{n % services:03d}"
        env = ENVIRONMENTS[(n // services) % 3]
        at = now - timedelta(days=60) + n * step
        artifact_id = f"master-{n:010d}-bench"
        spec = ArtifactSpec.model_validate(
            {
                "id": artifact_id,
                "service": service,
                "squad": f"squad-{n % 7}",
                "application": {
                    "branch": "master",
                    "sha": f"{n:040d}",
                    "authorEmail": "dev@example.com",
                    "committedAt": (at - timedelta(hours=2)).isoformat(),
                },
                "ci": {"jobUrl": f"https://ci.example.com/{n}", "start": at - timedelta(hours=1)},
            }
        )
        release_id = f"rel-{n}"
        events.append(
            CloudEvent.new(
                ArtifactStored(
                    artifact=spec, environments=list(ENVIRONMENTS), commit_sha="c", path="b"
                ),
                source="ferry/git-writer",
                time=at - timedelta(minutes=50),
            )
        )
        events.append(
            CloudEvent.new(
                ReleaseRequested(
                    release_id=release_id,
                    service=service,
                    environment=env,
                    intent=Intent.RELEASE,
                    artifact_id=artifact_id,
                    actor=ACTOR,
                    requested_at=at - timedelta(minutes=5),
                ),
                source="ferry/promotion",
                time=at - timedelta(minutes=5),
            )
        )
        events.append(
            CloudEvent.new(
                ReleaseCommitted(
                    release_id=release_id,
                    service=service,
                    environment=env,
                    namespace=service,
                    artifact_id=artifact_id,
                    intent=Intent.RELEASE,
                    actor=ACTOR,
                    commit_sha=f"{n:040x}",
                ),
                source="ferry/git-writer",
                time=at - timedelta(minutes=4),
            )
        )
        workload = Workload(kind="Deployment", name=service, uid=service)
        result: RolloutFailed | RolloutSucceeded
        if n % 10 == 3:
            result = RolloutFailed(
                release_id=release_id,
                service=service,
                environment=env,
                cluster="bench",
                namespace=service,
                artifact_id=artifact_id,
                workload=workload,
                observed_at=at,
                reason="CrashLoopBackOff",
                message="back-off",
            )
        else:
            result = RolloutSucceeded(
                release_id=release_id,
                service=service,
                environment=env,
                cluster="bench",
                namespace=service,
                artifact_id=artifact_id,
                workload=workload,
                observed_at=at,
            )
        events.append(CloudEvent.new(result, source="ferry/cluster-watcher", time=at))
        if n % 20 == 7:
            events.append(
                CloudEvent.new(
                    ReleaseRequested(
                        release_id=f"rb-{n}",
                        service=service,
                        environment=env,
                        intent=Intent.ROLLBACK,
                        actor=ACTOR,
                        requested_at=at + timedelta(minutes=10),
                    ),
                    source="ferry/promotion",
                    time=at + timedelta(minutes=10),
                )
            )
    return events


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def timed(http: httpx.AsyncClient, path: str, count: int) -> list[float]:
    await http.get(path)  # warm
    out = []
    for _ in range(count):
        started = time.perf_counter()
        response = await http.get(path)
        out.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (path, response.status_code, response.text[:300])
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=100)
    parser.add_argument("--releases", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--database-url", default="")
    parser.add_argument(
        "--postgres", action="store_true", help="on a new PostgreSQL database (dropped after)"
    )
    args = parser.parse_args()
    configure_logging("insights-bench", level="WARNING", fmt="console")

    async with AsyncExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        url = args.database_url or f"sqlite+aiosqlite:///{Path(tmp) / 'insights.db'}"
        if args.postgres:
            url = await stack.enter_async_context(postgres_database())
        print(f"database: {url.split(':', 1)[0]}")
        store = Store(url)
        await store.create_schema()
        now = utcnow()
        events = history(args.services, args.releases, now)
        started = time.perf_counter()
        facts = [facts_of(*default_registry.parse(event)) for event in events]
        for first in range(0, len(facts), 2000):
            await store.record_many(facts[first : first + 2000], received_at=utcnow())
        fill = time.perf_counter() - started
        count = len(events)
        print(
            f"projected {count} events ({args.releases} releases, {args.services} services,"
            f" 3 environments) in {fill:.1f} s: {count / fill:.0f} events/s"
        )
        # the fill's 40,000 events are not the server's: left in this process, every full
        # garbage collection during the timing would walk them (pauses of a few 100 ms);
        # then what start-up made is frozen, as ``python -m ferry_insights`` does
        del events, facts
        gc.collect()
        gc.freeze()

        tokens_file = Path(tmp) / "tokens.yaml"
        digest = hashlib.sha256(TOKEN.encode()).hexdigest()
        tokens_file.write_text(
            yaml.safe_dump({"tokens": [{"subject": "admin", "roles": ["admin"], "sha256": digest}]})
        )
        tokens = TokenStore(tokens_file)
        promotion = PromotionApi("http://127.0.0.1:9")
        web = Web(BoardReads(store.engine), tokens, promotion, store, clock=lambda: now)
        gauges = DoraGauges(store, lambda: now)
        app = create_app(
            ApiDeps(store=store, tokens=tokens, clock=lambda: now),
            gauges,
            health_routes(Readiness(), "insights"),
            routes(web),
        )
        server = HttpServer(app, "127.0.0.1", 0)
        await server.start()
        base = f"http://127.0.0.1:{server.port}"
        try:
            async with httpx.AsyncClient(base_url=base, timeout=30) as http:
                form = (await http.get("/login")).text
                csrf = re.search(r'name="csrf" value="([^"]+)"', form)
                assert csrf
                await http.post("/login", data={"csrf": csrf.group(1), "token": TOKEN})
                api = {"Authorization": f"Bearer {TOKEN}"}
                results: dict[str, list[float]] = {
                    "GET /healthz (baseline)": await timed(http, "/healthz", args.requests)
                }
                http.headers.update(api)
                results["GET /v1/insights/dora"] = await timed(
                    http, "/v1/insights/dora?environment=prod&days=30", args.requests
                )
                for path in ("/", "/services/svc-001", "/approvals", "/dora"):
                    results[f"GET {path}"] = await timed(http, path, args.requests)
        finally:
            await server.stop()
            await promotion.close()
            await store.close()
    base_p50 = statistics.median(results["GET /healthz (baseline)"])
    base_p95 = pct(results["GET /healthz (baseline)"], 0.95)
    print(
        f"{'request':32} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}"
        f" {'p50 / baseline':>15} {'p95 / baseline':>15}"
    )
    for name, values in results.items():
        p50, p95 = statistics.median(values), pct(values, 0.95)
        print(
            f"{name:32} {p50:8.1f} {p95:8.1f} {max(values):8.1f}"
            f" {p50 / base_p50:15.1f} {p95 / base_p95:15.1f}"
        )
    slow = [n for n, v in results.items() if pct(v, 0.95) >= 100]
    print("goal p95 < 100 ms: " + ("met" if not slow else f"missed by {', '.join(slow)}"))
    report = Report("insights-postgres" if args.postgres else "insights")
    for name, values in results.items():
        if name.startswith("GET /healthz"):
            continue
        report.add(
            f"{name} p95",
            pct(values, 0.95),
            "ms",
            baseline=base_p95,
            baseline_name="GET /healthz",
            goal="< 100 ms",
            met=pct(values, 0.95) < 100,
        )
    report.save()


if __name__ == "__main__":
    asyncio.run(main())

"""Insights' composition root: the only place that reads settings and builds adapters.

``await build(settings)`` returns an :class:`InsightsService` whose ``runtime.run()`` consumes
insights' queue into the projections and serves the API on ``FERRY_HTTP_PORT`` (8085).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from ferry_events import utcnow
from ferry_insights.adapters.board import BoardReads
from ferry_insights.adapters.db import DATABASE_ERRORS, Store
from ferry_insights.adapters.promotion import PromotionApi
from ferry_insights.adapters.tokens import TokenStore
from ferry_insights.entrypoints.api import ApiDeps, create_app
from ferry_insights.entrypoints.consumer import Projector
from ferry_insights.entrypoints.dashboard import routes as dashboard_routes
from ferry_insights.entrypoints.gauges import DoraGauges
from ferry_insights.entrypoints.web import Web
from ferry_insights.settings import InsightsSettings
from ferry_runtime import ServiceRuntime, get_logger

log = get_logger(__name__)

SERVICE = "insights"


@dataclass
class InsightsService:
    """Everything one insights process runs."""

    settings: InsightsSettings
    runtime: ServiceRuntime
    store: Store
    tokens: TokenStore
    web: Web


async def build(
    settings: InsightsSettings, *, clock: Callable[[], datetime] = utcnow
) -> InsightsService:
    """Build insights and migrate its database; ``runtime.run()`` starts it."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = Store(settings.resolved_database_url())
    await store.create_schema()
    tokens = TokenStore(settings.resolved_tokens_file())
    runtime = ServiceRuntime(SERVICE, settings)
    projector = Projector(store)
    projector.subscribe(runtime)
    runtime.set_concurrency(settings.consumer_concurrency)
    gauges = DoraGauges(
        store, clock, days=settings.metrics_window_days, max_age=settings.metrics_cache_seconds
    )
    promotion = PromotionApi(settings.promotion_url)
    web = Web(
        reads=BoardReads(store.engine),
        tokens=tokens,
        promotion=promotion,
        store=store,
        clock=clock,
        session_ttl=timedelta(hours=settings.session_hours),
        commit_url=settings.config_commit_url,
        cookie_secure=settings.cookie_secure,
        live_interval=settings.live_interval,
    )
    app = create_app(
        ApiDeps(store=store, tokens=tokens, clock=clock),
        gauges,
        runtime.routes(),
        dashboard_routes(web),
    )
    runtime.serve(app)
    runtime.readiness.add("database", store.ping)

    repairing: list[asyncio.Task[None]] = []

    async def start() -> None:
        repairing.append(asyncio.create_task(keep_repaired(store, settings.repair_interval)))

    async def stop() -> None:
        for task in repairing:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        web.closing.set()  # live pages end their event streams, so the HTTP server can stop
        await promotion.close()
        await store.close()

    runtime.on_start(start)
    runtime.on_stop(stop)
    return InsightsService(settings, runtime, store, tokens, web)


async def keep_repaired(store: Store, interval: float) -> None:
    """Every ``interval`` seconds, project what a replica of the release before wrote
    (``Store.repair``), until nothing is left; a database error waits for the next turn."""
    while True:
        try:
            while await store.repair():
                pass
        except DATABASE_ERRORS as exc:
            log.warning("repairing older replicas' facts failed", reason=str(exc)[:300])
        await asyncio.sleep(interval)

"""Insights' composition root: the only place that reads settings and builds adapters.

``await build(settings)`` returns an :class:`InsightsService` whose ``runtime.run()`` consumes
insights' queue into the projections and serves the API on ``FERRY_HTTP_PORT`` (8085).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from ferry_events import utcnow
from ferry_insights.adapters.db import Store
from ferry_insights.adapters.tokens import TokenStore
from ferry_insights.entrypoints.api import ApiDeps, create_app
from ferry_insights.entrypoints.consumer import Projector
from ferry_insights.entrypoints.gauges import DoraGauges
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
    runtime.consume(projector.routes(), concurrency=settings.consumer_concurrency)
    gauges = DoraGauges(
        store, clock, days=settings.metrics_window_days, max_age=settings.metrics_cache_seconds
    )
    app = create_app(ApiDeps(store=store, tokens=tokens, clock=clock), gauges, runtime.routes())
    runtime.serve(app)
    runtime.readiness.add("database", store.ping)
    runtime.on_stop(store.close)
    return InsightsService(settings, runtime, store, tokens)

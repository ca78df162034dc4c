"""Promotion's composition root: the only place that reads settings and builds adapters.

``await build(settings)`` returns a :class:`PromotionService` whose
``runtime.run()`` serves the API on ``FERRY_HTTP_PORT`` (8080), consumes
promotion's queue (requests for one service and environment are decided in the
order they were made, whatever ``FERRY_CONSUMER_CONCURRENCY``), relays the outbox and expires
approvals.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import sqlalchemy as sa

from ferry_events import CloudEvent
from ferry_promotion.adapters.configrepo import ConfigRepo, GitError, run_git
from ferry_promotion.adapters.db import Store
from ferry_promotion.adapters.db import now as utc_now
from ferry_promotion.adapters.outbox import OutboxRelay
from ferry_promotion.application import Promotion
from ferry_promotion.decisions import Decider
from ferry_promotion.handlers import Handlers
from ferry_promotion.http.api import ApiDeps, create_app
from ferry_promotion.identity import TokenStore
from ferry_promotion.settings import PromotionSettings
from ferry_promotion.slack import chatops_of
from ferry_runtime import ServiceRuntime, get_logger

log = get_logger(__name__)

SERVICE = "promotion"


@dataclass
class PromotionService:
    """Everything one promotion process runs."""

    settings: PromotionSettings
    runtime: ServiceRuntime
    store: Store
    repo: ConfigRepo
    tokens: TokenStore
    promotion: Promotion
    decider: Decider
    handlers: Handlers
    relay: OutboxRelay
    deps: ApiDeps
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def _expiry_loop(self) -> None:
        purged = 0.0
        while True:
            await asyncio.sleep(self.settings.expiry_check_interval)
            try:
                await self.decider.expire()
                if asyncio.get_running_loop().time() - purged > 3600:
                    moment = utc_now()
                    await self.store.purge(
                        sent_before=moment - timedelta(days=self.settings.outbox_retention_days),
                        processed_before=moment
                        - timedelta(days=self.settings.inbox_retention_days),
                    )
                    purged = asyncio.get_running_loop().time()
            except Exception:
                log.exception("approval expiry check failed; retrying")

    async def start(self) -> None:
        self.relay.start()
        self._tasks.append(asyncio.create_task(self._expiry_loop(), name="expiry"))
        self._tasks.append(asyncio.create_task(self.repo.keep_fresh(), name="config-refresh"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self.relay.stop()
        await self.store.close()


def _local_path(url: str) -> Path | None:
    if "://" in url:
        parts = urlsplit(url)
        return Path(parts.path) if parts.scheme == "file" else None
    if ":" in url.split("/", 1)[0]:
        return None  # scp-like user@host:path
    return Path(url)


async def build(
    settings: PromotionSettings, *, clock: Callable[[], datetime] = utc_now
) -> PromotionService:
    """Build promotion and prepare its state (schema, clone); ``runtime.run()`` starts it."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = Store(settings.resolved_database_url())
    await store.create_schema()
    repo_url = settings.resolved_config_repo_url()
    local = _local_path(repo_url)
    if local is not None and "://" not in repo_url:
        repo_url = str(local.resolve())  # git runs inside the clone: relative paths would break
    if local is not None and not settings.config_repo_url and not local.exists():
        # the default: a local bare repo under FERRY_DATA_DIR (empty until git-writer writes)
        await run_git(
            "init",
            "--bare",
            "--quiet",
            f"--initial-branch={settings.config_repo_branch}",
            str(local),
        )
    repo = ConfigRepo(
        repo_url,
        settings.config_repo_branch,
        settings.data_dir / "promotion-config-clone",
        max_age=settings.config_max_age,
        min_interval=settings.config_min_fetch_interval,
    )
    try:
        await repo.start()
    except GitError as exc:
        log.warning(
            "config repo not readable yet; will retry before each decision",
            error=str(exc),
        )
    tokens = TokenStore(settings.resolved_tokens_file())
    tokens.identities()
    runtime = ServiceRuntime(SERVICE, settings)
    decider = Decider(
        store, repo, tokens, clock=clock, chain_wait=timedelta(seconds=settings.chain_wait_seconds)
    )
    handlers = Handlers(store, repo, decider)
    promotion = Promotion(store, repo, clock=clock)

    async def publish(event: CloudEvent) -> None:
        await runtime.publisher.publish(event)

    relay = OutboxRelay(store, publish)
    deps = ApiDeps(
        promotion=promotion,
        tokens=tokens,
        slack_signing_secret=settings.slack_signing_secret.get_secret_value(),
        slack_bot_token=settings.slack_bot_token.get_secret_value(),
        slack_api_url=settings.slack_api_url,
    )
    service = PromotionService(
        settings, runtime, store, repo, tokens, promotion, decider, handlers, relay, deps
    )

    async def database_ready() -> bool:
        async with store.read() as conn:
            await conn.execute(sa.text("SELECT 1"))
        return True

    async def repo_ready() -> bool:
        return repo.snapshot.fetched_at > 0

    runtime.readiness.add("database", database_ready)
    runtime.readiness.add("config-repo", repo_ready)
    runtime.consume(handlers.routes(), concurrency=settings.consumer_concurrency)
    app = create_app(deps, runtime.routes())
    runtime.serve(app)
    runtime.on_start(service.start)
    runtime.on_stop(service.stop)
    chatops = chatops_of(app)
    if chatops is not None:  # Slack follow-ups end with the process, not after it
        runtime.on_stop(chatops.aclose)
    return service

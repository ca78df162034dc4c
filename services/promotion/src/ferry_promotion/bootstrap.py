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
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from slack_sdk.web.async_client import AsyncWebClient

from ferry_events import CloudEvent
from ferry_promotion.adapters.configrepo import ConfigReader
from ferry_promotion.adapters.db import Store
from ferry_promotion.adapters.db import now as utc_now
from ferry_promotion.adapters.gitcli import GitError, run_git
from ferry_promotion.adapters.outbox import OutboxRelay
from ferry_promotion.adapters.prometheus import PrometheusMetrics
from ferry_promotion.adapters.queries import SqlReadModel
from ferry_promotion.adapters.slack.responder import SLACK_HOOKS_ORIGIN, ResponseUrlPoster
from ferry_promotion.adapters.slack.state import SqlFollowUps, SqlReplays
from ferry_promotion.adapters.slack.users import SlackUserDirectory
from ferry_promotion.adapters.slack.verification import MAX_AGE_SECONDS, SlackRequestVerifier
from ferry_promotion.adapters.tokens import TokenStore
from ferry_promotion.adapters.unit_of_work import SqlAlchemyUnitOfWork
from ferry_promotion.entrypoints.consumers import Consumers
from ferry_promotion.entrypoints.http.api import ApiDeps, create_app
from ferry_promotion.entrypoints.slack import ChatOps
from ferry_promotion.entrypoints.slack.backend import PromotionReleases, TokenPeople
from ferry_promotion.entrypoints.timers import every, housekeeping
from ferry_promotion.service_layer.deciding import Decider
from ferry_promotion.service_layer.expiring import Expiry
from ferry_promotion.service_layer.housekeeping import purge
from ferry_promotion.service_layer.policies import Policies
from ferry_promotion.service_layer.previewing import Previews
from ferry_promotion.service_layer.requesting import Requests
from ferry_promotion.service_layer.resolving import Resolver
from ferry_promotion.service_layer.results import Results
from ferry_promotion.service_layer.safety import Safety
from ferry_promotion.service_layer.scheduling import Schedule
from ferry_promotion.service_layer.soaking import Soaks
from ferry_promotion.service_layer.unit_of_work import UnitOfWork
from ferry_promotion.service_layer.views import Views
from ferry_promotion.settings import PromotionSettings
from ferry_runtime import ServiceRuntime, get_logger

log = get_logger(__name__)

SERVICE = "promotion"


@dataclass
class PromotionService:
    """Everything one promotion process runs."""

    settings: PromotionSettings
    runtime: ServiceRuntime
    store: Store
    reader: ConfigReader
    tokens: TokenStore
    requests: Requests
    views: Views
    policies: Policies
    decider: Decider
    expiry: Expiry
    soaks: Soaks
    schedule: Schedule
    consumers: Consumers
    relay: OutboxRelay
    chatops: ChatOps
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def uow(self) -> UnitOfWork:
        return SqlAlchemyUnitOfWork(self.store)

    async def _purge(self) -> None:
        moment = utc_now()
        await purge(
            self.uow,
            sent_before=moment - timedelta(days=self.settings.outbox_retention_days),
            processed_before=moment - timedelta(days=self.settings.inbox_retention_days),
        )

    async def _on_clock(self) -> None:
        """Expire what waited too long, then decide the soaks that ended (each whatever the
        other did)."""
        try:
            await self.expiry.expire()
        finally:
            await self.soaks.wake()

    def _spawn(self, job: Coroutine[Any, Any, None], name: str) -> None:
        self._tasks.append(asyncio.create_task(job, name=name))

    async def start(self) -> None:
        self.relay.start()
        self.chatops.start()
        interval = self.settings.expiry_check_interval
        self._spawn(housekeeping(interval, self._on_clock, self._purge), "expiry")
        self._spawn(
            every(
                self.settings.schedule_check_interval,
                self.schedule.release_due,
                "publishing due scheduled releases",
            ),
            "schedule",
        )
        self._spawn(self.reader.keep_fresh(), "config-refresh")
        self._spawn(self.tokens.keep_fresh(), "tokens-refresh")

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


async def _config_reader(settings: PromotionSettings) -> ConfigReader:
    """The read-only clone of the config repo, started (a failed first fetch is retried)."""
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
    reader = ConfigReader(
        repo_url,
        settings.config_repo_branch,
        settings.data_dir / "promotion-config-clone",
        max_age=settings.config_max_age,
        min_interval=settings.config_min_fetch_interval,
    )
    try:
        await reader.start()
    except GitError as exc:
        log.warning(
            "config repo not readable yet; will retry before each decision",
            error=str(exc),
        )
    return reader


async def build(
    settings: PromotionSettings, *, clock: Callable[[], datetime] = utc_now
) -> PromotionService:
    """Build promotion and prepare its state (schema, clone); ``runtime.run()`` starts it."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = Store(settings.resolved_database_url())
    await store.create_schema()
    reader = await _config_reader(settings)
    tokens = TokenStore(settings.resolved_tokens_file())
    tokens.identities()
    runtime = ServiceRuntime(SERVICE, settings)

    def uow() -> UnitOfWork:
        return SqlAlchemyUnitOfWork(store)

    read = SqlReadModel(store)
    metrics = (
        PrometheusMetrics(settings.prometheus_url, timeout=settings.prometheus_timeout)
        if settings.prometheus_url
        else None
    )
    decider = Decider(uow, Resolver(reader, read), read, tokens, clock=clock, metrics=metrics)
    expiry = Expiry(uow, clock=clock, chain_wait=timedelta(seconds=settings.chain_wait_seconds))
    requests = Requests(uow, reader, read, decider, clock=clock)
    views = Views(read, reader)
    policies = Policies(uow, reader)
    safety = Safety(uow, reader, clock=clock)
    schedule = Schedule(uow, reader, read, clock=clock)
    consumers = Consumers(requests, decider, Results(uow, decider), policies, safety)
    soaks = Soaks(uow, decider, clock=clock, ordered=consumers.ordered)

    async def publish(event: CloudEvent) -> None:
        await runtime.publisher.publish(event)

    relay = OutboxRelay(store, publish)
    previews = Previews(reader, read, decider)
    backend = PromotionReleases(requests, views, safety, previews, schedule)
    chatops = _chatops(settings, store, tokens, backend)
    service = PromotionService(
        settings,
        runtime,
        store,
        reader,
        tokens,
        requests,
        views,
        policies,
        decider,
        expiry,
        soaks,
        schedule,
        consumers,
        relay,
        chatops,
    )

    async def repo_ready() -> bool:
        return reader.snapshot.fetched_at > 0

    runtime.readiness.add("database", store.ping)
    runtime.readiness.add("config-repo", repo_ready)
    consumers.subscribe(runtime)
    runtime.set_concurrency(settings.consumer_concurrency)
    deps = ApiDeps(
        requests=requests,
        views=views,
        policies=policies,
        safety=safety,
        tokens=tokens,
        previews=previews,
        schedule=schedule,
    )
    runtime.serve(create_app(deps, chatops, runtime.routes()))
    runtime.on_start(service.start)
    runtime.on_stop(service.stop)
    runtime.on_stop(chatops.aclose)  # Slack follow-ups end with the process, not after it
    return service


def _chatops(
    settings: PromotionSettings, store: Store, tokens: TokenStore, releases: PromotionReleases
) -> ChatOps:
    """Chat-ops and its Slack adapters, its replay cache and follow-ups in the database.

    Without a signing secret every Slack request is refused (401: it cannot be
    verified); without a bot token a Slack user is known only by the
    ``slackUserId`` of their tokens-file entry.
    """
    api_url = settings.slack_api_url or "https://slack.com/api/"
    base_url = api_url if api_url.endswith("/") else api_url + "/"
    secret = settings.slack_signing_secret.get_secret_value()
    bot_token = settings.slack_bot_token.get_secret_value()
    seen = SqlReplays(store, window=MAX_AGE_SECONDS)
    return ChatOps(
        verifier=SlackRequestVerifier(secret, replay_cache=seen) if secret else None,
        claims=seen,
        people=TokenPeople(tokens),
        releases=releases,
        users=SlackUserDirectory(AsyncWebClient(token=bot_token, base_url=base_url))
        if bot_token
        else None,
        poster=ResponseUrlPoster([SLACK_HOOKS_ORIGIN, base_url]),
        followups=SqlFollowUps(store),
    )

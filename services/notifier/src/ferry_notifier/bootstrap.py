"""The notifier's composition root: settings in, adapters built, handler wired, runtime out."""

from __future__ import annotations

import os
import socket
import uuid
from datetime import timedelta

from ferry_events import ALL_EVENT_TYPES, EventData
from ferry_events.deadletter import DESTINATION_HEADER
from ferry_notifier.adapters.email import Mailer, SmtpConfig
from ferry_notifier.adapters.github import GitHubApi
from ferry_notifier.adapters.slack import Slack, load_user_map
from ferry_notifier.adapters.store import Store
from ferry_notifier.adapters.templates import Renderer
from ferry_notifier.adapters.webhook import Webhooks
from ferry_notifier.claiming import Claimant, Claiming
from ferry_notifier.delivery import Channels, Deliverer, RetryPolicy
from ferry_notifier.domain.github import web_host
from ferry_notifier.domain.notice import CONTEXT_TYPES, NOTIFIED_TYPES
from ferry_notifier.domain.routing import (
    Destination,
    RoutingConfig,
    RoutingFileError,
    default_routing,
    parse_routing,
)
from ferry_notifier.github import GitHubDeployments
from ferry_notifier.handlers import Notifier
from ferry_notifier.settings import NotifierSettings
from ferry_runtime import DeadLetter, Delivery, ServiceRuntime, get_logger

SERVICE = "notifier"
log = get_logger(__name__)

assert all(t in ALL_EVENT_TYPES for t in (*NOTIFIED_TYPES, *CONTEXT_TYPES))


class ConfigurationError(RuntimeError):
    """The notifier cannot start with these settings; the message says what to fix."""


def load_routing(settings: NotifierSettings) -> RoutingConfig:
    """The routing file, validated, or the built-in routing. Refuses what cannot be delivered."""
    slack = bool(settings.slack_bot_token.get_secret_value())
    email = bool(settings.smtp_url)
    github = bool(settings.github_token.get_secret_value())
    if settings.routes_file is None:
        return default_routing(slack=slack, email=email, github=github)
    path = settings.routes_file
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read the routing file {path} (FERRY_ROUTES_FILE): {exc.strerror}"
        ) from exc
    try:
        routing = parse_routing(text, source=str(path))
    except RoutingFileError as exc:
        raise ConfigurationError(f"the routing file is malformed: {exc}") from exc
    missing = {
        "slack": slack,
        "slack-dm": slack,
        "email": email,
        "webhook": bool(settings.webhook_secret.get_secret_value()),
        "github": github,
    }
    for kind in sorted(routing.destination_kinds()):
        if not missing.get(kind, True):
            setting = {
                "slack": "FERRY_SLACK_BOT_TOKEN",
                "slack-dm": "FERRY_SLACK_BOT_TOKEN",
                "email": "FERRY_SMTP_URL",
                "webhook": "FERRY_WEBHOOK_SECRET",
                "github": "FERRY_GITHUB_TOKEN",
            }[kind]
            raise ConfigurationError(
                f"{path} routes events to {kind} destinations but {setting} is not set; "
                "set it or remove those destinations"
            )
    if routing.include_defaults:
        return default_routing(slack=slack, email=email, github=github, base=routing)
    return routing


def _github(
    settings: NotifierSettings, store: Store, claimant: Claimant, routing: RoutingConfig
) -> GitHubDeployments | None:
    """GitHub deployments when ``FERRY_GITHUB_TOKEN`` is set."""
    token = settings.github_token.get_secret_value()
    if not token:
        return None
    return GitHubDeployments(
        GitHubApi(settings.github_api_url, token, settings.send_timeout),
        store,
        claimant,
        host=web_host(settings.github_api_url),
        protected_environments=routing.protected_environments,
    )


def build(settings: NotifierSettings) -> ServiceRuntime:
    """The notifier, ready to ``run()``. Raises :class:`ConfigurationError` on bad settings."""
    routing = load_routing(settings)
    renderer = Renderer(settings.templates_dir)
    try:
        renderer.check()
    except Exception as exc:
        raise ConfigurationError(
            f"a template in {settings.templates_dir} (FERRY_TEMPLATES_DIR) is broken: {exc}"
        ) from exc
    store = Store.from_url(settings.database())
    slack: Slack | None = None
    token = settings.slack_bot_token.get_secret_value()
    if token:
        try:
            user_map = load_user_map(settings.slack_users_file)
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"FERRY_SLACK_USERS_FILE: {exc}") from exc
        slack = Slack.connect(token, settings.slack_api_url, user_map, settings.send_timeout)
    mailer: Mailer | None = None
    if settings.smtp_url:
        try:
            mailer = Mailer(
                SmtpConfig.from_url(settings.smtp_url), settings.email_from, settings.send_timeout
            )
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from exc
    secret = settings.webhook_secret.get_secret_value()
    webhooks = Webhooks(secret.encode(), settings.send_timeout) if secret else None
    policy = RetryPolicy(
        attempts=settings.delivery_attempts,
        backoff=settings.delivery_backoff,
        backoff_max=settings.delivery_backoff_max,
        max_retry_after=settings.max_retry_after,
    )
    if settings.claim_lease <= settings.send_timeout:
        raise ConfigurationError(
            f"FERRY_CLAIM_LEASE ({settings.claim_lease:g}s) must be longer than "
            f"FERRY_SEND_TIMEOUT ({settings.send_timeout:g}s), or another replica could take "
            "over a delivery that is still being sent"
        )
    owner = settings.replica_name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    claimant = Claimant(store, Claiming(owner=owner[:128], lease=settings.claim_lease))
    github = _github(settings, store, claimant, routing)
    deliverer = Deliverer(store, Channels(slack, mailer, webhooks, github), policy, claimant)
    runtime = ServiceRuntime(SERVICE, settings)

    async def dead_letter(
        delivery: Delivery[EventData], destination: Destination, reason: str, attempts: int
    ) -> None:
        letter = DeadLetter(
            "delivery-failed",
            f"{destination.key}: {reason}",
            attempts=attempts,
            headers={DESTINATION_HEADER: destination.key},
        )
        await runtime.dead_letters.dead_letter(delivery, letter)

    notifier = Notifier(
        store=store,
        routing=routing,
        renderer=renderer,
        deliverer=deliverer,
        dead_letter=dead_letter,
        flood_window=timedelta(seconds=settings.flood_window),
        config_commit_url=settings.config_commit_url,
        dashboard_url=settings.dashboard_url,
    )
    for model in (*NOTIFIED_TYPES, *CONTEXT_TYPES):
        runtime.subscribe(model, notifier.handle)
    runtime.set_concurrency(settings.concurrency)
    runtime.readiness.add("database", store.ping)

    async def start() -> None:
        await store.create()
        log.info(
            "routing loaded",
            source=str(settings.routes_file) if settings.routes_file else "built-in",
            rules=[rule.name or ", ".join(rule.to) for rule in routing.routes],
            replica=owner,
            channels={
                "slack": slack is not None,
                "email": mailer is not None,
                "webhook": webhooks is not None,
                "github": github is not None,
            },
        )

    async def stop() -> None:
        for client in (slack, webhooks, github):
            if client is not None:
                await client.close()
        await store.close()

    runtime.on_start(start)
    runtime.on_stop(stop)
    return runtime

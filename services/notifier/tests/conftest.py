"""Fixtures of the notifier's tests: loopback Slack, SMTP and webhook servers, and the notifier."""

from __future__ import annotations

import sys
from pathlib import Path

# The event builders (notifier_events.py) sit next to the tests.
sys.path.insert(0, str(Path(__file__).parent))

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from ferry_notifier.bootstrap import build
from ferry_notifier.settings import NotifierSettings
from ferry_runtime import ServiceRuntime
from ferry_testing import BrokerNamespace, running
from ferry_testing.mail import MailServer
from ferry_testing.slack_api import SlackApi
from ferry_testing.webhook import WebhookReceiver

WEBHOOK_SECRET = "webhook-test-secret"


@pytest.fixture
async def slack_api() -> AsyncIterator[SlackApi]:
    async with SlackApi() as server:
        server.add_user("dev@example.com", "U0DEV")
        server.add_user("rel@example.com", "U0REL")
        server.add_user("lead@example.com", "U0LEAD")
        yield server


@pytest.fixture
async def smtp() -> AsyncIterator[MailServer]:
    async with MailServer(username="ferry", password="mail-pass") as server:
        yield server


@pytest.fixture
async def webhooks() -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver(WEBHOOK_SECRET.encode()) as receiver:
        yield receiver


NotifierFactory = Callable[..., contextlib.AbstractAsyncContextManager[ServiceRuntime]]


@pytest.fixture
def notifier(
    broker_ns: BrokerNamespace,
    slack_api: SlackApi,
    smtp: MailServer,
    tmp_path: Path,
) -> NotifierFactory:
    """``async with notifier(routes_yaml, **settings):`` runs a notifier until the block ends."""

    @contextlib.asynccontextmanager
    async def start(routes: str | None = None, **overrides: Any) -> AsyncIterator[ServiceRuntime]:
        values: dict[str, Any] = {
            **broker_ns.settings(),
            "database_url": f"sqlite+aiosqlite:///{tmp_path / 'notifier.db'}",
            "slack_bot_token": "xoxb-test",
            "slack_api_url": slack_api.base_url,
            "smtp_url": smtp.url,
            "webhook_secret": WEBHOOK_SECRET,
            "delivery_backoff": 0.05,
            "send_timeout": 5.0,
        }
        if routes is not None:
            path = tmp_path / "routes.yaml"
            path.write_text(routes)
            values["routes_file"] = path
        values.update(overrides)
        runtime = build(NotifierSettings(**values))
        async with running(runtime):
            yield runtime

    return start

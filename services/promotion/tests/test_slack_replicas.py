"""Chat-ops over two promotion replicas on one PostgreSQL database: a replay seen by one is refused
by the other; a replica that dies while following a release leaves its follow-up to the other."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ferry_promotion.bootstrap import PromotionService, build
from ferry_promotion.settings import PromotionSettings
from ferry_testing import BrokerNamespace, running
from ferry_testing.slack_api import SlackApi
from ferry_testing.slack_signing import signed_headers, slash_command_body

from .test_slack_chatops import SECRET, release_id_in, store, texts

pytestmark = pytest.mark.amqp


@contextlib.asynccontextmanager
async def replicas(
    ns: BrokerNamespace, config: Any, tokens: Any, url: str, slack: SlackApi, root: Path
) -> AsyncIterator[list[tuple[PromotionService, httpx.AsyncClient]]]:
    def settings(name: str) -> PromotionSettings:
        return PromotionSettings(
            **ns.settings(),
            data_dir=root / name,
            database_url=url,
            config_repo_url=str(config.remote),
            api_tokens_file=tokens.path,
            config_max_age=0.0,
            expiry_check_interval=0.2,
            slack_signing_secret=SECRET,
            slack_api_url=slack.base_url,
        )

    # both start at once on an empty database: creating the schema must not collide
    services = await asyncio.gather(build(settings("a")), build(settings("b")))
    async with contextlib.AsyncExitStack() as stack:
        found = []
        for service in services:
            service.chatops.follow_interval = 0.1
            service.chatops.follow_lease = 0.6
            await stack.enter_async_context(running(service.runtime))
            client = await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=f"http://127.0.0.1:{service.runtime.http_port}", timeout=10
                )
            )
            found.append((service, client))
        yield found


async def test_a_slack_request_accepted_by_one_replica_is_a_replay_to_the_other(
    broker_ns, config, tokens, postgres_url, tmp_path
):
    async with (
        SlackApi() as slack,
        replicas(broker_ns, config, tokens, postgres_url, slack, tmp_path) as both,
    ):
        (_, first), (_, second) = both
        for accepting, replaying in ((first, second), (second, first)):
            body = slash_command_body("help", user_id="UALICE", response_url="")
            headers = signed_headers(SECRET, body)
            accepted = await accepting.post("/v1/slack/commands", content=body, headers=headers)
            assert accepted.status_code == 200, accepted.text
            replay = await replaying.post("/v1/slack/commands", content=body, headers=headers)
            assert replay.status_code == 401
            assert replay.headers["content-type"] == "application/problem+json"
            assert "replay" in replay.json()["detail"]
            again = await accepting.post("/v1/slack/commands", content=body, headers=headers)
            assert again.status_code == 401


async def test_a_follow_up_left_by_a_dead_replica_is_finished_by_the_other(
    broker_ns, config, tokens, postgres_url, tmp_path
):
    store(config, "master-1")
    async with (
        SlackApi() as slack,
        replicas(broker_ns, config, tokens, postgres_url, slack, tmp_path) as both,
    ):
        (dying, client), (survivor, _) = both
        dying.chatops.follow_interval = 60.0  # it would look only after a minute
        body = slash_command_body(
            "release payments master-1 to dev",
            user_id="UALICE",
            response_url=slack.response_url("rel"),
        )
        answer = await client.post(
            "/v1/slack/commands", content=body, headers=signed_headers(SECRET, body)
        )
        assert answer.status_code == 200, answer.text
        release_id = release_id_in(answer.json()["text"])
        await dying.chatops.aclose()  # its follow-up ends without a word, its row stays
        async with asyncio.timeout(20):
            while f"Release `{release_id}` approved" not in texts(slack.responses["rel"]):
                await slack.wait_for_responses("rel", len(slack.responses["rel"]) + 1)
        posts = slack.responses["rel"]
        approved = [p for p in posts if f"Release `{release_id}` approved" in p["text"]]
        assert len(approved) == 1  # said once, by the replica that took the follow-up over
        assert survivor.chatops.pending >= 1

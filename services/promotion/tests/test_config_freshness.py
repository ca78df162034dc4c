"""A decision never uses older config than the API had when it accepted the request.

Each replica keeps its own read-only clone and refreshes it lazily (``FERRY_CONFIG_MAX_AGE``);
``ferry.policy.changed.v1`` reaches only one of the competing consumers. A request records
the commit the remote was at when the API accepted it (``configCommit``), and the replica
that decides it fetches until its clone holds that commit. Here the clones would otherwise
stay an hour old.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ferry_events import Actor, PolicyChanged
from ferry_promotion.adapters.configrepo import ConfigReader
from ferry_promotion.bootstrap import PromotionService, build
from ferry_promotion.settings import PromotionSettings
from ferry_testing import BrokerNamespace, EventTap, running

pytestmark = pytest.mark.amqp

STALE = 3600.0  # a clone refreshes lazily: without the commit rule, an hour-old policy


async def test_a_clone_is_fetched_up_to_the_commit_it_must_hold(config: Any, tmp_path: Path):
    first = config.write("README.md", "config\n", "start")
    reader = ConfigReader(
        str(config.remote), "main", tmp_path / "clone", max_age=STALE, min_interval=STALE
    )
    assert (await reader.start()).commit == first
    second = config.write("policies/payments.yaml", "autoRelease: []\n", "policy")

    assert (await reader.current(service="payments")).commit == first  # lazily old
    assert await reader.remote_head() == second
    assert not await reader.holds(second)
    assert (await reader.current(service="payments", holding=second)).commit == second
    assert await reader.holds(first)
    assert await reader.holds(second)


@contextlib.asynccontextmanager
async def two_replicas(
    ns: BrokerNamespace, config: Any, tokens: Any, url: str, root: Path
) -> AsyncIterator[list[tuple[PromotionService, httpx.AsyncClient]]]:
    def settings(name: str) -> PromotionSettings:
        return PromotionSettings(
            **ns.settings(),
            data_dir=root / name,
            database_url=url,
            config_repo_url=str(config.remote),
            api_tokens_file=tokens.path,
            config_max_age=STALE,
        )

    services = [await build(settings("a")), await build(settings("b"))]
    async with contextlib.AsyncExitStack() as stack:
        found = []
        for service in services:
            await stack.enter_async_context(running(service.runtime))
            client = await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=f"http://127.0.0.1:{service.runtime.http_port}", timeout=10
                )
            )
            found.append((service, client))
        yield found


async def _decided(client: httpx.AsyncClient, headers: dict[str, str], release_id: str) -> Any:
    async with asyncio.timeout(30):
        while True:
            reply = await client.get(f"/v1/releases/{release_id}", headers=headers)
            assert reply.status_code == 200, reply.text
            if reply.json()["status"] != "requested":
                return reply.json()
            await asyncio.sleep(0.1)


async def test_a_policy_one_replica_has_shown_applies_on_every_replica(
    broker_ns, config, tokens, postgres_url, tmp_path
):
    config.store("payments", "master-1")
    async with (
        EventTap(broker_ns),  # what promotion publishes is routed, as the notifier's queue would
        two_replicas(broker_ns, config, tokens, postgres_url, tmp_path) as both,
    ):
        (_, first), (_, second) = both
        # the approval policy lands in the remote after both replicas cloned it; git-writer
        # says so, and only one of the two competing consumers hears it
        policy = {"approvals": [{"environment": "prod", "required": 1}]}
        commit = config.write(
            "policies/payments.yaml",
            "approvals:\n  - environment: prod\n    required: 1\n",
            "[policies/payments] apply by carol",
        )
        await broker_ns.publish(
            PolicyChanged(
                request_id="p-1",
                service="payments",
                policy=policy,
                actor=Actor(subject="carol", email="carol@example.com"),
                commit_sha=commit,
            )
        )

        async def shown_by() -> httpx.AsyncClient:
            async with asyncio.timeout(20):
                while True:
                    for client in (first, second):
                        reply = await client.get(
                            "/v1/policies/payments", headers=tokens.header("carol")
                        )
                        if reply.status_code == 200:
                            return client
                    await asyncio.sleep(0.1)

        showing = await shown_by()
        other = second if showing is first else first
        # every request after that, through either API and decided by either consumer,
        # must wait for an approval; a replica deciding on its hour-old clone would approve
        for client in (other, showing, other, showing):
            reply = await client.post(
                "/v1/releases",
                json={"service": "payments", "environment": "prod", "intent": "release",
                      "artifactId": "master-1"},
                headers=tokens.header("bob"),
            )  # fmt: skip
            assert reply.status_code == 202, reply.text
            decided = await _decided(client, tokens.header("bob"), reply.json()["releaseId"])
            assert decided["status"] == "awaiting-approval", decided

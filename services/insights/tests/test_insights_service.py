"""insights consuming real events from the real RabbitMQ: the DORA answer over HTTP, its
refusals, and the gauges on /metrics. Two replicas (separate processes) on one PostgreSQL
database, with every event delivered twice, give the same numbers as one."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from insights_history import DAYS, PROD, PROD_WEEKS, STAGING, TO, history, subset
from insights_support import TOKENS, InsightsFactory

from ferry_testing import BrokerNamespace, ServiceProcess
from ferry_testing.net import free_port

pytestmark = pytest.mark.amqp

QUERY = {"environment": "prod", "days": DAYS, "to": TO.isoformat()}


def bearer(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[name]}"}


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.1)


async def ferry_insights_cli(base: str, *args: str) -> str:
    """``ferry insights`` in its own process, against ``base``, over the scripted window."""
    cli = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ferry_cli",
        "insights",
        "--insights",
        base,
        "--token",
        TOKENS["viewer"],
        "--days",
        str(DAYS),
        "--to",
        TO.isoformat(),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "160"},
    )
    out, err = await cli.communicate()
    assert cli.returncode == 0, err.decode()
    return out.decode()


def acked(metrics: str) -> int:
    pattern = r'ferry_messages_total\{event_type="[^"]+",outcome="acked",service="insights"\} (\S+)'
    return int(sum(float(v) for v in re.findall(pattern, metrics)))


async def test_dora_over_http_from_events_on_the_broker(
    insights: InsightsFactory, broker_ns: BrokerNamespace
) -> None:
    events = history()
    async with insights() as service:
        for event in events:
            await broker_ns.publish(event)

        async def projected() -> bool:
            return (await service.store.counts())["inbox"] == len(events)

        await eventually(projected)
        base = f"http://127.0.0.1:{service.runtime.http_port}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            response = await http.get("/v1/insights/dora", params=QUERY, headers=bearer("viewer"))
            assert response.status_code == 200, response.text
            body = response.json()
            assert subset(body, PROD) == PROD
            assert body["weekly"] == PROD_WEEKS
            assert (body["environment"], body["service"], body["squad"]) == ("prod", None, None)
            staging = await http.get(
                "/v1/insights/dora",
                params={**QUERY, "environment": "staging"},
                headers=bearer("admin"),
            )
            assert subset(staging.json(), STAGING) == STAGING

            refused = await http.get("/v1/insights/dora", params=QUERY)
            assert refused.status_code == 401
            assert refused.headers["content-type"] == "application/problem+json"
            assert "Bearer" in refused.json()["detail"]
            wrong = await http.get(
                "/v1/insights/dora", params=QUERY, headers={"Authorization": "Bearer nope"}
            )
            assert wrong.status_code == 401
            no_role = await http.get("/v1/insights/dora", params=QUERY, headers=bearer("nobody"))
            assert no_role.status_code == 403
            assert "viewer" in no_role.json()["detail"]
            for bad, field in (
                ({"environment": "Prod!"}, "environment"),
                ({"days": "0"}, "days"),
                ({"days": "many"}, "days"),
                ({"to": "yesterday"}, "to"),
            ):
                answer = await http.get(
                    "/v1/insights/dora", params={**QUERY, **bad}, headers=bearer("viewer")
                )
                assert answer.status_code == 400, (bad, answer.text)
                assert answer.headers["content-type"] == "application/problem+json"
                assert field in answer.json()["detail"]

            # the CLI against the same service: JSON is the API's document, the table its numbers
            document = json.loads(await ferry_insights_cli(base, "-o", "json"))
            assert document == body
            table = await ferry_insights_cli(base, "--service", "payments")
            assert "environment prod, service payments" in table
            assert "50.0%" in table  # payments' change failure rate
            assert "1h 0m" in table  # its median lead time, 3600 s
            assert "2026-11-17" in table

            metrics = (await http.get("/metrics")).text
            # the gauges cover the 30 days before now: the scripted history is older than that
            # when this runs after 2026-12-31, so check the samples' presence, not their values
            assert "ferry_dora_deployments{" in metrics
            assert "ferry_dora_window_days 30.0" in metrics
            assert (await http.get("/readyz")).json()["checks"] == {
                "broker": True,
                "database": True,
            }


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.timeout(240)  # two processes start: slow when the machine is busy
async def test_two_replicas_on_postgres_with_every_event_twice_agree(
    broker_ns: BrokerNamespace, postgres_url: str, tokens_file: Path, tmp_path: Path
) -> None:
    events = history()
    ports = [free_port(), free_port()]
    replicas = [
        ServiceProcess(
            "ferry_insights",
            broker_ns.env(
                FERRY_DATABASE_URL=postgres_url,
                FERRY_API_TOKENS_FILE=str(tokens_file),
                FERRY_HTTP_PORT=str(port),
                FERRY_DATA_DIR=str(tmp_path / f"data-{index}"),
                FERRY_CONSUMER_CONCURRENCY="4",
                FERRY_LOG_FORMAT="json",
            ),
            tmp_path / f"insights-{index}.log",
        ).start()
        for index, port in enumerate(ports)
    ]
    try:
        async with httpx.AsyncClient(timeout=10) as http:

            async def ready() -> bool:
                for port in ports:
                    try:
                        if (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code != 200:
                            return False
                    except httpx.TransportError:
                        return False
                return True

            await eventually(ready, timeout=120)
            for event in [*events, *events]:  # the same ids twice: a redelivery on any replica
                await broker_ns.publish(event)

            async def all_acked() -> bool:
                total = 0
                for port in ports:
                    total += acked((await http.get(f"http://127.0.0.1:{port}/metrics")).text)
                return total == 2 * len(events)

            await eventually(all_acked, timeout=60)
            answers = []
            for port in ports:
                response = await http.get(
                    f"http://127.0.0.1:{port}/v1/insights/dora",
                    params=QUERY,
                    headers=bearer("viewer"),
                )
                assert response.status_code == 200, response.text
                answers.append(response.json())
        assert answers[0] == answers[1]
        assert subset(answers[0], PROD) == PROD
        assert answers[0]["weekly"] == PROD_WEEKS
        for replica in replicas:
            assert "Traceback" not in replica.logs()
    finally:
        for replica in replicas:
            replica.terminate()


async def test_an_event_the_projections_cannot_hold_is_dead_lettered_with_its_reason(
    insights: InsightsFactory, broker_ns: BrokerNamespace
) -> None:
    """A rollout fact whose service name is longer than any service (the watcher's models do
    not bound it) fails the same way every time: it goes to the dead-letter queue at once,
    named, and the events after it are projected."""
    from insights_history import at, rollout

    poison = rollout("succeeded", "payments", "a9", at(20, 10))
    poison = poison.model_copy(update={"data": {**poison.data, "service": "x" * 100}})
    good = rollout("succeeded", "payments", "a8", at(20, 11))
    async with insights() as service:
        await broker_ns.publish(poison)
        await broker_ns.publish(good)
        (dead,) = await broker_ns.dead_letters("insights", timeout=20)
        headers = dead.headers or {}
        assert headers["x-ferry-error-code"] == "unprojectable"
        assert "does not fit" in str(headers["x-ferry-reason"])

        async def good_projected() -> bool:
            return (await service.store.counts())["deployments"] == 1

        await eventually(good_projected)

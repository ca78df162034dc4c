"""The OpenAPI document through schemathesis against the real service process: no 5xx."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings

from ferry_testing import BrokerNamespace, ServiceProcess
from ferry_testing.net import free_port

pytestmark = [pytest.mark.amqp, pytest.mark.slow]


def _fuzz(
    operation, base: str, session, headers: dict[str, str], failures: list[str], examples: int
) -> None:
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def check(case) -> None:
        response = case.call(base_url=base, session=session, headers=headers)
        if response.status_code >= 500:
            failures.append(f"{case.method} {case.formatted_path}: {response.text}")
        assert response.headers.get("content-type", [""])[0].startswith("application/")

    check()


def test_no_request_produces_a_server_error(amqp_url, tokens, config, tmp_path: Path) -> None:
    config.store("payments", "master-1")
    config.release("dev", "payments", "master-1")
    config.write("policies/payments.yaml", "approvals:\n  - {environment: prod}\n")
    ns = BrokerNamespace(amqp_url)
    port = free_port()
    env = ns.env(
        FERRY_HTTP_PORT=str(port),
        FERRY_DATA_DIR=str(tmp_path / "data"),
        FERRY_CONFIG_REPO_URL=str(config.remote),
        FERRY_API_TOKENS_FILE=str(tokens.path),
        FERRY_LOG_FORMAT="json",
        FERRY_SLACK_SIGNING_SECRET="fuzz-secret-not-used-by-slack",
    )
    process = ServiceProcess("ferry_promotion", env, tmp_path / "promotion.log").start()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, process.logs()[-3000:]
            time.sleep(0.2)
        schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
        session = requests.Session()
        failures: list[str] = []
        for result in schema.get_all_operations():
            operation = result.ok()
            # an admin reaches every route; a developer and no token hit the refusals
            for who, examples in (("carol", 10), ("alice", 3), (None, 2)):
                headers = tokens.header(who) if who else {}
                _fuzz(operation, base, session, headers, failures, examples)
        assert failures == [], "\n".join(failures[:5]) + process.logs()[-2000:]
    finally:
        process.terminate()
        asyncio.run(ns.cleanup())

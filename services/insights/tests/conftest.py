"""Fixtures of insights' tests: a tokens file, and insights itself on the test's namespace."""

from __future__ import annotations

import sys
from pathlib import Path

# The scripted history (insights_history.py) sits next to the tests.
sys.path.insert(0, str(Path(__file__).parent))

import contextlib
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import yaml
from insights_support import TOKENS, InsightsFactory

from ferry_insights.bootstrap import InsightsService, build
from ferry_insights.settings import InsightsSettings
from ferry_testing import BrokerNamespace, running


@pytest.fixture
def tokens_file(tmp_path: Path) -> Path:
    entries = [
        {
            "subject": name,
            "email": f"{name}@example.com",
            "roles": [] if name == "nobody" else [name],
            "sha256": hashlib.sha256(token.encode()).hexdigest(),
        }
        for name, token in TOKENS.items()
    ]
    path = tmp_path / "tokens.yaml"
    path.write_text(yaml.safe_dump({"tokens": entries}))
    return path


@pytest.fixture
def insights(broker_ns: BrokerNamespace, tokens_file: Path, tmp_path: Path) -> InsightsFactory:
    """``async with insights(**settings) as service:`` runs insights until the block ends."""

    @contextlib.asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[InsightsService]:
        values: dict[str, Any] = {
            **broker_ns.settings(),
            "data_dir": tmp_path / "data",
            "database_url": f"sqlite+aiosqlite:///{tmp_path / 'insights.db'}",
            "api_tokens_file": tokens_file,
            "metrics_cache_seconds": 0,
            **overrides,
        }
        service = await build(InsightsSettings(**values))
        async with running(service.runtime):
            yield service

    return start

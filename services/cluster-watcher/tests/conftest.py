"""Fixtures of the watcher's tests: the Kubernetes API test server and a watcher against it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from ferry_kube_sim import KubeApiServer
from ferry_testing import BrokerNamespace, running
from ferry_watcher.bootstrap import WatcherApp, build
from ferry_watcher.settings import WatcherSettings


@pytest.fixture
async def kube() -> AsyncIterator[KubeApiServer]:
    async with KubeApiServer(bookmark_interval=0.5) as server:
        yield server


@pytest.fixture
def kubeconfig(kube: KubeApiServer, tmp_path: Path) -> Path:
    return kube.write_kubeconfig(tmp_path / "kubeconfig")


WatcherFactory = Callable[..., contextlib.AbstractAsyncContextManager[WatcherApp]]


@pytest.fixture
def watcher(broker_ns: BrokerNamespace, kubeconfig: Path) -> WatcherFactory:
    """Start a cluster-watcher against the test server; ``async with watcher() as app``."""

    @contextlib.asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[WatcherApp]:
        settings = WatcherSettings(
            **{
                **broker_ns.settings(),
                "kubeconfig": kubeconfig,
                "cluster_name": "test-cluster",
                "watch_inactivity_timeout": 5.0,
                "watch_backoff_max": 0.5,
                **overrides,
            }
        )
        app = build(settings)
        async with running(app.runtime):
            await app.wait_synced()
            yield app

    return start

"""Fixtures of the simulator's tests: the Kubernetes API test server and a kubeconfig for it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ferry_kube_sim import KubeApiServer


@pytest.fixture
async def kube() -> AsyncIterator[KubeApiServer]:
    async with KubeApiServer(bookmark_interval=0.5) as server:
        yield server


@pytest.fixture
def kubeconfig(kube: KubeApiServer, tmp_path: Path) -> Path:
    return kube.write_kubeconfig(tmp_path / "kubeconfig")

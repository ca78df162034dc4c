"""A real Prometheus server for tests, scraping a loopback exporter whose value the test sets.

``async with prometheus(tmp_path) as prom:`` starts an exporter (an aiohttp server on a free
loopback port serving ``ferry_test_value`` in the Prometheus text format) and the
``prometheus`` binary (Debian's package) with its own config, data directory and loopback
port, scraping the exporter every second. It yields once Prometheus has the exporter's first
sample. ``prom.set(0.5)`` changes what the exporter serves; ``await prom.until(0.5)`` waits
until Prometheus has scraped it. On the way out only the process started here is stopped.

Tests that need it skip with a reason when the binary is missing (:func:`require_prometheus`).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from ferry_testing.net import free_port, serve_app

#: The metric the exporter serves.
METRIC = "ferry_test_value"
_CONFIG = """\
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: exporter
    scrape_interval: 1s
    scrape_timeout: 900ms
    static_configs:
      - targets: ["127.0.0.1:{port}"]
"""


def prometheus_binary() -> str | None:
    """The ``prometheus`` binary on PATH, if any."""
    return shutil.which("prometheus")


def require_prometheus() -> str:
    """The binary, or skip the calling test saying why (CI installs it: apt ``prometheus``)."""
    found = prometheus_binary()
    if found is None:
        pytest.skip("needs the prometheus binary on PATH (Debian/Ubuntu: apt install prometheus)")
    return found


@dataclass
class Prometheus:
    """A running Prometheus (``url``) and the exporter it scrapes (``set`` its value)."""

    url: str
    value: float = 0.0
    log: Path | None = None

    def set(self, value: float) -> None:
        """What the exporter serves from now on."""
        self.value = value

    async def query(self, expression: str) -> list[float]:
        """The values of an instant query now (one per series)."""
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http,
            http.get(f"{self.url}/api/v1/query", params={"query": expression}) as response,
        ):
            body = await response.json()
        return [float(r["value"][1]) for r in body["data"]["result"]]

    async def until(self, value: float, timeout: float = 30) -> None:
        """Wait until Prometheus's newest sample of the metric is ``value``."""
        async with asyncio.timeout(timeout):
            while await self.query(METRIC) != [value]:  # noqa: ASYNC110 - another process
                await asyncio.sleep(0.2)


def _configure(workdir: Path, exporter_port: int) -> Path:
    """The config file under ``workdir``: scrape the exporter every second."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "prometheus.yml"
    config.write_text(_CONFIG.format(port=exporter_port))
    return config


@contextlib.asynccontextmanager
async def prometheus(workdir: Path, value: float = 0.0) -> AsyncIterator[Prometheus]:
    """Prometheus under ``workdir`` scraping an exporter that serves ``value`` at first."""
    binary = require_prometheus()
    port = free_port()
    prom = Prometheus(url=f"http://127.0.0.1:{port}", value=value, log=workdir / "prometheus.log")

    async def metrics(_: web.Request) -> web.Response:
        body = f"# TYPE {METRIC} gauge\n{METRIC} {prom.value!r}\n"
        return web.Response(text=body, content_type="text/plain")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner, exporter_port = await serve_app(app)
    config = _configure(workdir, exporter_port)
    assert prom.log is not None
    with prom.log.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=1h",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
    try:
        async with asyncio.timeout(60):
            while True:
                if process.returncode is not None:
                    raise RuntimeError(f"prometheus exited: {prom.log.read_text()[-2000:]}")
                with contextlib.suppress(aiohttp.ClientError, KeyError, ValueError):
                    if await prom.query(METRIC) == [value]:
                        break
                await asyncio.sleep(0.2)
        yield prom
    finally:
        if process.returncode is None:
            process.terminate()  # the process started here, by its handle: nothing else
            try:
                async with asyncio.timeout(10):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()
        await runner.cleanup()


__all__ = ["METRIC", "Prometheus", "prometheus", "prometheus_binary", "require_prometheus"]

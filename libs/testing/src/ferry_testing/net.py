"""Loopback networking for tests and benchmarks: free ports and aiohttp servers."""

from __future__ import annotations

import asyncio
import random
import socket
from typing import Any

from aiohttp import web


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (bound once, then released).

    For servers that must be told their port before they start (aiosmtpd's
    Controller, a subprocess); servers started here take port 0 instead.
    """
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
    return port


def free_base_port(
    offsets: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 10), host: str = "127.0.0.1"
) -> int:
    """A base port whose ``base + offset`` ports are all free right now: for ``make run``'s
    script, which gives each service and the simulator a port at a fixed offset from one base."""
    for _ in range(50):
        base = random.randrange(20000, 40000, 20)
        try:
            for offset in offsets:
                with socket.socket() as sock:
                    sock.bind((host, base + offset))
        except OSError:
            continue
        return base
    raise RuntimeError("no free block of ports")


async def serve_app(
    app: web.Application, host: str = "127.0.0.1", port: int = 0, **runner: Any
) -> tuple[web.AppRunner, int]:
    """Start ``app`` on ``host:port`` (0: any free port); return its runner and real port.

    ``runner`` goes to :class:`aiohttp.web.AppRunner` (``access_log=None`` by default).
    Stop it with ``await runner.cleanup()``.
    """
    runner.setdefault("access_log", None)
    app_runner = web.AppRunner(app, **runner)
    await app_runner.setup()
    site = web.TCPSite(app_runner, host, port)
    await site.start()
    server = site._server  # aiohttp exposes no public accessor for the bound socket
    assert isinstance(server, asyncio.Server)
    bound: int = server.sockets[0].getsockname()[1]
    return app_runner, bound

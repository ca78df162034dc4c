"""A loopback webhook receiver that verifies Ferry's signature on every request.

Verification is written here independently of the notifier, from the
documented scheme: ``X-Ferry-Signature: sha256=<hex>`` where hex is
HMAC-SHA256(secret, ``<X-Ferry-Timestamp>.`` + raw body).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ferry_testing.net import serve_app


@dataclass
class Received:
    path: str
    body: bytes
    headers: dict[str, str]
    at: float
    verified: bool

    @property
    def event(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


def verify(
    secret: bytes, body: bytes, timestamp: str, signature: str, tolerance: float = 300
) -> bool:
    """The check a webhook consumer does (see docs/notifications.md)."""
    try:
        if abs(time.time() - int(timestamp)) > tolerance:
            return False
    except ValueError:
        return False
    expected = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(f"sha256={expected}", signature)


class WebhookReceiver:
    """Accepts POSTs on any path. ``status_for[path]`` makes a path answer that status."""

    def __init__(self, secret: bytes) -> None:
        self.secret = secret
        self.received: list[Received] = []
        self.attempts: dict[str, int] = {}
        self.status_for: dict[str, int] = {}
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def __aenter__(self) -> WebhookReceiver:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner, self.port = await serve_app(app)
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        path = request.path
        self.attempts[path] = self.attempts.get(path, 0) + 1
        status = self.status_for.get(path, 200)
        if status >= 300:
            self._changed.set()
            return web.Response(status=status, text="not now")
        body = await request.read()
        ok = verify(
            self.secret,
            body,
            request.headers.get("X-Ferry-Timestamp", ""),
            request.headers.get("X-Ferry-Signature", ""),
        )
        self.received.append(Received(path, body, dict(request.headers), time.monotonic(), ok))
        self._changed.set()
        return web.Response(status=204 if ok else 401)

    def at(self, path: str = "/hook") -> list[Received]:
        return [r for r in self.received if r.path == path]

    async def wait_for(
        self, count: int = 1, *, path: str = "/hook", timeout: float = 15.0
    ) -> list[Received]:
        async with asyncio.timeout(timeout):
            while len(self.at(path)) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.at(path)

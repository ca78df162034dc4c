"""Webhooks: the CloudEvent (structured JSON) POSTed, signed with HMAC-SHA256.

``X-Ferry-Timestamp`` is the Unix time of sending; ``X-Ferry-Signature`` is
``sha256=`` + hex HMAC-SHA256(secret, ``<timestamp>.`` + raw body). See
docs/notifications.md for verification.
"""

from __future__ import annotations

import hashlib
import hmac
import time

import aiohttp

from ferry_notifier.errors import Retryable, Undeliverable

SIGNATURE_HEADER = "X-Ferry-Signature"
TIMESTAMP_HEADER = "X-Ferry-Timestamp"


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class Webhooks:
    def __init__(self, secret: bytes, timeout: float) -> None:
        self._secret = secret
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def send(self, url: str, body: bytes, event_id: str, event_type: str) -> None:
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/cloudevents+json",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: signature(self._secret, timestamp, body),
            "X-Ferry-Event-Id": event_id,
            "X-Ferry-Event-Type": event_type,
            "User-Agent": "ferry-notifier",
        }
        try:
            async with self._client().post(url, data=body, headers=headers) as response:
                status = response.status
                retry_after = response.headers.get("Retry-After")
                await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Retryable(f"webhook {url}: {exc!r}") from exc
        if 200 <= status < 300:
            return
        if status in (408, 429) or status >= 500:
            try:
                wait = float(retry_after) if retry_after else None
            except ValueError:
                wait = None
            raise Retryable(f"webhook {url}: HTTP {status}", retry_after=wait)
        raise Undeliverable(f"webhook {url} refused the event: HTTP {status}")

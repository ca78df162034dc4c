"""Posting to a command's or an interaction's ``response_url``.

Slack accepts up to five posts to one ``response_url`` within thirty minutes;
:class:`ResponseUrl` counts them and refuses a sixth, or one after the half
hour, instead of sending a request Slack would drop.

A ``response_url`` comes inside a signed request, so it is from Slack; still,
Ferry posts only to an allowed origin (Slack's ``hooks.slack.com``, or the
origin of ``FERRY_SLACK_API_URL`` for a self-hosted or test Slack), so that
a leaked signing secret cannot turn the service into a request forwarder.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp

from ferry_runtime import get_logger

__all__ = [
    "MAX_POSTS",
    "MAX_SECONDS",
    "ResponseUrl",
    "ResponseUrlPoster",
    "origin",
]

log = get_logger(__name__)

MAX_POSTS: Final = 5
MAX_SECONDS: Final = 30 * 60
SLACK_HOOKS_ORIGIN: Final = "https://hooks.slack.com"


def origin(url: str) -> str:
    """``scheme://host[:port]`` of ``url``, lower-cased; empty when it has none."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.hostname:
        return ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme.lower()}://{parts.hostname.lower()}{port}"


class ResponseUrlPoster:
    """Sends JSON messages to allowed ``response_url`` origins."""

    def __init__(self, allowed_origins: Iterable[str], *, timeout: float = 10.0) -> None:
        self._allowed = {origin(o) for o in allowed_origins if origin(o)}
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    def allows(self, url: str) -> bool:
        return origin(url) in self._allowed

    def open(
        self,
        url: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        posts: int = 0,
        age: float = 0.0,
    ) -> ResponseUrl:
        """A ``response_url``; ``posts`` made and ``age`` when another replica had it."""
        return ResponseUrl(self, url, clock=clock, posts=posts, age=age)

    async def send(self, url: str, message: dict[str, Any]) -> bool:
        """POST ``message``; True when Slack answered 2xx. Never raises for transport errors."""
        if not self.allows(url):
            log.warning("response_url refused: origin not allowed", origin=origin(url))
            return False
        try:
            async with (
                aiohttp.ClientSession(timeout=self._timeout) as session,
                session.post(url, json=message) as response,
            ):
                await response.read()
                if response.status >= 300:
                    log.warning("response_url answered an error", status=response.status)
                    return False
                return True
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.warning("response_url could not be reached", error=repr(exc))
            return False


class ResponseUrl:
    """One ``response_url``: at most five posts, within thirty minutes of the request."""

    def __init__(
        self,
        poster: ResponseUrlPoster,
        url: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        posts: int = 0,
        age: float = 0.0,
    ) -> None:
        self._poster = poster
        self.url = url
        self._clock = clock
        self._opened = clock() - age
        self.posts = posts

    @property
    def usable(self) -> bool:
        return self.posts < MAX_POSTS and self._clock() - self._opened < MAX_SECONDS

    @property
    def remaining(self) -> int:
        return MAX_POSTS - self.posts

    async def post(self, message: dict[str, Any]) -> bool:
        if not self.usable:
            log.info("response_url used up; not posting", posts=self.posts)
            return False
        self.posts += 1
        return await self._poster.send(self.url, message)

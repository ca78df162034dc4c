"""Slack user id → email and time zone, through the Web API's ``users.info``, cached with a TTL.

Needs the bot token scopes ``users:read`` and ``users:read.email``. A lookup is
on the path of the three-second acknowledgement, so it has a short timeout
and its answers are cached (a miss, such as an unknown or deactivated user,
for a shorter time so that a fix takes effect soon).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from ferry_runtime import get_logger

__all__ = ["SlackUnavailable", "SlackUser", "SlackUserDirectory"]

log = get_logger(__name__)


class SlackUnavailable(Exception):
    """The Slack Web API could not be asked (network, rate limit, bad token)."""


@dataclass(frozen=True, slots=True)
class SlackUser:
    """What Ferry reads of a Slack user: their email and IANA time zone (either may be None)."""

    email: str | None = None
    tz: str | None = None


class SlackUserDirectory:
    """Looks up a Slack user's email address and time zone, with a bounded TTL cache."""

    def __init__(
        self,
        client: AsyncWebClient,
        *,
        ttl: float = 600.0,
        miss_ttl: float = 60.0,
        capacity: int = 10_000,
        timeout: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._ttl = ttl
        self._miss_ttl = miss_ttl
        self._capacity = capacity
        self._timeout = timeout
        self._clock = clock
        self._cache: OrderedDict[str, tuple[float, SlackUser]] = OrderedDict()
        self.lookups = 0  # Web API calls made, for tests and metrics

    async def email_of(self, user_id: str) -> str | None:
        """The user's email; None for an unknown, deleted or bot user, or one with no email."""
        return (await self.user(user_id)).email

    async def tz_of(self, user_id: str) -> str | None:
        """The user's IANA time zone (``Europe/Copenhagen``) as Slack has it, or None."""
        return (await self.user(user_id)).tz

    async def user(self, user_id: str) -> SlackUser:
        """What Slack says of the user (cached); empty for an unknown, deleted or bot user."""
        now = self._clock()
        cached = self._cache.get(user_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        found = await self._lookup(user_id)
        self._cache[user_id] = (now + (self._ttl if found.email else self._miss_ttl), found)
        self._cache.move_to_end(user_id)
        while len(self._cache) > self._capacity:
            self._cache.popitem(last=False)
        return found

    async def _lookup(self, user_id: str) -> SlackUser:
        self.lookups += 1
        try:
            async with asyncio.timeout(self._timeout):
                response = await self._client.users_info(user=user_id)
        except SlackApiError as exc:
            error = exc.response.get("error") if exc.response is not None else None
            if error in ("user_not_found", "user_not_visible"):
                return SlackUser()
            raise SlackUnavailable(f"Slack users.info failed: {error or exc}") from exc
        except (SlackClientError, TimeoutError, OSError) as exc:
            raise SlackUnavailable(f"Slack users.info could not be reached: {exc!r}") from exc
        user: Any = response.get("user") or {}
        if user.get("deleted") or user.get("is_bot"):
            return SlackUser()
        email = (user.get("profile") or {}).get("email")
        tz = user.get("tz")
        return SlackUser(
            email=email.strip().lower() if isinstance(email, str) and email.strip() else None,
            tz=tz.strip()[:64] if isinstance(tz, str) and tz.strip() else None,
        )

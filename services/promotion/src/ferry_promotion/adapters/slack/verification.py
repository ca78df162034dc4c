"""Slack request signing, checked over the raw body before anything is parsed.

Slack signs every request: ``X-Slack-Signature: v0=<hex HMAC-SHA256(signing
secret, "v0:<timestamp>:<raw body>")>`` with ``X-Slack-Request-Timestamp``.
:class:`SlackRequestVerifier` refuses, in this order:

- a request without both headers, or with a timestamp that is not a number;
- a timestamp more than five minutes from now (either way): a stale request;
- a signature that does not match (slack_sdk's ``SignatureVerifier``, which
  compares in constant time);
- a signature seen before within the five minutes: a replay.

Where the signatures seen are kept is a :class:`Replays`: promotion keeps them
in its database (``adapters/slack/state.py``), so that a request accepted by one
replica is a replay to every other; :class:`ReplayCache` is the in-memory one
(one process, bounded) for a verifier on its own.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Final, Protocol

from slack_sdk.signature import Clock, SignatureVerifier

__all__ = [
    "MAX_AGE_SECONDS",
    "ReplayCache",
    "Replays",
    "RequestRefused",
    "SlackRequestVerifier",
]

#: Slack's own rule: refuse requests whose timestamp is more than five minutes away.
MAX_AGE_SECONDS: Final = 300


class RequestRefused(Exception):
    """The request is not provably from Slack. ``reason`` says why (for logs and the 401)."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Replays(Protocol):
    """The signatures seen, until they expire."""

    async def first_time(self, signature: str, now: float) -> bool:
        """Record ``signature`` (until ``now`` plus the window); False when already recorded."""
        ...


class ReplayCache:
    """Signatures seen in the last ``window`` seconds, at most ``capacity`` of them.

    When full, the oldest entry goes first. An evicted signature is at worst a
    replay that the timestamp check does not catch; with Slack's traffic the
    default capacity covers far more than five minutes.
    """

    def __init__(self, *, window: float = MAX_AGE_SECONDS, capacity: int = 100_000) -> None:
        self._window = window
        self._capacity = capacity
        self._seen: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def _expire(self, now: float) -> None:
        while self._seen:
            signature, expires = next(iter(self._seen.items()))
            if expires > now and len(self._seen) <= self._capacity:
                break
            del self._seen[signature]

    async def first_time(self, signature: str, now: float) -> bool:
        """Record ``signature``; False when it was already recorded and has not expired."""
        return self.seen_first(signature, now)

    def seen_first(self, signature: str, now: float) -> bool:
        """:meth:`first_time`, synchronously."""
        self._expire(now)
        if signature in self._seen:
            return False
        self._seen[signature] = now + self._window
        self._expire(now)
        return True


class _CallableClock(Clock):
    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now

    def now(self) -> float:
        return self._now()


class SlackRequestVerifier:
    """Checks Slack's signature, the timestamp's age and replays, in that order."""

    def __init__(
        self,
        signing_secret: str,
        *,
        clock: Callable[[], float] = time.time,
        max_age: float = MAX_AGE_SECONDS,
        replay_cache: Replays | None = None,
    ) -> None:
        self._clock = clock
        self._max_age = max_age
        self._verifier = SignatureVerifier(signing_secret, clock=_CallableClock(clock))
        self._replays: Replays = replay_cache or ReplayCache(window=max_age)

    @property
    def max_age(self) -> float:
        return self._max_age

    async def verify(self, body: bytes, headers: Mapping[str, str]) -> None:
        """Return if the request is from Slack; raise :class:`RequestRefused` otherwise."""
        lowered = {k.lower(): v for k, v in headers.items()}
        timestamp = lowered.get("x-slack-request-timestamp")
        signature = lowered.get("x-slack-signature")
        if not timestamp or not signature:
            raise RequestRefused(
                "unsigned",
                "the request has no X-Slack-Signature and X-Slack-Request-Timestamp headers",
            )
        if not timestamp.isascii() or not timestamp.isdigit():
            raise RequestRefused("bad-timestamp", "X-Slack-Request-Timestamp is not a number")
        now = self._clock()
        if abs(now - int(timestamp)) > self._max_age:
            raise RequestRefused(
                "stale",
                f"the request timestamp is more than {int(self._max_age)} seconds from now",
            )
        try:
            valid = self._verifier.is_valid(body=body, timestamp=timestamp, signature=signature)
        except UnicodeDecodeError:
            valid = False
        if not valid:
            raise RequestRefused(
                "bad-signature", "the signature does not match the body and the signing secret"
            )
        if not await self._replays.first_time(signature, now):
            raise RequestRefused("replay", "this request was already received (a replay)")

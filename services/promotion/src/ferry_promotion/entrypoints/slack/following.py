"""Following a release in Slack: the status changes of a requested release, posted through
its ``response_url`` until it is final, within Slack's limits (how many posts, for how
long); the lease on each follow-up, so that a replica that stops is taken over by another.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from ferry_promotion.adapters.slack.responder import ResponseUrl, ResponseUrlPoster
from ferry_promotion.adapters.slack.state import FollowUp, FollowUps
from ferry_promotion.entrypoints.slack import messages
from ferry_promotion.entrypoints.slack.ports import Releases
from ferry_runtime import get_logger

log = get_logger(__name__)

#: Who a Slack user is in Ferry (None and why not).
Identify = Callable[[str], Awaitable[tuple[Any | None, str]]]


class Following:
    """Every follow-up of this replica, and the take-over of other replicas' lapsed ones."""

    def __init__(
        self,
        *,
        poster: ResponseUrlPoster,
        releases: Releases,
        followups: FollowUps,
        identify: Identify,
        interval: float = 1.0,
        max_interval: float = 10.0,
        lease: float = 30.0,
    ) -> None:
        self._poster = poster
        self._releases = releases
        self._followups = followups
        self._identify = identify
        self.interval = interval
        self._max_interval = max_interval
        self.lease = lease
        self.replica = uuid.uuid4().hex
        self._tasks: set[asyncio.Task[None]] = set()
        self._adopting: asyncio.Task[None] | None = None

    def spawn(self, coro: Any, name: str) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def pending(self) -> int:
        """Follow-ups and message updates still running."""
        return len(self._tasks)

    async def drain(self, timeout: float = 30.0) -> None:
        """Wait for the follow-ups that are running (tests, graceful shutdown)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)

    def start(self) -> None:
        """Take over, from now on, the follow-ups of replicas that stopped holding them."""
        if self._adopting is None:
            self._adopting = asyncio.create_task(self._adopt_forever(), name="slack-adopt")

    async def _adopt_forever(self) -> None:
        while True:
            await asyncio.sleep(max(self.lease / 3, 0.05))
            try:
                await self.adopt()
            except Exception:  # the database may be down for a moment: try again later
                log.warning("taking over Slack follow-ups failed", exc_info=True)

    async def adopt(self) -> int:
        """Follow, here, the releases whose replica's lease expired; how many were taken over."""
        taken = await self._followups.take_over(self.replica, self.lease)
        for row in taken:
            actor, _ = await self._identify(row.slack_user)
            if actor is None:
                await self._followups.close(row)
                continue
            age = (datetime.now(UTC) - row.opened_at).total_seconds()
            response = self._poster.open(row.response_url, posts=row.posts, age=max(age, 0.0))
            log.info("following a release another replica followed", release_id=row.release_id)
            self.spawn(self._follow(actor, row, response), name=f"slack-follow-{row.release_id}")
        return len(taken)

    async def aclose(self) -> None:
        """Cancel every follow-up (on shutdown); another replica takes them over."""
        if self._adopting is not None:
            self._adopting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._adopting
            self._adopting = None
        tasks = set(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def follow(
        self,
        actor: Any,
        release_id: str,
        url: str,
        *,
        slack_user: str,
        status: str,
        posts: int = 0,
    ) -> None:
        """Follow ``release_id`` from here, posting to ``url`` (when its origin is allowed);
        ``posts``: those already made or about to be made to ``url`` for this answer."""
        if not self._poster.allows(url):
            log.warning("response_url origin not allowed; no follow-up", release_id=release_id)
            return
        response = self._poster.open(url, posts=posts)
        row = await self._followups.open(
            url,
            release_id,
            slack_user=slack_user,
            status=status,
            owner=self.replica,
            lease=self.lease,
            posts=posts,
        )
        self.spawn(self._follow(actor, row, response), name=f"slack-follow-{release_id}")

    def post_later(self, response: ResponseUrl, message: dict[str, Any]) -> None:
        """Post ``message`` in the background (Slack wants its answer within 3 s)."""
        self.spawn(response.post(message), name="slack-answer")

    async def _follow(self, actor: Any, row: FollowUp, response: ResponseUrl) -> None:
        """Post each change of the release's status until it is final, within Slack's limits.

        The lease on the follow-up's row is renewed at every look, and the status
        is recorded before it is posted: a replica that lost the row (it was too
        slow, another took over) stops, and a status is posted at most once.
        """
        release_id, last = row.release_id, row.last_status
        interval = self.interval
        while response.usable:
            await asyncio.sleep(interval)
            if not await self._renew(row, last, response.posts):
                return
            interval = min(interval * 1.5, self._max_interval)
            try:
                release = await self._releases.get(actor, release_id)
            except Exception:  # a database hiccup must not end the follow-up (logged)
                log.warning(
                    "reading a release for Slack failed", release_id=release_id, exc_info=True
                )
                continue
            status = str(release.get("status", ""))
            if status == last:
                continue
            last = status
            final = status in messages.TERMINAL_STATUSES
            if response.remaining == 1 and not final:
                continue  # keep the last post for the outcome
            if not await self._renew(row, status, response.posts + 1):
                return
            await response.post(messages.outcome(release))
            interval = self.interval
            if final:
                break
        with contextlib.suppress(Exception):  # an unclosed row expires after 30 minutes
            await self._followups.close(row)

    async def _renew(self, row: FollowUp, status: str, posts: int) -> bool:
        try:
            held = await self._followups.renew(
                row, self.replica, self.lease, status=status, posts=posts
            )
        except Exception:  # noqa: BLE001 - keep following: the lease is long, the next renewal may work
            log.warning("renewing a Slack follow-up failed", release_id=row.release_id)
            return True
        if not held:
            log.info("another replica follows this release now", release_id=row.release_id)
        return held

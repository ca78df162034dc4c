"""Delivering one notice to each of its destinations: concurrently, once, with retries.

For every destination of an event, in parallel:

1. a record for (event id, destination) means it was handled before: skip it;
2. claim the delivery in the database (:mod:`ferry_notifier.adapters.claims`). A claim
   another replica holds means it is sending this very delivery: wait until its record
   appears (then skip), or until its lease runs out (then take the claim over);
3. send; on :class:`Retryable` renew the lease, wait (``Retry-After`` when given, else
   exponential backoff with jitter) and try again, up to ``attempts``;
4. record ``sent`` (with the Slack channel and ts), ``skipped`` (nobody to send to)
   or, when it keeps failing or is refused, ``failed``, after publishing a copy of the
   event to the service's dead-letter queue with ``x-ferry-destination`` naming it.
   The record and the end of the claim are one transaction. When the send fails in a
   way that retries the whole event, the claim is let go of at once.

The first message of a release's thread is claimed the same way, per (release,
destination): the replica that wins posts it; the others wait for its ``ts`` and
reply in that thread. The claim is kept through the winner's retries. The thread's
row is inserted only if absent, so when two first messages were posted all the same
(a lease ran out mid-post), one is the thread: the other replica deletes its own
(``chat.delete``) and posts its text as a reply in that thread.

A Slack post that got no answer (a timeout, a dropped connection, a 5xx) may have been
posted. Every message carries metadata naming its delivery, and the next try looks for
it (``conversations.history``, or ``conversations.replies`` for a reply) before it posts
again; found, it counts as sent.

The handler returns (and the event is acked) only when every destination is settled,
so a crash repeats only the unsettled destinations. One slow or dead destination
delays only itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ferry_events import CloudEvent, encode
from ferry_events.deadletter import DESTINATION_HEADER
from ferry_notifier.adapters.claims import DELIVERY, ClaimKey
from ferry_notifier.adapters.email import Mailer
from ferry_notifier.adapters.slack import Posted, Slack, delivery_tag, message_blocks
from ferry_notifier.adapters.store import DeliveryRecord, Store, Thread
from ferry_notifier.adapters.templates import Rendered, plain
from ferry_notifier.adapters.webhook import Webhooks
from ferry_notifier.claiming import Claimant, ClaimLost, Lease
from ferry_notifier.domain.flood import FloodPosition
from ferry_notifier.domain.notice import Notice, Outcome
from ferry_notifier.domain.routing import Destination
from ferry_notifier.errors import NoRecipient, Retryable, SendError, Undeliverable
from ferry_notifier.github import GitHubDeployments
from ferry_runtime import TemporaryError, get_logger

log = get_logger(__name__)

#: Publishes the event to the dead-letter queue naming the destination and the reason.
DeadLetter = Callable[[Destination, str, int], Awaitable[None]]

__all__ = ["DESTINATION_HEADER"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 6
    backoff: float = 0.5
    backoff_max: float = 30.0
    max_retry_after: float = 300.0

    def delay(self, attempt: int, error: Retryable) -> float:
        if error.retry_after is not None:
            return min(max(error.retry_after, 0.0), self.max_retry_after)
        base = min(self.backoff * float(2 ** max(attempt - 1, 0)), self.backoff_max)
        return base * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not cryptography


@dataclass(frozen=True, slots=True)
class Channels:
    """The adapters that are configured; None: that kind of destination is not available."""

    slack: Slack | None = None
    mailer: Mailer | None = None
    webhooks: Webhooks | None = None
    github: GitHubDeployments | None = None


@dataclass(frozen=True, slots=True)
class Sent:
    slack_channel: str = ""
    slack_ts: str = ""
    status: str = "sent"


#: How far back (seconds, for clocks out of step) before the first try a post of this
#: delivery is looked for, besides a lease (how long ago the replica before us may have
#: posted it).
_LOOKBACK = 120.0


@dataclass(frozen=True, slots=True)
class _Unanswered:
    """A Slack post that got no answer: where it went, and whether it started the thread."""

    channel: str
    thread_ts: str = ""
    starts_thread: bool = False


@dataclass(slots=True)
class _Tries:
    """What the earlier tries of one delivery left behind for the next."""

    #: A Slack ts before the first try: a post of this delivery is looked for from here on.
    oldest: str
    unanswered: _Unanswered | None = None
    #: The delivery was taken over: look for what the replica before us posted.
    taken_over: bool = False
    #: Our message that lost the race to start the thread, still to be deleted.
    orphan: Posted | None = None
    #: Our claim on starting the release's thread, kept from one try to the next.
    thread: Lease | None = None


@dataclass(slots=True)
class Job:
    """One event on its way to its destinations."""

    event: CloudEvent
    notice: Notice
    render: Callable[[], Rendered]
    flood: FloodPosition
    dead_letter: DeadLetter
    #: Set when the event is replayed from the dead-letter queue for one destination.
    replay_destination: str = ""
    #: What earlier deliveries of this event recorded, by destination key.
    records: dict[str, DeliveryRecord] = field(default_factory=dict)
    _rendered: Rendered | None = None

    @property
    def rendered(self) -> Rendered:
        """The messages, rendered on first use (a webhook needs none)."""
        if self._rendered is None:
            self._rendered = self.render()
        return self._rendered


class Deliverer:
    def __init__(
        self, store: Store, channels: Channels, policy: RetryPolicy, claimant: Claimant
    ) -> None:
        self._store = store
        self._channels = channels
        self._policy = policy
        self._claims = claimant

    async def deliver(self, job: Job, destinations: list[Destination]) -> dict[str, str]:
        """Settle every destination; returns destination key -> status.

        When one could not be settled (its record or its dead letter could not be
        written), the others still finish first; then the error is raised and the
        event is retried for the unsettled ones only.
        """
        outcomes = await asyncio.gather(
            *(self._one(job, d, job.records.get(d.key)) for d in destinations),
            return_exceptions=True,
        )
        statuses: dict[str, str] = {}
        failure: BaseException | None = None
        for destination, outcome in zip(destinations, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                failure = failure or outcome
                statuses[destination.key] = "unsettled"
            else:
                statuses[destination.key] = outcome
        if failure is not None:
            unsettled = [k for k, v in statuses.items() if v == "unsettled"]
            raise TemporaryError(
                f"could not settle {', '.join(unsettled)}: {failure}", code="unsettled"
            ) from failure
        return statuses

    async def _one(self, job: Job, destination: Destination, record: DeliveryRecord | None) -> str:
        retry_failed = job.replay_destination == destination.key
        if record is not None and not (record.status == "failed" and retry_failed):
            log.info("already handled", destination=destination.key, status=record.status)
            return record.status
        claim = ClaimKey(DELIVERY, job.event.id, destination.key)
        lease = await self._claims.delivery(claim, retry_failed=retry_failed)
        if isinstance(lease, DeliveryRecord):
            log.info(
                "already handled by another replica",
                destination=destination.key,
                status=lease.status,
            )
            return lease.status
        try:
            return await self._attempts(job, destination, lease)
        except ClaimLost:
            log.warning("another replica took this delivery over", destination=destination.key)
            return "handed-over"
        except BaseException:
            # The event will be retried: let go now, so no replica waits out the lease.
            with contextlib.suppress(Exception):
                await self._claims.release(lease)
            raise

    async def _attempts(self, job: Job, destination: Destination, lease: Lease) -> str:
        since = time.time() - _LOOKBACK - self._claims.lease
        tries = _Tries(f"{since:.6f}", taken_over=lease.taken_over)
        try:
            return await self._tries(job, destination, lease, tries)
        finally:
            if tries.thread is not None:  # not started: let the next event start it now
                with contextlib.suppress(Exception):
                    await self._claims.release(tries.thread)

    async def _tries(self, job: Job, destination: Destination, lease: Lease, tries: _Tries) -> str:
        event_id = job.event.id
        attempt = 0
        while True:
            attempt += 1
            try:
                sent = await self._send(job, destination, lease, tries)
            except NoRecipient as exc:
                log.warning("nobody to send to", destination=destination.key, reason=str(exc))
                await self._store.record_delivery(
                    event_id,
                    destination.key,
                    "skipped",
                    detail=str(exc),
                    attempts=attempt,
                    owner=lease.owner,
                )
                return "skipped"
            except Retryable as exc:
                if attempt >= self._policy.attempts:
                    return await self._give_up(
                        job, destination, lease, f"failed {attempt} times; last: {exc}", attempt
                    )
                delay = self._policy.delay(attempt, exc)
                log.warning(
                    "send failed; will retry",
                    destination=destination.key,
                    attempt=attempt,
                    retry_in_seconds=round(delay, 3),
                    reason=str(exc),
                )
                await self._claims.renew(lease, delay)
                if tries.thread is not None and not await self._claims.keep(tries.thread, delay):
                    tries.thread = None  # taken over: a first message already may be theirs
                await asyncio.sleep(delay)
                await self._claims.renew(lease, 0)  # still ours after the wait: try again
                continue
            except (Undeliverable, SendError) as exc:
                return await self._give_up(job, destination, lease, str(exc), attempt)
            await self._store.record_delivery(
                event_id,
                destination.key,
                sent.status,
                attempts=attempt,
                slack_channel=sent.slack_channel,
                slack_ts=sent.slack_ts,
                owner=lease.owner,
            )
            log.info("delivered", destination=destination.key, status=sent.status, attempts=attempt)
            return sent.status

    async def _give_up(
        self, job: Job, destination: Destination, lease: Lease, reason: str, attempts: int
    ) -> str:
        log.error("giving up on destination", destination=destination.key, reason=reason)
        await job.dead_letter(destination, reason, attempts)
        await self._store.record_delivery(
            job.event.id,
            destination.key,
            "failed",
            detail=reason,
            attempts=attempts,
            owner=lease.owner,
        )
        return "failed"

    # ------------------------------------------------------------------ sending

    async def _send(self, job: Job, destination: Destination, lease: Lease, tries: _Tries) -> Sent:
        kind = destination.kind
        if kind == "console":
            self._console(job)
            return Sent()
        if kind == "webhook":
            if self._channels.webhooks is None:
                raise Undeliverable("webhooks are not configured")
            await self._channels.webhooks.send(
                destination.target, encode(job.event), job.event.id, job.event.type
            )
            return Sent()
        if kind == "github":
            if self._channels.github is None:
                raise Undeliverable("GitHub is not configured (set FERRY_GITHUB_TOKEN)")
            return Sent(status=await self._channels.github.send(job.notice, lease))
        if kind == "email":
            if self._channels.mailer is None:
                raise Undeliverable("email is not configured (set FERRY_SMTP_URL)")
            if job.flood.is_repeat:
                return Sent(status="collapsed")
            r = job.rendered
            await self._channels.mailer.send(
                destination.target, r.subject, r.text, r.html, job.event.id
            )
            return Sent()
        return await self._slack(job, destination, lease, tries)

    def _console(self, job: Job) -> None:
        notice = job.notice
        log.info(
            "notification",
            channel="console",
            summary=plain(job.rendered.headline),
            text=job.rendered.text if not job.flood.is_repeat else "",
            kind=notice.kind,
            service=notice.service,
            environment=notice.environment,
            occurrences=job.flood.number,
        )

    async def _slack(self, job: Job, destination: Destination, lease: Lease, tries: _Tries) -> Sent:
        slack = self._channels.slack
        if slack is None:
            raise Undeliverable("Slack is not configured (set FERRY_SLACK_BOT_TOKEN)")
        notice = job.notice
        channel = destination.target
        if destination.kind == "slack-dm":
            channel = await slack.user_id(destination.target)
        text = job.rendered.slack
        approval = notice.release_id if notice.kind == "approval.requested" else ""
        what = f"*{notice.service}* `{notice.artifact_id}` to *{notice.environment}*"
        blocks = message_blocks(text, approval_release_id=approval, what=what)
        tag = delivery_tag(job.event.id, destination.key)
        message = _Message(slack, tries, tag, text, blocks, notice.stage_rank)
        key = notice.thread_key

        earlier = await self._earlier(message, key, destination, lease, channel)
        if earlier is not None:
            return earlier

        if job.flood.is_repeat:
            anchor = await self._claims.anchor(job.flood.anchor_event_id, destination.key, lease)
            if anchor is not None and anchor.slack_ts:
                await slack.update(anchor.slack_channel, anchor.slack_ts, text, blocks)
                return Sent(anchor.slack_channel, anchor.slack_ts, status="collapsed")

        if not key:
            posted = await message.post(channel)
            return Sent(posted.channel, posted.ts)
        thread = await self._claims.thread(key, destination.key, lease)
        if isinstance(thread, Lease):  # ours to start
            tries.thread = thread
            posted = await message.post(channel, starts_thread=True)
            return await self._started(message, key, destination, lease, posted)
        return await self._reply(message, key, destination, thread, notice)

    async def _earlier(
        self, message: _Message, key: str, destination: Destination, lease: Lease, channel: str
    ) -> Sent | None:
        """Settle what earlier tries (ours, or the replica's we took over from) left: the
        delivery when its message is out already; None: post it."""
        tries = message.tries
        if tries.orphan is not None:  # lost the race last try, and could not delete it then
            await message.slack.delete(tries.orphan.channel, tries.orphan.ts)
            tries.orphan = None
        if tries.taken_over:
            tries.taken_over = False
            before = await self._taken_over(message, key, destination, lease, channel)
            if before is not None:
                return before
        was = tries.unanswered
        tries.unanswered = None
        found = await self._find(message, destination, was.channel, was.thread_ts) if was else None
        if found is not None and was is not None:
            log.info("an unanswered post had gone out", destination=destination.key)
            if key and was.starts_thread:
                return await self._started(message, key, destination, lease, found)
            if key:
                known = await self._store.thread(key, destination.key)
                if known is not None and was.thread_ts == known.ts:
                    await self._newest(message, key, destination, known, message.rank)
            return Sent(found.channel, found.ts)
        return None

    async def _find(
        self, message: _Message, destination: Destination, channel: str, thread_ts: str
    ) -> Posted | None:
        """This delivery's message in the channel (or in the thread ``thread_ts``), if Slack
        has it; posted by an earlier try that got no answer, or by the replica before us."""
        if not thread_ts and channel[:1] not in ("C", "G", "D"):
            # A name: read by the id an earlier thread there has (Slack reads by id only).
            channel = await self._store.channel_of(destination.key) or channel
        try:
            return await message.slack.find(
                channel, message.tag, oldest=message.tries.oldest, thread_ts=thread_ts
            )
        except Undeliverable as exc:
            log.warning(
                "could not look for an earlier post; posting again",
                destination=destination.key,
                reason=str(exc),
            )
            return None

    async def _taken_over(
        self, message: _Message, key: str, destination: Destination, lease: Lease, channel: str
    ) -> Sent | None:
        """What the replica whose lease ran out posted of this delivery before it stopped:
        settled with it when it is there; None: post as usual (after deleting a first
        message of its that lost the race to start the thread)."""
        thread = await self._store.thread(key, destination.key) if key else None
        if thread is not None:
            reply = await self._find(message, destination, thread.channel, thread.ts)
            if reply is not None:
                log.info("the replica before us had posted it", destination=destination.key)
                return Sent(reply.channel, reply.ts)
        top = await self._find(message, destination, channel, "")
        if top is None:
            return None
        log.info("the replica before us had posted it", destination=destination.key)
        if not key:
            return Sent(top.channel, top.ts)
        if thread is None:
            return await self._started(message, key, destination, lease, top)
        if (top.channel, top.ts) == (thread.channel, thread.ts):
            return Sent(top.channel, top.ts)
        message.tries.orphan = top
        await message.slack.delete(top.channel, top.ts)
        message.tries.orphan = None
        return None

    async def _started(
        self, message: _Message, key: str, destination: Destination, lease: Lease, posted: Posted
    ) -> Sent:
        """Our first message is out: it is the thread, unless another one was saved first.
        Then ours is deleted and its text posted as a reply in that thread."""
        notice_rank = message.rank
        winner = await self._store.start_thread(
            key, destination.key, Thread(posted.channel, posted.ts, notice_rank), owner=lease.owner
        )
        message.tries.thread = None
        if winner is None or (winner.channel, winner.ts) == (posted.channel, posted.ts):
            return Sent(posted.channel, posted.ts)  # ours (saved now, or by who found it)
        log.warning(
            "another first message of this release was saved first; moving ours into its thread",
            destination=destination.key,
        )
        message.tries.orphan = posted
        await message.slack.delete(posted.channel, posted.ts)
        message.tries.orphan = None
        reply = await message.post(winner.channel, thread_ts=winner.ts)
        await self._newest(message, key, destination, winner, notice_rank)
        return Sent(reply.channel, reply.ts)

    async def _reply(
        self, message: _Message, key: str, destination: Destination, thread: Thread, notice: Notice
    ) -> Sent:
        reply = await message.post(
            thread.channel, thread_ts=thread.ts, broadcast=notice.outcome is Outcome.FAILURE
        )
        await self._newest(message, key, destination, thread, notice.stage_rank)
        return Sent(reply.channel, reply.ts)

    async def _newest(
        self, message: _Message, key: str, destination: Destination, thread: Thread, rank: int
    ) -> None:
        """Show this reply's state on the thread's first message, unless a reply further
        along got there first (the database says whose is newest, across replicas)."""
        if rank >= thread.rank and await self._store.raise_rank(key, destination.key, rank):
            # Best effort: the reply is out, so retrying would post it twice.
            try:
                await message.slack.update(thread.channel, thread.ts, message.text, message.blocks)
            except SendError as exc:
                log.warning("could not update the release message", reason=str(exc))


@dataclass(slots=True)
class _Message:
    """One delivery's Slack message, as each try posts it."""

    slack: Slack
    tries: _Tries
    tag: dict[str, Any]
    text: str
    blocks: list[dict[str, Any]]
    rank: int = 0

    async def post(
        self,
        channel: str,
        *,
        thread_ts: str = "",
        broadcast: bool = False,
        starts_thread: bool = False,
    ) -> Posted:
        """Post it; when no answer comes, remember where, for the next try to look."""
        try:
            return await self.slack.post(
                channel,
                self.text,
                self.blocks,
                thread_ts=thread_ts or None,
                broadcast=broadcast,
                metadata=self.tag,
            )
        except Retryable as exc:
            if exc.maybe_sent:
                self.tries.unanswered = _Unanswered(channel, thread_ts, starts_thread)
            raise

"""Delivering one notice to each of its destinations: concurrently, once, with retries.

For every destination of an event, in parallel:

1. a record for (event id, destination) means it was handled before: skip it;
2. send; on :class:`Retryable` wait (``Retry-After`` when given, else exponential
   backoff with jitter) and try again, up to ``attempts``;
3. record ``sent`` (with the Slack channel and ts), ``skipped`` (nobody to send to)
   or, when it keeps failing or is refused, ``failed``, after publishing a copy of the
   event to the service's dead-letter queue with ``x-ferry-destination`` naming it.

The handler returns (and the event is acked) only when every destination is settled,
so a crash repeats only the unsettled destinations. One slow or dead destination
delays only itself.
"""

from __future__ import annotations

import asyncio
import random
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from ferry_events import CloudEvent, encode
from ferry_notifier.adapters.email import Mailer
from ferry_notifier.adapters.slack import Slack, message_blocks
from ferry_notifier.adapters.store import DeliveryRecord, Store, Thread
from ferry_notifier.adapters.templates import Rendered, plain
from ferry_notifier.adapters.webhook import Webhooks
from ferry_notifier.domain.flood import FloodPosition
from ferry_notifier.domain.notice import Notice, Outcome
from ferry_notifier.domain.routing import Destination
from ferry_notifier.errors import NoRecipient, Retryable, SendError, Undeliverable
from ferry_runtime import TemporaryError, get_logger

log = get_logger(__name__)

#: Publishes the event to the dead-letter queue naming the destination and the reason.
DeadLetter = Callable[[Destination, str, int], Awaitable[None]]

DESTINATION_HEADER = "x-ferry-destination"


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


@dataclass(frozen=True, slots=True)
class Sent:
    slack_channel: str = ""
    slack_ts: str = ""
    status: str = "sent"


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
    def __init__(self, store: Store, channels: Channels, policy: RetryPolicy) -> None:
        self._store = store
        self._channels = channels
        self._policy = policy
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

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
        event_id = job.event.id
        if record is not None and not (
            record.status == "failed" and job.replay_destination == destination.key
        ):
            log.info("already handled", destination=destination.key, status=record.status)
            return record.status
        attempt = 0
        while True:
            attempt += 1
            try:
                sent = await self._send(job, destination)
            except NoRecipient as exc:
                log.warning("nobody to send to", destination=destination.key, reason=str(exc))
                await self._store.record_delivery(
                    event_id, destination.key, "skipped", detail=str(exc), attempts=attempt
                )
                return "skipped"
            except Retryable as exc:
                if attempt >= self._policy.attempts:
                    return await self._give_up(
                        job, destination, f"failed {attempt} times; last: {exc}", attempt
                    )
                delay = self._policy.delay(attempt, exc)
                log.warning(
                    "send failed; will retry",
                    destination=destination.key,
                    attempt=attempt,
                    retry_in_seconds=round(delay, 3),
                    reason=str(exc),
                )
                await asyncio.sleep(delay)
                continue
            except (Undeliverable, SendError) as exc:
                return await self._give_up(job, destination, str(exc), attempt)
            await self._store.record_delivery(
                event_id,
                destination.key,
                sent.status,
                attempts=attempt,
                slack_channel=sent.slack_channel,
                slack_ts=sent.slack_ts,
            )
            log.info("delivered", destination=destination.key, status=sent.status, attempts=attempt)
            return sent.status

    async def _give_up(self, job: Job, destination: Destination, reason: str, attempts: int) -> str:
        log.error("giving up on destination", destination=destination.key, reason=reason)
        await job.dead_letter(destination, reason, attempts)
        await self._store.record_delivery(
            job.event.id, destination.key, "failed", detail=reason, attempts=attempts
        )
        return "failed"

    # ------------------------------------------------------------------ sending

    async def _send(self, job: Job, destination: Destination) -> Sent:
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
        return await self._slack(job, destination)

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

    async def _slack(self, job: Job, destination: Destination) -> Sent:
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

        if job.flood.is_repeat:
            anchor = await self._store.delivery(job.flood.anchor_event_id, destination.key)
            if anchor is not None and anchor.slack_ts:
                await slack.update(anchor.slack_channel, anchor.slack_ts, text, blocks)
                return Sent(anchor.slack_channel, anchor.slack_ts, status="collapsed")

        key = notice.thread_key
        if not key:
            posted = await slack.post(channel, text, blocks)
            return Sent(posted.channel, posted.ts)
        lock_key = f"{key}\x1f{destination.key}"
        lock = self._locks.get(lock_key)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[lock_key] = lock
        async with lock:
            thread = await self._store.thread(key, destination.key)
            if thread is None:
                posted = await slack.post(channel, text, blocks)
                await self._store.save_thread(
                    key, destination.key, Thread(posted.channel, posted.ts, notice.stage_rank)
                )
                return Sent(posted.channel, posted.ts)
            reply = await slack.post(
                thread.channel,
                text,
                blocks,
                thread_ts=thread.ts,
                broadcast=notice.outcome is Outcome.FAILURE,
            )
            if notice.stage_rank >= thread.rank:
                # Best effort: the reply is out, so retrying would post it twice.
                try:
                    await slack.update(thread.channel, thread.ts, text, blocks)
                except SendError as exc:
                    log.warning("could not update the release message", reason=str(exc))
                else:
                    await self._store.raise_rank(key, destination.key, notice.stage_rank)
            return Sent(reply.channel, reply.ts)

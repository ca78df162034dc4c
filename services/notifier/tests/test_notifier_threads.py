"""A release's thread is started once: across replicas racing for it, and across a post
whose answer never came.

The races drive two delivery paths (two stores, two Slack clients, two claimants, as two
replicas have) on one PostgreSQL database, and hold one replica's Slack calls to put the
two at the very moment that matters. The timeout runs the whole notifier against a
loopback Slack that takes a post but answers it too late.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import notifier_events as ev
import pytest
from conftest import NotifierFactory

from ferry_events import CloudEvent, EventData
from ferry_notifier.adapters.slack import Slack
from ferry_notifier.adapters.store import Store
from ferry_notifier.adapters.templates import Renderer
from ferry_notifier.claiming import Claimant, Claiming
from ferry_notifier.delivery import Channels, Deliverer, Job, RetryPolicy
from ferry_notifier.domain.flood import FloodPosition
from ferry_notifier.domain.routing import Destination
from ferry_notifier.domain.translation import notice_for
from ferry_testing import BrokerNamespace, wait_until
from ferry_testing.slack_api import Message, SlackApi

DESTINATIONS = [
    Destination("slack", "#deploys"),
    Destination("slack-dm", ev.AUTHOR, ev.AUTHOR),
]
CHANNELS = ("#deploys", "D0DEV")  # where they land: the channel, and the author's DM
SENT = {d.key: "sent" for d in DESTINATIONS}


@dataclass
class _Replica:
    deliverer: Deliverer
    renderer: Renderer
    dead_letters: list[str] = field(default_factory=list)

    async def deliver(self, data: EventData, event: CloudEvent | None = None) -> dict[str, str]:
        """Deliver ``data`` as a new event, or as ``event`` (another copy of one)."""
        event = event or CloudEvent.new(data, source="ferry/test")
        notice = notice_for(event, data)

        async def dead_letter(destination: Destination, reason: str, _: int) -> None:
            self.dead_letters.append(f"{destination.key}: {reason}")

        job = Job(
            event=event,
            notice=notice,
            render=lambda: self.renderer.render(notice),
            flood=FloodPosition(event.id, 1),
            dead_letter=dead_letter,
        )
        return await self.deliverer.deliver(job, DESTINATIONS)


@contextlib.asynccontextmanager
async def _replica(
    name: str, database: str, slack_api: SlackApi, *, lease: float
) -> AsyncIterator[_Replica]:
    store = Store.from_url(database)
    await store.create()
    # The author's Slack id from the mapping: the first call of a DM is its post.
    slack = Slack.connect(f"xoxb-{name}", slack_api.base_url, {ev.AUTHOR: "U0DEV"}, 10)
    claimant = Claimant(store, Claiming(owner=name, lease=lease, poll=0.02, poll_max=0.1))
    deliverer = Deliverer(
        store, Channels(slack=slack), RetryPolicy(attempts=5, backoff=0.05), claimant
    )
    try:
        yield _Replica(deliverer, Renderer())
    finally:
        await slack.close()
        await store.close()


def _top_level(slack: SlackApi, channel: str) -> list[Message]:
    return [m for m in slack.messages.values() if m.channel == channel and m.thread_ts is None]


@pytest.mark.postgres
async def test_a_replica_handling_another_event_of_the_release_waits_for_the_first_message(
    postgres_url: str, slack_api: SlackApi
) -> None:
    async with (
        _replica("a", postgres_url, slack_api, lease=10) as a,
        _replica("b", postgres_url, slack_api, lease=10) as b,
    ):
        slack_api.hold("xoxb-a")
        first = asyncio.create_task(a.deliver(ev.approved("r-7")))
        await wait_until(lambda: slack_api.waiting >= 2, what="a's first messages to be on the way")
        # b, with the release's next event, finds a's claims on starting the threads.
        second = asyncio.create_task(b.deliver(ev.committed("r-7")))
        await asyncio.sleep(0.5)
        assert not [c for c in slack_api.calls_to("chat.postMessage") if c.token == "xoxb-b"]
        assert not second.done()
        slack_api.release()
        assert await first == SENT
        assert await second == SENT
    for channel in CHANNELS:
        [parent] = _top_level(slack_api, channel)
        assert len(slack_api.thread(channel, parent.ts)) == 1
    posts = slack_api.calls_to("chat.postMessage")
    assert [c.token for c in posts if "thread_ts" not in c.params] == ["xoxb-a", "xoxb-a"]
    assert slack_api.calls_to("chat.delete") == []
    assert a.dead_letters == b.dead_letters == []


@pytest.mark.postgres
async def test_when_two_first_messages_went_out_the_later_saved_moves_into_the_thread(
    postgres_url: str, slack_api: SlackApi
) -> None:
    async with (
        _replica("a", postgres_url, slack_api, lease=0.3) as a,
        _replica("b", postgres_url, slack_api, lease=0.3) as b,
    ):
        slack_api.hold("xoxb-a")
        first = asyncio.create_task(a.deliver(ev.approved("r-8")))
        await wait_until(lambda: slack_api.waiting >= 2, what="a's first messages to be on the way")
        # a hangs past its lease: b takes the claims over and starts both threads.
        await asyncio.sleep(0.5)
        assert await b.deliver(ev.committed("r-8")) == SENT
        b_posts = [c for c in slack_api.calls_to("chat.postMessage") if c.token == "xoxb-b"]
        assert sorted(c.params["channel"] for c in b_posts) == ["#deploys", "U0DEV"]
        assert all("thread_ts" not in c.params for c in b_posts)
        b_said = {c.params["channel"].replace("U0", "D0"): c.params["text"] for c in b_posts}
        # a's posts go out now, after b's were saved as the threads.
        slack_api.release()
        assert await first == SENT
    for channel in CHANNELS:
        [parent] = _top_level(slack_api, channel)  # b's: it was saved first
        assert parent.text == b_said[channel]
        assert len(slack_api.thread(channel, parent.ts)) == 1
    # a deleted its own first messages, and said the same as replies in b's threads.
    deletes = slack_api.calls_to("chat.delete")
    assert sorted(c.token for c in deletes) == ["xoxb-a", "xoxb-a"]
    assert {m.channel for m in slack_api.deleted} == set(CHANNELS)
    assert all(m.thread_ts is None for m in slack_api.deleted)
    for gone in slack_api.deleted:
        [parent] = _top_level(slack_api, gone.channel)
        [reply] = slack_api.thread(gone.channel, parent.ts)
        assert reply.text == gone.text
    assert a.dead_letters == b.dead_letters == []


@pytest.mark.postgres
async def test_a_delivery_taken_over_finds_what_the_replica_before_posted(
    postgres_url: str, slack_api: SlackApi
) -> None:
    data = ev.approved("r-6")
    event = CloudEvent.new(data, source="ferry/test")
    async with (
        _replica("a", postgres_url, slack_api, lease=0.3) as a,
        _replica("b", postgres_url, slack_api, lease=0.3) as b,
    ):
        # Slack takes a's first messages at once but answers them late, past a's leases.
        slack_api.delay("chat.postMessage", 1.5, times=2)
        first = asyncio.create_task(a.deliver(data, event))
        await wait_until(lambda: len(slack_api.messages) == 2, what="a's first messages")
        await asyncio.sleep(0.5)
        # Another copy of the same event, on b: it takes the deliveries over, and finds
        # a's messages instead of posting its own.
        assert await b.deliver(data, event) == SENT
        assert await first == SENT
    assert not [c for c in slack_api.calls_to("chat.postMessage") if c.token == "xoxb-b"]
    assert {c.token for c in slack_api.calls_to("conversations.history")} == {"xoxb-b"}
    for channel in CHANNELS:
        [parent] = _top_level(slack_api, channel)
        assert slack_api.thread(channel, parent.ts) == []
    assert len(slack_api.messages) == 2
    assert slack_api.calls_to("chat.delete") == []


@pytest.mark.amqp
async def test_a_post_answered_after_the_timeout_is_found_not_posted_again(
    notifier: NotifierFactory, broker_ns: BrokerNamespace, slack_api: SlackApi
) -> None:
    routes = 'routes:\n  - to: ["slack:#deploys", slack-dm:author]\n'
    async with notifier(routes, send_timeout=1.0, concurrency=1):
        # Slack takes both first messages of the release, but answers after the timeout.
        slack_api.delay("chat.postMessage", 2.5, times=2)
        await broker_ns.publish(ev.approved("r-5"))
        await slack_api.wait_for("conversations.history", 2)
        await wait_until(
            lambda: (
                len(slack_api.calls_to("chat.postMessage")) >= 2
                and all(_top_level(slack_api, c) for c in CHANNELS)
            ),
            what="the first messages",
        )
        # The same for the replies of the next event.
        slack_api.delay("chat.postMessage", 2.5, times=2)
        await broker_ns.publish(ev.committed("r-5"))
        await slack_api.wait_for("conversations.replies", 2)
        await wait_until(
            lambda: all(
                len(slack_api.thread(c, _top_level(slack_api, c)[0].ts)) == 1 for c in CHANNELS
            ),
            what="the replies",
        )
        # One more event, answered in time: it just replies.
        await broker_ns.publish(ev.rollout_started("r-5"))
        await slack_api.wait_for("chat.postMessage", 6)
    for channel in CHANNELS:
        [parent] = _top_level(slack_api, channel)
        assert len(slack_api.thread(channel, parent.ts)) == 2
    # Each message was posted once: the tries after the timeouts looked and found them.
    assert len(slack_api.calls_to("chat.postMessage", ok_only=False)) == 6
    assert len(slack_api.messages) == 6
    assert slack_api.calls_to("conversations.open")  # the DM is read by its channel id
    assert all(
        c.params.get("include_all_metadata") == "true"
        for c in slack_api.calls_to("conversations.history")
    )
    assert await broker_ns.dead_letters("notifier", timeout=0.5) == []

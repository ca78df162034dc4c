"""Two notifier replicas, each its own OS process, on one PostgreSQL database.

Every event is published twice (as after a lost ack or a publisher's retry), so the
two copies of one event are usually handled by both replicas at the same moment.
Each person must still get one thread per release and one message per event.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import notifier_events as ev
import pytest

from ferry_events import CloudEvent, EventData
from ferry_testing import BrokerNamespace, ServiceProcess, wait_until
from ferry_testing.slack_api import Message, SlackApi

pytestmark = [pytest.mark.amqp, pytest.mark.postgres]

ROUTES = 'routes:\n  - to: ["slack:#deploys", slack-dm:author]\n'
CHANNELS = ("#deploys", "D0DEV")  # the team channel, and the author's DM
LEASE = 10.0  # long enough for a starved 2-core machine; the kill test waits it out


def _lifecycle(release_id: str) -> list[EventData]:
    return [
        ev.approved(release_id),
        ev.committed(release_id),
        ev.rollout_started(release_id),
        ev.rollout_succeeded(release_id),
    ]


def _events(releases: int) -> list[CloudEvent]:
    return [
        CloudEvent.new(data, source="ferry/test")
        for r in range(releases)
        for data in _lifecycle(f"r-{r}")
    ]


def _replica(
    name: str, tmp_path: Path, broker_ns: BrokerNamespace, slack: SlackApi, database: str
) -> ServiceProcess:
    data_dir = tmp_path / name
    data_dir.mkdir()
    routes = data_dir / "routes.yaml"
    routes.write_text(ROUTES)
    env = broker_ns.env(
        FERRY_DATA_DIR=str(data_dir),
        FERRY_DATABASE_URL=database,
        FERRY_ROUTES_FILE=str(routes),
        FERRY_SLACK_BOT_TOKEN=f"xoxb-{name}",
        FERRY_SLACK_API_URL=slack.base_url,
        FERRY_REPLICA_NAME=name,
        FERRY_CLAIM_LEASE=str(LEASE),
        FERRY_SEND_TIMEOUT="1",
        FERRY_DELIVERY_BACKOFF="0.05",
        FERRY_DELIVERY_BACKOFF_MAX="0.2",
        FERRY_DELIVERY_ATTEMPTS="50",
        FERRY_RETRY_DELAYS="[0.2, 0.5, 1.0]",
        FERRY_HTTP_PORT="0",
        FERRY_LOG_FORMAT="json",
    )
    return ServiceProcess("ferry_notifier", env, tmp_path / f"{name}.log")


def _log_events(process: ServiceProcess, name: str) -> int:
    count = 0
    for line in process.logs().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("event") == name:
            count += 1
    return count


async def _started(*processes: ServiceProcess) -> None:
    for process in processes:
        process.start()
    for process in processes:
        await wait_until(
            lambda p=process: _log_events(p, "consuming") >= 1,  # type: ignore[misc]
            what=f"{process.log_path.name} to consume",
        )


@pytest.fixture
def replicas() -> Iterator[list[ServiceProcess]]:
    started: list[ServiceProcess] = []
    yield started
    for process in started:
        if process.proc is not None and process.proc.poll() is None:
            process.terminate()


def _messages(slack: SlackApi, channel: str) -> list[Message]:
    return [m for m in slack.messages.values() if m.channel == channel]


def _assert_one_thread_per_release(slack: SlackApi, releases: int, per_release: int) -> None:
    for channel in CHANNELS:
        messages = _messages(slack, channel)
        parents = [m for m in messages if m.thread_ts is None]
        assert len(parents) == releases, f"{channel}: {len(parents)} threads"
        for parent in parents:
            replies = slack.thread(channel, parent.ts)
            # Each event once: one first message and one reply for each later event.
            assert len(replies) == per_release - 1, f"{channel} thread {parent.ts}"
            assert len({r.text for r in replies}) == per_release - 1
        assert len(messages) == releases * per_release


async def _publish_twice(broker_ns: BrokerNamespace, events: list[CloudEvent]) -> None:
    for event in events:
        await broker_ns.publish(event)
        await broker_ns.publish(event)


async def test_two_replicas_given_every_event_twice_post_each_once(
    tmp_path: Path,
    broker_ns: BrokerNamespace,
    slack_api: SlackApi,
    postgres_url: str,
    replicas: list[ServiceProcess],
) -> None:
    releases = 5
    a = _replica("a", tmp_path, broker_ns, slack_api, postgres_url)
    b = _replica("b", tmp_path, broker_ns, slack_api, postgres_url)
    replicas += [a, b]
    await _started(a, b)
    events = _events(releases)
    await _publish_twice(broker_ns, events)
    handled = 2 * len(events)
    await wait_until(
        lambda: _log_events(a, "notified") + _log_events(b, "notified") >= handled,
        what="both replicas to handle every copy",
    )
    # Both replicas did some of the work, and neither posted what the other had.
    assert _log_events(a, "notified") > 0
    assert _log_events(b, "notified") > 0
    _assert_one_thread_per_release(slack_api, releases, per_release=4)
    assert await broker_ns.dead_letters("notifier", timeout=0.5) == []


async def test_a_replica_killed_mid_stream_loses_nothing_and_doubles_nothing(
    tmp_path: Path,
    broker_ns: BrokerNamespace,
    slack_api: SlackApi,
    postgres_url: str,
    replicas: list[ServiceProcess],
) -> None:
    releases = 4
    victim = _replica("victim", tmp_path, broker_ns, slack_api, postgres_url)
    survivor = _replica("survivor", tmp_path, broker_ns, slack_api, postgres_url)
    replicas += [victim, survivor]
    await _started(victim, survivor)
    # The victim's calls to Slack hang: it holds claims on deliveries and threads that
    # the survivor, given the same events, must wait out rather than post twice.
    slack_api.hold("xoxb-victim")
    events = _events(releases)
    await _publish_twice(broker_ns, events)
    await wait_until(lambda: slack_api.waiting >= 2, what="the victim to be mid-send")
    # Not waiting for the survivor to post first: when the victim happens to hold the claim
    # on every release's thread, the survivor rightly waits for it until it dies.
    victim.kill()
    # What the victim was sending when it died never reached Slack: once the server has
    # seen its connections close, the held calls are dropped.
    await wait_until(
        lambda: slack_api.held_connected == 0, timeout=30, what="the victim's calls to end"
    )
    slack_api.release()
    await wait_until(
        lambda: sum(len(_messages(slack_api, c)) for c in CHANNELS) >= 2 * releases * 4,
        timeout=90,
        what="every message, after the victim's leases ran out",
    )
    # Stay a little past the lease, so that a late double would show.
    await asyncio.sleep(LEASE + 1)
    _assert_one_thread_per_release(slack_api, releases, per_release=4)
    assert _log_events(survivor, "taking over a delivery whose lease ran out") >= 1
    by_token = Counter(c.token for c in slack_api.calls_to("chat.postMessage"))
    assert by_token["xoxb-victim"] == 0  # everything that reached Slack came from the survivor
    assert await broker_ns.dead_letters("notifier", timeout=0.5) == []

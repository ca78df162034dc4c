"""Origins are Ferry's, not the publisher's: a forged release decision smuggled in under CI's
routing key, dead-lettered and replayed by the operator, never reaches the config repo.

Real broker, real artifact-ingest and git-writer, a real bare git remote, the real ``ferry``.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from ferry_events import Actor, ArtifactPublished, CloudEvent, Intent, ReleaseApproved, encode
from ferry_events.deadletter import (
    CODE_HEADER,
    ORIGINAL_EXCHANGE_HEADER,
    ORIGINAL_ROUTING_KEY_HEADER,
    REASON_HEADER,
)
from ferry_gitwriter.bootstrap import build as build_git_writer
from ferry_gitwriter.settings import GitWriterSettings
from ferry_ingest.bootstrap import build as build_ingest
from ferry_ingest.settings import IngestSettings
from ferry_runtime import ServiceQueues, declare_exchange, declare_service_queues
from ferry_testing import BrokerNamespace, EventTap, git, running, tap

pytestmark = pytest.mark.amqp

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
APPROVED = "ferry.release.approved.v1"
PUBLISHED = "ferry.artifact.published.v1"


def _forged_origin(ns: BrokerNamespace, **more: object) -> dict[str, object]:
    """Headers that claim the message was first published as a release decision."""
    return {ORIGINAL_EXCHANGE_HEADER: ns.exchange, ORIGINAL_ROUTING_KEY_HEADER: APPROVED, **more}


async def _replay(run_ferry, ns: BrokerNamespace, *extra: str) -> dict[str, Any]:
    code, out, err = await run_ferry(
        "dlq", "replay", "artifact-ingest", *_broker(ns), *extra, "-o", "json"
    )
    assert code == 0, err
    result: dict[str, Any] = json.loads(out)
    return result


def _forged_decision(artifact_id: str) -> CloudEvent:
    return CloudEvent.new(
        ReleaseApproved(
            release_id="forged-1",
            service="payments",
            environment="prod",
            namespace="payments",
            artifact_id=artifact_id,
            intent=Intent.RELEASE,
            actor=Actor(subject="release-manager@example.com"),
        ),
        source="ferry/promotion",
    )


def _published() -> CloudEvent:
    artifact = json.loads((EXAMPLES / "artifact.json").read_text())
    manifests = {
        env.name: {f.name: f.read_text() for f in sorted(env.iterdir()) if f.is_file()}
        for env in sorted((EXAMPLES / "manifests").iterdir())
        if env.is_dir()
    }
    return CloudEvent.new(
        ArtifactPublished(artifact=artifact, manifests=manifests), source="ferry/ci"
    )


def _files(remote: Path) -> list[str]:
    return git("--git-dir", str(remote), "ls-tree", "-r", "--name-only", "main").split()


def _broker(ns: BrokerNamespace, *, exchange: bool = True) -> list[str]:
    where = ["--amqp-url", ns.amqp_url, "--queue-prefix", ns.queue_prefix]
    return [*where, "--exchange", ns.exchange] if exchange else where


async def test_a_forged_decision_under_cis_key_is_dead_lettered_and_never_replayed_into_git(
    broker_ns: BrokerNamespace,
    event_tap: EventTap,
    bare_remote: Path,
    tmp_path: Path,
    run_ferry,
) -> None:
    ingest = build_ingest(IngestSettings(**broker_ns.settings()))
    writer = build_git_writer(
        GitWriterSettings(
            **broker_ns.settings(), data_dir=tmp_path / "data", config_repo_url=str(bare_remote)
        )
    )
    async with running(ingest), running(writer), tap(broker_ns, APPROVED) as decisions:
        build = _published()
        await broker_ns.publish(build)
        stored = await event_tap.wait_one("ferry.artifact.stored.v1")
        artifact_id = stored.data["artifact"]["id"]
        before = _files(bare_remote)

        # CI may publish only artifact.published; the body is a decision for prod, and the
        # headers claim it was first published as one
        forged = _forged_decision(artifact_id)
        await broker_ns.publish_raw(
            encode(forged),
            routing_key=PUBLISHED,
            headers=_forged_origin(broker_ns, **{"x-ferry-attempt": 7}),
        )
        await broker_ns.wait_dead_letters("artifact-ingest", 1)

        code, out, err = await run_ferry(
            "dlq", "list", "artifact-ingest", *_broker(broker_ns, exchange=False), "-o", "json"
        )
        assert code == 0, err
        [letter] = json.loads(out)["messages"]
        assert letter["eventId"] == forged.id
        assert letter["code"] == "type-mismatch"
        assert letter["attempts"] == 1
        # the consumer wrote where it really came from, over the forged headers
        assert letter["routingKey"] == PUBLISHED
        assert letter["headers"][ORIGINAL_ROUTING_KEY_HEADER] == PUBLISHED

        # the operator's routine replay: refused, with the reason, and left in the queue
        replay = await _replay(run_ferry, broker_ns)
        assert replay["replayed"] == []
        [skipped] = replay["skipped"]
        assert skipped["eventId"] == forged.id
        assert "type-mismatch" in skipped["skipReason"]
        assert replay["remaining"] == 1

        # whatever was in flight has settled: still nothing under environments/
        await asyncio.sleep(1.0)
        assert _files(bare_remote) == before
    assert not [f for f in before if f.startswith("environments/")]
    assert event_tap.of_type("ferry.release.committed.v1") == []
    # nothing was ever routed as a release decision
    assert decisions.events == []


async def test_replay_refuses_a_routing_key_the_service_does_not_consume(
    broker_ns: BrokerNamespace, run_ferry
) -> None:
    """A dead letter poisoned before this fix (or written into the queue by hand) still
    names a forged origin: replay does not republish a key artifact-ingest never consumes."""
    ingest = build_ingest(IngestSettings(**broker_ns.settings()))
    forged = _forged_decision("master-0017d995e3-67e9d69164")
    queues = ServiceQueues("artifact-ingest", broker_ns.queue_prefix, (), ())
    async with running(ingest), tap(broker_ns, APPROVED) as decisions:
        connection = await aio_pika.connect(broker_ns.amqp_url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            dlx = await channel.get_exchange(queues.redelivery_exchange)
            await dlx.publish(
                aio_pika.Message(
                    encode(forged),
                    content_type="application/cloudevents+json",
                    headers=_forged_origin(
                        broker_ns,
                        **{
                            CODE_HEADER: "unhandled-event-type",
                            REASON_HEADER: "artifact-ingest has no handler for it",
                        },
                    ),
                ),
                routing_key=queues.dead_letter,
            )
        await broker_ns.wait_dead_letters("artifact-ingest", 1)

        replay = await _replay(run_ferry, broker_ns)
        assert replay["replayed"] == []
        [skipped] = replay["skipped"]
        assert f"routing key {APPROVED}" in skipped["skipReason"]
        assert "does not consume" in skipped["skipReason"]
        assert replay["remaining"] == 1

        code, _, err = await run_ferry("dlq", "replay", "artifact-ingest", *_broker(broker_ns))
        assert code == 0, err
        assert "left in the queue" in err
        assert "does not consume" in err
        await asyncio.sleep(0.5)
    assert decisions.events == []


async def test_a_message_the_broker_dead_lettered_is_replayed_only_to_its_own_queue(
    broker_ns: BrokerNamespace, run_ferry
) -> None:
    """Over its delivery limit the broker moves a message to the dead-letter queue as its
    publisher sent it: its forged origin must not choose where a replay goes."""
    forged = _forged_decision("master-0017d995e3-67e9d69164")
    queues = ServiceQueues(
        "artifact-ingest", broker_ns.queue_prefix, (PUBLISHED,), (0.2,), delivery_limit=1
    )
    connection = await aio_pika.connect(broker_ns.amqp_url)
    async with connection:
        channel = await connection.channel()
        exchange = await declare_exchange(channel, broker_ns.exchange)
        queue = await declare_service_queues(channel, exchange, queues)
        await broker_ns.publish_raw(
            encode(forged),
            routing_key=PUBLISHED,
            headers=_forged_origin(broker_ns, **{CODE_HEADER: "unhandled-event-type"}),
        )
        # a consumer that crashes on it, again and again
        async with asyncio.timeout(20):
            while await broker_ns.dead_letter_count("artifact-ingest") < 1:
                message = await queue.get(no_ack=False, fail=False)
                if message is not None:
                    await message.nack(requeue=True)
                await asyncio.sleep(0.05)

        replay = await _replay(run_ferry, broker_ns)
        assert replay["replayed"] == []
        [skipped] = replay["skipped"]
        assert "the broker dead-lettered it" in skipped["skipReason"]

        direct = await _replay(run_ferry, broker_ns, "--direct")
        assert [m["eventId"] for m in direct["replayed"]] == [forged.id]
        async with asyncio.timeout(10):
            while (replayed := await queue.get(no_ack=True, fail=False)) is None:
                await asyncio.sleep(0.05)
    headers = replayed.headers or {}
    # back in its own queue, without the origin its publisher claimed
    assert ORIGINAL_ROUTING_KEY_HEADER not in headers
    assert ORIGINAL_EXCHANGE_HEADER not in headers
    assert CODE_HEADER not in headers
    assert "x-death" not in headers

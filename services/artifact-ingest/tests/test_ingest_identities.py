"""CI identities: a build's publisher is its AMQP user_id, checked by RabbitMQ against the
connection's user, and FERRY_CI_IDENTITIES_FILE says which identity may publish which service.

Through the real broker with real second and third broker users (made with rabbitmqctl and
deleted afterwards): a CI user publishing a service it does not own is rejected, the owner's
build (pushed with ``ferry artifact push``) is accepted, a build without user_id is rejected,
and a user_id naming someone else is refused by the broker itself.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from ferry_events import ArtifactPublished, ArtifactRejected, CloudEvent, encode
from ferry_ingest.bootstrap import ConfigurationError, build
from ferry_ingest.domain import parse_identities
from ferry_ingest.domain.identities import InvalidIdentities, check_identity
from ferry_ingest.settings import IngestSettings
from ferry_testing import BrokerNamespace, EventTap, running
from ferry_testing.broker_users import broker_user

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
ACCEPTED = "ferry.artifact.accepted.v1"
REJECTED = "ferry.artifact.rejected.v1"

IDENTITIES = """
identities:
  ci-payments:
    services: [payments, payments-worker]
    namespaces: [payments]
  ci-platform:
    services: ["*"]
    namespaces: ["*"]
"""


# ---------------------------------------------------------------------- the domain


def test_an_identity_may_publish_only_its_services_into_its_namespaces() -> None:
    identities = parse_identities(IDENTITIES)
    assert check_identity(identities, "ci-payments", "payments", "payments") == []
    assert check_identity(identities, "ci-payments", "payments-worker", "payments") == []
    assert check_identity(identities, "ci-platform", "anything", "anywhere") == []
    (other,) = check_identity(identities, "ci-payments", "orders", "payments")
    assert other.code == "identity-not-allowed"
    assert "'ci-payments'" in other.message
    assert "'orders'" in other.message
    (moved,) = check_identity(identities, "ci-payments", "payments", "legacy")
    assert moved.code == "identity-not-allowed"
    assert "namespace 'legacy'" in moved.message
    (unknown,) = check_identity(identities, "ci-orders", "payments", "payments")
    assert "'ci-orders'" in unknown.message
    assert "not listed" in unknown.message
    (anonymous,) = check_identity(identities, None, "payments", "payments")
    assert anonymous.code == "no-identity"
    assert "user_id" in anonymous.message


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "non-empty mapping 'identities"),
        ("identities: []", "non-empty mapping 'identities"),
        ("identities: {ci: {services: [a]}}", "identities.ci.namespaces must be a non-empty list"),
        ("identities: {ci: {services: [], namespaces: [a]}}", "identities.ci.services"),
        ("identities: {ci: {services: [Bad_Name], namespaces: [a]}}", "'Bad_Name'"),
        ("identities: {ci: nope}", "identities.ci must be a mapping"),
        ("identities: {ci: [", "is not valid YAML"),
    ],
)
def test_a_bad_identities_file_is_refused_with_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(InvalidIdentities, match=re.escape(says)):
        parse_identities(text)


def test_ingest_does_not_start_with_an_unreadable_identities_file(tmp_path: Path) -> None:
    settings = IngestSettings(ci_identities_file=tmp_path / "missing.yaml")
    with pytest.raises(ConfigurationError, match=r"FERRY_CI_IDENTITIES_FILE .*missing\.yaml"):
        build(settings)


# ---------------------------------------------------------------------- the real broker


def _published() -> CloudEvent:
    artifact = json.loads((EXAMPLES / "artifact.json").read_text())
    manifests = {
        env.name: {f.name: f.read_text() for f in sorted(env.iterdir())}
        for env in sorted((EXAMPLES / "manifests").iterdir())
    }
    return CloudEvent.new(
        ArtifactPublished(artifact=artifact, manifests=manifests), source="ferry/ci"
    )


async def _publish_as(ns: BrokerNamespace, url: str, event: CloudEvent, user_id: str) -> None:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(ns.exchange, ensure=False)
        await exchange.publish(
            aio_pika.Message(
                encode(event),
                content_type="application/cloudevents+json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=event.id,
                user_id=user_id,
            ),
            routing_key=event.type,
        )


async def _verdict(tap: EventTap, event: CloudEvent) -> CloudEvent:
    async with asyncio.timeout(20):
        while True:
            for heard in tap.events:
                if heard.type in (ACCEPTED, REJECTED) and heard.causationid == event.id:
                    return heard
            await asyncio.sleep(0.05)


async def _ferry_push(url: str, ns: BrokerNamespace) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ferry_cli",
        "artifact",
        "push",
        str(EXAMPLES / "artifact.json"),
        "--manifests",
        str(EXAMPLES / "manifests"),
        "--amqp-url",
        url,
        "--exchange",
        ns.exchange,
        "-o",
        "json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode()


@pytest.mark.amqp
async def test_a_ci_user_publishing_a_service_it_does_not_own_is_rejected(
    broker_ns: BrokerNamespace, event_tap: EventTap, tmp_path: Path
) -> None:
    ci_only = {
        "configure": "^$",
        "write": f"^{re.escape(broker_ns.exchange)}$",
        "read": "^$",
    }
    async with (
        broker_user(broker_ns.amqp_url, prefix="ci-payments", **ci_only) as (payments, p_url),
        broker_user(broker_ns.amqp_url, prefix="ci-orders", **ci_only) as (orders, o_url),
    ):
        identities = tmp_path / "ci-identities.yaml"
        identities.write_text(
            "identities:\n"
            f"  {payments}: {{services: [payments, payments-worker], namespaces: [payments]}}\n"
            f"  {orders}: {{services: [orders], namespaces: [orders]}}\n"
        )
        settings = IngestSettings(**broker_ns.settings(), ci_identities_file=identities)
        async with running(build(settings)):
            # the orders pipeline publishes a build of payments, as itself
            foreign = _published()
            await _publish_as(broker_ns, o_url, foreign, user_id=orders)
            rejected = await _verdict(event_tap, foreign)

            # ... and cannot claim to be the payments pipeline: the broker refuses the user_id
            forged = _published()
            with pytest.raises(aio_pika.exceptions.ChannelPreconditionFailed):
                await _publish_as(broker_ns, o_url, forged, user_id=payments)

            # a build without user_id (the shared guest user of the test) tells no identity
            anonymous = _published()
            await broker_ns.publish(anonymous)
            unidentified = await _verdict(event_tap, anonymous)

            # the payments pipeline's own push, with the CLI, which sets user_id
            code, output = await _ferry_push(p_url, broker_ns)
            assert code == 0, output
            pushed_id = json.loads(output)["eventId"]
            async with asyncio.timeout(20):
                while not [e for e in event_tap.of_type(ACCEPTED) if e.causationid == pushed_id]:
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)

    assert rejected.type == REJECTED
    data = ArtifactRejected.model_validate(rejected.data)
    assert data.service == "payments"
    reasons: list[dict[str, Any]] = [r.model_dump() for r in data.reasons]
    assert [r["code"] for r in reasons] == ["identity-not-allowed", "identity-not-allowed"]
    assert (
        f"identity {orders!r} may not publish builds of service 'payments'"
        in (reasons[0]["message"])
    )
    assert "namespace 'payments'" in reasons[1]["message"]
    assert unidentified.type == REJECTED
    assert [r.code for r in ArtifactRejected.model_validate(unidentified.data).reasons] == [
        "no-identity"
    ]
    # nothing forged was judged, and only the owner's build was accepted
    assert not [e for e in event_tap.events if e.causationid == forged.id]
    assert [e.causationid for e in event_tap.of_type(ACCEPTED)] == [pushed_id]

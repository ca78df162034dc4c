"""artifact-ingest against the real broker: verdicts published, bad messages dead-lettered."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ferry_events import (
    ArtifactAccepted,
    ArtifactPublished,
    ArtifactRejected,
    CloudEvent,
    encode,
)
from ferry_ingest.bootstrap import build
from ferry_ingest.settings import IngestSettings
from ferry_runtime import CODE_HEADER, REASON_HEADER
from ferry_testing import BrokerNamespace, EventTap, ServiceProcess, running

pytestmark = pytest.mark.amqp

PUBLISHED = "ferry.artifact.published.v1"
ACCEPTED = "ferry.artifact.accepted.v1"
REJECTED = "ferry.artifact.rejected.v1"


def caused_by(event: CloudEvent) -> Callable[[CloudEvent], bool]:
    return lambda e: e.causationid == event.id


async def test_a_valid_artifact_is_accepted_in_the_same_correlation(
    broker_ns: BrokerNamespace,
    event_tap: EventTap,
    ingest_settings: IngestSettings,
    example_published: ArtifactPublished,
) -> None:
    async with running(build(ingest_settings)):
        sent = await broker_ns.publish(example_published, source="ferry/ci")
        accepted = await event_tap.wait_one(ACCEPTED)
    assert accepted.correlationid == sent.correlationid
    assert accepted.causationid == sent.id
    assert accepted.source == "ferry/artifact-ingest"
    assert accepted.subject == "payments"
    data = ArtifactAccepted.model_validate(accepted.data)
    assert data.artifact.id == "master-0017d995e3-67e9d69164"
    assert data.manifests == example_published.manifests
    assert event_tap.of_type(REJECTED) == []


async def test_failed_tests_are_rejected_with_the_reason(
    broker_ns: BrokerNamespace,
    event_tap: EventTap,
    ingest_settings: IngestSettings,
    example_artifact: dict[str, Any],
    example_manifests: dict[str, dict[str, str]],
) -> None:
    example_artifact["stages"][1]["data"]["results"]["failed"] = 4
    async with running(build(ingest_settings)):
        sent = await broker_ns.publish(
            ArtifactPublished(artifact=example_artifact, manifests=example_manifests)
        )
        event = await event_tap.wait_one(REJECTED)
    assert event.correlationid == sent.correlationid
    rejected = ArtifactRejected.model_validate(event.data)
    assert [r.code for r in rejected.reasons] == ["tests-failed"]
    assert "4 failed tests" in rejected.reasons[0].message
    assert rejected.artifact_id == "master-0017d995e3-67e9d69164"
    assert rejected.service == "payments"
    assert rejected.squad == "checkout"
    assert rejected.author_email == "jane@example.com"
    assert rejected.branch == "master"
    assert event.subject == "payments"


async def test_every_problem_is_reported_in_one_rejection(
    broker_ns: BrokerNamespace,
    event_tap: EventTap,
    ingest_settings: IngestSettings,
    example_artifact: dict[str, Any],
) -> None:
    del example_artifact["application"]["sha"]
    example_artifact["stages"][1]["data"]["results"]["failed"] = 1
    manifests = {"dev": {"d.yaml": "kind: [", "x.json": "{}"}, "Prod": {"d.yaml": "a: b"}}
    settings = ingest_settings.model_copy(update={"ingest_environments": ("dev", "prod")})
    async with running(build(settings)):
        await broker_ns.publish(ArtifactPublished(artifact=example_artifact, manifests=manifests))
        event = await event_tap.wait_one(REJECTED)
    reasons = ArtifactRejected.model_validate(event.data).reasons
    assert sorted(r.code for r in reasons) == [
        "invalid-artifact",
        "invalid-environment",
        "invalid-file-name",
        "invalid-yaml",
        "not-a-kubernetes-object",
        "not-a-kubernetes-object",
        "tests-failed",
    ]


def _unknown_type(published: ArtifactPublished) -> bytes:
    event = CloudEvent.new(published, source="ferry/ci")
    return encode(event.model_copy(update={"type": "ferry.artifact.mystery.v1"}))


def _oversized(published: ArtifactPublished) -> bytes:
    huge = {"dev": {"d.yaml": "# " + "x" * (1100 * 1024)}}
    return encode(CloudEvent.new(published.model_copy(update={"manifests": huge}), source="t"))


@pytest.mark.parametrize(
    ("make_body", "code", "expected"),
    [
        (lambda _: b'{"specversion": "1.0", "id": ', "malformed-event", "not valid JSON"),
        (_unknown_type, "unknown-event-type", "ferry.artifact.mystery.v1"),
        (_oversized, "payload-too-large", "over the limit of 1048576 bytes"),
    ],
    ids=["malformed-json", "unknown-type", "oversized"],
)
async def test_unreadable_messages_are_dead_lettered_and_ingest_keeps_going(
    broker_ns: BrokerNamespace,
    event_tap: EventTap,
    ingest_settings: IngestSettings,
    example_published: ArtifactPublished,
    make_body: Any,
    code: str,
    expected: str,
) -> None:
    body = make_body(example_published)
    async with running(build(ingest_settings)):
        await broker_ns.publish_raw(body, routing_key=PUBLISHED)
        [dead] = await broker_ns.dead_letters("artifact-ingest")
        sent = await broker_ns.publish(example_published)
        accepted = await event_tap.wait_one(ACCEPTED)
    headers = dead.headers or {}
    assert headers[CODE_HEADER] == code
    assert expected in str(headers[REASON_HEADER])
    assert dead.body == body  # kept as it came, for an operator to inspect
    assert accepted.causationid == sent.id
    assert event_tap.of_type(REJECTED) == []


async def test_a_redelivered_event_yields_the_same_verdict_id(
    broker_ns: BrokerNamespace,
    event_tap: EventTap,
    ingest_settings: IngestSettings,
    example_published: ArtifactPublished,
) -> None:
    sent = CloudEvent.new(example_published, source="ferry/ci")
    async with running(build(ingest_settings)):
        for _ in range(2):
            await broker_ns.publish_raw(encode(sent), routing_key=PUBLISHED)
        first, second = await event_tap.wait_for(ACCEPTED, caused_by(sent), count=2)
    assert first.id == second.id
    assert first.data == second.data


async def test_python_m_ferry_ingest_runs_the_service(
    broker_ns: BrokerNamespace,
    event_tap: EventTap,
    example_published: ArtifactPublished,
    tmp_path: Path,
) -> None:
    """The real process: started as operators start it, stopped by SIGTERM with exit code 0."""
    env = broker_ns.env(FERRY_HTTP_PORT="0", FERRY_LOG_FORMAT="json")
    process = ServiceProcess("ferry_ingest", env, tmp_path / "ingest.log").start()
    try:
        async with asyncio.timeout(30):
            while '"event": "ready"' not in process.logs():
                assert process.proc is not None
                assert process.proc.poll() is None, process.logs()
                await asyncio.sleep(0.1)
        sent = await broker_ns.publish(example_published)
        accepted = await event_tap.wait_one(ACCEPTED, caused_by(sent), timeout=30)
    finally:
        code = await asyncio.to_thread(process.terminate)
    assert accepted.correlationid == sent.correlationid
    assert code == 0, process.logs()
    lines = [json.loads(line) for line in process.logs().splitlines() if line.startswith("{")]
    assert any(line["event"] == "artifact accepted" for line in lines)
    starting = next(line for line in lines if line["event"] == "starting")
    assert starting["settings"]["ingest_max_file_bytes"] == 256 * 1024
    assert "guest:guest" not in json.dumps(starting)

"""``ferry artifact push`` against the real broker: what it publishes, and how it fails."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from typer.testing import CliRunner

from ferry_cli.app import app
from ferry_events import ArtifactRejected, ArtifactSpec, ArtifactStored, CloudEvent, Reason
from ferry_testing import BrokerNamespace, EventTap

pytestmark = pytest.mark.amqp

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PUSH_EXAMPLE = (
    "artifact",
    "push",
    str(EXAMPLES / "artifact.json"),
    "--manifests",
    str(EXAMPLES / "manifests"),
)


def push_args(ns: BrokerNamespace, *extra: str) -> list[str]:
    return [*PUSH_EXAMPLE, "--amqp-url", ns.amqp_url, "--exchange", ns.exchange, *extra]


async def test_push_publishes_the_example_artifact(
    broker_ns: BrokerNamespace, event_tap: EventTap, run_ferry
) -> None:
    run = await run_ferry(*push_args(broker_ns, "--output", "json"))
    assert run.code == 0, run.stderr
    summary = json.loads(run.stdout)
    [event] = await event_tap.wait_for("ferry.artifact.published.v1")

    assert event.id == summary["eventId"]
    assert event.correlationid == summary["correlationId"] == event.id
    assert event.source == "ferry/ci"
    assert event.subject == "payments"
    assert event.data["artifact"] == json.loads((EXAMPLES / "artifact.json").read_text())
    expected = {
        env.name: {f.name: f.read_text() for f in sorted(env.glob("*.yaml"))}
        for env in (EXAMPLES / "manifests").iterdir()
    }
    assert event.data["manifests"] == expected
    assert summary["environments"] == ["dev", "prod", "staging"]
    # the event validates as the services will read it
    assert ArtifactSpec.model_validate(event.data["artifact"]).id == summary["artifactId"]


async def test_push_prints_event_and_correlation_ids(
    broker_ns: BrokerNamespace, event_tap: EventTap, run_ferry
) -> None:
    run = await run_ferry(*push_args(broker_ns))
    assert run.code == 0, run.stderr
    event = await event_tap.wait_one("ferry.artifact.published.v1")
    assert f"event id:       {event.id}" in run.stdout
    assert f"correlation id: {event.correlationid}" in run.stdout


async def test_unreachable_broker_exits_3_with_what_to_do(run_ferry, closed_port: int) -> None:
    port = closed_port
    run = await run_ferry(
        *PUSH_EXAMPLE, env={"FERRY_AMQP_URL": f"amqp://guest:secret@127.0.0.1:{port}/"}
    )
    assert run.code == 3
    assert f"could not reach RabbitMQ at amqp://guest:***@127.0.0.1:{port}/" in run.stderr
    assert "rabbitmq-server -detached" in run.stderr
    assert "secret" not in run.stderr
    assert "Traceback" not in run.stderr


async def test_wrong_password_exits_4(broker_ns: BrokerNamespace, run_ferry) -> None:
    url = broker_ns.amqp_url.replace("guest:guest@", "guest:wrong@")
    run = await run_ferry(*PUSH_EXAMPLE, "--amqp-url", url)
    assert run.code == 4, run.stderr
    assert "refused the login" in run.stderr


def test_missing_inputs_exit_2(tmp_path: Path) -> None:
    runner = CliRunner()

    def push(artifact: Path, manifests: Path) -> Any:
        return runner.invoke(
            app, ["artifact", "push", str(artifact), "--manifests", str(manifests)]
        )

    no_dir = push(EXAMPLES / "artifact.json", tmp_path / "nope")
    assert no_dir.exit_code == 2
    assert f"manifests directory {tmp_path / 'nope'} does not exist" in no_dir.stderr

    empty = tmp_path / "empty"
    empty.mkdir()
    no_yaml = push(EXAMPLES / "artifact.json", empty)
    assert no_yaml.exit_code == 2
    assert "no manifests found" in no_yaml.stderr

    broken = tmp_path / "artifact.json"
    broken.write_text('{"id": "x",\n "service": }')
    bad_json = push(broken, EXAMPLES / "manifests")
    assert bad_json.exit_code == 2
    assert "is not valid JSON" in bad_json.stderr
    assert "line 2" in bad_json.stderr

    missing = push(tmp_path / "none.json", EXAMPLES / "manifests")
    assert missing.exit_code == 2
    assert "does not exist" in missing.stderr


async def test_nothing_bound_is_a_clear_refusal(broker_ns: BrokerNamespace, run_ferry) -> None:
    connection = await aio_pika.connect(broker_ns.amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.declare_exchange(
            broker_ns.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
    unbound = await run_ferry(*push_args(broker_ns))
    assert unbound.code == 1
    assert "nothing is bound to ferry.artifact.published.v1" in unbound.stderr
    assert "start artifact-ingest" in unbound.stderr

    missing = await run_ferry(*push_args(broker_ns, "--exchange", broker_ns.exchange + ".missing"))
    assert missing.code == 1
    assert "does not exist on the broker" in missing.stderr


async def test_wait_reports_a_rejection_with_its_reasons(
    broker_ns: BrokerNamespace, event_tap: EventTap, run_ferry
) -> None:
    async def ingest_rejects() -> None:
        published = await event_tap.wait_one("ferry.artifact.published.v1", timeout=30)
        await broker_ns.publish(
            CloudEvent.new(
                ArtifactRejected(
                    artifact_id="master-0017d995e3-67e9d69164",
                    service="payments",
                    reasons=[
                        Reason(code="tests-failed", message="the test stage reported 3 failures"),
                        Reason(code="not-kubernetes", message="no kind", field="manifests.dev"),
                    ],
                ),
                source="ferry/artifact-ingest",
                cause=published,
            )
        )

    responder = asyncio.create_task(ingest_rejects())
    run = await run_ferry(*push_args(broker_ns, "--wait", "--timeout", "30"))
    await responder
    assert run.code == 1
    assert "artifact-ingest rejected payments master-0017d995e3-67e9d69164" in run.stderr
    assert "the test stage reported 3 failures (tests-failed)" in run.stderr
    assert "manifests.dev: no kind (not-kubernetes)" in run.stderr


async def test_wait_reports_where_it_was_stored(
    broker_ns: BrokerNamespace, event_tap: EventTap, run_ferry
) -> None:
    artifact = ArtifactSpec.model_validate_json((EXAMPLES / "artifact.json").read_text())

    async def writer_stores() -> None:
        published = await event_tap.wait_one("ferry.artifact.published.v1", timeout=30)
        await broker_ns.publish(
            CloudEvent.new(
                ArtifactStored(
                    artifact=artifact,
                    environments=["dev", "prod", "staging"],
                    commit_sha="4b825dc642cb6eb9a060e54bf8d69288fbee4904",
                    path=f"builds/payments/{artifact.id}",
                ),
                source="ferry/git-writer",
                correlation_id=published.correlationid,
            )
        )

    responder = asyncio.create_task(writer_stores())
    run = await run_ferry(*push_args(broker_ns, "--wait", "-o", "json"))
    await responder
    assert run.code == 0, run.stderr
    outcome = json.loads(run.stdout)["outcome"]
    assert outcome["status"] == "stored"
    assert outcome["data"]["commitSha"] == "4b825dc642cb6eb9a060e54bf8d69288fbee4904"


def test_a_rejection_reason_names_its_field_once() -> None:
    from ferry_cli.commands.artifact import _reason_line

    named = {"code": "invalid-artifact", "field": "artifact.id", "message": "artifact.id: bad"}
    unnamed = {"code": "tests-failed", "field": "artifact.stages[1]", "message": "3 failed"}
    assert _reason_line(named) == "artifact.id: bad (invalid-artifact)"
    assert _reason_line(unnamed) == "artifact.stages[1]: 3 failed (tests-failed)"

"""The runtime kit's consumer against hostile deliveries, in-process: whatever a publisher
sends, each message ends acked after its effect or dead-lettered with a code and a reason,
and the copy the consumer forwards can be encoded for the wire."""

from __future__ import annotations

import asyncio
import json

from hypothesis import given

from ferry_events import ReleaseRequested
from ferry_runtime import Delivery, PermanentError, RuntimeSettings, ServiceRuntime
from ferry_testing.fuzz import (
    FakeMessage,
    InProcess,
    Outcome,
    RawLongString,
    as_received,
    fuzz_settings,
    hostile_messages,
)

KEY = ReleaseRequested.event_type


def _runtime(handled: list[Delivery[ReleaseRequested]]) -> ServiceRuntime:
    runtime = ServiceRuntime("promotion", RuntimeSettings(exchange="ferry"))

    async def handle(delivery: Delivery[ReleaseRequested]) -> None:
        if delivery.data.environment == "prod":
            raise PermanentError("prod is refused here", code="refused")
        handled.append(delivery)

    runtime.subscribe(ReleaseRequested, handle)
    return runtime


def _deliver(message: FakeMessage) -> tuple[Outcome, list[Delivery[ReleaseRequested]]]:
    handled: list[Delivery[ReleaseRequested]] = []

    async def run() -> Outcome:
        [outcome] = await InProcess(_runtime(handled)).deliver(message)
        return outcome

    return asyncio.run(run()), handled


def _valid(**data: object) -> bytes:
    return json.dumps(
        {
            "specversion": "1.0",
            "id": "e-1",
            "source": "ferry/test",
            "type": KEY,
            "time": "2026-01-01T00:00:00Z",
            "data": {
                "releaseId": "r-1",
                "service": "payments",
                "environment": "dev",
                "intent": "release",
                "artifactId": "a-1",
                "actor": {"subject": "jane"},
                "requestedAt": "2026-01-01T00:00:00Z",
                **data,
            },
        }
    ).encode()


def test_a_valid_event_is_handled_and_acked() -> None:
    outcome, handled = _deliver(FakeMessage(_valid(), routing_key=KEY))
    assert outcome.problems() == []
    assert outcome.dead_letters == []
    assert [d.event.id for d in handled] == ["e-1"]


def test_a_header_that_is_not_utf8_is_carried_to_the_dead_letters_as_bytes() -> None:
    # a long string that is not UTF-8 reaches the consumer as bytes, which the client
    # library cannot write back: the dead-letter copy must carry it as a byte array
    headers = as_received(
        {"x-note": RawLongString(b"\xff\xfe not utf-8"), "x-list": [RawLongString(b"\xc3(")]}
    )
    assert isinstance(headers["x-note"], bytes)
    outcome, _ = _deliver(FakeMessage(b"not json", headers=headers, routing_key=KEY))
    assert outcome.problems() == []
    [letter] = outcome.dead_letters
    assert letter.code == "malformed-event"
    assert letter.message.headers["x-note"] == bytearray(b"\xff\xfe not utf-8")
    assert letter.message.headers["x-list"] == [bytearray(b"\xc3(")]


def test_a_lone_surrogate_and_a_double_beyond_a_single_are_carried_as_bytes_and_text() -> None:
    outcome, _ = _deliver(
        FakeMessage(b"{}", headers={"x-note": "a\udcffb", "x-big": 1e300}, routing_key=KEY)
    )
    assert outcome.problems() == []
    headers = outcome.dead_letters[0].message.headers
    assert headers["x-note"] == bytearray(b"a\xed\xb3\xbfb")
    assert headers["x-big"] == "1e+300"


def test_json_nested_too_deep_is_dead_lettered_as_malformed() -> None:
    body = b'{"specversion": "1.0", "data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    outcome, _ = _deliver(FakeMessage(body, routing_key=KEY))
    assert outcome.problems() == []
    assert outcome.dead_letters[0].code == "malformed-event"
    assert "nested deeper than 64" in (outcome.dead_letters[0].reason or "")


def test_a_correlation_id_over_255_bytes_is_dead_lettered_as_malformed() -> None:
    body = json.loads(_valid())
    body["correlationid"] = "c" * 256
    outcome, handled = _deliver(FakeMessage(json.dumps(body).encode(), routing_key=KEY))
    assert outcome.problems() == []
    assert handled == []
    assert outcome.dead_letters[0].code == "malformed-event"


def test_a_refusal_is_dead_lettered_with_the_handlers_reason() -> None:
    outcome, _ = _deliver(FakeMessage(_valid(environment="prod"), routing_key=KEY))
    assert outcome.problems() == []
    assert (outcome.dead_letters[0].code, outcome.dead_letters[0].reason) == (
        "refused",
        "prod is refused here",
    )


@fuzz_settings(examples=150)
@given(message=hostile_messages([KEY]))
def test_every_hostile_delivery_ends_acked_or_dead_lettered_with_a_reason(
    message: FakeMessage,
) -> None:
    outcome, handled = _deliver(message)
    assert outcome.problems() == []
    if handled:
        assert outcome.dead_letters == []
    else:
        assert len(outcome.dead_letters) == 1

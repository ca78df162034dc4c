"""Bytes a hostile or broken publisher can send, and the refusal each one gets from ``decode``."""

from __future__ import annotations

import json

import pytest

from ferry_events import MalformedEvent, decode
from ferry_events.codec import MAX_JSON_DEPTH


def _envelope(**extra: object) -> dict[str, object]:
    return {
        "specversion": "1.0",
        "id": "e-1",
        "source": "ferry/test",
        "type": "ferry.release.requested.v1",
        "time": "2026-01-01T00:00:00Z",
        **extra,
    }


def _nested(depth: int) -> object:
    value: object = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 5_000, 200_000])
def test_json_nested_deeper_than_the_limit_is_malformed(depth: int) -> None:
    # deep enough, json.loads raises RecursionError, which is no EventError
    body = b'{"specversion": "1.0", "data": ' + b"[" * depth + b"]" * depth + b"}"
    with pytest.raises(MalformedEvent, match="nested deeper than 64"):
        decode(body, max_bytes=len(body))


def test_data_nested_deeper_than_the_limit_is_malformed() -> None:
    body = json.dumps(_envelope(data=_nested(MAX_JSON_DEPTH))).encode()
    with pytest.raises(MalformedEvent, match="nested deeper than 64"):
        decode(body)


def test_data_nested_to_the_limit_is_read() -> None:
    body = json.dumps(_envelope(data=_nested(MAX_JSON_DEPTH - 1))).encode()
    assert decode(body).data


@pytest.mark.parametrize("field", ["id", "correlationid", "causationid"])
def test_ids_longer_than_an_amqp_short_string_are_malformed(field: str) -> None:
    # 100 characters, 300 bytes: within the id's character limit, not within AMQP's 255 bytes
    body = json.dumps(_envelope(**{field: "é" * 150})).encode()
    with pytest.raises(MalformedEvent, match=f"{field}.*255 bytes"):
        decode(body)


def test_an_id_of_255_bytes_is_read() -> None:
    body = json.dumps(_envelope(correlationid="c" * 255)).encode()
    assert decode(body).correlationid == "c" * 255


def test_lone_surrogates_from_json_escapes_are_malformed() -> None:
    # valid JSON, but no UTF-8 can carry it: publishing anything derived from it would fail
    body = json.dumps(_envelope(data={"reason": "\ud800"})).encode()
    assert b"\\ud800" in body
    with pytest.raises(MalformedEvent, match="not valid Unicode"):
        decode(body)


def test_binary_mode_attribute_with_a_lone_surrogate_is_malformed() -> None:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": "e-\udcff",
        "ce-source": "ferry/test",
        "ce-type": "ferry.release.requested.v1",
        "ce-time": "2026-01-01T00:00:00Z",
    }
    with pytest.raises(MalformedEvent, match="not valid Unicode"):
        decode(b"{}", headers=headers, content_type="application/json")

"""docs/asyncapi.yaml: current, an AsyncAPI 3.0 document, and naming every event type with
its payload, its publisher and its consumers as ferry_events.contract says."""

from __future__ import annotations

import copy
import json
import re
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

import ferry_events
from ferry_events import Actor, CloudEvent, HaltChanged, encode
from ferry_events.asyncapi import document, key, operation_id, render
from ferry_events.contract import CONTRACT, PARTIES

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "asyncapi.yaml"
#: AsyncAPI 3.0: component keys match this; we hold channel, operation and message ids to it.
ID = re.compile(r"^[a-zA-Z0-9.\-_]+$")


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(DOC.read_text(encoding="utf-8"))
    return loaded


def resolve(doc: dict[str, Any], ref: str) -> Any:
    """A local JSON Reference (``#/a/b``) in ``doc``; KeyError when it points nowhere."""
    assert ref.startswith("#/"), f"only local references are used: {ref}"
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for value in node.values() for r in refs(value)]
    if isinstance(node, list):
        return [r for item in node for r in refs(item)]
    return []


def test_checked_in_asyncapi_document_is_current() -> None:
    assert DOC.read_text(encoding="utf-8") == render(), (
        "docs/asyncapi.yaml is stale; run 'make schemas' and commit the result"
    )


def test_it_has_the_required_asyncapi_3_0_structure(doc: dict[str, Any]) -> None:
    assert doc["asyncapi"] == "3.0.0"
    assert doc["info"]["title"]
    assert doc["info"]["version"]
    assert doc["channels"]
    assert doc["operations"]
    for channel_id, channel in doc["channels"].items():
        assert ID.fullmatch(channel_id)
        assert isinstance(channel["address"], str)
        assert channel["messages"]
        for message_id, message in channel["messages"].items():
            assert ID.fullmatch(message_id)
            assert "payload" in resolve(doc, message["$ref"])
    for operation_id_, operation in doc["operations"].items():
        assert ID.fullmatch(operation_id_)
        assert operation["action"] in ("send", "receive")
        ref = operation["channel"]["$ref"]
        assert re.fullmatch(r"#/channels/[^/]+", ref)
        channel = resolve(doc, ref)
        for message in operation["messages"]:
            # an operation's messages are a subset of its channel's messages
            assert message["$ref"].startswith(ref + "/messages/")
            assert resolve(doc, message["$ref"]) in channel["messages"].values()
    for ref in refs(doc):
        resolve(doc, ref)  # every reference points at something


def test_it_validates_against_an_asyncapi_3_0_object_model(doc: dict[str, Any]) -> None:
    """The asyncapi3 package (PyPI) models the 3.0 specification with pydantic, extra fields
    forbidden: fields, actions, bindings and ids are checked against it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # its own field names shadow BaseModel's
        from asyncapi3 import AsyncAPI3
    parsed = AsyncAPI3.model_validate(doc)
    assert parsed.asyncapi == "3.0.0"
    assert parsed.channels is not None
    assert len(parsed.channels) == len(ferry_events.ALL_EVENT_TYPES)
    broken = copy.deepcopy(doc)
    next(iter(broken["operations"].values()))["action"] = "publish"  # AsyncAPI 2's verb
    with pytest.raises(ValueError, match="action"):
        AsyncAPI3.model_validate(broken)


def test_it_names_every_event_type_with_its_payload_publisher_and_consumers(
    doc: dict[str, Any],
) -> None:
    addresses = {c["address"] for c in doc["channels"].values()}
    assert addresses == {m.event_type for m in ferry_events.ALL_EVENT_TYPES}
    for route in CONTRACT:
        ident = key(route.routing_key)
        channel = doc["channels"][ident]
        assert channel["address"] == route.routing_key
        assert channel["bindings"]["amqp"]["exchange"]["name"] == "ferry.events"
        message = resolve(doc, channel["messages"][ident]["$ref"])
        assert message["name"] == route.routing_key
        data = message["payload"]["allOf"][1]["properties"]["data"]
        schema = resolve(doc, data["$ref"])
        required = route.event.model_json_schema(by_alias=True).get("required", [])
        assert set(required) <= set(schema["properties"])
        senders = {
            op_id for op_id, op in doc["operations"].items()
            if op["action"] == "send" and op["channel"]["$ref"] == f"#/channels/{ident}"
        }  # fmt: skip
        receivers = {
            op_id for op_id, op in doc["operations"].items()
            if op["action"] == "receive" and op["channel"]["$ref"] == f"#/channels/{ident}"
        }  # fmt: skip
        assert senders == {operation_id(route.publisher, "send", route)}
        assert receivers == {operation_id(c, "receive", route) for c in route.consumers}
    assert {t["name"] for t in doc["info"]["tags"]} == set(PARTIES)


def test_every_payload_schema_is_a_json_schema_and_real_events_match_it(
    doc: dict[str, Any],
) -> None:
    for schema in doc["components"]["schemas"].values():
        jsonschema.Draft7Validator.check_schema(schema)
    halted = HaltChanged(
        request_id="req-1",
        environment="prod",
        halted=True,
        reason="incident 42",
        actor=Actor(subject="jane", email="jane@example.com"),
        since=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        commit_sha="a" * 40,
    )
    event = json.loads(encode(CloudEvent.new(halted, source="ferry/git-writer")))
    ident = key(HaltChanged.event_type)

    def validate(instance: dict[str, Any], message: str) -> None:
        schema = {**doc, "$ref": f"#/components/messages/{message}/payload"}
        jsonschema.Draft202012Validator(schema).validate(instance)

    validate(event, ident)
    with pytest.raises(jsonschema.ValidationError, match="commitSha"):
        validate(
            {**event, "data": {k: v for k, v in event["data"].items() if k != "commitSha"}}, ident
        )
    with pytest.raises(jsonschema.ValidationError):
        validate(event, key(ferry_events.ReleaseApproved.event_type))  # not that type
    assert document()["components"]["schemas"][ident]["title"] == "HaltChanged"

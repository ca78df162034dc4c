"""The event contract as an AsyncAPI 3.0 document, written to ``docs/asyncapi.yaml``.

``python -m ferry_events.asyncapi docs/asyncapi.yaml`` (``make schemas``) regenerates it
from the event registry (the payload schemas) and :mod:`ferry_events.contract` (who sends,
who receives); a test fails when the checked-in file differs.

One channel per event type, its address the routing key; one message per channel, its
payload the CloudEvents envelope with that type's ``data``; one ``send`` operation for the
publisher and one ``receive`` operation per consuming service.
"""

from __future__ import annotations

import copy
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any, Final

import yaml

from ferry_events.contract import CONTRACT, PARTY_DESCRIPTIONS, Route
from ferry_events.envelope import STRUCTURED_CONTENT_TYPE, CloudEvent
from ferry_events.registry import EventRegistry, default_registry

ASYNCAPI_VERSION: Final = "3.0.0"
EXCHANGE: Final = "ferry.events"
AMQP_BINDING_VERSION: Final = "0.3.0"
_SCHEMAS: Final = "#/components/schemas/"

_DESCRIPTION: Final = (
    "The events Ferry's services exchange over RabbitMQ, generated from the event registry "
    "(`ferry_events`) and its contract (`ferry_events.contract`) by `make schemas`.\n\n"
    "Every event is a CloudEvents 1.0 envelope in structured mode "
    f"(`{STRUCTURED_CONTENT_TYPE}`), published persistent, mandatory and with publisher "
    f"confirms to the topic exchange `{EXCHANGE}` (setting `FERRY_EXCHANGE`) with its type "
    "name as the routing key. Each consuming service binds those routing keys to its own "
    "quorum queue `ferry.<service>`, with retries and dead letters through its own exchange "
    "`ferry.<service>.dlx` (docs/architecture.md). A consumer reads older versions of a type "
    "through the registry's upcasters; this document describes the newest.\n"
)


def _summary(model: type[Any]) -> str:
    """The first paragraph of the model's docstring, on one line."""
    return " ".join((model.__doc__ or "").strip().split("\n\n", 1)[0].split())


def _description(model: type[Any]) -> str:
    """The whole docstring, one line per paragraph."""
    paragraphs = (model.__doc__ or "").strip().split("\n\n")
    return "\n\n".join(" ".join(p.split()) for p in paragraphs if p.strip())


def _hoist(schema: dict[str, Any], into: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with its ``$defs`` moved into ``into`` (components/schemas), refs rewritten."""
    schema = copy.deepcopy(schema)
    for name, raw in schema.pop("$defs", {}).items():
        definition = _rewrite(raw)
        if name in into and into[name] != definition:
            raise ValueError(f"two event types define {name!r} differently")
        into[name] = definition
    schema.pop("$id", None)
    hoisted: dict[str, Any] = _rewrite(schema)
    return hoisted


def _rewrite(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: (
                _SCHEMAS + value.removeprefix("#/$defs/")
                if key == "$ref" and isinstance(value, str) and value.startswith("#/$defs/")
                else _rewrite(value)
            )
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_rewrite(item) for item in node]
    return node


def key(type_name: str) -> str:
    """The id of a type's channel, message and data schema: ``ferry.release.approved.v1`` ->
    ``release_approved_v1`` (AsyncAPI ids of letters, digits, ``-`` and ``_`` only)."""
    return type_name.removeprefix("ferry.").replace(".", "_")


def operation_id(party: str, action: str, route: Route) -> str:
    """``git-writer_receives_release_approved_v1``, ``promotion_sends_release_approved_v1``."""
    return f"{party}_{action}s_{key(route.routing_key)}"


def document(registry: EventRegistry = default_registry) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of every event type ``registry`` knows."""
    schemas: dict[str, Any] = {"CloudEvent": _hoist(CloudEvent.model_json_schema(), {})}
    messages: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    contracted = sorted(r.routing_key for r in CONTRACT)
    if contracted != registry.types():
        raise ValueError(
            f"the contract routes {contracted} but the registry knows {registry.types()}: "
            "give every event type one route in ferry_events.contract.CONTRACT"
        )
    for route in CONTRACT:
        type_name = route.routing_key
        model = registry.model_for(type_name)
        ident = key(type_name)
        data = model.model_json_schema(by_alias=True, mode="serialization")
        schemas[ident] = _hoist(data, schemas)
        messages[ident] = {
            "name": type_name,
            "title": model.__name__,
            "summary": _summary(model),
            **({"description": _description(model)} if "\n" in _description(model) else {}),
            "contentType": STRUCTURED_CONTENT_TYPE,
            "correlationId": {
                "description": "every event of one artifact's or release's life shares it",
                "location": "$message.payload#/correlationid",
            },
            "payload": {
                "allOf": [
                    {"$ref": _SCHEMAS + "CloudEvent"},
                    {
                        "type": "object",
                        "properties": {
                            "type": {"const": type_name},
                            "data": {"$ref": _SCHEMAS + ident},
                        },
                    },
                ]
            },
            "bindings": {
                "amqp": {"messageType": type_name, "bindingVersion": AMQP_BINDING_VERSION}
            },
        }
        channels[ident] = {
            "address": type_name,
            "title": model.__name__,
            "summary": _summary(model),
            "messages": {ident: {"$ref": f"#/components/messages/{ident}"}},
            "bindings": {
                "amqp": {
                    "is": "routingKey",
                    "exchange": {
                        "name": EXCHANGE,
                        "type": "topic",
                        "durable": True,
                        "autoDelete": False,
                    },
                    "bindingVersion": AMQP_BINDING_VERSION,
                }
            },
        }
        channel = {"$ref": f"#/channels/{ident}"}
        message = [{"$ref": f"#/channels/{ident}/messages/{ident}"}]
        operations[operation_id(route.publisher, "send", route)] = {
            "action": "send",
            "channel": channel,
            "messages": message,
            "title": f"{route.publisher} publishes {type_name}",
            "description": PARTY_DESCRIPTIONS[route.publisher],
            "tags": [{"name": route.publisher}],
            "bindings": {
                "amqp": {
                    "deliveryMode": 2,
                    "mandatory": True,
                    "timestamp": True,
                    "bindingVersion": AMQP_BINDING_VERSION,
                }
            },
        }
        for consumer in route.consumers:
            operations[operation_id(consumer, "receive", route)] = {
                "action": "receive",
                "channel": channel,
                "messages": message,
                "title": f"{consumer} consumes {type_name}",
                "description": f"{PARTY_DESCRIPTIONS[consumer]}; from its queue "
                f"`ferry.{consumer}`, acknowledged once handled",
                "tags": [{"name": consumer}],
                "bindings": {"amqp": {"ack": True, "bindingVersion": AMQP_BINDING_VERSION}},
            }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "Ferry events",
            "version": version("ferry-events"),
            "description": _DESCRIPTION,
            "tags": [
                {"name": party, "description": text} for party, text in PARTY_DESCRIPTIONS.items()
            ],
        },
        "defaultContentType": STRUCTURED_CONTENT_TYPE,
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": dict(sorted(schemas.items()))},
    }


class _Dumper(yaml.SafeDumper):
    """Multi-line strings as literal blocks, so that descriptions read as they were written;
    no anchors and aliases, so that every operation reads whole."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def render(registry: EventRegistry = default_registry) -> str:
    """The document as YAML text, as ``docs/asyncapi.yaml`` holds it."""
    header = "# Generated by `make schemas` (python -m ferry_events.asyncapi); do not edit.\n"
    body = yaml.dump(
        document(registry), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100
    )
    return header + body


def main() -> None:
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/asyncapi.yaml")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render(), encoding="utf-8")
    sys.stdout.write(f"wrote {target}\n")


if __name__ == "__main__":
    main()

"""Which CI identity may publish builds of which service, into which namespace.

A published artifact's identity is the ``user_id`` property of its AMQP message.
RabbitMQ refuses a ``user_id`` that differs from the user of the connection that
publishes it, so the identity is the broker user the pipeline logged in as, not
something the pipeline claims. ``service`` and ``namespace`` come from the
artifact, so without this check any pipeline could publish builds of any
service, or move a service to a new namespace (git-writer then deletes its
folder in the old one).

The file (``FERRY_CI_IDENTITIES_FILE``)::

    identities:
      ferry-ci-payments:
        services: [payments, payments-worker]
        namespaces: [payments]
      ferry-ci-platform:
        services: ["*"]            # "*": any
        namespaces: [platform, monitoring]

Reason codes: ``no-identity`` (the message has no ``user_id``),
``identity-not-allowed`` (an identity the file does not list, or a service or
namespace outside its grant).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import yaml

from ferry_events import DNS_LABEL, Reason, load_yaml_document
from ferry_ingest.domain.text import shown

__all__ = [
    "ANY",
    "CiIdentities",
    "Grant",
    "InvalidIdentities",
    "check_identity",
    "parse_identities",
]

ANY: Final = "*"
_MAX_SHOWN: Final = 8


class InvalidIdentities(ValueError):
    """The CI identities file is not what it must be; the message says where and why."""


@dataclass(frozen=True, slots=True)
class Grant:
    """What one identity may publish: services and namespaces (``*`` in either: any)."""

    services: frozenset[str]
    namespaces: frozenset[str]

    def allows_service(self, service: str) -> bool:
        return ANY in self.services or service in self.services

    def allows_namespace(self, namespace: str) -> bool:
        return ANY in self.namespaces or namespace in self.namespaces


@dataclass(frozen=True, slots=True)
class CiIdentities:
    """Every CI identity and its grant."""

    grants: Mapping[str, Grant]


def parse_identities(text: str, *, source: str = "the CI identities file") -> CiIdentities:
    """The identities of ``text``; :class:`InvalidIdentities` names what is wrong and where."""
    try:
        document = load_yaml_document(text)
    except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
        raise InvalidIdentities(f"{source} is not valid YAML: {exc}") from exc
    identities = document.get("identities") if isinstance(document, Mapping) else None
    if not isinstance(identities, Mapping) or not identities:
        raise InvalidIdentities(
            f"{source} must hold a non-empty mapping 'identities: {{<broker user>: "
            "{services: [...], namespaces: [...]}}'"
        )
    grants: dict[str, Grant] = {}
    for name, entry in identities.items():
        if not isinstance(name, str) or not name:
            raise InvalidIdentities(f"{source}: identity names must be strings, got {name!r}")
        if not isinstance(entry, Mapping):
            raise InvalidIdentities(f"{source}: identities.{name} must be a mapping")
        grants[name] = Grant(
            services=_names(entry, "services", name, source),
            namespaces=_names(entry, "namespaces", name, source),
        )
    return CiIdentities(grants=grants)


def _names(entry: Mapping[str, Any], key: str, identity: str, source: str) -> frozenset[str]:
    value = entry.get(key)
    if not isinstance(value, list) or not value:
        raise InvalidIdentities(
            f'{source}: identities.{identity}.{key} must be a non-empty list (["*"] for any)'
        )
    for item in value:
        if not isinstance(item, str) or not (item == ANY or DNS_LABEL.fullmatch(item)):
            raise InvalidIdentities(
                f"{source}: identities.{identity}.{key} holds {item!r}, which is neither "
                'a DNS label nor "*"'
            )
    return frozenset(value)


def check_identity(
    identities: CiIdentities, identity: str | None, service: str, namespace: str
) -> list[Reason]:
    """Why ``identity`` may not publish a build of ``service`` into ``namespace`` (none: it may)."""
    if not identity:
        return [
            Reason(
                code="no-identity",
                message=(
                    f"the build of service {service!r} was published without an AMQP user_id, "
                    "so who published it cannot be told; publish it with `ferry artifact "
                    "push`, which sets user_id to the broker user"
                ),
            )
        ]
    grant = identities.grants.get(identity)
    identity = shown(identity, 128)
    if grant is None:
        return [
            Reason(
                code="identity-not-allowed",
                message=(
                    f"identity {identity!r} may not publish builds of service {service!r}: it "
                    "is not listed in the CI identities file (FERRY_CI_IDENTITIES_FILE)"
                ),
            )
        ]
    reasons: list[Reason] = []
    if not grant.allows_service(service):
        reasons.append(
            Reason(
                code="identity-not-allowed",
                message=(
                    f"identity {identity!r} may not publish builds of service {service!r}; "
                    f"it may publish {_listed(grant.services)}"
                ),
                field="artifact.service",
            )
        )
    if not grant.allows_namespace(namespace):
        reasons.append(
            Reason(
                code="identity-not-allowed",
                message=(
                    f"identity {identity!r} may not publish service {service!r} into "
                    f"namespace {namespace!r}; it may use {_listed(grant.namespaces)}"
                ),
                field="artifact.namespace",
            )
        )
    return reasons


def _listed(names: frozenset[str]) -> str:
    shown = sorted(names)[:_MAX_SHOWN]
    more = f" and {len(names) - _MAX_SHOWN} more" if len(names) > _MAX_SHOWN else ""
    return ", ".join(shown) + more

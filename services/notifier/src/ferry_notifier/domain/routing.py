"""Who hears about what: the routing decision over the routing file (its model and
validation are in :mod:`ferry_notifier.domain.routes_file`).

The file (``FERRY_ROUTES_FILE``) is YAML::

    protected_environments: [prod]      # failures here also alert the squad
    alerts_channel: "#{squad}-alerts"   # where those alerts go
    squads: {payments: pay}             # service -> squad, when events do not say
    approvers:                          # who is asked to approve what
      - {services: ["*"], environments: [prod], people: [lead@example.com]}
    routes:
      - name: deploys channel
        match: {events: ["release.*", "rollout.*"], environments: [prod]}
        to: ["slack:#deploys", "slack-dm:author", "email:releaser", "console"]
      - name: GitHub deployments
        match: {events: [release.committed, release.failed, "rollout.*"]}
        to: [github]
    mutes:
      - {person: jane@example.com, events: ["rollout.started"]}

Every rule whose ``match`` fits sends to all its ``to`` destinations; the same
destination named by several rules is sent to once. A person muted for an event
is dropped from every destination that is that person.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Final

from ferry_notifier.domain.notice import Notice, Outcome, short_type
from ferry_notifier.domain.routes_file import (
    EMAIL,
    ROLES,
    DestinationKind,
    Match,
    Mute,
    RoutingConfig,
    RoutingFileError,
    Rule,
    any_glob,
    default_routing,
    glob,
    parse_routing,
)

# --------------------------------------------------------------------------- routing


@dataclass(frozen=True, slots=True)
class Destination:
    """Where one notice goes. ``person`` is set when it is one person (DM, email)."""

    kind: DestinationKind
    target: str = ""
    person: str = ""

    @property
    def key(self) -> str:
        """Stable identity of the destination, for the delivery record."""
        return f"{self.kind}:{self.target}" if self.target else self.kind


def _event_matches(patterns: Sequence[str], event_type: str) -> bool:
    if not patterns:
        return True
    short = short_type(event_type)
    return any(glob(p, event_type) or glob(p, short) for p in patterns)


#: A halt or a resume (``ferry.halt.changed.v1``): heard wherever failures are, its
#: environment ``*`` counts as protected, and a channel named by squad goes to every squad's.
HALT_KIND: Final = "halt.changed"


def _protected(notice: Notice, protected: Sequence[str]) -> bool:
    if notice.kind == HALT_KIND and notice.environment == "*":
        return True
    return bool(notice.environment) and notice.environment in protected


def matches(match: Match, notice: Notice, protected: Sequence[str]) -> bool:
    """Whether one rule's ``match`` fits this notice."""
    checks = (
        _event_matches(match.events, notice.event_type),
        not match.services or any_glob(match.services, notice.service),
        not match.environments or any_glob(match.environments, notice.environment),
        not match.squads or any_glob(match.squads, notice.squad),
        not match.outcomes
        or notice.outcome in match.outcomes
        or (notice.kind == HALT_KIND and Outcome.FAILURE in match.outcomes),
        match.protected is None or _protected(notice, protected) == match.protected,
    )
    return all(checks)


def _muted(mutes: Sequence[Mute], person: str, notice: Notice) -> bool:
    for mute in mutes:
        if (
            mute.person == person.lower()
            and _event_matches(mute.events, notice.event_type)
            and (not mute.services or any_glob(mute.services, notice.service))
            and (not mute.environments or any_glob(mute.environments, notice.environment))
        ):
            return True
    return False


def _fill(channel: str, notice: Notice) -> str | None:
    """Put the notice's squad, service and environment into a channel name."""
    values = {"squad": notice.squad, "service": notice.service, "environment": notice.environment}
    for name, value in values.items():
        placeholder = "{" + name + "}"
        if placeholder in channel:
            if not value:
                return None
            channel = channel.replace(placeholder, value)
    return channel


def _expand(spec: str, notice: Notice, config: RoutingConfig) -> list[Destination]:
    kind, _, target = spec.partition(":")
    if kind == "console":
        return [Destination("console")]
    if kind == "github":
        return [Destination("github")]
    if kind == "webhook":
        return [Destination("webhook", target)]
    if kind == "slack":
        channel = _fill(target, notice)
        if channel is None and notice.kind == HALT_KIND:
            # a halt concerns every squad: each squad's channel hears it
            squads = sorted(set(config.squads.values()))
            filled = {_fill(target, replace(notice, squad=squad)) for squad in squads}
            return [Destination("slack", c) for c in sorted(c for c in filled if c)]
        return [Destination("slack", channel)] if channel else []
    people: Iterable[str]
    if target == "approvers":
        people = notice.approvers or config.approvers_for(notice.service, notice.environment)
    elif target in ROLES:
        people = [notice.people()[target]]
    else:
        people = [target]
    out: list[Destination] = []
    for person in people:
        if person and EMAIL.fullmatch(person):
            address = person.lower()
            out.append(Destination("slack-dm" if kind == "slack-dm" else "email", address, address))
    return out


def route(notice: Notice, config: RoutingConfig) -> list[Destination]:
    """Every destination this notice goes to, each once, mutes applied, in rule order."""
    seen: dict[str, Destination] = {}
    for rule in config.routes:
        if not matches(rule.match, notice, config.protected_environments):
            continue
        for spec in rule.to:
            for destination in _expand(spec, notice, config):
                if destination.person and _muted(config.mutes, destination.person, notice):
                    continue
                seen.setdefault(destination.key, destination)
    return list(seen.values())


__all__ = [
    "Destination",
    "DestinationKind",
    "Match",
    "Mute",
    "RoutingConfig",
    "RoutingFileError",
    "Rule",
    "default_routing",
    "matches",
    "parse_routing",
    "route",
]

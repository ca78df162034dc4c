"""Who hears about what: the routing file, its validation and the routing decision.

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
    mutes:
      - {person: jane@example.com, events: ["rollout.started"]}

Every rule whose ``match`` fits sends to all its ``to`` destinations; the same
destination named by several rules is sent to once. A person muted for an event
is dropped from every destination that is that person.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ferry_notifier.domain.notice import Notice, Outcome, short_type

ROLES: Final = ("author", "releaser", "approvers")
_EMAIL: Final = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_CHANNEL: Final = re.compile(r"^(#[a-z0-9{}_.-]+|[CGD][A-Z0-9]{6,})$")
_PLACEHOLDERS: Final = ("{squad}", "{service}", "{environment}")

DestinationKind = Literal["slack", "slack-dm", "email", "webhook", "console"]


class RoutingFileError(ValueError):
    """The routing file is malformed. ``line`` is 1-based, 0 when unknown."""

    def __init__(self, source: str, line: int, reason: str) -> None:
        where = f"{source} line {line}" if line else source
        super().__init__(f"{where}: {reason}")
        self.source = source
        self.line = line
        self.reason = reason


# --------------------------------------------------------------------------- the file


def _check_destination(value: str) -> str:
    kind, _, target = value.partition(":")
    expected = (
        "expected one of slack:#channel, slack-dm:author|releaser|approvers|<email>, "
        "email:author|releaser|approvers|<address>, webhook:<http(s) URL>, console"
    )
    if value == "console":
        return value
    if kind == "slack":
        if not _CHANNEL.fullmatch(target):
            raise ValueError(
                f"{value!r}: a Slack channel is '#name' (lower case) or a channel id; {expected}"
            )
        return value
    if kind in ("slack-dm", "email"):
        if target in ROLES or _EMAIL.fullmatch(target):
            return value
        raise ValueError(
            f"{value!r}: {target!r} is neither a role nor an email address; {expected}"
        )
    if kind == "webhook":
        if re.fullmatch(r"https?://[^\s/]+(/\S*)?", target):
            return value
        raise ValueError(f"{value!r}: a webhook needs an http:// or https:// URL; {expected}")
    raise ValueError(f"unknown destination {value!r}; {expected}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Match(_Strict):
    """What a rule matches. Empty lists match anything; globs use ``*`` and ``?``.

    ``events`` match the full type (``ferry.rollout.failed.v1``) or its short
    form (``rollout.failed``).
    """

    events: tuple[str, ...] = ()
    services: tuple[str, ...] = ()
    environments: tuple[str, ...] = ()
    squads: tuple[str, ...] = ()
    outcomes: tuple[Outcome, ...] = ()
    #: true: only protected environments; false: only unprotected ones.
    protected: bool | None = None

    @field_validator("events", "services", "environments", "squads", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class Rule(_Strict):
    name: str = ""
    match: Match = Field(default_factory=Match)
    to: tuple[str, ...] = Field(min_length=1)

    @field_validator("to", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("to")
    @classmethod
    def _destinations(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_check_destination(v) for v in value)


class Mute(_Strict):
    person: str
    events: tuple[str, ...] = ("*",)
    services: tuple[str, ...] = ()
    environments: tuple[str, ...] = ()

    @field_validator("person")
    @classmethod
    def _email(cls, value: str) -> str:
        if not _EMAIL.fullmatch(value):
            raise ValueError(f"{value!r} is not an email address")
        return value.lower()

    @field_validator("events", "services", "environments", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class Approvers(_Strict):
    services: tuple[str, ...] = ("*",)
    environments: tuple[str, ...] = ("*",)
    people: tuple[str, ...] = Field(min_length=1)

    @field_validator("people")
    @classmethod
    def _emails(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for person in value:
            if not _EMAIL.fullmatch(person):
                raise ValueError(f"{person!r} is not an email address")
        return tuple(p.lower() for p in value)


class RoutingConfig(_Strict):
    """The whole routing file."""

    version: Literal[1] = 1
    protected_environments: tuple[str, ...] = ("prod",)
    alerts_channel: str = "#{squad}-alerts"
    squads: dict[str, str] = Field(default_factory=dict)
    approvers: tuple[Approvers, ...] = ()
    routes: tuple[Rule, ...] = ()
    mutes: tuple[Mute, ...] = ()
    #: true: the built-in rules apply too, before these ``routes``.
    include_defaults: bool = False

    @field_validator("alerts_channel")
    @classmethod
    def _channel(cls, value: str) -> str:
        if not _CHANNEL.fullmatch(value):
            raise ValueError(f"{value!r}: a Slack channel is '#name' (lower case) or a channel id")
        return value

    def destination_kinds(self) -> set[str]:
        return {d.partition(":")[0] for rule in self.routes for d in rule.to}

    def approvers_for(self, service: str, environment: str) -> tuple[str, ...]:
        people: list[str] = []
        for entry in self.approvers:
            if _any_glob(entry.services, service) and _any_glob(entry.environments, environment):
                people += [p for p in entry.people if p not in people]
        return tuple(people)


# --------------------------------------------------------------------------- parsing


def _line_of(root: yaml.Node | None, loc: Sequence[int | str]) -> int:
    """The 1-based line of the YAML node at ``loc`` (the deepest that exists)."""
    node = root
    line = node.start_mark.line + 1 if node is not None else 0
    for key in loc:
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if key_node.value == key:
                    child = value_node
                    line = key_node.start_mark.line + 1
                    break
        elif (
            isinstance(node, yaml.SequenceNode)
            and isinstance(key, int)
            and 0 <= key < len(node.value)
        ):
            child = node.value[key]
            line = child.start_mark.line + 1
        if child is None:
            break
        node = child
    return line


def _path(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def parse_routing(text: str, source: str = "routes file") -> RoutingConfig:
    """Parse and validate a routing file. Raises :class:`RoutingFileError` with the line."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 0
        raise RoutingFileError(source, line, f"not valid YAML: {exc.problem}") from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise RoutingFileError(source, _line_of(root, ()), "expected a mapping at the top level")
    try:
        return RoutingConfig.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = [p for p in first["loc"] if isinstance(p, int | str)]
        # pydantic adds the union member name to locs; keep only what the file has.
        message = first["msg"].removeprefix("Value error, ")
        what = _path(loc)
        if first["type"] in ("extra_forbidden", "missing"):
            what = _path(loc[:-1])
            message = (
                f"unknown field {loc[-1]!r}"
                if first["type"] == "extra_forbidden"
                else f"required field {loc[-1]!r} is missing"
            )
        raise RoutingFileError(
            source, _line_of(root, loc), f"{what}: {message}" if what else message
        ) from exc


def default_routing(
    *, slack: bool, email: bool, base: RoutingConfig | None = None
) -> RoutingConfig:
    """The built-in routing, for when no routing file is given (or it says
    ``include_defaults: true``: then its own rules follow the built-in ones, which use
    its ``alerts_channel``, ``protected_environments``, ``approvers`` and ``mutes``).

    The author and the releaser hear about their releases (Slack DM when Slack
    is configured, else email when SMTP is); approvers hear about approval
    requests; failures in protected environments go to the squad's alert
    channel; everything is printed on the console.
    """
    personal = "slack-dm" if slack else "email" if email else ""
    routes: list[Rule] = []
    if personal:
        routes += [
            Rule(
                name="developers hear about their releases",
                match=Match(
                    events=(
                        "artifact.rejected",
                        "release.*",
                        "rollout.*",
                        "workload.degraded",
                        "approval.granted",
                        "approval.denied",
                    )
                ),
                to=(f"{personal}:author", f"{personal}:releaser"),
            ),
            Rule(
                name="approvers hear about approval requests",
                match=Match(events=("approval.requested",)),
                to=(f"{personal}:approvers",),
            ),
        ]
    config = base or RoutingConfig()
    if slack:
        routes.append(
            Rule(
                name="failures in protected environments alert the squad",
                match=Match(outcomes=(Outcome.FAILURE,), protected=True),
                to=(f"slack:{config.alerts_channel}",),
            )
        )
    routes.append(Rule(name="everything on the console", to=("console",)))
    return config.model_copy(update={"routes": (*routes, *config.routes)})


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


def _glob(pattern: str, value: str) -> bool:
    return fnmatch.fnmatchcase(value, pattern)


def _any_glob(patterns: Iterable[str], value: str) -> bool:
    return any(_glob(p, value) for p in patterns)


def _event_matches(patterns: Sequence[str], event_type: str) -> bool:
    if not patterns:
        return True
    short = short_type(event_type)
    return any(_glob(p, event_type) or _glob(p, short) for p in patterns)


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
        not match.services or _any_glob(match.services, notice.service),
        not match.environments or _any_glob(match.environments, notice.environment),
        not match.squads or _any_glob(match.squads, notice.squad),
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
            and (not mute.services or _any_glob(mute.services, notice.service))
            and (not mute.environments or _any_glob(mute.environments, notice.environment))
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
        if person and _EMAIL.fullmatch(person):
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

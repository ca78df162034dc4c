"""The routing file (``FERRY_ROUTES_FILE``): its model, its validation with the line of each
mistake, and the built-in routing. What it decides is in :mod:`ferry_notifier.domain.routing`.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence
from typing import Any, Final, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ferry_notifier.domain.github import GITHUB_EVENTS
from ferry_notifier.domain.notice import Outcome

ROLES: Final = ("author", "releaser", "approvers")
EMAIL: Final = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_CHANNEL: Final = re.compile(r"^(#[a-z0-9{}_.-]+|[CGD][A-Z0-9]{6,})$")
_PLACEHOLDERS: Final = ("{squad}", "{service}", "{environment}")

DestinationKind = Literal["slack", "slack-dm", "email", "webhook", "github", "console"]


def glob(pattern: str, value: str) -> bool:
    """Whether ``value`` matches the shell-style ``pattern`` (case-sensitive)."""
    return fnmatch.fnmatchcase(value, pattern)


def any_glob(patterns: Iterable[str], value: str) -> bool:
    return any(glob(p, value) for p in patterns)


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
        "email:author|releaser|approvers|<address>, webhook:<http(s) URL>, github, console"
    )
    if value in ("console", "github"):
        return value
    if kind == "slack":
        if not _CHANNEL.fullmatch(target):
            raise ValueError(
                f"{value!r}: a Slack channel is '#name' (lower case) or a channel id; {expected}"
            )
        return value
    if kind in ("slack-dm", "email"):
        if target in ROLES or EMAIL.fullmatch(target):
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
        if not EMAIL.fullmatch(value):
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
            if not EMAIL.fullmatch(person):
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
            if any_glob(entry.services, service) and any_glob(entry.environments, environment):
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
    *, slack: bool, email: bool, github: bool = False, base: RoutingConfig | None = None
) -> RoutingConfig:
    """The built-in routing, for when no routing file is given (or it says
    ``include_defaults: true``: then its own rules follow the built-in ones, which use
    its ``alerts_channel``, ``protected_environments``, ``approvers`` and ``mutes``).

    The author and the releaser hear about their releases (Slack DM when Slack
    is configured, else email when SMTP is); approvers hear about approval
    requests; failures in protected environments go to the squad's alert
    channel; with GitHub (``FERRY_GITHUB_TOKEN``), every release becomes a GitHub
    Deployment on its application's repository; everything is printed on the console.
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
    if github:
        routes.append(
            Rule(
                name="releases are GitHub deployments",
                match=Match(events=GITHUB_EVENTS),
                to=("github",),
            )
        )
    routes.append(Rule(name="everything on the console", to=("console",)))
    return config.model_copy(update={"routes": (*routes, *config.routes)})

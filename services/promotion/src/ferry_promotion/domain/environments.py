"""Environments: their order (each promotes from the one before it), namespace and protection."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ferry_events import DNS_LABEL
from ferry_promotion.domain.yamldoc import parse_yaml, validate_document


@dataclass(frozen=True, slots=True)
class Environment:
    """One environment of the config repo."""

    name: str
    namespace: str = ""
    protected: bool = False


@dataclass(frozen=True, slots=True)
class Environments:
    """The environments in promotion order."""

    items: tuple[Environment, ...]

    def names(self) -> list[str]:
        return [e.name for e in self.items]

    def get(self, name: str) -> Environment | None:
        return next((e for e in self.items if e.name == name), None)

    def previous(self, name: str) -> Environment | None:
        """The environment before ``name`` (what it promotes from), or None for the first."""
        names = self.names()
        if name not in names:
            return None
        index = names.index(name)
        return self.items[index - 1] if index > 0 else None

    def namespace_for(self, environment: str, artifact_namespace: str, service: str) -> str:
        """The artifact's namespace, else the environment's default, else the service name."""
        if artifact_namespace:
            return artifact_namespace
        env = self.get(environment)
        if env is not None and env.namespace:
            return env.namespace
        return service


DEFAULT_ENVIRONMENTS = Environments(
    (Environment("dev"), Environment("staging"), Environment("prod", protected=True))
)


class _EnvironmentEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    namespace: str = ""
    protected: bool = False

    @field_validator("name")
    @classmethod
    def _dns(cls, value: str) -> str:
        if not DNS_LABEL.fullmatch(value):
            raise ValueError(f"{value!r} is not a lowercase DNS label (a-z, 0-9, '-')")
        return value

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        if value and not DNS_LABEL.fullmatch(value):
            raise ValueError(f"{value!r} must be empty or a lowercase DNS label")
        return value


class _EnvironmentsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    environments: list[_EnvironmentEntry] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> _EnvironmentsFile:
        seen: set[str] = set()
        for entry in self.environments:
            if entry.name in seen:
                raise ValueError(f"environment {entry.name!r} is listed twice")
            seen.add(entry.name)
        return self


def parse_environments(text: str | None) -> Environments:
    """``environments.yaml`` as :class:`Environments`; None (no file) gives the defaults.

    Raises :class:`~ferry_promotion.domain.yamldoc.DocumentError` naming line and field.
    """
    if text is None:
        return DEFAULT_ENVIRONMENTS
    doc = parse_yaml(text, "environments.yaml")
    parsed = validate_document(_EnvironmentsFile, doc, "environments.yaml")
    return Environments(
        tuple(Environment(e.name, e.namespace, e.protected) for e in parsed.environments)
    )

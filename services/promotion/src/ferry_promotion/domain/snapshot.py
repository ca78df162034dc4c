"""The config repo at one commit, as promotion reads it: plain data, loaded by the adapter.

Environments (``environments.yaml``), policy files (``policies/<service>.yaml``,
parsed or with the reason they are not), halts (``halts.yaml``), marks on bad
artifacts (``rejected/<service>.yaml``) and what runs where
(``environments/<env>/<namespace>/<service>/artifact.json``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ferry_events import ArtifactSpec
from ferry_promotion.domain.environments import DEFAULT_ENVIRONMENTS, Environments
from ferry_promotion.domain.policies import EMPTY_POLICY, Policy
from ferry_promotion.domain.safety import Halt, Mark, halt_of, mark_of


@dataclass(frozen=True, slots=True)
class Deployment:
    """What ``environments/<env>/<namespace>/<service>/artifact.json`` says runs."""

    environment: str
    namespace: str
    service: str
    artifact: ArtifactSpec


@dataclass(frozen=True, slots=True)
class PolicyFile:
    """A policy file as found in git: parsed, or the reason it could not be."""

    service: str
    text: str
    policy: Policy | None
    error: str | None


@dataclass(frozen=True)
class Snapshot:
    """The config repo at one commit."""

    commit: str | None
    fetched_at: float
    environments: Environments = DEFAULT_ENVIRONMENTS
    environments_error: str | None = None
    policies: dict[str, PolicyFile] = field(default_factory=dict)
    deployments: dict[tuple[str, str], Deployment] = field(default_factory=dict)
    #: ``halts.yaml``: environment (or ``*``) -> halt
    halts: dict[str, Halt] = field(default_factory=dict)
    #: ``rejected/<service>.yaml``: service -> artifact id -> mark
    marks: dict[str, dict[str, Mark]] = field(default_factory=dict)

    def halt_of(self, environment: str) -> Halt | None:
        """The halt that stops ``environment`` (its own or every environment's), if any."""
        return halt_of(self.halts, environment)

    def mark_of(self, service: str, artifact_id: str) -> Mark | None:
        """The mark on the artifact, if it is marked bad."""
        return mark_of(self.marks.get(service, {}), artifact_id)

    def running(self, environment: str, service: str) -> Deployment | None:
        return self.deployments.get((environment, service))

    def services(self) -> list[str]:
        names = {s for _, s in self.deployments} | set(self.policies)
        return sorted(names)

    def policy_for(self, service: str) -> tuple[Policy, str | None]:
        """The service's policy (empty when it has none) and the parse error, if any."""
        found = self.policies.get(service)
        if found is None:
            return EMPTY_POLICY, None
        if found.policy is None:
            return EMPTY_POLICY, found.error
        return found.policy, None

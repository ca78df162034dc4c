"""The config repo at one commit, as promotion reads it: plain data, loaded by the adapter.

Environments (``environments.yaml``), policy files (``policies/<service>.yaml``,
parsed or with the reason they are not) and what runs where
(``environments/<env>/<namespace>/<service>/artifact.json``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ferry_events import ArtifactSpec
from ferry_promotion.domain.environments import DEFAULT_ENVIRONMENTS, Environments
from ferry_promotion.domain.policies import EMPTY_POLICY, Policy


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

"""Which environments a watcher may report: its cluster's, and no other.

A workload says which environment it belongs to in its ``ferry.dev/environment``
annotation, and anyone who can create a Deployment in a watched cluster can
write that annotation. A dev cluster's watcher that believed it would report a
rollout "in prod" for whoever asked, and prod's promotion chain would count it.
So a watcher is told which environments run in its cluster
(``FERRY_CLUSTER_ENVIRONMENTS``), and facts about any other are dropped here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ferry_watcher.domain.tracker import Fact

__all__ = ["EnvironmentScope"]


@dataclass(frozen=True, slots=True)
class EnvironmentScope:
    """The environments a watcher reports; empty trusts every workload's annotation."""

    environments: frozenset[str] = frozenset()

    @classmethod
    def of(cls, environments: Iterable[str]) -> EnvironmentScope:
        return cls(frozenset(name for name in environments if name))

    @property
    def trusts_annotations(self) -> bool:
        """True when nothing limits what this watcher reports."""
        return not self.environments

    def allows(self, environment: str) -> bool:
        return self.trusts_annotations or environment in self.environments

    def split(self, facts: Sequence[Fact]) -> tuple[list[Fact], list[Fact]]:
        """``(facts to report, facts about an environment this cluster does not run)``."""
        kept: list[Fact] = []
        foreign: list[Fact] = []
        for fact in facts:
            (kept if self.allows(fact.stamp.environment) else foreign).append(fact)
        return kept, foreign

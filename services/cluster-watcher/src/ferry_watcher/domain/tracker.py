"""The rollout tracker: from what the cluster shows to the facts worth reporting, once each.

It keeps the latest view of every Ferry workload and pod and, whenever one
changes, re-evaluates the rollouts it touches. A fact's id is derived from
what it reports (workload uid, artifact id, release id, outcome, reason
family), so the tracker never reports the same fact twice, and a restarted
watcher, a re-list after ``410 Gone`` or a second replica produce the same
ids, which consumers drop as duplicates.

A rollout is one (artifact id, release id) on one workload. While it is not
complete, a pod of that rollout whose container cannot run fails it, once
per reason family (a crash loop is one fact however many restarts follow).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final, Literal

from ferry_events import derived_id
from ferry_watcher.domain.classify import reason_family
from ferry_watcher.domain.model import PodView, Stamp, WorkloadRef, WorkloadView

Outcome = Literal["started", "succeeded", "failed"]

#: Pod failures of one rollout reported at most (one per reason family; a few families at most).
MAX_FAILURES_PER_ROLLOUT: Final = 4


@dataclass(frozen=True, slots=True)
class LogSource:
    namespace: str
    pod: str
    container: str


@dataclass(frozen=True, slots=True)
class Fact:
    """One thing to report about one rollout."""

    outcome: Outcome
    event_id: str
    workload: WorkloadRef
    stamp: Stamp
    reason: str = ""
    message: str = ""
    container: str = ""
    restarts: int = 0
    logs_from: LogSource | None = None


def fact_id(uid: str, stamp: Stamp, outcome: Outcome, reason: str = "") -> str:
    """The id of the event that reports this fact: the same wherever and whenever it is seen."""
    return derived_id(
        "ferry.rollout", uid, stamp.artifact_id, stamp.release_id, outcome, reason_family(reason)
    )


@dataclass(slots=True)
class _Reported:
    """What was reported for a workload's current rollout (ids computed once)."""

    rollout: tuple[str, str]
    started_id: str
    succeeded_id: str
    ids: set[str]


PodKey = tuple[str, str]  # namespace, name
Scope = tuple[str, str]  # namespace, service


def _discard(index: dict[Scope, set[Any]], scope: Scope, member: object) -> None:
    """Remove ``member`` from ``index[scope]``; drop the scope once empty (no slow leak)."""
    members = index.get(scope)
    if members is not None:
        members.discard(member)
        if not members:
            del index[scope]


class RolloutTracker:
    """In-memory views of Ferry's workloads and pods, and the facts already reported."""

    def __init__(self) -> None:
        self._workloads: dict[str, WorkloadView] = {}
        self._pods: dict[PodKey, PodView] = {}
        self._workloads_by_scope: defaultdict[Scope, set[str]] = defaultdict(set)
        self._pods_by_scope: defaultdict[Scope, set[PodKey]] = defaultdict(set)
        #: uid -> what was reported for its current rollout. Earlier rollouts are forgotten.
        self._reported: dict[str, _Reported] = {}

    # ------------------------------------------------------------------ state

    @property
    def workload_count(self) -> int:
        return len(self._workloads)

    @property
    def pod_count(self) -> int:
        return len(self._pods)

    def workload_uids(self, kind: str, namespace: str | None = None) -> set[str]:
        return {
            uid
            for uid, view in self._workloads.items()
            if view.ref.kind == kind and (namespace is None or view.ref.namespace == namespace)
        }

    def pod_keys(self, namespace: str | None = None) -> set[PodKey]:
        return {key for key in self._pods if namespace is None or key[0] == namespace}

    # ------------------------------------------------------------------ changes

    def workload_seen(self, view: WorkloadView) -> list[Fact]:
        uid = view.ref.uid
        old = self._workloads.get(uid)
        if old is not None and self._scope(old) != self._scope(view):
            _discard(self._workloads_by_scope, self._scope(old), uid)
        self._workloads[uid] = view
        self._workloads_by_scope[self._scope(view)].add(uid)
        if old is not None and old.stamp == view.stamp and old.progress == view.progress:
            return []  # nothing the facts depend on changed (pod changes come through pod_seen)
        return self._evaluate(view)

    def workload_gone(self, uid: str) -> list[Fact]:
        view = self._workloads.pop(uid, None)
        if view is not None:
            _discard(self._workloads_by_scope, self._scope(view), uid)
        self._reported.pop(uid, None)
        return []

    def pod_seen(self, pod: PodView) -> list[Fact]:
        key = (pod.namespace, pod.name)
        old = self._pods.get(key)
        if old is not None:
            _discard(self._pods_by_scope, (old.namespace, old.stamp.service), key)
        self._pods[key] = pod
        self._pods_by_scope[(pod.namespace, pod.stamp.service)].add(key)
        if pod.failure is None:
            return []
        if (
            old is not None
            and old.failure is not None
            and old.stamp == pod.stamp
            and reason_family(old.failure.reason) == reason_family(pod.failure.reason)
        ):
            return []  # the same failure again (a crash loop restarting): already evaluated
        facts: list[Fact] = []
        for uid in list(self._workloads_by_scope.get((pod.namespace, pod.stamp.service), ())):
            view = self._workloads[uid]
            if self._owns(view, pod):
                facts += self._evaluate(view)
        return facts

    def pod_gone(self, namespace: str, name: str) -> list[Fact]:
        pod = self._pods.pop((namespace, name), None)
        if pod is not None:
            _discard(self._pods_by_scope, (pod.namespace, pod.stamp.service), (namespace, name))
        return []

    def forget_pods_except(self, keep: Iterable[PodKey], namespace: str | None) -> None:
        """After a re-list of pods: drop every cached pod in scope the list no longer has."""
        keep = set(keep)
        for key in self.pod_keys(namespace) - keep:
            self.pod_gone(*key)

    def forget_workloads_except(
        self, kind: str, keep: Iterable[str], namespace: str | None
    ) -> None:
        """After a re-list of one kind: drop every cached workload in scope the list lacks."""
        keep = set(keep)
        for uid in self.workload_uids(kind, namespace) - keep:
            self.workload_gone(uid)

    # ------------------------------------------------------------------ evaluation

    @staticmethod
    def _scope(view: WorkloadView) -> Scope:
        return view.ref.namespace, view.stamp.service

    @staticmethod
    def _owns(view: WorkloadView, pod: PodView) -> bool:
        if pod.stamp.rollout != view.stamp.rollout or pod.namespace != view.ref.namespace:
            return False
        if view.ref.uid in pod.owner_uids:
            return True
        selector = view.selector
        return bool(selector) and all(pod.labels.get(k) == v for k, v in selector.items())

    def _already(self, view: WorkloadView) -> _Reported:
        rollout = view.stamp.rollout
        entry = self._reported.get(view.ref.uid)
        if entry is None or entry.rollout != rollout:
            entry = _Reported(
                rollout,
                fact_id(view.ref.uid, view.stamp, "started"),
                fact_id(view.ref.uid, view.stamp, "succeeded"),
                set(),
            )
            self._reported[view.ref.uid] = entry
        return entry

    def _evaluate(self, view: WorkloadView) -> list[Fact]:
        entry = self._already(view)
        reported = entry.ids
        facts: list[Fact] = []
        ref, stamp = view.ref, view.stamp

        def add(fact: Fact) -> None:
            if fact.event_id not in reported:
                reported.add(fact.event_id)
                facts.append(fact)

        add(Fact("started", entry.started_id, ref, stamp))
        succeeded_id = entry.succeeded_id
        if view.progress.state == "succeeded":
            add(Fact("succeeded", succeeded_id, ref, stamp))
            return facts
        if succeeded_id in reported:
            return facts  # a finished rollout does not fail afterwards: that is not a rollout fact
        if view.progress.state == "failed":
            add(
                Fact(
                    "failed",
                    fact_id(ref.uid, stamp, "failed", view.progress.reason),
                    ref,
                    stamp,
                    reason=view.progress.reason,
                    message=view.progress.message,
                )
            )
        failures = sum(1 for f in reported if f != succeeded_id) - 1
        for key in sorted(self._pods_by_scope.get(self._scope(view), ())):
            if failures >= MAX_FAILURES_PER_ROLLOUT:
                break
            pod = self._pods[key]
            if pod.failure is None or not self._owns(view, pod):
                continue
            failure = pod.failure
            before = len(facts)
            add(
                Fact(
                    "failed",
                    fact_id(ref.uid, stamp, "failed", failure.reason),
                    ref,
                    stamp,
                    reason=failure.reason,
                    message=f"{ref.kind} {ref.name}: pod {pod.name}: {failure.message}",
                    container=failure.container,
                    restarts=failure.restarts,
                    logs_from=LogSource(pod.namespace, pod.name, failure.container)
                    if failure.wants_logs
                    else None,
                )
            )
            failures += len(facts) - before
        return facts

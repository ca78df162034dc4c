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
Once it succeeded, such a pod is no rollout fact any more: the workload is
*degraded*, reported once per rollout and reason family.

What a restart must not change: a workload first seen in the watcher's
initial list (``first_sight``) whose rollout Kubernetes already shows as
finished (succeeded, or failed by its status) is recorded as finished and its
result is not reported again, unless the status says it finished within
``catch_up`` (then it may have finished while no watcher watched, and its
result is reported under its usual id, a duplicate for consumers that had
it). A rollout still in progress at first sight is reported as usual.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from ferry_events import derived_id
from ferry_watcher.domain.classify import reason_family
from ferry_watcher.domain.model import PodView, Stamp, WorkloadRef, WorkloadView

Outcome = Literal["started", "succeeded", "failed", "degraded"]

#: Pod failures of one rollout reported at most (one per reason family; a few families at most),
#: as failures while it rolls out and as degradations after it succeeded.
MAX_FAILURES_PER_ROLLOUT: Final = 4

#: How recently a rollout found finished at first sight may have finished for its result to be
#: reported again (it may have finished while no watcher was watching).
DEFAULT_CATCH_UP: Final = timedelta(minutes=15)


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
    kind = "ferry.workload" if outcome == "degraded" else "ferry.rollout"
    return derived_id(
        kind, uid, stamp.artifact_id, stamp.release_id, outcome, reason_family(reason)
    )


@dataclass(slots=True)
class _Reported:
    """What was reported for a workload's current rollout (ids computed once)."""

    rollout: tuple[str, str]
    started_id: str
    succeeded_id: str
    #: the rollout facts reported (started, succeeded, failed ones)
    ids: set[str]
    #: the degradations reported after it succeeded
    degraded: set[str] = field(default_factory=set)


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

    def __init__(
        self,
        *,
        catch_up: timedelta = DEFAULT_CATCH_UP,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._catch_up = catch_up
        self._clock = clock
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

    def workload_seen(self, view: WorkloadView, *, first_sight: bool = False) -> list[Fact]:
        """``first_sight``: seen in the watcher's initial list, so what it shows may have
        happened before this watcher started (and been reported by the one before)."""
        uid = view.ref.uid
        if first_sight and uid not in self._reported and view.progress.state != "progressing":
            self._recall(view)
            recent = self._recent(view.progress.finished_at)
            facts = self._seen(view)
            return [self._result(view), *facts] if recent else facts
        return self._seen(view)

    def _seen(self, view: WorkloadView) -> list[Fact]:
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

    def _recent(self, finished_at: datetime | None) -> bool:
        return finished_at is not None and self._clock() - finished_at <= self._catch_up

    def _result(self, view: WorkloadView) -> Fact:
        """The result a finished rollout has by its status alone (succeeded, or failed)."""
        ref, stamp, progress = view.ref, view.stamp, view.progress
        if progress.state == "succeeded":
            return Fact("succeeded", self._already(view).succeeded_id, ref, stamp)
        return Fact(
            "failed",
            fact_id(ref.uid, stamp, "failed", progress.reason),
            ref,
            stamp,
            reason=progress.reason,
            message=progress.message,
        )

    def _recall(self, view: WorkloadView) -> None:
        """Record a rollout found finished as reported: the watcher before reported it."""
        entry = self._already(view)
        entry.ids |= {entry.started_id, self._result(view).event_id}

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
            if facts and facts[-1].outcome == "succeeded":
                # a pod still failing in the cache as the rollout completes is one the
                # controller replaced, or whose recovery is on its way: no degradation
                return facts
        if succeeded_id in reported:
            # a finished rollout does not fail afterwards: its pods failing degrade the workload
            return facts + self._pod_facts(view, "degraded", entry)
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
        return facts + self._pod_facts(view, "failed", entry)

    def _pod_facts(
        self, view: WorkloadView, outcome: Literal["failed", "degraded"], entry: _Reported
    ) -> list[Fact]:
        """A fact per reason family of the rollout's pods that cannot run, not yet reported."""
        ref, stamp, reported = view.ref, view.stamp, entry.ids
        if outcome == "failed":
            counted = len(reported - {entry.started_id, entry.succeeded_id})
        else:
            counted = len(entry.degraded)
        facts: list[Fact] = []
        for key in sorted(self._pods_by_scope.get(self._scope(view), ())):
            if counted >= MAX_FAILURES_PER_ROLLOUT:
                break
            pod = self._pods[key]
            if pod.failure is None or not self._owns(view, pod):
                continue
            failure = pod.failure
            event_id = fact_id(ref.uid, stamp, outcome, failure.reason)
            seen = entry.degraded if outcome == "degraded" else reported
            if event_id in seen:
                continue
            seen.add(event_id)
            counted += 1
            facts.append(
                Fact(
                    outcome,
                    event_id,
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
        return facts

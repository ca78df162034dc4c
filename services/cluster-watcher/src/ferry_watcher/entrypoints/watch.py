"""The watch loops: list, then watch from the list's resourceVersion, for each kind and namespace.

Each loop feeds what it sees to the :class:`RolloutTracker` and hands the
facts it returns to the reporter. Its first list after start is the tracker's
*first sight* (what it shows may have been reported by the watcher before).
On ``410 Gone`` it re-lists (the tracker reports only what it had not seen);
on a silent stream (no event and no bookmark within the inactivity timeout)
it reconnects at once; on any other failure it reconnects with capped
exponential backoff, resuming from the last resourceVersion it saw. A
malformed object or line is logged and skipped; the watch goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any, Protocol

from ferry_runtime import get_logger
from ferry_watcher.adapters.kube import Gone, KubeError, WatchEvent, WatchSilent
from ferry_watcher.domain import (
    KINDS,
    EnvironmentScope,
    Fact,
    Malformed,
    RolloutTracker,
    parse_pod,
    parse_workload,
)
from ferry_watcher.metrics import FOREIGN_FACTS, SKIPPED, TRACKED, WATCH_RESTARTS

log = get_logger(__name__)


class KubeReader(Protocol):
    async def list(self, kind: str, namespace: str | None) -> tuple[list[Any], str]: ...

    def watch(
        self,
        kind: str,
        namespace: str | None,
        resource_version: str,
        *,
        timeout_seconds: int,
        inactivity_timeout: float,
    ) -> AsyncIterator[WatchEvent]: ...


FactSink = Callable[[list[Fact]], None]


def _meta(obj: Any) -> dict[str, Any]:
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    return meta if isinstance(meta, dict) else {}


class ClusterWatcher:
    """Watches every kind in every namespace it is given (all when none)."""

    def __init__(
        self,
        kube: KubeReader,
        sink: FactSink,
        *,
        namespaces: Sequence[str] = (),
        kinds: Sequence[str] = KINDS,
        inactivity_timeout: float = 90.0,
        watch_timeout_seconds: int = 290,
        backoff_max: float = 30.0,
        tracker: RolloutTracker | None = None,
        scope: EnvironmentScope | None = None,
    ) -> None:
        self._kube = kube
        self._sink = sink
        self._scopes: list[str | None] = list(namespaces) or [None]
        self._kinds = list(kinds)
        self._inactivity = inactivity_timeout
        self._watch_timeout = watch_timeout_seconds
        self._backoff_max = backoff_max
        self.tracker = tracker or RolloutTracker()
        self._scope = scope or EnvironmentScope()
        self._tasks: list[asyncio.Task[None]] = []
        self._synced: set[tuple[str, str | None]] = set()
        self._all_synced = asyncio.Event()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        for namespace in self._scopes:
            for kind in self._kinds:
                self._tasks.append(
                    asyncio.create_task(self._run(kind, namespace), name=f"watch-{kind}")
                )
        log.info(
            "watching",
            kinds=self._kinds,
            namespaces=[ns for ns in self._scopes if ns] or "all",
        )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    @property
    def synced(self) -> bool:
        """True once every kind in every namespace has been listed once."""
        return self._all_synced.is_set()

    async def wait_synced(self, timeout: float = 30.0) -> None:
        await asyncio.wait_for(self._all_synced.wait(), timeout)

    # ------------------------------------------------------------------ one loop

    async def _run(self, kind: str, namespace: str | None) -> None:
        rv: str | None = None
        delay = 0.0
        while True:
            try:
                if rv is None:
                    items, rv = await self._kube.list(kind, namespace)
                    self._resync(kind, namespace, items)
                    self._mark_synced(kind, namespace)
                async for event in self._kube.watch(
                    kind,
                    namespace,
                    rv,
                    timeout_seconds=self._watch_timeout,
                    inactivity_timeout=self._inactivity,
                ):
                    delay = 0.0
                    rv = self._on_event(kind, event) or rv
                WATCH_RESTARTS.labels(kind, "ended").inc()
            except Gone as exc:
                WATCH_RESTARTS.labels(kind, "gone").inc()
                log.info(
                    "watch expired; re-listing", kind=kind, namespace=namespace, reason=str(exc)
                )
                rv = None
            except WatchSilent as exc:
                WATCH_RESTARTS.labels(kind, "silent").inc()
                log.warning("watch silent; reconnecting", kind=kind, reason=str(exc))
            except KubeError as exc:
                WATCH_RESTARTS.labels(kind, "error").inc()
                delay = min(max(delay * 2, 0.2), self._backoff_max)
                log.warning(
                    "watch failed; reconnecting",
                    kind=kind,
                    namespace=namespace,
                    error=str(exc),
                    retry_in_seconds=round(delay, 2),
                )
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))  # noqa: S311 - jitter
            except asyncio.CancelledError:
                raise
            except Exception:
                WATCH_RESTARTS.labels(kind, "error").inc()
                delay = min(max(delay * 2, 0.2), self._backoff_max)
                log.exception("watch loop failed; reconnecting", kind=kind, namespace=namespace)
                await asyncio.sleep(delay)

    def _mark_synced(self, kind: str, namespace: str | None) -> None:
        self._synced.add((kind, namespace))
        if len(self._synced) == len(self._kinds) * len(self._scopes):
            self._all_synced.set()

    # ------------------------------------------------------------------ feeding the tracker

    def _emit(self, facts: list[Fact]) -> None:
        TRACKED.labels("workloads").set(self.tracker.workload_count)
        TRACKED.labels("pods").set(self.tracker.pod_count)
        facts, foreign = self._scope.split(facts)
        for fact in foreign:
            FOREIGN_FACTS.labels(fact.outcome).inc()
            log.warning(
                "dropped a fact about an environment this cluster does not run",
                outcome=fact.outcome,
                environment=fact.stamp.environment[:63],
                trusted=sorted(self._scope.environments),
                workload=f"{fact.workload.kind}/{fact.workload.namespace}/{fact.workload.name}",
            )
        if facts:
            self._sink(facts)

    def _skip(self, kind: str, obj: Any, reason: str) -> None:
        SKIPPED.labels(kind).inc()
        meta = _meta(obj)
        log.warning(
            "skipped a malformed object",
            kind=kind,
            namespace=meta.get("namespace"),
            name=meta.get("name"),
            reason=reason,
        )

    def _resync(self, kind: str, namespace: str | None, items: Iterable[Any]) -> None:
        first_sight = (kind, namespace) not in self._synced
        keep: set[Any] = set()
        facts: list[Fact] = []
        for obj in items:
            meta = _meta(obj)
            if kind == "Pod":
                keep.add((meta.get("namespace"), meta.get("name")))
            else:
                keep.add(meta.get("uid"))
            try:
                facts += self._seen(kind, obj, first_sight=first_sight)
            except Malformed as exc:
                self._skip(kind, obj, str(exc))
        if kind == "Pod":
            self.tracker.forget_pods_except(keep, namespace)
        else:
            self.tracker.forget_workloads_except(kind, keep, namespace)
        self._emit(facts)

    def _seen(self, kind: str, obj: Any, *, first_sight: bool = False) -> list[Fact]:
        if kind == "Pod":
            pod = parse_pod(obj)
            if pod is None:
                meta = _meta(obj)
                return self.tracker.pod_gone(str(meta.get("namespace")), str(meta.get("name")))
            return self.tracker.pod_seen(pod)
        view = parse_workload(kind, obj)
        if view is None:
            return self.tracker.workload_gone(str(_meta(obj).get("uid")))
        return self.tracker.workload_seen(view, first_sight=first_sight)

    def _on_event(self, kind: str, event: WatchEvent) -> str | None:
        """Apply one watch event; return the resourceVersion it carries, if any."""
        if event.error:
            SKIPPED.labels(kind).inc()
            log.warning("skipped a malformed watch line", kind=kind, reason=event.error)
            return None
        rv = _meta(event.object).get("resourceVersion")
        rv = rv if isinstance(rv, str) and rv else None
        if event.type == "BOOKMARK":
            return rv
        try:
            if event.type == "DELETED":
                meta = _meta(event.object)
                if kind == "Pod":
                    self.tracker.pod_gone(str(meta.get("namespace")), str(meta.get("name")))
                else:
                    self.tracker.workload_gone(str(meta.get("uid")))
                self._emit([])
            elif event.type in ("ADDED", "MODIFIED"):
                self._emit(self._seen(kind, event.object))
            else:
                self._skip(kind, event.object, f"unknown watch event type {event.type!r}")
        except Malformed as exc:
            self._skip(kind, event.object, str(exc))
        return rv

"""Reporting facts as events on the broker, in the order they were seen, none dropped.

Facts wait in an in-memory queue; one worker takes what is waiting (up to
``batch`` facts), fetches the logs a failure wants (the container's last
lines, best effort), builds the events and publishes them on one channel,
in order, with their confirms in flight together; if the broker does not
confirm them all, the whole batch is published again after a backoff (the
ids are derived, so a repeat is a duplicate consumers drop).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Protocol

from ferry_events import CloudEvent, utcnow
from ferry_runtime import PublishFailed, get_logger
from ferry_watcher.adapters.kube import KubeError
from ferry_watcher.domain import Fact, reduce_log_lines
from ferry_watcher.domain.events import to_event
from ferry_watcher.metrics import FACTS, PENDING

log = get_logger(__name__)


class LogReader(Protocol):
    async def pod_log(self, namespace: str, pod: str, container: str, tail_lines: int) -> str: ...


PublishMany = Callable[[list[CloudEvent]], Awaitable[None]]


class Reporter:
    def __init__(
        self,
        publish_many: PublishMany,
        logs: LogReader,
        *,
        cluster: str,
        log_lines: int = 20,
        retry_max: float = 30.0,
        batch: int = 200,
    ) -> None:
        self._publish_many = publish_many
        self._batch = batch
        self._logs = logs
        self._cluster = cluster
        self._log_lines = log_lines
        self._retry_max = retry_max
        self._queue: asyncio.Queue[tuple[Fact, datetime]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def submit(self, facts: list[Fact]) -> None:
        now = utcnow()
        for fact in facts:
            self._queue.put_nowait((fact, now))
        PENDING.set(self._queue.qsize())

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="reporter")

    async def stop(self, timeout: float = 10.0) -> None:
        """Publish what is queued (up to ``timeout``), then stop."""
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout)
        if not self._queue.empty():
            log.warning("stopping with facts unpublished", pending=self._queue.qsize())
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._report(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()
                PENDING.set(self._queue.qsize())

    async def _read_logs(self, fact: Fact) -> list[str]:
        source = fact.logs_from
        if source is None:
            return []
        try:
            text = await asyncio.wait_for(
                self._logs.pod_log(source.namespace, source.pod, source.container, self._log_lines),
                10.0,
            )
        except (KubeError, TimeoutError) as exc:
            log.warning("could not read the container's logs", pod=source.pod, error=str(exc))
            return []
        return reduce_log_lines(text.splitlines(), self._log_lines)

    async def _report(self, batch: list[tuple[Fact, datetime]]) -> None:
        events = []
        for fact, observed_at in batch:
            logs = await self._read_logs(fact)
            events.append(to_event(fact, cluster=self._cluster, observed_at=observed_at, logs=logs))
        delay = 0.2
        while True:
            try:
                await self._publish_many(events)
                break
            except PublishFailed as exc:
                log.warning(
                    "rollout facts not published yet; retrying",
                    facts=len(events),
                    error=str(exc),
                    retry_in_seconds=delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_max)
        for (fact, _), event in zip(batch, events, strict=True):
            FACTS.labels(fact.outcome).inc()
            log.info(
                "rollout fact reported",
                event_type=event.type,
                event_id=event.id,
                service=fact.stamp.service,
                environment=fact.stamp.environment,
                workload=f"{fact.workload.kind}/{fact.workload.namespace}/{fact.workload.name}",
                artifact_id=fact.stamp.artifact_id,
                reason=fact.reason or None,
            )

"""The composition root: settings -> Kubernetes client, reporter, watch loops, runtime."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

from ferry_runtime import ServiceRuntime, configure_logging, get_logger
from ferry_watcher.adapters.kube import KubeApi, KubeError, connect
from ferry_watcher.adapters.reporter import Reporter
from ferry_watcher.domain import EnvironmentScope, RolloutTracker
from ferry_watcher.entrypoints.watch import ClusterWatcher
from ferry_watcher.settings import WatcherSettings

SERVICE = "cluster-watcher"
log = get_logger(__name__)


class WatcherApp:
    """One cluster-watcher process: a publisher only (it consumes no events)."""

    def __init__(self, settings: WatcherSettings) -> None:
        self.settings = settings
        self.runtime = ServiceRuntime(SERVICE, settings)
        self.kube: KubeApi | None = None
        self.reporter: Reporter | None = None
        self.watcher: ClusterWatcher | None = None
        self._boot: asyncio.Task[None] | None = None
        self._booted = asyncio.Event()
        self.runtime.on_start(self._start)
        self.runtime.on_stop(self._stop)
        self.runtime.readiness.add("kubernetes", self._synced)

    async def _synced(self) -> bool:
        return self.watcher is not None and self.watcher.synced

    async def _start(self) -> None:
        scope = EnvironmentScope.of(self.settings.environments)
        if scope.trusts_annotations:
            log.warning(
                "FERRY_CLUSTER_ENVIRONMENTS is not set: this watcher reports rollouts in any "
                "environment a workload's ferry.dev/environment annotation names, so whoever "
                "can create a workload in this cluster can report for any environment; set it "
                "to the environments this cluster runs (for example 'dev')",
                cluster=self.settings.cluster_name,
            )
        else:
            log.info(
                "reporting only this cluster's environments",
                cluster=self.settings.cluster_name,
                environments=sorted(scope.environments),
            )
        self._boot = asyncio.create_task(self._configure_and_watch(), name="watcher-boot")

    async def _configure_and_watch(self) -> None:
        """Configure the client (retrying: the kubeconfig may not be written yet), then watch."""
        s = self.settings
        delay = 0.5
        while self.kube is None:
            try:
                self.kube = await connect(
                    s.kubeconfig,
                    in_cluster=bool(s.kubernetes_service_host),
                    context=s.kube_context,
                    page_size=s.watch_list_page_size,
                )
            except KubeError as exc:
                log.warning(
                    "cannot configure the Kubernetes client; check KUBECONFIG "
                    "(or run inside a pod with a service account)",
                    kubeconfig=str(s.kubeconfig) if s.kubeconfig else None,
                    error=str(exc),
                    retry_in_seconds=delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, s.watch_backoff_max)
        self.reporter = Reporter(
            self.runtime.publisher.publish_many,
            self.kube,
            cluster=s.cluster_name,
            log_lines=s.failure_log_lines,
        )
        self.watcher = ClusterWatcher(
            self.kube,
            self.reporter.submit,
            namespaces=s.namespaces,
            inactivity_timeout=s.watch_inactivity_timeout,
            watch_timeout_seconds=s.watch_timeout_seconds,
            backoff_max=s.watch_backoff_max,
            scope=EnvironmentScope.of(s.environments),
            tracker=RolloutTracker(catch_up=timedelta(seconds=s.watch_catch_up_seconds)),
        )
        await self.reporter.start()
        await self.watcher.start()
        self._booted.set()
        log.info("cluster-watcher started", cluster=s.cluster_name, api=self.kube.host)

    async def _stop(self) -> None:
        if self._boot is not None and not self._boot.done():
            self._boot.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._boot
        if self.watcher is not None:
            await self.watcher.stop()
        if self.reporter is not None:
            await self.reporter.stop()
        if self.kube is not None:
            await self.kube.close()

    async def wait_synced(self, timeout: float = 30.0) -> None:
        """Wait until every kind has been listed once (for tests and tools)."""
        async with asyncio.timeout(timeout):
            await self._booted.wait()
            assert self.watcher is not None
            await self.watcher.wait_synced(timeout)


def build(settings: WatcherSettings | None = None) -> WatcherApp:
    settings = settings or WatcherSettings()
    configure_logging(SERVICE, level=settings.log_level, fmt=settings.log_format)
    return WatcherApp(settings)

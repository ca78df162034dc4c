"""The composition root of git-writer: settings in, a runnable service out.

Nothing else reads settings. Tests build the service in-process with
``build(GitWriterSettings(...))`` and run it with ``ferry_testing.running``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ferry_events import CloudEvent
from ferry_gitwriter import SERVICE
from ferry_gitwriter.adapters.repo import ConfigWriter, RemoteUnavailable, ensure_bare_remote
from ferry_gitwriter.domain.changes import Identity
from ferry_gitwriter.handlers import HANDLED, Backoff, GitWriter
from ferry_gitwriter.settings import GitWriterSettings
from ferry_runtime import ServiceRuntime, get_logger
from ferry_runtime.topology import SINGLE_ACTIVE_CONSUMERS

log = get_logger(__name__)


def load_settings() -> GitWriterSettings:
    """The settings from the environment (``FERRY_*``)."""
    return GitWriterSettings()


def build(
    settings: GitWriterSettings, *, before_push: Callable[[], None] | None = None
) -> ServiceRuntime:
    """The service, wired: consumes artifact, release and policy events in batches.

    ``before_push`` runs in the git thread just before each push (a test seam for
    provoking a concurrent push; production leaves it unset).
    """
    runtime = ServiceRuntime(SERVICE, settings)
    repo = ConfigWriter(
        settings.clone_dir(),
        settings.repo_url(),
        branch=settings.config_repo_branch,
        committer=Identity(settings.git_author_name, settings.git_author_email),
        timeout=settings.git_timeout,
        before_push=before_push,
    )

    async def publish(event: CloudEvent) -> None:
        await runtime.publisher.publish(event)

    writer = GitWriter(repo, publish, backoff=Backoff(attempts=settings.git_push_attempts))

    def prepare() -> None:
        if not settings.config_repo_url:
            ensure_bare_remote(settings.default_remote(), settings.config_repo_branch)
        repo.open()
        try:
            repo.sync()  # builds the index of Ferry-Event-Id trailers once
        except RemoteUnavailable as exc:
            log.warning("config repo not reachable yet; each batch will retry", error=str(exc))

    async def start() -> None:
        await asyncio.to_thread(prepare)

    async def stop() -> None:
        repo.close()

    async def opened() -> bool:
        return repo.opened

    runtime.on_start(start)
    runtime.on_stop(stop)
    runtime.readiness.add("config-repo", opened)
    runtime.subscribe_batches(
        list(HANDLED),
        writer.handle_batch,
        max_batch=settings.git_max_batch,
        # one writer of the config repo at a time, as the topology declares it for make run
        single_active_consumer=SERVICE in SINGLE_ACTIVE_CONSUMERS,
    )
    return runtime

"""The composition root of artifact-ingest: settings in, a runnable service out.

Nothing else reads settings. Tests build the service in-process with
``build(IngestSettings(...))`` and run it with ``ferry_testing.running``.
"""

from __future__ import annotations

from ferry_events import ArtifactPublished, CloudEvent
from ferry_ingest import SERVICE
from ferry_ingest.domain import Limits
from ferry_ingest.handlers import IngestHandler
from ferry_ingest.settings import IngestSettings
from ferry_runtime import ServiceRuntime


def load_settings() -> IngestSettings:
    """The settings from the environment (``FERRY_*``)."""
    return IngestSettings()


def limits(settings: IngestSettings) -> Limits:
    """What the validation domain accepts, from the settings."""
    return Limits(
        max_file_bytes=settings.ingest_max_file_bytes,
        max_total_bytes=settings.ingest_max_total_bytes,
        max_files_per_environment=settings.ingest_max_files_per_environment,
        environments=frozenset(settings.ingest_environments),
        allowed_kinds=frozenset(settings.ingest_allowed_kinds),
    )


def build(settings: IngestSettings) -> ServiceRuntime:
    """The service, wired: consumes ``artifact.published``, publishes the verdict."""
    runtime = ServiceRuntime(SERVICE, settings)

    async def publish(event: CloudEvent) -> None:
        await runtime.publisher.publish(event)

    handler = IngestHandler(publish, limits(settings))
    runtime.consume(
        {ArtifactPublished: handler.on_published}, concurrency=settings.ingest_concurrency
    )
    return runtime

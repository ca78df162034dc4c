"""The composition root of artifact-ingest: settings in, a runnable service out.

Nothing else reads settings. Tests build the service in-process with
``build(IngestSettings(...))`` and run it with ``ferry_testing.running``.
"""

from __future__ import annotations

from ferry_events import ArtifactPublished, CloudEvent
from ferry_ingest import SERVICE
from ferry_ingest.domain import CiIdentities, Limits, parse_identities
from ferry_ingest.handlers import IngestHandler
from ferry_ingest.settings import IngestSettings
from ferry_runtime import ServiceRuntime, get_logger

log = get_logger(__name__)


def load_settings() -> IngestSettings:
    """The settings from the environment (``FERRY_*``)."""
    return IngestSettings()


class ConfigurationError(Exception):
    """A setting the service cannot start with; the message says which and why."""


def ci_identities(settings: IngestSettings) -> CiIdentities | None:
    """The CI identities file, read and checked; ``None`` when it is not set."""
    path = settings.ci_identities_file
    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"FERRY_CI_IDENTITIES_FILE {path} cannot be read: {exc}") from exc
    try:
        return parse_identities(text, source=f"FERRY_CI_IDENTITIES_FILE {path}")
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from exc


def limits(settings: IngestSettings) -> Limits:
    """What the validation domain accepts, from the settings."""
    return Limits(
        max_file_bytes=settings.ingest_max_file_bytes,
        max_total_bytes=settings.ingest_max_total_bytes,
        max_files_per_environment=settings.ingest_max_files_per_environment,
        environments=frozenset(settings.ingest_environments),
        allowed_kinds=frozenset(settings.ingest_allowed_kinds),
        identities=ci_identities(settings),
    )


def build(settings: IngestSettings) -> ServiceRuntime:
    """The service, wired: consumes ``artifact.published``, publishes the verdict."""
    runtime = ServiceRuntime(SERVICE, settings)

    async def publish(event: CloudEvent) -> None:
        await runtime.publisher.publish(event)

    accepted = limits(settings)
    if accepted.identities is None:
        log.warning(
            "FERRY_CI_IDENTITIES_FILE is not set: any broker user that may publish "
            "ferry.artifact.published.v1 may publish builds of any service into any namespace"
        )
    else:
        log.info("CI identities loaded", identities=sorted(accepted.identities.grants))
    handler = IngestHandler(publish, accepted)
    runtime.subscribe(ArtifactPublished, handler.on_published)
    runtime.set_concurrency(settings.ingest_concurrency)
    return runtime

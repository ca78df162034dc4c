"""The entrypoint: an ``artifact.published`` delivery in, ``accepted`` or ``rejected`` out.

The decision is :func:`ferry_ingest.domain.validate`; this module only turns the
delivery into its input and its outcome into an event. The outcome event's id is
derived from the published event's id, so a redelivery publishes a duplicate
with the same id, which consumers drop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial

from ferry_events import ArtifactAccepted, ArtifactPublished, ArtifactRejected, CloudEvent
from ferry_ingest import SOURCE
from ferry_ingest.domain import Accepted, Limits, Outcome, validate
from ferry_runtime import Delivery, get_logger

log = get_logger(__name__)

Publish = Callable[[CloudEvent], Awaitable[None]]


class IngestHandler:
    """Validates published artifacts and publishes the verdict."""

    def __init__(self, publish: Publish, limits: Limits) -> None:
        self._publish = publish
        self._limits = limits

    async def on_published(self, delivery: Delivery[ArtifactPublished]) -> None:
        """Handle one ``ferry.artifact.published.v1``."""
        published = delivery.data
        # YAML parsing of up to a few MiB is CPU work: keep the event loop (and the
        # broker heartbeats, and /readyz) responsive while it runs.
        # The broker checked user_id against the publishing connection's user: it is who
        # published, not what the publisher claims (see domain/identities.py).
        identity = delivery.user_id
        outcome = await asyncio.to_thread(
            partial(validate, identity=identity),
            published.artifact,
            published.manifests,
            self._limits,
        )
        event = CloudEvent.new(to_event(outcome), source=SOURCE, cause=delivery.event)
        await self._publish(event)
        if isinstance(outcome, Accepted):
            log.info(
                "artifact accepted",
                artifact_id=outcome.artifact.id,
                service=outcome.artifact.service,
                environments=sorted(outcome.manifests),
                identity=identity,
                published_id=event.id,
            )
        else:
            log.info(
                "artifact rejected",
                artifact_id=outcome.artifact_id,
                service=outcome.service,
                reasons=[f"{r.code}: {r.message}" for r in outcome.reasons],
                identity=identity,
                published_id=event.id,
            )


def to_event(outcome: Outcome) -> ArtifactAccepted | ArtifactRejected:
    """The event data that announces ``outcome``."""
    if isinstance(outcome, Accepted):
        return ArtifactAccepted(artifact=outcome.artifact, manifests=outcome.manifests)
    return ArtifactRejected(
        artifact_id=outcome.artifact_id,
        service=outcome.service,
        squad=outcome.squad,
        author_email=outcome.author_email,
        branch=outcome.branch,
        reasons=list(outcome.reasons),
    )

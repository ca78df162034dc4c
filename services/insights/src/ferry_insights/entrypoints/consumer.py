"""The event consumer: every event insights projects, translated into one ``project`` call."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy.exc import DBAPIError

from ferry_events import (
    ApprovalDenied,
    ApprovalGranted,
    ApprovalRequested,
    ArtifactAccepted,
    ArtifactRejected,
    ArtifactStored,
    EventData,
    ReleaseApproved,
    ReleaseCommitted,
    ReleaseFailed,
    ReleaseRejected,
    ReleaseRequested,
    RolloutFailed,
    RolloutStarted,
    RolloutSucceeded,
    utcnow,
)
from ferry_insights.service_layer.use_cases import Projections, project
from ferry_runtime import Delivery, Handler, TemporaryError, get_logger

log = get_logger(__name__)

#: What insights consumes: artifacts, releases, approvals and rollouts. (Policy, halt and mark
#: events change no projection.)
CONSUMED: tuple[type[EventData], ...] = (
    ArtifactAccepted,
    ArtifactRejected,
    ArtifactStored,
    ReleaseRequested,
    ReleaseApproved,
    ReleaseRejected,
    ApprovalRequested,
    ApprovalGranted,
    ApprovalDenied,
    ReleaseCommitted,
    ReleaseFailed,
    RolloutStarted,
    RolloutSucceeded,
    RolloutFailed,
)


class Projector:
    def __init__(self, store: Projections) -> None:
        self._store = store

    async def handle(self, delivery: Delivery) -> None:
        try:
            fresh = await project(self._store, delivery.event, delivery.data, utcnow())
        except (DBAPIError, OSError) as exc:  # the database is unreachable or locked
            raise TemporaryError(f"insights database unavailable: {exc}", code="store") from exc
        if not fresh:
            log.info("already projected; nothing to do")

    def routes(self) -> Mapping[type[EventData], Handler]:
        return dict.fromkeys(CONSUMED, self.handle)

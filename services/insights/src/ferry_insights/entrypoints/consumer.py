"""The event consumer: every event insights projects, translated into one ``project`` call."""

from __future__ import annotations

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
from ferry_insights.adapters.db import database_failure
from ferry_insights.domain.facts import Unprojectable
from ferry_insights.service_layer.use_cases import Projections, project
from ferry_runtime import Delivery, PermanentError, ServiceRuntime, TemporaryError, get_logger

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

    async def handle(self, delivery: Delivery[EventData]) -> None:
        try:
            fresh = await project(self._store, delivery.event, delivery.data, utcnow())
        except Unprojectable as exc:  # it would fail the same way every time
            raise PermanentError(
                f"the event does not fit insights' projections: {exc}", code="unprojectable"
            ) from exc
        except OSError as exc:  # the database is unreachable or locked
            raise TemporaryError(f"insights database unavailable: {exc}", code="store") from exc
        except Exception as exc:
            failure = database_failure(exc)
            if failure is None:
                raise
            if failure.refused_values:
                raise PermanentError(
                    f"the database refused the event's values: {failure.detail}",
                    code="unprojectable",
                ) from exc
            raise TemporaryError(
                f"insights database unavailable: {failure.detail}", code="store"
            ) from exc
        if not fresh:
            log.info("already projected; nothing to do")

    def subscribe(self, runtime: ServiceRuntime) -> None:
        """Subscribe :meth:`handle` to every event type in :data:`CONSUMED`."""
        for model in CONSUMED:
            runtime.subscribe(model, self.handle)

"""Which event types each Ferry service consumes: the bindings of its queue on the exchange.

This is part of the contract, not a detail of each service: ``ferry dlq replay`` republishes
a dead letter only under a routing key that the service's own queue consumes, so a message
cannot be laundered through one service's dead-letter queue into an event type that service
never takes. A test pins that every service's composition root consumes exactly what is
listed here.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from ferry_events.types import (
    ApprovalDenied,
    ApprovalGranted,
    ApprovalRequested,
    ArtifactAccepted,
    ArtifactMarkChangeRequested,
    ArtifactPublished,
    ArtifactRejected,
    ArtifactStored,
    EventData,
    HaltChangeRequested,
    PolicyChanged,
    PolicyChangeRequested,
    ReleaseApproved,
    ReleaseCommitted,
    ReleaseFailed,
    ReleaseRejected,
    ReleaseRequested,
    RolloutFailed,
    RolloutStarted,
    RolloutSucceeded,
)


def _types(*models: type[EventData]) -> frozenset[str]:
    return frozenset(model.event_type for model in models)


#: Service name -> the event types (routing keys) its queue is bound to.
SUBSCRIPTIONS: Final[Mapping[str, frozenset[str]]] = MappingProxyType(
    {
        "artifact-ingest": _types(ArtifactPublished),
        "git-writer": _types(
            ArtifactAccepted,
            ReleaseApproved,
            PolicyChangeRequested,
            HaltChangeRequested,
            ArtifactMarkChangeRequested,
        ),
        "promotion": _types(
            ReleaseRequested,
            ApprovalGranted,
            ArtifactStored,
            ReleaseCommitted,
            ReleaseFailed,
            RolloutStarted,
            RolloutSucceeded,
            RolloutFailed,
            PolicyChanged,
        ),
        "cluster-watcher": frozenset(),
        "notifier": _types(
            ArtifactRejected,
            ArtifactStored,
            ReleaseApproved,
            ReleaseRejected,
            ReleaseCommitted,
            ReleaseFailed,
            ApprovalRequested,
            ApprovalGranted,
            ApprovalDenied,
            RolloutStarted,
            RolloutSucceeded,
            RolloutFailed,
            PolicyChanged,
        ),
    }
)


def consumed_by(service: str) -> frozenset[str] | None:
    """The routing keys ``service``'s queue consumes; None for a service Ferry does not know."""
    return SUBSCRIPTIONS.get(service)

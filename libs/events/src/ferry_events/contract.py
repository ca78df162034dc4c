"""Who publishes each event type and who consumes it: the event contract, in one table.

Every event goes to the topic exchange (``ferry.events`` unless ``FERRY_EXCHANGE`` says
otherwise) with its type name as the routing key, so one event type is one channel.
:data:`CONTRACT` names, per event type, the one party that publishes it and the services
whose queues bind it. ``deploy/rabbitmq/definitions.json`` gives each identity write
permission for exactly what it publishes here, ``docs/asyncapi.yaml`` is generated from
it (:mod:`ferry_events.asyncapi`), and ``tests/test_event_contract.py`` checks it against
what each service's runtime really subscribes to and what its code publishes.

A party is a service name (as its queue and its broker identity are named) or ``ci``,
a CI job running ``ferry artifact push``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ferry_events.types import (
    ApprovalDenied,
    ApprovalGranted,
    ApprovalRequested,
    ArtifactAccepted,
    ArtifactMarkChanged,
    ArtifactMarkChangeRequested,
    ArtifactPublished,
    ArtifactRejected,
    ArtifactStored,
    EventData,
    HaltChanged,
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
    WorkloadDegraded,
)

CI: Final = "ci"
ARTIFACT_INGEST: Final = "artifact-ingest"
GIT_WRITER: Final = "git-writer"
PROMOTION: Final = "promotion"
CLUSTER_WATCHER: Final = "cluster-watcher"
NOTIFIER: Final = "notifier"
INSIGHTS: Final = "insights"

#: Every party of the contract, CI first, then the services in the order events flow.
PARTIES: Final = (CI, ARTIFACT_INGEST, GIT_WRITER, PROMOTION, CLUSTER_WATCHER, NOTIFIER, INSIGHTS)

#: What a party is, for people reading the generated document.
PARTY_DESCRIPTIONS: Final[dict[str, str]] = {
    CI: "a CI job running `ferry artifact push` (the ferry CLI)",
    ARTIFACT_INGEST: "artifact-ingest: validates what CI built",
    GIT_WRITER: "git-writer: the only writer of the config repository",
    PROMOTION: "promotion: release requests, approvals, policies and the API",
    CLUSTER_WATCHER: "cluster-watcher: reports what each cluster did with a release",
    NOTIFIER: "notifier: tells people (Slack, e-mail, webhooks)",
    INSIGHTS: "insights: the read side (DORA metrics, the dashboard); publishes nothing",
}


@dataclass(frozen=True)
class Route:
    """One event type: who publishes it, whose queues bind its routing key."""

    event: type[EventData]
    publisher: str
    consumers: tuple[str, ...] = ()

    @property
    def routing_key(self) -> str:
        return self.event.event_type


_NOTIFY: Final = (NOTIFIER, INSIGHTS)

#: The event contract: one route per event type, in the order of ``ALL_EVENT_TYPES``.
CONTRACT: Final[tuple[Route, ...]] = (
    Route(ArtifactPublished, CI, (ARTIFACT_INGEST,)),
    Route(ArtifactAccepted, ARTIFACT_INGEST, (GIT_WRITER, INSIGHTS)),
    Route(ArtifactRejected, ARTIFACT_INGEST, _NOTIFY),
    Route(ArtifactStored, GIT_WRITER, (PROMOTION, NOTIFIER, INSIGHTS)),
    Route(ReleaseRequested, PROMOTION, (PROMOTION, INSIGHTS)),
    Route(ReleaseApproved, PROMOTION, (GIT_WRITER, NOTIFIER, INSIGHTS)),
    Route(ReleaseRejected, PROMOTION, _NOTIFY),
    Route(ApprovalRequested, PROMOTION, _NOTIFY),
    Route(ApprovalGranted, PROMOTION, (PROMOTION, NOTIFIER, INSIGHTS)),
    Route(ApprovalDenied, PROMOTION, _NOTIFY),
    Route(ReleaseCommitted, GIT_WRITER, (PROMOTION, NOTIFIER, INSIGHTS)),
    Route(ReleaseFailed, GIT_WRITER, (PROMOTION, NOTIFIER, INSIGHTS)),
    Route(PolicyChangeRequested, PROMOTION, (GIT_WRITER,)),
    Route(PolicyChanged, GIT_WRITER, (PROMOTION, NOTIFIER)),
    Route(HaltChangeRequested, PROMOTION, (GIT_WRITER,)),
    Route(HaltChanged, GIT_WRITER, (PROMOTION, NOTIFIER)),
    Route(ArtifactMarkChangeRequested, PROMOTION, (GIT_WRITER,)),
    Route(ArtifactMarkChanged, GIT_WRITER, (PROMOTION,)),
    Route(RolloutStarted, CLUSTER_WATCHER, (PROMOTION, NOTIFIER, INSIGHTS)),
    Route(RolloutSucceeded, CLUSTER_WATCHER, (PROMOTION, NOTIFIER, INSIGHTS)),
    Route(RolloutFailed, CLUSTER_WATCHER, (PROMOTION, NOTIFIER, INSIGHTS)),
    Route(WorkloadDegraded, CLUSTER_WATCHER, (NOTIFIER,)),
)


def route(event_type: str) -> Route:
    """The route of one event type name (``KeyError`` for a type the contract lacks)."""
    for candidate in CONTRACT:
        if candidate.routing_key == event_type:
            return candidate
    raise KeyError(event_type)


def published_by(party: str) -> tuple[str, ...]:
    """The event type names ``party`` publishes, sorted."""
    return tuple(sorted(r.routing_key for r in CONTRACT if r.publisher == party))


def consumed_by(party: str) -> tuple[str, ...]:
    """The event type names ``party``'s queue binds, sorted (as the runtime binds them)."""
    return tuple(sorted(r.routing_key for r in CONTRACT if party in r.consumers))

"""Promotion's event consumers: one per event type it consumes, each a thin translation.

A consumer checks what the transport cannot (an auto-release must name its
artifact), keeps decisions about one service and environment in arrival order,
and calls the service layer, where each use case is idempotent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from ferry_events import (
    ApprovalGranted,
    ArtifactMarkChanged,
    ArtifactStored,
    EventData,
    HaltChanged,
    Intent,
    PolicyChanged,
    ReleaseCommitted,
    ReleaseFailed,
    ReleaseRequested,
    RolloutFact,
    RolloutFailed,
    RolloutStarted,
    RolloutSucceeded,
)
from ferry_promotion.service_layer.deciding import Decider
from ferry_promotion.service_layer.policies import Policies
from ferry_promotion.service_layer.requesting import Requests
from ferry_promotion.service_layer.results import Results
from ferry_promotion.service_layer.safety import Safety
from ferry_runtime import Delivery, Handler, PermanentError


class Consumers:
    """The consumer side of promotion."""

    def __init__(
        self,
        requests: Requests,
        decider: Decider,
        results: Results,
        policies: Policies,
        safety: Safety,
    ) -> None:
        self.requests = requests
        self.decider = decider
        self.results = results
        self.policies = policies
        self.safety = safety
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    def _ordered(self, service: str, environment: str) -> asyncio.Lock:
        """The lock that keeps decisions about one service and environment in arrival order.

        The consumer may run several workers; each takes the next message and runs its
        handler up to the first ``await`` before the next worker runs, and handlers take
        this lock before any ``await``, so asyncio's first-in-first-out lock hands it to
        requests in the order they arrived (as one worker would).
        """
        return self._locks.setdefault((service, environment), asyncio.Lock())

    def routes(self) -> Mapping[type[EventData], Handler]:
        return {
            ReleaseRequested: self.on_requested,
            ApprovalGranted: self.on_approval_granted,
            ArtifactStored: self.on_artifact_stored,
            ReleaseCommitted: self.on_committed,
            ReleaseFailed: self.on_failed,
            RolloutStarted: self.on_rollout,
            RolloutSucceeded: self.on_rollout,
            RolloutFailed: self.on_rollout,
            PolicyChanged: self.on_policy_changed,
            HaltChanged: self.on_safety_changed,
            ArtifactMarkChanged: self.on_safety_changed,
        }

    async def on_requested(self, delivery: Delivery) -> None:
        data = delivery.data
        assert isinstance(data, ReleaseRequested)
        if data.intent is Intent.AUTO_RELEASE and not data.artifact_id:
            raise PermanentError("an auto-release request must name its artifactId", code="invalid")
        async with self._ordered(data.service, data.environment):
            await self.requests.take(delivery.event, data)

    async def on_approval_granted(self, delivery: Delivery) -> None:
        data = delivery.data
        assert isinstance(data, ApprovalGranted)
        async with self._ordered(data.service, data.environment):
            await self.decider.decide(data.release_id, delivery.event)

    async def on_artifact_stored(self, delivery: Delivery) -> None:
        data = delivery.data
        assert isinstance(data, ArtifactStored)
        await self.policies.artifact_stored(delivery.event, data)

    async def on_committed(self, delivery: Delivery) -> None:
        data = delivery.data
        assert isinstance(data, ReleaseCommitted)
        await self.results.committed(delivery.event, data)

    async def on_failed(self, delivery: Delivery) -> None:
        data = delivery.data
        assert isinstance(data, ReleaseFailed)
        await self.results.failed(delivery.event, data)

    async def on_rollout(self, delivery: Delivery) -> None:
        data = delivery.data
        assert isinstance(data, RolloutFact)
        waiting = await self.results.rollout(delivery.event, data)
        for release in waiting:
            async with self._ordered(data.service, release.environment):
                await self.results.redecide(delivery.event, data, release)

    async def on_policy_changed(self, delivery: Delivery) -> None:
        data = delivery.data
        assert isinstance(data, PolicyChanged)
        await self.policies.changed(delivery.event, data)

    async def on_safety_changed(self, delivery: Delivery) -> None:
        data = delivery.data
        assert isinstance(data, HaltChanged | ArtifactMarkChanged)
        await self.safety.changed(delivery.event, data)

"""Promotion's event consumers: one per event type it consumes, each a thin translation.

A consumer checks what the transport cannot (an auto-release must name its
artifact), keeps decisions about one service and environment in arrival order,
and calls the service layer, where each use case is idempotent.
"""

from __future__ import annotations

import asyncio

from ferry_events import (
    ApprovalGranted,
    ArtifactMarkChanged,
    ArtifactStored,
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
from ferry_runtime import Delivery, PermanentError, ServiceRuntime


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

    def ordered(self, service: str, environment: str) -> asyncio.Lock:
        """The same lock, for decisions made on a clock (an ended soak) in this process."""
        return self._ordered(service, environment)

    def subscribe(self, runtime: ServiceRuntime) -> None:
        """Subscribe each consumer to the event type it takes."""
        runtime.subscribe(ReleaseRequested, self.on_requested)
        runtime.subscribe(ApprovalGranted, self.on_approval_granted)
        runtime.subscribe(ArtifactStored, self.on_artifact_stored)
        runtime.subscribe(ReleaseCommitted, self.on_committed)
        runtime.subscribe(ReleaseFailed, self.on_failed)
        runtime.subscribe(RolloutStarted, self.on_rollout)
        runtime.subscribe(RolloutSucceeded, self.on_rollout)
        runtime.subscribe(RolloutFailed, self.on_rollout)
        runtime.subscribe(PolicyChanged, self.on_policy_changed)
        runtime.subscribe(HaltChanged, self.on_safety_changed)
        runtime.subscribe(ArtifactMarkChanged, self.on_safety_changed)

    async def on_requested(self, delivery: Delivery[ReleaseRequested]) -> None:
        data = delivery.data
        if data.intent is Intent.AUTO_RELEASE and not data.artifact_id:
            raise PermanentError("an auto-release request must name its artifactId", code="invalid")
        async with self._ordered(data.service, data.environment):
            await self.requests.take(delivery.event, data)

    async def on_approval_granted(self, delivery: Delivery[ApprovalGranted]) -> None:
        data = delivery.data
        async with self._ordered(data.service, data.environment):
            await self.decider.decide(data.release_id, delivery.event)

    async def on_artifact_stored(self, delivery: Delivery[ArtifactStored]) -> None:
        data = delivery.data
        await self.policies.artifact_stored(delivery.event, data)

    async def on_committed(self, delivery: Delivery[ReleaseCommitted]) -> None:
        data = delivery.data
        await self.results.committed(delivery.event, data)

    async def on_failed(self, delivery: Delivery[ReleaseFailed]) -> None:
        data = delivery.data
        await self.results.failed(delivery.event, data)

    async def on_rollout(self, delivery: Delivery[RolloutFact]) -> None:
        data = delivery.data
        waiting = await self.results.rollout(delivery.event, data)
        for release in waiting:
            async with self._ordered(data.service, release.environment):
                await self.results.redecide(delivery.event, data, release)

    async def on_policy_changed(self, delivery: Delivery[PolicyChanged]) -> None:
        data = delivery.data
        await self.policies.changed(delivery.event, data)

    async def on_safety_changed(
        self, delivery: Delivery[HaltChanged | ArtifactMarkChanged]
    ) -> None:
        data = delivery.data
        await self.safety.changed(delivery.event, data)

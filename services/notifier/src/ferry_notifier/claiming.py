"""Waiting for claims that another replica holds (see :mod:`ferry_notifier.adapters.claims`).

A claim held by another replica means it is doing this very thing right now: the
waiter looks again, a little later each time (never past the holder's lease),
until the holder has settled (its record or thread is there) or its lease ran out
(then the waiter takes the claim over). While it waits it keeps its own claim,
if it has one, alive.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from ferry_notifier.adapters.claims import THREAD, ClaimKey, Held, Taken
from ferry_notifier.adapters.deployments import DeploymentClaim
from ferry_notifier.adapters.store import DeliveryRecord, Store, Thread
from ferry_runtime import get_logger

log = get_logger(__name__)


class ClaimLost(Exception):
    """Our lease ran out and another replica took the claim over; it sends now."""


@dataclass(frozen=True, slots=True)
class Claiming:
    """How this replica claims: its name, the lease in seconds, how often it looks again."""

    owner: str
    lease: float = 60.0
    poll: float = 0.05
    poll_max: float = 1.0


@dataclass(frozen=True, slots=True)
class Lease:
    """A claim this replica holds: what, and under which owner name.

    The owner name is the replica's plus a part of its own for each delivery, so that
    two deliveries handled at once by one replica wait for each other as two replicas do.
    """

    key: ClaimKey
    owner: str
    #: Taken over from a replica whose lease ran out: it may have sent before it stopped.
    taken_over: bool = False


class Claimant:
    """Takes claims for one replica, waiting out the ones that others hold."""

    def __init__(self, store: Store, claiming: Claiming) -> None:
        self._store = store
        self._c = claiming
        #: The prefix of this process's owner names: one per process, one more part per
        #: delivery. Claims under it belong to live siblings (see ``claims.take``).
        self._process = f"{claiming.owner}/{uuid.uuid4().hex[:6]}/"[-100:]

    @property
    def lease(self) -> float:
        """Seconds a claim lasts unless renewed."""
        return self._c.lease

    async def renew(self, lease: Lease, seconds: float) -> None:
        """Keep our claim for ``seconds`` plus a lease; :class:`ClaimLost` when it is not ours."""
        if not await self._store.renew_claim(lease.key, lease.owner, seconds + self._c.lease):
            raise ClaimLost

    async def keep(self, lease: Lease, seconds: float) -> bool:
        """Like :meth:`renew`; False (not an error) when the claim is no longer ours."""
        return await self._store.renew_claim(lease.key, lease.owner, seconds + self._c.lease)

    async def release(self, lease: Lease) -> None:
        await self._store.release_claim(lease.key, lease.owner)

    async def delivery(self, claim: ClaimKey, *, retry_failed: bool) -> DeliveryRecord | Lease:
        """The claim on a delivery, or its record once another replica has settled it."""
        owner = f"{self._process}{uuid.uuid4().hex[:8]}"
        pause = self._c.poll
        while True:
            outcome = await self._store.claim_delivery(
                claim.subject,
                claim.destination,
                owner,
                self._c.lease,
                retry_failed=retry_failed,
                siblings=self._process,
            )
            if isinstance(outcome, DeliveryRecord):
                return outcome
            if isinstance(outcome, Taken):
                if outcome.taken_over_from:
                    log.warning(
                        "taking over a delivery whose lease ran out",
                        destination=claim.destination,
                        previous_owner=outcome.taken_over_from,
                    )
                return Lease(claim, owner, taken_over=bool(outcome.taken_over_from))
            pause = await self._wait(outcome, pause)

    async def _wait(self, held: Held, pause: float, keep: Lease | None = None) -> float:
        """Sleep a little while another replica holds a claim (never past its lease), keeping
        our own claim ``keep`` alive meanwhile; returns the next pause."""
        left = (held.until - datetime.now(UTC)).total_seconds()
        sleep = max(0.005, min(pause, left + 0.01))
        if keep is not None:
            await self.renew(keep, sleep)
        await asyncio.sleep(sleep)
        return min(pause * 2, self._c.poll_max)

    async def thread(self, key: str, destination: str, keep: Lease) -> Thread | Lease:
        """The release's thread, or the claim to start it (the delivery ``keep`` owns it)."""
        pause = self._c.poll
        while True:
            found = await self._store.claim_thread(
                key, destination, keep.owner, self._c.lease, siblings=self._process
            )
            if isinstance(found, Thread):
                return found
            if isinstance(found, Taken):
                if found.taken_over_from:
                    log.warning(
                        "starting a thread whose first claim's lease ran out",
                        destination=destination,
                        previous_owner=found.taken_over_from,
                    )
                return Lease(ClaimKey(THREAD, key, destination), keep.owner)
            pause = await self._wait(found, pause, keep=keep)

    async def anchor(self, event_id: str, destination: str, keep: Lease) -> DeliveryRecord | None:
        """The record of a flood's first message; waits while another replica sends it."""
        pause = self._c.poll
        while True:
            found = await self._store.delivery_or_holder(event_id, destination)
            if not isinstance(found, Held):
                return found
            pause = await self._wait(found, pause, keep=keep)

    async def deployment(self, release_id: str, repository: str, keep: Lease) -> DeploymentClaim:
        """The claim on a release's GitHub deployment on ``repository``, under the owner of
        the delivery ``keep``; waits while another delivery holds it."""
        pause = self._c.poll
        while True:
            found = await self._store.claim_deployment(
                release_id, repository, keep.owner, self._c.lease, siblings=self._process
            )
            if isinstance(found, DeploymentClaim):
                if found.taken_over_from:
                    log.warning(
                        "taking over a GitHub deployment whose claim's lease ran out",
                        repository=repository,
                        previous_owner=found.taken_over_from,
                    )
                return found
            pause = await self._wait(found, pause, keep=keep)

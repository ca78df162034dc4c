"""Soaks that end: requests waiting on a clock (``releases.due_at``), decided again when due.

A request waiting for a soak (policy ``promotionChain.soak``) has a due time in the database,
not only in a process: on every round of the timer, one replica claims the due ones (moving
each a lease ahead, in the same transaction that finds it; rows another replica holds are
skipped) and decides them again. A replica that dies between the claim and the decision
leaves the row to the next replica after the lease; a restart loses nothing. A decision is
idempotent anyway (its cause id derives from the release and its due time, and the release
is locked and must still be open), so a request is never decided twice.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import timedelta

from ferry_events import CloudEvent, derived_id
from ferry_promotion.domain.release import Release
from ferry_promotion.service_layer.deciding import Decider
from ferry_promotion.service_layer.outcomes import SOURCE
from ferry_promotion.service_layer.ports import Clock
from ferry_promotion.service_layer.unit_of_work import UnitOfWorkFactory
from ferry_runtime.logging import get_logger

log = get_logger(__name__)

#: The type of the cause a due decision is recorded under (in the inbox; never published).
DUE = "ferry.promotion.due"

Ordered = Callable[[str, str], AbstractAsyncContextManager[object]]


class Soaks:
    """Decides again the waiting requests whose due time has come (run by the timer)."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        decider: Decider,
        *,
        clock: Clock,
        lease: timedelta = timedelta(minutes=2),
        batch: int = 50,
        ordered: Ordered | None = None,
    ) -> None:
        self.uow = uow
        self.decider = decider
        self.clock = clock
        self.lease = lease
        self.batch = batch
        self.ordered = ordered

    async def wake(self) -> int:
        """Claim the due requests and decide each again; how many were claimed."""
        now = self.clock()
        async with self.uow() as uow:
            due = await uow.releases.claim_due(now, now + self.lease, self.batch)
            await uow.commit()
        for release in due:
            try:
                if self.ordered is not None:
                    async with self.ordered(release.service, release.environment):
                        await self._decide(release)
                else:
                    await self._decide(release)
            except Exception:
                # the claim's lease runs out and the next round (on any replica) tries again
                log.exception(
                    "deciding a due request failed; retrying after the lease",
                    release_id=release.release_id,
                    subject=release.service,
                    environment=release.environment,
                )
        return len(due)

    async def _decide(self, release: Release) -> None:
        assert release.due_at is not None
        cause = CloudEvent(
            id=derived_id(release.release_id, DUE, release.due_at.isoformat()),
            source=SOURCE,
            type=DUE,
            time=self.clock(),
            subject=release.service,
            correlationid=release.correlation_id,
            data={"releaseId": release.release_id, "dueAt": release.due_at.isoformat()},
        )
        await self.decider.decide(release.release_id, cause)

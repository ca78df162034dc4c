"""Expiring: approvals past their expiry and promotion-chain waits past ``chain_wait``."""

from __future__ import annotations

from datetime import timedelta

from ferry_events import ApprovalDenied, CloudEvent, PolicyViolation, ReleaseRejected, derived_id
from ferry_promotion.domain.decision import Status
from ferry_promotion.domain.effects import rejection
from ferry_promotion.domain.release import Release
from ferry_promotion.service_layer.outcomes import SOURCE, log_decision, write
from ferry_promotion.service_layer.ports import Clock
from ferry_promotion.service_layer.unit_of_work import UnitOfWork, UnitOfWorkFactory


class Expiry:
    """Rejects what waited too long (run by the timer entrypoint)."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        *,
        clock: Clock,
        chain_wait: timedelta = timedelta(minutes=30),
    ) -> None:
        self.uow = uow
        self.clock = clock
        self.chain_wait = chain_wait

    async def expire(self) -> int:
        """Reject approvals past their expiry and promotion-chain waits past ``chain_wait``."""
        now = self.clock()
        async with self.uow() as uow:
            overdue = await uow.releases.overdue(now, now - self.chain_wait)
        for found in overdue:
            async with self.uow() as uow:
                current = await uow.releases.get(found.release_id, lock=True)
                if current is None or current.status != found.status:
                    continue
                rejected = rejection(current, [await self._expired(uow, current)])
                event_id = derived_id(current.release_id, "expired", ReleaseRejected.event_type)
                await write(uow, current, rejected, None, event_id=event_id)
                await uow.commit()
            assert rejected.decided is not None
            log_decision(current, rejected.decided)
        return len(overdue)

    async def _expired(self, uow: UnitOfWork, current: Release) -> PolicyViolation:
        """Why ``current`` is overdue (announcing an expired approval as denied)."""
        if current.status != Status.AWAITING_APPROVAL:
            return PolicyViolation(
                policy="promotion-chain",
                message=(
                    f"gave up waiting for {current.artifact_id} to roll out in the "
                    f"environment before {current.environment} after {self.chain_wait}"
                ),
            )
        assert current.expires_at is not None
        message = (
            f"no decision before the approval expired at {current.expires_at:%Y-%m-%d %H:%M} UTC"
        )
        await uow.outbox.put(
            CloudEvent.new(
                ApprovalDenied(
                    release_id=current.release_id,
                    service=current.service,
                    environment=current.environment,
                    artifact_id=current.artifact_id or "",
                    reason=message,
                    expired=True,
                ),
                source=SOURCE,
                correlation_id=current.correlation_id,
                event_id=derived_id(current.release_id, "approval-expired"),
            )
        )
        return PolicyViolation(policy="approvals", message=message)
